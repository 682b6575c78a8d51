//go:build unix

package integration

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"text/template"
	"time"

	"github.com/caddy-uma/caddy-uma/store/pgstore/pgtest"
)

// migrateCaddyfile is an AS with everything that ends up in its store:
// local login (sessions, consented PATs), the sharing console (shares),
// the owner API (rules), a trusted issuer for claim tokens (the demo
// provider: RPTs, refresh tokens, PCTs).
var migrateCaddyfile = template.Must(template.New("Caddyfile").Parse(`{
	admin {{.AdminAddr}}
	persist_config off

	uma {
		issuer http://127.0.0.1:{{.Port}}
{{- if .Postgres}}
		storage postgres {env.UMA_PG_DSN}
{{- else}}
		storage badger {{.Storage}}
{{- end}}
		trust_issuer http://127.0.0.1:{{.Port}}/idp {
			audience app
		}
		user alice {
			password_hash {{.AliceHash}}
			email alice@example.org
		}
		client rs-api {
			secret rs-api-secret
			resource_server
			redirect_uri http://127.0.0.1:9/cb
		}
		client app {
			secret app-secret
		}
	}
}

http://127.0.0.1:{{.Port}} {
	bind 127.0.0.1
	uma_demo_idp /idp/* http://127.0.0.1:{{.Port}}/idp
	uma_server
	respond "site" 200
}
`))

// migrateSetup is one AS config of the migration test: the same issuer
// (ports) on several stores.
type migrateSetup struct {
	cfg       config
	aliceHash string
}

// caddyfile writes the Caddyfile of the setup on the Badger directory
// badgerDir, or, if it is empty, on PostgreSQL ({env.UMA_PG_DSN}), into
// dir, and returns its path.
func (m migrateSetup) caddyfile(t *testing.T, dir, badgerDir string) string {
	t.Helper()
	var buf bytes.Buffer
	err := migrateCaddyfile.Execute(&buf, map[string]any{
		"AdminAddr": m.cfg.AdminAddr, "Port": m.cfg.Port, "Storage": badgerDir,
		"Postgres": badgerDir == "", "AliceHash": m.aliceHash,
	})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// start runs Caddy on the Caddyfile at path, with env added to its
// environment.
func (m migrateSetup) start(t *testing.T, path string, env []string) *instance {
	t.Helper()
	inst := &instance{t: t, dir: filepath.Dir(path), caddyfile: path, cfg: m.cfg, log: new(syncBuffer), exited: make(chan struct{})}
	inst.run(t, env, "")
	if err := inst.waitReady(30 * time.Second); err != nil {
		t.Fatalf("caddy did not start: %v\n%s", err, inst.log)
	}
	return inst
}

// umaCommand runs `caddy <args>` with dir as its home and working
// directory, env added to its environment and stdin from in (nil: none),
// and returns its output and exit status.
func umaCommand(t *testing.T, dir string, env []string, in io.Reader, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(caddyBin, args...)
	cmd.Dir = dir
	cmd.Env = append(caddyEnv(dir), env...)
	cmd.Stdin = in
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	start := time.Now()
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		code = exit.ExitCode()
	case err != nil:
		t.Fatalf("caddy %s: %v", strings.Join(args, " "), err)
	}
	t.Logf("caddy %s: exit %d in %s", strings.Join(args, " "), code, time.Since(start).Round(time.Millisecond))
	return out.String(), errOut.String(), code
}

// mustUMA runs a caddy uma command that must succeed.
func mustUMA(t *testing.T, dir string, env []string, in io.Reader, args ...string) string {
	t.Helper()
	stdout, stderr, code := umaCommand(t, dir, env, in, args...)
	if code != 0 {
		t.Fatalf("caddy %s: exit %d\n%s", strings.Join(args, " "), code, stderr)
	}
	return stdout
}

// dumpBody returns the lines of a dump file after its header, sorted.
func dumpBody(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	if len(lines) < 2 || !strings.HasPrefix(lines[0], `{"caddy-uma-dump":1,`) || !strings.HasPrefix(lines[len(lines)-1], `{"end":`) {
		t.Fatalf("%s is not a dump:\n%s", path, b)
	}
	body := lines[1:]
	slices.Sort(body)
	return body
}

// dumpNamespaces counts the records of a dump per namespace, and its
// resources under "resources".
func dumpNamespaces(t *testing.T, lines []string) map[string]int {
	t.Helper()
	n := map[string]int{}
	for _, l := range lines {
		var v struct {
			Resource *json.RawMessage
			Record   *struct{ Namespace string }
		}
		if err := json.Unmarshal([]byte(l), &v); err != nil {
			t.Fatal(err)
		}
		switch {
		case v.Resource != nil:
			n["resources"]++
		case v.Record != nil:
			n[v.Record.Namespace]++
		}
	}
	return n
}

// sameLines fails the test unless two sorted dumps are equal, showing the
// lines that differ.
func sameLines(t *testing.T, what string, got, want []string) {
	t.Helper()
	if slices.Equal(got, want) {
		return
	}
	var missing, extra []string
	for _, l := range want {
		if !slices.Contains(got, l) {
			missing = append(missing, l)
		}
	}
	for _, l := range got {
		if !slices.Contains(want, l) {
			extra = append(extra, l)
		}
	}
	t.Errorf("%s: %d lines, want %d; missing:\n%s\nextra:\n%s", what, len(got), len(want),
		strings.Join(missing, "\n"), strings.Join(extra, "\n"))
}

// asState is what the test reads of a running AS to compare it after the
// move.
type asState struct {
	resources map[string]string // id -> description as read
	kids      []string
	// rptPermissions are the permissions of the RPT at introspection.
	rptPermissions string
	// evaluation is the owner API's dry run of alice's rule.
	evaluation string
}

// TestMoveBetweenBackends fills a store through a running Caddy on Badger
// (resources, a rule, a share, a consented PAT and a login session, RPTs
// with refresh tokens and PCTs, keys), stops it, exports it, imports the
// dump into PostgreSQL and runs Caddy there: the same resources, keys and
// decisions, and the tokens issued on Badger still work. Then it moves
// the store back into a new Badger directory and compares the dumps.
func TestMoveBetweenBackends(t *testing.T) {
	skipShort(t)
	dsn := pgtest.DSN(t)
	pgEnv := []string{pgtest.EnvDSN + "=" + dsn}
	m := migrateSetup{cfg: newConfig(t), aliceHash: hash(t, alicePassword)}
	as := m.cfg.issuer()
	badgerDir := filepath.Join(t.TempDir(), "uma")
	work := t.TempDir()
	badgerConfig := m.caddyfile(t, t.TempDir(), badgerDir)
	pgConfig := m.caddyfile(t, t.TempDir(), "")

	// 1. Caddy on Badger, filled through its endpoints.
	first := m.start(t, badgerConfig, nil)
	pat := tokenOf(t, postForm(t, as+"/token", url.Values{"grant_type": {"client_credentials"}}, "rs-api", "rs-api-secret"), "access_token")
	photos := registerOwned(t, as, pat, `{"name":"photos","owner":"alice","resource_scopes":["read","write"]}`)
	registerOwned(t, as, pat, `{"name":"diary","owner":"alice","resource_scopes":["read"],"type":"https://example.org/diary"}`)
	registerOwned(t, as, pat, `{"name":"notes","owner":"bob","resource_scopes":["read"]}`)

	browser, alicePAT := aliceConsents(t, as)
	putRule(t, as, alicePAT, "carol", "package uma.share\n\nimport data.uma.lib\n\nallow contains \"read\" if lib.is_email(\"carol@example.org\")\n")
	shareInConsole(t, as, browser, photos, "bob", "write")

	// Carol's RPT, by alice's rule, with its refresh token and PCT; bob's,
	// by alice's share.
	carol := grant(t, as, permissionTicket(t, as, pat, photos, "read"), url.Values{"claim_token": {idToken(t, as, "carol", "carol@example.org")}, "claim_token_format": {idTokenFormat}})
	rpt, refresh, pct := tokenOf(t, carol, "access_token"), tokenOf(t, carol, "refresh_token"), tokenOf(t, carol, "pct")
	bob := grant(t, as, permissionTicket(t, as, pat, photos, "write"), url.Values{"claim_token": {idToken(t, as, "bob", "bob@example.org")}, "claim_token_format": {idTokenFormat}})
	tokenOf(t, bob, "access_token")
	before := readState(t, as, pat, alicePAT, rpt, photos)
	first.stop()

	// 2. Export from Badger, import into a new PostgreSQL schema; the
	// schema, exported at once, is the Badger dump line for line.
	dumpBadger := filepath.Join(work, "badger.dump")
	start := time.Now()
	mustUMA(t, work, nil, nil, "uma", "export", "--config", badgerConfig, "--output", dumpBadger)
	t.Logf("export from Badger: %s", time.Since(start).Round(time.Millisecond))
	if fi, err := os.Stat(dumpBadger); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("the dump file: %v, %v; want mode 0600", fi.Mode(), err)
	}
	body := dumpBody(t, dumpBadger)
	counts := dumpNamespaces(t, body)
	t.Logf("the dump of Badger: %v", counts)
	for _, ns := range []string{"resources", "signing_key", "secret", "policy", "share", "token", "session"} {
		if counts[ns] == 0 {
			t.Errorf("the dump holds nothing of %q: %v", ns, counts)
		}
	}
	start = time.Now()
	mustUMA(t, work, pgEnv, nil, "uma", "import", "--config", pgConfig, "--input", dumpBadger)
	t.Logf("import into PostgreSQL: %s", time.Since(start).Round(time.Millisecond))
	dumpPG := filepath.Join(work, "postgres-fresh.dump")
	mustUMA(t, work, pgEnv, nil, "uma", "export", "--config", pgConfig, "--output", dumpPG)
	sameLines(t, "the dump of PostgreSQL after the import", dumpBody(t, dumpPG), body)

	// 3. Caddy on PostgreSQL: the same state, and what Badger issued works.
	second := m.start(t, pgConfig, pgEnv)
	if second.countLog("authorization server started", `"storage":"uma.storage.postgres `) != 1 {
		t.Errorf("the second Caddy does not run on PostgreSQL:\n%s", second.log)
	}
	after := readState(t, as, pat, alicePAT, rpt, photos)
	if !maps2Equal(after.resources, before.resources) {
		t.Errorf("resources on PostgreSQL = %v, on Badger %v", after.resources, before.resources)
	}
	if !slices.Equal(after.kids, before.kids) {
		t.Errorf("JWKS on PostgreSQL = %v, on Badger %v", after.kids, before.kids)
	}
	if after.rptPermissions != before.rptPermissions {
		t.Errorf("the RPT introspects as %s on PostgreSQL, %s on Badger", after.rptPermissions, before.rptPermissions)
	}
	if after.evaluation != before.evaluation {
		t.Errorf("alice's rule decides %s on PostgreSQL, %s on Badger", after.evaluation, before.evaluation)
	}
	refreshed := postForm(t, as+"/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh}}, "app", "app-secret")
	tokenOf(t, refreshed, "access_token")
	// The PCT stands for carol's claims: the rule grants read again.
	byPCT := grant(t, as, permissionTicket(t, as, pat, photos, "read"), url.Values{"pct": {pct}})
	tokenOf(t, byPCT, "access_token")
	// The share still applies to bob, and to nobody else.
	bobAgain := grant(t, as, permissionTicket(t, as, pat, photos, "write"), url.Values{"claim_token": {idToken(t, as, "bob", "bob@example.org")}, "claim_token_format": {idTokenFormat}})
	tokenOf(t, bobAgain, "access_token")
	dave := postForm(t, as+"/token", url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:uma-ticket"}, "ticket": {permissionTicket(t, as, pat, photos, "write")},
		"claim_token": {idToken(t, as, "dave", "dave@example.org")}, "claim_token_format": {idTokenFormat}}, "app", "app-secret")
	if dave["access_token"] != nil {
		t.Errorf("dave was granted write on PostgreSQL: %v", dave)
	}
	// alice's login session from Badger: the console shows her share.
	if page := get(t, browser, as+"/console/resources/"+photos); !strings.Contains(page, "bob") {
		t.Errorf("alice's console on PostgreSQL does not show the share with bob:\n%s", page)
	}
	second.stop()
	second.checkLog()

	// 4. Back: PostgreSQL into a new Badger directory; the two dumps are
	// the same.
	dumpPG2 := filepath.Join(work, "postgres.dump")
	mustUMA(t, work, pgEnv, nil, "uma", "export", "--config", pgConfig, "--output", dumpPG2)
	newBadger := filepath.Join(t.TempDir(), "uma")
	newConfigPath := m.caddyfile(t, t.TempDir(), newBadger)
	mustUMA(t, work, nil, nil, "uma", "import", "--config", newConfigPath, "--input", dumpPG2)
	dumpBack := filepath.Join(work, "badger-again.dump")
	mustUMA(t, work, nil, nil, "uma", "export", "--config", newConfigPath, "--output", dumpBack)
	pgBody := dumpBody(t, dumpPG2)
	sameLines(t, "the dump of the new Badger directory", dumpBody(t, dumpBack), pgBody)
	if len(pgBody) <= len(body) {
		t.Errorf("the store on PostgreSQL holds %d lines, no more than on Badger (%d): Caddy on PostgreSQL wrote nothing?", len(pgBody), len(body))
	}

	third := m.start(t, newConfigPath, nil)
	final := readState(t, as, pat, alicePAT, rpt, photos)
	if !slices.Equal(final.kids, before.kids) || final.evaluation != before.evaluation || !maps2Equal(final.resources, before.resources) {
		t.Errorf("back on Badger: %+v, want %+v", final, before)
	}
	third.stop()
	third.checkLog()
}

func maps2Equal(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// withBearer sends a request with the Bearer token and body (of
// contentType; none when empty), and decodes its answer, of status want,
// into v (if not nil).
func withBearer(t *testing.T, method, target, token, contentType, body string, want int, v any) {
	t.Helper()
	req, err := http.NewRequest(method, target, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if err := do(req, want, v); err != nil {
		t.Fatal(err)
	}
}

// registerOwned registers a resource description with the PAT and returns
// its id.
func registerOwned(t *testing.T, as, pat, description string) string {
	t.Helper()
	var created struct {
		ID string `json:"_id"`
	}
	withBearer(t, http.MethodPost, as+"/resource_set", pat, "application/json", description, http.StatusCreated, &created)
	return created.ID
}

// aliceConsents logs alice in and has her consent to a PAT for rs-api:
// her browser (with its session) and the PAT.
func aliceConsents(t *testing.T, as string) (*http.Client, string) {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar, Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	post(t, browser, as+"/login", url.Values{"csrf": {csrfIn(get(t, browser, as+"/login"))}, "username": {"alice"}, "password": {alicePassword}})
	verifier := randomSecret(t) + randomSecret(t)
	sum := sha256.Sum256([]byte(verifier))
	q := url.Values{"client_id": {"rs-api"}, "response_type": {"code"}, "redirect_uri": {"http://127.0.0.1:9/cb"},
		"code_challenge": {base64.RawURLEncoding.EncodeToString(sum[:])}, "code_challenge_method": {"S256"}, "state": {"st"}}
	form := url.Values{"csrf": {csrfIn(get(t, browser, as+"/authorize?"+q.Encode()))}, "decision": {"allow"}}
	for k, v := range q {
		form[k] = v
	}
	resp := postResp(t, browser, as+"/authorize", form)
	resp.Body.Close()
	code := mustURL(t, resp.Header.Get("Location")).Query().Get("code")
	if code == "" {
		t.Fatalf("no code in the consent's redirect %q", resp.Header.Get("Location"))
	}
	pat := tokenOf(t, postForm(t, as+"/token", url.Values{
		"grant_type": {"authorization_code"}, "code": {code}, "code_verifier": {verifier}, "redirect_uri": {"http://127.0.0.1:9/cb"},
	}, "rs-api", "rs-api-secret"), "access_token")
	return browser, pat
}

// putRule saves an owner's rule through the owner API.
func putRule(t *testing.T, as, ownerPAT, name, source string) {
	t.Helper()
	withBearer(t, http.MethodPut, as+"/owner/rules/"+name, ownerPAT, "text/plain", source, http.StatusOK, nil)
}

// shareInConsole shares a resource with a person in the console.
func shareInConsole(t *testing.T, as string, browser *http.Client, resource, person, scope string) {
	t.Helper()
	page := get(t, browser, as+"/console/resources/"+resource)
	resp := postResp(t, browser, as+"/console/shares", url.Values{"csrf": {csrfIn(page)}, "resource": {resource}, "person": {person}, "scope": {scope}})
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther && resp.StatusCode != http.StatusFound && resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("sharing in the console: %d %s", resp.StatusCode, b)
	}
	if page := get(t, browser, as+"/console/resources/"+resource); !strings.Contains(page, person) {
		t.Fatalf("the console does not show the share with %s", person)
	}
}

// permissionTicket asks for a ticket for scope of resource.
func permissionTicket(t *testing.T, as, pat, resource, scope string) string {
	t.Helper()
	body := fmt.Sprintf(`[{"resource_id":%q,"resource_scopes":[%q]}]`, resource, scope)
	var tk struct {
		Ticket string `json:"ticket"`
	}
	withBearer(t, http.MethodPost, as+"/permission", pat, "application/json", body, http.StatusCreated, &tk)
	return tk.Ticket
}

// idToken is an ID token of the demo provider for the client app.
func idToken(t *testing.T, as, sub, email string) string {
	t.Helper()
	return tokenOf(t, postForm(t, as+"/idp/id_token", url.Values{"sub": {sub}, "aud": {"app"}, "email": {email}}, "", ""), "id_token")
}

// grant redeems a ticket as app with the parameters given, asking again
// while the demo provider's keys are not yet available to the AS (it
// fetches them from its own site, which may not have been up at its start).
func grant(t *testing.T, as, ticket string, params url.Values) map[string]any {
	t.Helper()
	form := url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:uma-ticket"}, "ticket": {ticket}}
	for k, v := range params {
		form[k] = v
	}
	var answer map[string]any
	for range 60 {
		answer = postForm(t, as+"/token", form, "app", "app-secret")
		if answer["error"] != "temporarily_unavailable" {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if answer["access_token"] == nil {
		t.Fatalf("the grant was refused: %v", answer)
	}
	return answer
}

// readState reads what the test compares across the move.
func readState(t *testing.T, as, pat, ownerPAT, rpt, resource string) asState {
	t.Helper()
	st := asState{resources: map[string]string{}}
	var ids []string
	withBearer(t, http.MethodGet, as+"/resource_set", pat, "", "", http.StatusOK, &ids)
	for _, id := range ids {
		var desc json.RawMessage
		withBearer(t, http.MethodGet, as+"/resource_set/"+id, pat, "", "", http.StatusOK, &desc)
		st.resources[id] = string(desc)
	}
	var err error
	if st.kids, err = signingKeyIDs(as); err != nil {
		t.Fatal(err)
	}
	slices.Sort(st.kids)
	intro := postFormAuth(t, as+"/introspect", url.Values{"token": {rpt}}, "Bearer "+pat)
	if intro["active"] != true {
		t.Fatalf("the RPT is not active: %v", intro)
	}
	perms, _ := json.Marshal(intro["permissions"])
	st.rptPermissions = string(perms)

	body := fmt.Sprintf(`{"resource_id":%q,"scopes":["read","write"],"client_id":"app","requesting_party":{"sub":"carol"},"claims":{"email":"carol@example.org","email_verified":true}}`, resource)
	var ev json.RawMessage
	withBearer(t, http.MethodPost, as+"/owner/evaluate", ownerPAT, "application/json", body, http.StatusOK, &ev)
	st.evaluation = string(ev)
	if !strings.Contains(st.evaluation, `"read"`) {
		t.Fatalf("alice's rule does not grant carol read: %s", ev)
	}
	return st
}

// TestExportImportErrors checks the commands' answers to wrong use, bad
// configs, unusable dumps and stores, and the pipe from export to import.
func TestExportImportErrors(t *testing.T) {
	skipShort(t)
	work := t.TempDir()
	cfg := newConfig(t)
	inst := startCaddy(t, cfg)
	if _, err := registerWithNewPAT(cfg.issuer()); err != nil {
		t.Fatal(err)
	}
	caddyfile := inst.caddyfile
	write := func(name, content string) string {
		t.Helper()
		path := filepath.Join(work, name)
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	expect := func(t *testing.T, wantCode int, wantIn []string, in io.Reader, args ...string) (stdout string) {
		t.Helper()
		stdout, stderr, code := umaCommand(t, work, nil, in, args...)
		if code != wantCode {
			t.Errorf("caddy %s: exit %d, want %d\n%s", strings.Join(args, " "), code, wantCode, stderr)
		}
		// Errors come as JSON log lines: their quotes are escaped.
		said := strings.ReplaceAll(stdout+stderr, `\"`, `"`)
		for _, w := range wantIn {
			if !strings.Contains(said, w) {
				t.Errorf("caddy %s: the output does not say %q:\n%s%s", strings.Join(args, " "), w, stdout, stderr)
			}
		}
		return stdout
	}

	t.Run("while Caddy runs on Badger", func(t *testing.T) {
		expect(t, 1, []string{"locked", "stop that Caddy first"}, nil, "uma", "export", "--config", caddyfile, "--output", filepath.Join(work, "locked.dump"))
		if _, err := os.Stat(filepath.Join(work, "locked.dump")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("a failed export left its file: %v", err)
		}
	})
	inst.stop()

	good := filepath.Join(work, "good.dump")
	mustUMA(t, work, nil, nil, "uma", "export", "--config", caddyfile, "--output", good)
	newBadger := func(t *testing.T) (caddyfile, dir string) {
		c := newConfig(t)
		path := filepath.Join(t.TempDir(), "Caddyfile")
		writeCaddyfile(t, path, c)
		return path, c.Storage
	}

	t.Run("usage", func(t *testing.T) {
		expect(t, 2, []string{"--config is required"}, nil, "uma", "export")
		expect(t, 2, []string{"--config is required"}, nil, "uma", "import", "--input", good)
		expect(t, 2, []string{"unknown flag: --bogus", "usage: caddy uma restore"}, nil, "uma", "import", "--bogus")
		expect(t, 2, []string{`unexpected argument "extra"`}, nil, "uma", "export", "--config", caddyfile, "extra")
		expect(t, 2, []string{`unknown command "frobnicate"`}, nil, "uma", "frobnicate")
		expect(t, 0, []string{"Usage:", "--output", "mode 0600", "consistent snapshot"}, nil, "uma", "export", "--help")
		expect(t, 0, []string{"Usage:", "--input", "--force", "must be empty"}, nil, "uma", "import", "--help")
		expect(t, 0, []string{"export", "import", "mode 0600", "Exit status: 0 done, 1 failed, 2 wrong usage"}, nil, "uma", "--help")
	})

	t.Run("bad config", func(t *testing.T) {
		expect(t, 1, []string{"loading the config"}, nil, "uma", "export", "--config", filepath.Join(work, "missing"))
		noApp := write("NoApp.caddyfile", "http://127.0.0.1:9 {\n\trespond ok\n}\n")
		expect(t, 1, []string{"has no uma app"}, nil, "uma", "export", "--config", noApp)
		unknown := write("unknown.json", `{"apps":{"uma":{"issuer":"http://127.0.0.1:9","storage":{"backend":"nosuch"}}}}`)
		expect(t, 1, []string{`unknown backend "nosuch"`, "badger", "postgres"}, nil, "uma", "import", "--config", unknown, "--input", good)
		unset := write("unset.json", `{"apps":{"uma":{"issuer":"http://127.0.0.1:9","storage":{"backend":"postgres","dsn":"{env.UMA_TEST_UNSET_DSN}"}}}}`)
		expect(t, 1, []string{"expanding the DSN", "UMA_TEST_UNSET_DSN"}, nil, "uma", "import", "--config", unset, "--input", good)
	})

	t.Run("no database to export", func(t *testing.T) {
		path, dir := newBadger(t)
		expect(t, 1, []string{"holds no database"}, nil, "uma", "export", "--config", path, "--output", filepath.Join(work, "none.dump"))
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("the export created the Badger directory: %v", err)
		}
		// An empty PostgreSQL schema: the tables exist, nothing is in them.
		dsn := pgtest.DSN(t)
		empty := write("empty-pg.json", `{"apps":{"uma":{"issuer":"http://127.0.0.1:9","storage":{"backend":"postgres","dsn":"{env.UMA_PG_DSN}"}}}}`)
		_, stderr, code := umaCommand(t, work, []string{pgtest.EnvDSN + "=" + dsn}, nil, "uma", "export", "--config", empty, "--output", filepath.Join(work, "empty.dump"))
		if code != 1 || !strings.Contains(stderr, "is empty") {
			t.Errorf("export of an empty store: exit %d\n%s", code, stderr)
		}
	})

	t.Run("not empty", func(t *testing.T) {
		before := dumpBody(t, good)
		expect(t, 1, []string{"not empty", "--force"}, nil, "uma", "import", "--config", caddyfile, "--input", good)
		again := filepath.Join(work, "again.dump")
		mustUMA(t, work, nil, nil, "uma", "export", "--config", caddyfile, "--output", again)
		sameLines(t, "the store after a refused import", dumpBody(t, again), before)
		// Forced: the dump merged into itself changes nothing.
		expect(t, 0, []string{"imported 1 resources"}, nil, "uma", "import", "--config", caddyfile, "--input", good, "--force")
		mustUMA(t, work, nil, nil, "uma", "export", "--config", caddyfile, "--output", again)
		sameLines(t, "the store after a forced import of its own dump", dumpBody(t, again), before)
	})

	t.Run("unusable dumps", func(t *testing.T) {
		path, dir := newBadger(t)
		b, err := os.ReadFile(good)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.SplitAfter(string(b), "\n")
		truncated := write("truncated.dump", strings.Join(lines[:len(lines)-2], ""))
		garbage := write("garbage.dump", "this is not a dump\n")
		unreadable := write("unreadable.dump", string(b))
		if err := os.Chmod(unreadable, 0); err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			input string
			want  []string
		}{
			{filepath.Join(work, "missing.dump"), []string{"opening the dump", "no such file"}},
			{work, []string{"is a directory"}},
			{garbage, []string{"not a valid caddy-uma dump", "line 1", "nothing was imported"}},
			{truncated, []string{"incomplete", "without its end line", "nothing was imported"}},
		} {
			expect(t, 1, c.want, nil, "uma", "import", "--config", path, "--input", c.input)
		}
		if os.Geteuid() != 0 { // root reads any file
			expect(t, 1, []string{"permission denied"}, nil, "uma", "import", "--config", path, "--input", unreadable)
		}
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("a refused dump created the Badger directory: %v", err)
		}
		// From stdin, the dump is read as it comes: a truncated one is
		// found at its end, after the part before was written.
		f, err := os.Open(truncated)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		expect(t, 1, []string{"incomplete", "the store now holds part of the dump", "--force"}, f, "uma", "import", "--config", path)
	})

	t.Run("pipe", func(t *testing.T) {
		path, _ := newBadger(t)
		stdout := expect(t, 0, []string{"exported 1 resources"}, nil, "uma", "export", "--config", caddyfile)
		expect(t, 0, []string{"imported 1 resources"}, strings.NewReader(stdout), "uma", "import", "--config", path, "--input", "-")
		copied := filepath.Join(work, "copied.dump")
		mustUMA(t, work, nil, nil, "uma", "export", "--config", path, "--output", copied)
		sameLines(t, "the store imported from stdin", dumpBody(t, copied), dumpBody(t, good))
	})
}
