package caddymodule

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	"github.com/caddy-uma/caddy-uma/authz"
	"github.com/caddy-uma/caddy-uma/authz/admin"
	"github.com/caddy-uma/caddy-uma/authz/signing"
	"github.com/caddy-uma/caddy-uma/store"
	"github.com/caddy-uma/caddy-uma/store/dump"
)

// The commands that manage a running Caddy through the admin.api.uma
// module of its admin endpoint (backup, keys, client, token, resource,
// policy reload and status).

// addAdminFlags adds the flags that find the admin endpoint.
func addAdminFlags(cmd *cobra.Command) {
	cmd.Flags().String("address", "", "Address of the running Caddy's admin endpoint (default: the admin listener of --config, else localhost:2019)")
	cmd.Flags().StringP("config", "c", "", "Configuration file of the running Caddy, to find its admin endpoint")
	cmd.Flags().StringP("adapter", "a", "", "Name of the config adapter of --config")
	cmd.Flags().Bool("json", false, "Print the admin endpoint's JSON answer instead of a table")
}

// adminClient calls the operator's API of a running Caddy.
type adminClient struct {
	addr   caddy.NetworkAddress
	client *http.Client
}

// newAdminClient finds the admin endpoint as Caddy's own commands do:
// --address, else the admin listener of --config, else the default.
func newAdminClient(fl caddycmd.Flags) (*adminClient, error) {
	addr, err := caddycmd.DetermineAdminAPIAddress(fl.String("address"), nil, fl.String("config"), fl.String("adapter"))
	if err != nil {
		return nil, usage(fmt.Errorf("--config: %w", err))
	}
	parsed, err := caddy.ParseNetworkAddress(addr)
	if err != nil || parsed.PortRangeSize() > 1 {
		return nil, usage(fmt.Errorf("--address %q is not an admin address: give host:port (localhost:2019) or unix//path/to/socket", addr))
	}
	host := parsed.Host
	if parsed.IsUnixNetwork() {
		// Unix socket permissions ("unix//run/caddy.sock|0220") are not
		// part of the path.
		host, _, _ = strings.Cut(host, "|")
		parsed.Host = host
	}
	dial := func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, parsed.Network, parsed.JoinHostPort(0))
	}
	return &adminClient{addr: parsed, client: &http.Client{Transport: &http.Transport{DialContext: dial}}}, nil
}

// usageErr marks an error as a wrong use of a command (exit status 2).
type usageErr struct{ error }

func (e usageErr) Unwrap() error { return e.error }

func usage(err error) error { return usageErr{err} }

// exitStatus is the exit status of a command's error.
func exitStatus(err error) int {
	if errors.As(err, new(usageErr)) {
		return exitUsage
	}
	return exitFailure
}

// errNotRunning means that nothing answers at the admin address.
var errNotRunning = errors.New("no Caddy answers there")

// do sends a request to the operator's API (path under /uma) and returns
// the answer of a 2xx status; any other status is an error with the
// answer's error_description.
func (c *adminClient) do(ctx context.Context, method, path string, body any) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	socket := c.addr.IsUnixNetwork() || c.addr.IsFdNetwork()
	origin := "http://" + c.addr.JoinHostPort(0)
	if socket {
		origin = "http://127.0.0.1" // any host: the dialer ignores it
	}
	req, err := http.NewRequestWithContext(ctx, method, origin+AdminPrefix+path, rd)
	if err != nil {
		return nil, err
	}
	if !socket {
		req.Header.Set("Origin", origin)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.client.Do(req)
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "dial" {
			return nil, fmt.Errorf("%w: %s (%v); is Caddy running? give --address, the admin listener of the running Caddy", errNotRunning, c.addr, op.Err)
		}
		return nil, fmt.Errorf("calling the admin endpoint %s: %w", c.addr, err)
	}
	if resp.StatusCode/100 == 2 {
		return resp, nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var e struct {
		Code        string `json:"error"`
		Description string `json:"error_description"`
	}
	if json.Unmarshal(b, &e) != nil || e.Code == "" {
		return nil, fmt.Errorf("the admin endpoint %s answered %s: %s", c.addr, resp.Status, bytes.TrimSpace(b))
	}
	if e.Description == "" {
		e.Description = e.Code
	}
	if resp.StatusCode == http.StatusNotFound && strings.Contains(e.Description, "no such operator endpoint") {
		e.Description += " (is this Caddy built with caddy-uma?)"
	}
	return nil, fmt.Errorf("%s (%s, HTTP %d)", e.Description, e.Code, resp.StatusCode)
}

// call sends a request and decodes a JSON answer into out, also printing
// it as is with --json (and then telling the caller not to print).
func (c *adminClient) call(fl caddycmd.Flags, method, path string, body, out any) (printed bool, _ error) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	resp, err := c.do(ctx, method, path, body)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return false, fmt.Errorf("reading the answer: %w", err)
	}
	if fl.Bool("json") {
		var pretty bytes.Buffer
		if json.Indent(&pretty, b, "", "  ") == nil {
			b = pretty.Bytes()
		}
		_, err := fmt.Fprintln(os.Stdout, strings.TrimSpace(string(b)))
		return true, err
	}
	if err := json.Unmarshal(b, out); err != nil {
		return false, fmt.Errorf("reading the answer: %w", err)
	}
	return false, nil
}

// adminCommand runs fn with a client of the admin endpoint, and maps its
// error to an exit status.
func adminCommand(fn func(fl caddycmd.Flags, c *adminClient, args []string) error) func(caddycmd.Flags, []string) (int, error) {
	return func(fl caddycmd.Flags, args []string) (int, error) {
		c, err := newAdminClient(fl)
		if err == nil {
			err = fn(fl, c, args)
		}
		if err != nil {
			return exitStatus(err), err
		}
		return exitOK, nil
	}
}

// table prints rows under a header, aligned.
func table(header string, rows [][]string) error {
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func umaBackupCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "backup [--address <addr> | --config <path> [--adapter <name>]] [--output <file>]",
		Short: "Backs up the uma app's store, consistently, while Caddy runs",
		Long: `
Writes everything the store of the uma app holds into a dump (the format of
'caddy uma export': JSON lines), read in one consistent snapshot while
Caddy keeps serving. The running Caddy takes the snapshot (Badger: one read
transaction; PostgreSQL: one REPEATABLE READ transaction) and streams it
from its admin endpoint (the admin.api.uma module, GET /uma/backup): a
Badger directory is locked by the running Caddy and cannot be read
otherwise. 'caddy uma restore' reads the dump back.

The admin endpoint is --address, or else the admin listener of --config,
or else localhost:2019. When nothing answers there and --config is given,
the Caddy is taken to be stopped and its store is read directly, as
'caddy uma export' does.

--output names the file, created with mode 0600, written beside it and
renamed only once the dump is complete and checked; without it, or with -,
the dump goes to stdout, never to a terminal. The dump holds the private
signing keys and every live token: it is as secret as the database.

Exit status: 0 done, 1 failed, 2 wrong usage.
`,
		Example: `  $ caddy uma backup --output /var/backups/uma-$(date +%F).dump
  $ caddy uma backup --config /etc/caddy/Caddyfile --output uma.dump`,
	}
	addAdminFlags(cmd)
	cmd.Flags().StringP("output", "o", "", "File to write the dump to (default: stdout)")
	_ = cmd.Flags().MarkHidden("json")
	setRun(cmd, 0, cmdUMABackup)
	return cmd
}

// cmdUMABackup runs `caddy uma backup`.
func cmdUMABackup(fl caddycmd.Flags, _ []string) (int, error) {
	output := fl.String("output")
	toStdout := output == "" || output == "-"
	if toStdout && term.IsTerminal(int(os.Stdout.Fd())) {
		return exitUsage, errors.New("--output: not writing the dump to a terminal: it holds secrets; give --output <file>, or redirect stdout")
	}
	c, err := newAdminClient(fl)
	if err != nil {
		return exitStatus(err), err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	resp, err := c.do(ctx, http.MethodGet, admin.PathBackup, nil)
	var in io.Reader
	from := "the running Caddy at " + c.addr.String()
	switch {
	case errors.Is(err, errNotRunning) && fl.String("config") != "":
		st, source, oerr := openUMAStore(fl.String("config"), fl.String("adapter"), true)
		if oerr != nil {
			return exitFailure, fmt.Errorf("no Caddy answers at %s, and its store cannot be read directly: %w", c.addr, oerr)
		}
		defer closeUMAStore(st, source, false)
		pr, pw := io.Pipe()
		go func() { _, err := dump.Export(ctx, pw, st, source); pw.CloseWithError(err) }()
		in, from = pr, source+" (Caddy not running)"
	case err != nil:
		return exitFailure, err
	default:
		defer resp.Body.Close()
		in = resp.Body
	}

	out, commit, err := createDump(output)
	if err != nil {
		return exitFailure, err
	}
	// The dump is checked as it is written: one cut short (the server
	// failed half way) is never kept.
	pr, pw := io.Pipe()
	checked := make(chan error, 1)
	var counts dump.Counts
	go func() {
		_, n, err := dump.Check(pr)
		counts = n
		_, _ = io.Copy(io.Discard, pr)
		checked <- err
	}()
	_, err = io.Copy(io.MultiWriter(out, pw), in)
	pw.CloseWithError(err)
	if cerr := <-checked; err == nil && cerr != nil {
		err = fmt.Errorf("the dump is not complete: %w", cerr)
	}
	if err := commit(err); err != nil {
		return exitFailure, fmt.Errorf("backing up %s: %w", from, err)
	}
	where := output
	if toStdout {
		where = "stdout"
	}
	fmt.Fprintf(os.Stderr, "backed up %d resources and %d records from %s to %s\n", counts.Resources, counts.Records, from, where)
	return exitOK, nil
}

func umaKeysCommand() *cobra.Command {
	list := &cobra.Command{
		Use:   "list [--address <addr>]",
		Short: "Lists the signing keys the running AS publishes",
		Long: `
Lists the signing keys of the running authorization server: the current
one, which signs new tokens, and the retired ones still published while
tokens they signed may live. Exit status: 0 done, 1 failed, 2 wrong usage.
`,
	}
	addAdminFlags(list)
	setRun(list, 0, adminCommand(func(fl caddycmd.Flags, c *adminClient, _ []string) error {
		return printKeys(fl, c, http.MethodGet, admin.PathKeys)
	}))
	rotate := &cobra.Command{
		Use:   "rotate [--address <addr>]",
		Short: "Makes a new signing key current now",
		Long: `
Makes a new signing key current in the running authorization server, now,
whatever key_rotation says; every node of a shared database takes it. The
key it replaces stays published while tokens it signed may live (rpt_ttl),
so those tokens keep verifying. Rotate after a suspected key leak, or to
test that resource servers follow the JWKS.

Exit status: 0 done, 1 failed, 2 wrong usage.
`,
		Example: `  $ caddy uma keys rotate`,
	}
	addAdminFlags(rotate)
	setRun(rotate, 0, adminCommand(func(fl caddycmd.Flags, c *adminClient, _ []string) error {
		return printKeys(fl, c, http.MethodPost, admin.PathKeysRotate)
	}))
	return groupCommand("keys", "Lists and rotates the signing keys (list, rotate)", list, rotate)
}

func printKeys(fl caddycmd.Flags, c *adminClient, method, path string) error {
	var ans struct {
		Keys []signing.Key `json:"keys"`
	}
	if printed, err := c.call(fl, method, path, nil, &ans); err != nil || printed {
		return err
	}
	var rows [][]string
	for _, k := range ans.Keys {
		state := "retired"
		if k.Current {
			state = "current"
		}
		rows = append(rows, []string{k.KeyID, k.Algorithm, k.CreatedAt.Format(time.RFC3339), state})
	}
	return table("KID\tALG\tCREATED\tSTATE", rows)
}

func umaClientCommand() *cobra.Command {
	list := &cobra.Command{
		Use:   "list [--address <addr>]",
		Short: "Lists the clients: configured and registered at run time",
		Long: `
Lists the OAuth clients of the running authorization server: those of the
configuration and those registered at run time (RFC 7591 registration, or
'caddy uma client add'). Secrets are never shown.
Exit status: 0 done, 1 failed, 2 wrong usage.
`,
	}
	addAdminFlags(list)
	setRun(list, 0, adminCommand(func(fl caddycmd.Flags, c *adminClient, _ []string) error {
		var ans struct {
			Clients []authz.ClientInfo `json:"clients"`
		}
		if printed, err := c.call(fl, http.MethodGet, admin.PathClients, nil, &ans); err != nil || printed {
			return err
		}
		var rows [][]string
		for _, cl := range ans.Clients {
			kind := "configured"
			if cl.Dynamic {
				kind = "registered"
			}
			if cl.ResourceServer {
				kind += ", resource server"
			}
			if cl.Public {
				kind += ", public"
			}
			rows = append(rows, []string{cl.ClientID, orDash(cl.Name), kind, orDash(strings.Join(cl.Scopes, " "))})
		}
		return table("CLIENT_ID\tNAME\tKIND\tSCOPES", rows)
	}))

	add := &cobra.Command{
		Use:   "add [--name <name>] [--redirect-uri <uri>]... [--claims-redirect-uri <uri>]... [--scope <scope>]... [--public]",
		Short: "Registers a requesting party's client at run time",
		Long: `
Registers a client in the running authorization server, as RFC 7591
dynamic registration would (the same checks, the same kind of client: it
may use the UMA grant and refresh tokens, never be a resource server), even
when dynamic registration is off. It prints the client id and, once, its
secret (none with --public): keep it, the server keeps only its SHA-256.
Redirect URIs must be absolute, without fragment, and https except on
loopback hosts.

Exit status: 0 done, 1 failed (the server refused the metadata), 2 wrong usage.
`,
		Example: `  $ caddy uma client add --name "Partner app" --claims-redirect-uri https://partner.example/claims --scope read`,
	}
	addAdminFlags(add)
	add.Flags().String("name", "", "The client's name (client_name)")
	add.Flags().StringArray("redirect-uri", nil, "An OAuth redirect URI (repeat for several)")
	add.Flags().StringArray("claims-redirect-uri", nil, "A UMA claims redirect URI (repeat for several)")
	add.Flags().StringArray("scope", nil, "A scope the client registers (repeat for several)")
	add.Flags().Bool("public", false, "A public client, without secret (token_endpoint_auth_method none)")
	setRun(add, 0, adminCommand(func(fl caddycmd.Flags, c *adminClient, _ []string) error {
		md := authz.ClientMetadata{ClientName: fl.String("name"), Scope: strings.Join(stringArray(add, "scope"), " "),
			RedirectURIs: stringArray(add, "redirect-uri"), ClaimsRedirectURIs: stringArray(add, "claims-redirect-uri")}
		if fl.Bool("public") {
			md.TokenEndpointAuthMethod = "none"
		}
		var ans admin.ClientAdded
		if printed, err := c.call(fl, http.MethodPost, admin.PathClients, md, &ans); err != nil || printed {
			return err
		}
		fmt.Printf("client_id: %s\n", ans.ClientID)
		if ans.ClientSecret != "" {
			fmt.Printf("client_secret: %s\n", ans.ClientSecret)
			fmt.Fprintln(os.Stderr, "the secret is shown once: keep it now")
		}
		return nil
	}))

	remove := &cobra.Command{
		Use:   "remove <client_id> [--address <addr>]",
		Short: "Removes a client registered at run time, revoking its tokens",
		Long: `
Removes a client registered at run time and revokes every token issued to
it (RPTs, refresh tokens, PCTs). Clients of the configuration are removed
from the configuration instead. Exit status: 0 done, 1 failed (no such
client, a configured client), 2 wrong usage.
`,
		Example: `  $ caddy uma client remove dyn-3q2x...`,
	}
	addAdminFlags(remove)
	setRun(remove, 1, adminCommand(func(fl caddycmd.Flags, c *adminClient, args []string) error {
		var ans struct {
			Revoked int `json:"revoked_tokens"`
		}
		if printed, err := c.call(fl, http.MethodDelete, admin.PathClients+"/"+url.PathEscape(args[0]), nil, &ans); err != nil || printed {
			return err
		}
		fmt.Printf("removed client %s; %d tokens revoked\n", args[0], ans.Revoked)
		return nil
	}))
	return groupCommand("client", "Lists, registers and removes clients (list, add, remove)", list, add, remove)
}

// stringArray reads a repeatable flag.
func stringArray(cmd *cobra.Command, name string) []string {
	v, _ := cmd.Flags().GetStringArray(name)
	return v
}

func umaTokenCommand() *cobra.Command {
	mk := func(verb, short, long, method string) *cobra.Command {
		cmd := &cobra.Command{
			Use:   verb + " [--client <client_id>] [--subject <subject>] [--address <addr>]",
			Short: short,
			Long:  long,
		}
		addAdminFlags(cmd)
		cmd.Flags().String("client", "", "The client the tokens were issued to")
		cmd.Flags().String("subject", "", "Who the tokens were issued for: a requesting party, an owner")
		setRun(cmd, 0, adminCommand(func(fl caddycmd.Flags, c *adminClient, _ []string) error {
			if fl.String("client") == "" && fl.String("subject") == "" {
				return usage(errors.New("--client or --subject is required: the tokens of whom"))
			}
			q := url.Values{}
			if v := fl.String("client"); v != "" {
				q.Set("client_id", v)
			}
			if v := fl.String("subject"); v != "" {
				q.Set("subject", v)
			}
			var ans struct {
				Tokens  []authz.IssuedToken `json:"tokens"`
				Revoked []authz.IssuedToken `json:"revoked"`
			}
			if printed, err := c.call(fl, method, admin.PathTokens+"?"+q.Encode(), nil, &ans); err != nil || printed {
				return err
			}
			toks := append(ans.Tokens, ans.Revoked...)
			if method == http.MethodDelete {
				fmt.Fprintf(os.Stderr, "revoked %d tokens\n", len(toks))
			}
			var rows [][]string
			for _, t := range toks {
				rows = append(rows, []string{t.Kind, t.ID, t.ClientID, orDash(t.Subject), orDash(t.ResourceServer), t.ExpiresAt.Format(time.RFC3339)})
			}
			return table("KIND\tID\tCLIENT_ID\tSUBJECT\tRESOURCE_SERVER\tEXPIRES", rows)
		}))
		return cmd
	}
	list := mk("list", "Lists the live tokens of a client or subject", `
Lists the live tokens the running authorization server issued to a client
(--client), for a subject (--subject), or both: RPTs by jti, opaque tokens
(PATs, refresh tokens, PCTs) by the SHA-256 the store keeps; never a token.
Exit status: 0 done, 1 failed, 2 wrong usage.
`, http.MethodGet)
	revoke := mk("revoke", "Revokes the live tokens of a client or subject", `
Revokes, in one commit, every live token the running authorization server
issued to a client (--client), for a subject (--subject), or both; a
refresh token takes the RPT issued with it along. Enforcement points of
this AS refuse them from then on (remote ones that cache verified RPTs,
once their cache entry expires).
Exit status: 0 done, 1 failed, 2 wrong usage.
`, http.MethodDelete)
	return groupCommand("token", "Lists and revokes issued tokens (list, revoke)", list, revoke)
}

func umaResourceCommand() *cobra.Command {
	list := &cobra.Command{
		Use:   "list --owner <subject> [--address <addr>]",
		Short: "Lists an owner's registered resources",
		Long: `
Lists the resources registered for an owner, by every resource server, in
the running authorization server. Exit status: 0 done, 1 failed, 2 wrong
usage.
`,
		Example: `  $ caddy uma resource list --owner alice`,
	}
	addAdminFlags(list)
	list.Flags().String("owner", "", "The owner's subject (required)")
	setRun(list, 0, adminCommand(func(fl caddycmd.Flags, c *adminClient, _ []string) error {
		owner := fl.String("owner")
		if owner == "" {
			return usage(errors.New("--owner is required: the subject whose resources to list"))
		}
		var ans struct {
			Resources []store.Resource `json:"resources"`
		}
		if printed, err := c.call(fl, http.MethodGet, admin.PathResources+"?"+url.Values{"owner": {owner}}.Encode(), nil, &ans); err != nil || printed {
			return err
		}
		var rows [][]string
		for _, r := range ans.Resources {
			rows = append(rows, []string{r.ID, orDash(r.Name), orDash(r.Type), r.ResourceServer, strings.Join(r.Scopes, " ")})
		}
		return table("ID\tNAME\tTYPE\tRESOURCE_SERVER\tSCOPES", rows)
	}))
	return groupCommand("resource", "Lists registered resources (list)", list)
}

// policyStatusCommand is `policy status` or `policy reload`.
func policyStatusCommand(verb, short, long, method, path string) *cobra.Command {
	cmd := &cobra.Command{Use: verb + " [--address <addr>]", Short: short, Long: long}
	addAdminFlags(cmd)
	setRun(cmd, 0, adminCommand(func(fl caddycmd.Flags, c *adminClient, _ []string) error {
		var st authz.PolicyStatus
		if printed, err := c.call(fl, method, path, nil, &st); err != nil || printed {
			return err
		}
		if st.Directory == "" {
			fmt.Println("no policies directory is configured")
		}
		if st.DirectoryError != "" {
			fmt.Printf("the directory %s cannot be read: %s\n", st.Directory, st.DirectoryError)
		}
		for _, p := range st.Problems {
			who := "owner " + p.Owner
			if p.Owner == "" {
				who = "system rules"
			}
			state := "the others are in force"
			if p.Broken {
				state = "every request is refused until they compile"
			}
			fmt.Printf("%s: %s\n", who, state)
			for _, e := range p.Problems {
				fmt.Printf("  %s\n", e)
			}
		}
		if st.Directory != "" && len(st.Problems) == 0 && st.DirectoryError == "" {
			fmt.Printf("%s: every rule compiles\n", st.Directory)
		}
		if len(st.Problems) > 0 || st.DirectoryError != "" {
			return errors.New("some rules are not in force")
		}
		return nil
	}))
	return cmd
}
