//go:build unix

package integration

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"text/template"
	"time"

	"github.com/caddy-uma/caddy-uma/authz/claimtoken/claimtokentest"
	"github.com/caddy-uma/caddy-uma/store/pgstore/pgtest"
)

// Several Caddy nodes on one PostgreSQL schema. Every node runs the AS (the
// uma app and uma_server) under one issuer name, http://uma.localhost,
// which no client resolves: each node serves it on a port of its own, and
// clients talk to one node or another directly, as a load balancer would
// send them. Each node also runs a co-hosted uma_protect in front of one
// recording upstream (the test process).
//
// Delays are measured and logged (go test -v shows them), not assumed: a
// test fails only past generous bounds, since the machine is shared.

// clusterIssuer is the issuer of every node.
const clusterIssuer = "http://uma.localhost"

// nodeConfig is what the Caddyfile of a node varies.
type nodeConfig struct {
	Name      string
	AdminAddr string
	Port      int
	Issuer    string
	IdP       string
	Upstream  string
	AliceHash string
	Callback  string
	// KeyRotation is the uma key_rotation; empty: none.
	KeyRotation string
	// Policies is the operator rules directory; empty: none.
	Policies string
	// Timeout is uma_protect's timeout.
	Timeout string
	// FeedStaleness is the uma feed_staleness; empty: the default.
	FeedStaleness string
}

var nodeCaddyfile = template.Must(template.New("Caddyfile").Parse(`{
	admin {{.AdminAddr}}
	persist_config off

	uma {
		issuer {{.Issuer}}
		storage postgres {env.UMA_PG_DSN}
		rpt_ttl 10m
{{- if .KeyRotation}}
		key_rotation {{.KeyRotation}}
{{- end}}
{{- if .Policies}}
		policies {{.Policies}}
{{- end}}
{{- if .FeedStaleness}}
		feed_staleness {{.FeedStaleness}}
{{- end}}
		trust_issuer {{.IdP}} {
			audience demo-app
		}
		user alice {
			password_hash {{.AliceHash}}
			email alice@example.org
		}
		client rs-api {
			secret rs-api-secret
			resource_server
			redirect_uri {{.Callback}}
		}
		client demo-app {
			secret demo-app-secret
		}
	}
}

http://127.0.0.1:{{.Port}} {
	bind 127.0.0.1
	uma_server
	handle /api/* {
		uma_protect {
			as co-hosted
			resource_server rs-api
			realm records
			timeout {{.Timeout}}
			resource /api/records/{owner}/{id} {
				owner {owner}
			}
		}
		reverse_proxy {{.Upstream}} {
			header_up X-UMA-Node {{.Name}}
			header_up X-UMA-Subject {http.auth.uma.subject}
		}
	}
	respond "node {{.Name}}" 200
}
`))

// clusterOptions is what a test varies in its cluster.
type clusterOptions struct {
	nodes       int
	keyRotation string
	// policies gives every node the same operator rules directory
	// (aliceRules: bob@example.com may read alice's records).
	policies bool
	// timeout is uma_protect's timeout; empty: 5s.
	timeout string
	// feedStaleness is the uma feed_staleness; empty: the default.
	feedStaleness string
	// dsn returns the DSN the nodes use for the test's schema; nil: the
	// schema's own.
	dsn func(schema string) string
}

// cluster is Caddy nodes on one schema, trusting one OpenID provider.
type cluster struct {
	t     *testing.T
	idp   *claimtokentest.Provider
	up    *recorder
	env   []string
	nodes []*node
	// bob is an ID token of bob (sub bob, email bob@example.com) for
	// demo-app, pushed as claim token.
	bob string
}

// node is one Caddy process of a cluster.
type node struct {
	*instance
	name string
	url  string
	nc   nodeConfig
}

// startCluster starts the nodes of opts together on a new schema, and
// waits until each answers.
func startCluster(t *testing.T, opts clusterOptions) *cluster {
	t.Helper()
	skipShort(t)
	schema := pgtest.DSN(t)
	dsn := schema
	if opts.dsn != nil {
		dsn = opts.dsn(schema)
	}
	c := &cluster{t: t, idp: claimtokentest.NewProvider(t), up: newRecorder(t), env: []string{pgtest.EnvDSN + "=" + dsn}}
	c.bob = bobsIDToken(t, c.idp)
	policies := ""
	if opts.policies {
		// The same files on every node, as a shared volume gives them.
		policies = writeRules(t)
	}
	timeout := opts.timeout
	if timeout == "" {
		timeout = "5s"
	}
	aliceHash := hash(t, alicePassword)
	for i := range opts.nodes {
		nc := nodeConfig{
			Name:          fmt.Sprintf("node%d", i+1),
			AdminAddr:     fmt.Sprintf("127.0.0.1:%d", freePort(t)),
			Port:          freePort(t),
			Issuer:        clusterIssuer,
			IdP:           c.idp.Issuer(),
			Upstream:      c.up.Listener.Addr().String(),
			AliceHash:     aliceHash,
			Callback:      "http://127.0.0.1:9/callback",
			KeyRotation:   opts.keyRotation,
			Policies:      policies,
			Timeout:       timeout,
			FeedStaleness: opts.feedStaleness,
		}
		c.nodes = append(c.nodes, c.launch(nc))
	}
	for _, n := range c.nodes {
		n.ready()
	}
	t.Cleanup(clusterClient.CloseIdleConnections)
	return c
}

// launch starts the Caddy process of a node without waiting for it.
func (c *cluster) launch(nc nodeConfig) *node {
	t := c.t
	t.Helper()
	dir := t.TempDir()
	inst := &instance{
		t: t, dir: dir, caddyfile: filepath.Join(dir, "Caddyfile"),
		cfg: config{AdminAddr: nc.AdminAddr, Port: nc.Port},
		log: new(syncBuffer), exited: make(chan struct{}),
	}
	var buf bytes.Buffer
	if err := nodeCaddyfile.Execute(&buf, nc); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(inst.caddyfile, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	inst.run(t, c.env, nc.Name+", Caddyfile:\n"+buf.String()+"\n")
	return &node{instance: inst, name: nc.Name, url: fmt.Sprintf("http://127.0.0.1:%d", nc.Port), nc: nc}
}

// ready waits until the node answers.
func (n *node) ready() {
	n.t.Helper()
	if err := n.waitReady(60 * time.Second); err != nil {
		n.t.Fatalf("%s did not start: %v\n%s", n.name, err, n.log)
	}
}

// kill9 ends the node's process with SIGKILL: no cleanup of any kind.
func (n *node) kill9() {
	n.t.Helper()
	if err := n.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		n.t.Fatalf("SIGKILL %s: %v", n.name, err)
	}
	<-n.exited
}

// restart starts a new process of node i, with the same config, and waits
// until it answers.
func (c *cluster) restart(i int) *node {
	c.t.Helper()
	c.nodes[i] = c.launch(c.nodes[i].nc)
	c.nodes[i].ready()
	return c.nodes[i]
}

// clusterClient sends every request of these tests. An answer that has not
// come within 30 s counts as a hang; redirects are answers (they point at
// the issuer's name, which does not resolve).
var clusterClient = &http.Client{
	Timeout:       30 * time.Second,
	Transport:     &http.Transport{MaxIdleConnsPerHost: 64, IdleConnTimeout: 30 * time.Second},
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// call is one request to a node.
type call struct {
	method, path string
	form         url.Values // sent as application/x-www-form-urlencoded
	body         string     // sent as contentType, if form is nil
	contentType  string
	bearer       string
	basic        [2]string
	cookie       string // the session cookie's value
}

// answer is a node's response, with its body read and how long it took.
type answer struct {
	status int
	header http.Header
	body   []byte
	took   time.Duration
}

func (a answer) String() string {
	return fmt.Sprintf("%d %s", a.status, strings.TrimSpace(string(a.body[:min(len(a.body), 300)])))
}

// member returns a string member of a JSON body, or "".
func (a answer) member(name string) string {
	var m map[string]any
	_ = json.Unmarshal(a.body, &m)
	s, _ := m[name].(string)
	return s
}

// do sends c to the node.
func (n *node) do(c call) (answer, error) {
	var body io.Reader
	ctype := c.contentType
	switch {
	case c.form != nil:
		body, ctype = strings.NewReader(c.form.Encode()), "application/x-www-form-urlencoded"
	case c.body != "":
		body = strings.NewReader(c.body)
	}
	req, err := http.NewRequest(c.method, n.url+c.path, body)
	if err != nil {
		return answer{}, err
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	if c.bearer != "" {
		req.Header.Set("Authorization", "Bearer "+c.bearer)
	}
	if c.basic[0] != "" {
		req.SetBasicAuth(c.basic[0], c.basic[1])
	}
	if c.cookie != "" {
		req.AddCookie(&http.Cookie{Name: "uma_session", Value: c.cookie})
	}
	start := time.Now()
	resp, err := clusterClient.Do(req)
	if err != nil {
		return answer{took: time.Since(start)}, fmt.Errorf("%s: %s %s: %w", n.name, c.method, c.path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	a := answer{status: resp.StatusCode, header: resp.Header, body: b, took: time.Since(start)}
	if err != nil {
		return a, fmt.Errorf("%s: %s %s: reading the answer: %w", n.name, c.method, c.path, err)
	}
	return a, nil
}

// expect sends c and checks the answer's status.
func (n *node) expect(c call, status int) (answer, error) {
	a, err := n.do(c)
	if err == nil && a.status != status {
		err = fmt.Errorf("%s: %s %s: %s, want %d", n.name, c.method, c.path, a, status)
	}
	return a, err
}

const umaTicketGrant = "urn:ietf:params:oauth:grant-type:uma-ticket"

// challenge requests one of the protected records without a token, and
// returns the ticket of the 401: uma_protect registers the record's
// resource on first sight.
func (n *node) challenge(path string) (string, error) {
	a, err := n.expect(call{method: http.MethodGet, path: path}, http.StatusUnauthorized)
	if err != nil {
		return "", err
	}
	h := a.header.Get("WWW-Authenticate")
	m := ticketParam.FindStringSubmatch(h)
	if m == nil || !strings.Contains(h, `as_uri="`+clusterIssuer+`"`) {
		return "", fmt.Errorf("%s: challenge %q", n.name, h)
	}
	return m[1], nil
}

// redeem asks for an RPT as demo-app with the UMA grant, pushing claims.
func (n *node) redeem(ticket, claims string) (answer, error) {
	return n.do(call{method: http.MethodPost, path: "/token", basic: [2]string{"demo-app", "demo-app-secret"}, form: url.Values{
		"grant_type": {umaTicketGrant}, "ticket": {ticket}, "claim_token": {claims}, "claim_token_format": {idTokenFormat},
	}})
}

// rpt redeems ticket and returns the RPT.
func (n *node) rpt(ticket, claims string) (string, error) {
	a, err := n.redeem(ticket, claims)
	if err == nil && (a.status != http.StatusOK || a.member("access_token") == "") {
		err = fmt.Errorf("%s: redeeming a ticket: %s", n.name, a)
	}
	return a.member("access_token"), err
}

// api requests a protected record with an RPT.
func (n *node) api(path, rpt string) (answer, error) {
	return n.do(call{method: http.MethodGet, path: path, bearer: rpt})
}

// pat returns a PAT of the resource server rs-api (client credentials).
func (n *node) pat() (string, error) {
	a, err := n.expect(call{method: http.MethodPost, path: "/token", basic: [2]string{rsID, rsSecret},
		form: url.Values{"grant_type": {"client_credentials"}, "scope": {"uma_protection"}}}, http.StatusOK)
	return a.member("access_token"), err
}

// active introspects token with a PAT.
func (n *node) active(pat, token string) (bool, error) {
	a, err := n.expect(call{method: http.MethodPost, path: "/introspect", bearer: pat, form: url.Values{"token": {token}}}, http.StatusOK)
	var m struct {
		Active bool `json:"active"`
	}
	if err == nil {
		err = json.Unmarshal(a.body, &m)
	}
	return m.Active, err
}

// resourceID returns the id of rs-api's resource named name.
func (n *node) resourceID(pat, name string) (string, error) {
	a, err := n.expect(call{method: http.MethodGet, path: "/resource_set?name=" + url.QueryEscape(name), bearer: pat}, http.StatusOK)
	if err != nil {
		return "", err
	}
	var ids []string
	if err := json.Unmarshal(a.body, &ids); err != nil || len(ids) != 1 {
		return "", fmt.Errorf("%s: resources named %s: %s", n.name, name, a)
	}
	return ids[0], nil
}

// kids returns the key ids the node's JWKS publishes.
func (n *node) kids() ([]string, error) { return signingKeyIDs(n.url) }

// ownerSession is a person logged in with the console's login form: the
// session cookie and the CSRF token of its forms. Sessions live in the
// store, so one login serves on every node.
type ownerSession struct {
	cookie, csrf string
}

// sessionCookieOf returns the value of the session cookie an answer sets
// (after deleting the one it replaces).
func sessionCookieOf(a answer) string {
	value := ""
	for _, c := range (&http.Response{Header: a.header}).Cookies() {
		if c.Name == "uma_session" && c.Value != "" {
			value = c.Value
		}
	}
	return value
}

// login logs user in at the node.
func (n *node) login(user, password string) (*ownerSession, error) {
	a, err := n.expect(call{method: http.MethodGet, path: "/login"}, http.StatusOK)
	if err != nil {
		return nil, err
	}
	anonymous, csrf := sessionCookieOf(a), csrfIn(string(a.body))
	a, err = n.expect(call{method: http.MethodPost, path: "/login", cookie: anonymous,
		form: url.Values{"csrf": {csrf}, "username": {user}, "password": {password}}}, http.StatusSeeOther)
	if err != nil {
		return nil, err
	}
	s := &ownerSession{cookie: sessionCookieOf(a)}
	a, err = n.expect(call{method: http.MethodGet, path: "/console/resources", cookie: s.cookie}, http.StatusOK)
	if err != nil {
		return nil, err
	}
	if s.csrf = csrfIn(string(a.body)); s.cookie == "" || s.csrf == "" {
		return nil, fmt.Errorf("%s: logging in: no session cookie or CSRF token", n.name)
	}
	return s, nil
}

var shareIDField = regexp.MustCompile(`name="share" value="([^"]+)"`)

// share shares the resource id with person for scope in the console, and
// returns the share's id.
func (n *node) share(s *ownerSession, id, person, scope string) (string, error) {
	if _, err := n.expect(call{method: http.MethodPost, path: "/console/shares", cookie: s.cookie,
		form: url.Values{"csrf": {s.csrf}, "resource": {id}, "person": {person}, "scope": {scope}}}, http.StatusSeeOther); err != nil {
		return "", err
	}
	a, err := n.expect(call{method: http.MethodGet, path: "/console/resources/" + url.PathEscape(id), cookie: s.cookie}, http.StatusOK)
	if err != nil {
		return "", err
	}
	m := shareIDField.FindAllStringSubmatch(string(a.body), -1)
	if len(m) != 1 {
		return "", fmt.Errorf("%s: %d shares of %s in the console, want 1", n.name, len(m), id)
	}
	return m[0][1], nil
}

// revoke revokes a share in the console.
func (n *node) revoke(s *ownerSession, id, share string) error {
	_, err := n.expect(call{method: http.MethodPost, path: "/console/shares/revoke", cookie: s.cookie,
		form: url.Values{"csrf": {s.csrf}, "resource": {id}, "share": {share}}}, http.StatusSeeOther)
	return err
}

// ownerPAT obtains a PAT of rs-api for the owner of s: the authorization
// code grant with PKCE, the owner consenting on the node's page.
func (n *node) ownerPAT(s *ownerSession) (string, error) {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	verifier := base64.RawURLEncoding.EncodeToString(b)
	sum := sha256.Sum256([]byte(verifier))
	a, err := n.expect(call{method: http.MethodPost, path: "/authorize", cookie: s.cookie, form: url.Values{
		"csrf": {s.csrf}, "decision": {"allow"}, "response_type": {"code"}, "client_id": {rsID},
		"redirect_uri": {n.nc.Callback}, "scope": {"uma_protection"}, "state": {"st"},
		"code_challenge": {base64.RawURLEncoding.EncodeToString(sum[:])}, "code_challenge_method": {"S256"},
	}}, http.StatusFound)
	if err != nil {
		return "", err
	}
	back, err := url.Parse(a.header.Get("Location"))
	if err != nil || back.Query().Get("code") == "" {
		return "", fmt.Errorf("%s: consent: sent back to %q", n.name, a.header.Get("Location"))
	}
	a, err = n.expect(call{method: http.MethodPost, path: "/token", basic: [2]string{rsID, rsSecret}, form: url.Values{
		"grant_type": {"authorization_code"}, "code": {back.Query().Get("code")},
		"redirect_uri": {n.nc.Callback}, "code_verifier": {verifier},
	}}, http.StatusOK)
	return a.member("access_token"), err
}

// putRule creates or replaces one of the owner's rules with the owner API.
func (n *node) putRule(ownerPAT, name, src string) error {
	_, err := n.expect(call{method: http.MethodPut, path: "/owner/rules/" + name, bearer: ownerPAT,
		body: src, contentType: "text/plain"}, http.StatusOK)
	return err
}

// logged returns the time of the first line of the node's log at or after
// since whose message contains msg.
func (n *node) logged(msg string, since time.Time) (time.Time, bool) {
	for _, line := range strings.Split(n.log.String(), "\n") {
		var l struct {
			TS  float64 `json:"ts"`
			Msg string  `json:"msg"`
		}
		if json.Unmarshal([]byte(line), &l) != nil || !strings.Contains(l.Msg, msg) {
			continue
		}
		at := time.Unix(0, int64(l.TS*1e9))
		if !at.Before(since) {
			return at, true
		}
	}
	return time.Time{}, false
}

// errNotWithin is until's error past its limit.
var errNotWithin = errors.New("not within")

// until polls check until it holds, and returns how long that took. It
// fails past limit, or on an error of check.
func until(limit time.Duration, check func() (bool, error)) (time.Duration, error) {
	start := time.Now()
	for {
		ok, err := check()
		if err != nil {
			return time.Since(start), err
		}
		if ok {
			return time.Since(start), nil
		}
		if time.Since(start) > limit {
			return time.Since(start), fmt.Errorf("%w %s", errNotWithin, limit)
		}
		time.Sleep(time.Millisecond)
	}
}

// delays are the measurements of one delay.
type delays []time.Duration

// report logs the minimum, the median and the maximum, and fails the test
// past limit (0: no limit).
func (d delays) report(t *testing.T, what string, limit time.Duration) {
	t.Helper()
	s := slices.Clone(d)
	slices.Sort(s)
	if len(s) == 0 {
		t.Errorf("%s: nothing measured", what)
		return
	}
	r := func(d time.Duration) time.Duration { return d.Round(100 * time.Microsecond) }
	t.Logf("%s: min %s, median %s, max %s over %d", what, r(s[0]), r(s[len(s)/2]), r(s[len(s)-1]), len(s))
	if limit > 0 && s[len(s)-1] > limit {
		t.Errorf("%s: %s, past the bound of %s", what, s[len(s)-1], limit)
	}
}

// propagationBound is the acceptance bound of the issue: a change made on
// one node applies on the others within 1 s. They take milliseconds; a
// try past the bound is taken again up to propagationRetries times (the
// machine is shared, and one try can be starved), and every try is logged.
const (
	propagationBound   = time.Second
	propagationRetries = 3
)

// measure adds the delay of one try, a measurement bounded by
// propagationBound (passed to try, which returns until's errNotWithin past
// it). A try past the bound is logged and taken again, up to
// propagationRetries times; the test fails if all of them are past it, or
// on another error.
func (d *delays) measure(t *testing.T, what string, try func(limit time.Duration) (time.Duration, error)) {
	t.Helper()
	for i := 0; ; i++ {
		took, err := try(propagationBound)
		switch {
		case err == nil:
			*d = append(*d, took)
			return
		case !errors.Is(err, errNotWithin):
			t.Fatalf("%s: %v", what, err)
		case i == propagationRetries:
			t.Fatalf("%s: past %s in %d tries in a row: %v", what, propagationBound, i+1, err)
		}
		t.Logf("%s: try past %s (%s), taken again", what, propagationBound, took.Round(time.Millisecond))
	}
}

// kidOf returns the kid of a JWS's header.
func kidOf(token string) string {
	h, _, _ := strings.Cut(token, ".")
	b, _ := base64.RawURLEncoding.DecodeString(h)
	var hdr struct {
		Kid string `json:"kid"`
	}
	_ = json.Unmarshal(b, &hdr)
	return hdr.Kid
}

// TestMultiNode runs two nodes on one schema: what one node does, the
// other honours at once.
func TestMultiNode(t *testing.T) {
	c := startCluster(t, clusterOptions{nodes: 2, keyRotation: "2s"})
	n1, n2 := c.nodes[0], c.nodes[1]
	check := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	pat2, err := n2.pat()
	check(err)

	// Alice logs in on node 1; her session serves on node 2 too. Her
	// record, registered by node 1's uma_protect on first sight, is known
	// to node 2, and she shares it with bob in node 2's console.
	alice, err := n1.login("alice", alicePassword)
	check(err)
	const record = "/api/records/alice/1"
	_, err = n1.challenge(record)
	check(err)
	id, err := n2.resourceID(pat2, record)
	check(err)
	_, err = n2.share(alice, id, "bob", "read")
	check(err)

	t.Run("ticket of node 1 redeemed on node 2, once", func(t *testing.T) {
		tk, err := n1.challenge(record)
		check(err)
		rpt, err := n2.rpt(tk, c.bob)
		check(err)
		for _, n := range c.nodes {
			if a, err := n.api(record, rpt); err != nil || a.status != http.StatusOK {
				t.Fatalf("the RPT of node 2 at %s: %v %v", n.name, a, err)
			}
			if seen := c.up.last(); seen.Header.Get("X-UMA-Node") != n.name || seen.Header.Get("X-UMA-Subject") != "bob" {
				t.Errorf("the upstream saw node %q and subject %q", seen.Header.Get("X-UMA-Node"), seen.Header.Get("X-UMA-Subject"))
			}
		}
		a, err := n1.redeem(tk, c.bob)
		check(err)
		if a.status != http.StatusBadRequest || a.member("error") != "invalid_grant" {
			t.Fatalf("the ticket redeemed again on node 1: %s, want 400 invalid_grant", a)
		}
	})

	t.Run("100 concurrent redemptions of one ticket over both nodes", func(t *testing.T) {
		tk, err := n1.challenge(record)
		check(err)
		var mu sync.Mutex
		answers := map[string]int{}
		var wg sync.WaitGroup
		for i := range 100 {
			wg.Go(func() {
				a, err := c.nodes[i%2].redeem(tk, c.bob)
				key := fmt.Sprintf("%d %s", a.status, a.member("error"))
				if err != nil {
					key = err.Error()
				}
				mu.Lock()
				answers[key]++
				mu.Unlock()
			})
		}
		wg.Wait()
		t.Logf("100 redemptions of one ticket: %v", answers)
		if answers["200 "] != 1 || answers["400 invalid_grant"] != 99 {
			t.Fatalf("answers %v, want one RPT and 99 invalid_grant", answers)
		}
	})

	t.Run("share revoked on node 2 stops the RPT at node 1", func(t *testing.T) {
		const shared = "/api/records/alice/shared"
		_, err := n1.challenge(shared)
		check(err)
		id, err := n1.resourceID(pat2, shared)
		check(err)
		const what = "share revoked on node 2 until node 1's uma_protect refuses its RPT"
		var d delays
		for range 8 {
			d.measure(t, what, func(limit time.Duration) (time.Duration, error) {
				share, err := n1.share(alice, id, "bob", "read")
				if err != nil {
					return 0, err
				}
				tk, err := n1.challenge(shared)
				if err != nil {
					return 0, err
				}
				rpt, err := n1.rpt(tk, c.bob)
				if err != nil {
					return 0, err
				}
				// Twice: node 1's uma_protect caches the RPT, and its AS
				// the answer that the RPT is live.
				for range 2 {
					if a, err := n1.api(shared, rpt); err != nil || a.status != http.StatusOK {
						return 0, fmt.Errorf("the RPT at node 1: %v %v", a, err)
					}
				}
				if err := n2.revoke(alice, id, share); err != nil {
					return 0, err
				}
				before := c.up.count()
				took, err := until(limit, func() (bool, error) {
					a, err := n1.api(shared, rpt)
					return a.status == http.StatusUnauthorized, err
				})
				if n := c.up.count() - before; n > 0 {
					t.Logf("%d requests reached the upstream after the revocation was acknowledged", n)
				}
				if err != nil {
					return took, fmt.Errorf("node 1 still lets the RPT through after the share was revoked on node 2: %w", err)
				}
				return took, nil
			})
		}
		d.report(t, what, 0)
	})

	t.Run("revocation applies at once on the node that made it", func(t *testing.T) {
		// Co-hosted, a revocation applies at once (README): on the node
		// that revoked, the very next request is refused, whatever the
		// change feed's delay.
		for i := range 20 {
			n := c.nodes[i%2]
			tk, err := n.challenge(record)
			check(err)
			rpt, err := n.rpt(tk, c.bob)
			check(err)
			for range 2 {
				if a, err := n.api(record, rpt); err != nil || a.status != http.StatusOK {
					t.Fatalf("the RPT at %s: %v %v", n.name, a, err)
				}
			}
			if _, err := n.expect(call{method: http.MethodPost, path: "/revoke", basic: [2]string{"demo-app", "demo-app-secret"},
				form: url.Values{"token": {rpt}}}, http.StatusOK); err != nil {
				t.Fatal(err)
			}
			if a, err := n.api(record, rpt); err != nil || a.status != http.StatusUnauthorized {
				t.Fatalf("revocation %d: the RPT revoked at %s, there right after: %v %v, want 401", i, n.name, a, err)
			}
		}
	})

	t.Run("rule changed on node 1 decides the next grant on node 2", func(t *testing.T) {
		ownerPAT, err := n1.ownerPAT(alice)
		check(err)
		const ruled = "/api/records/alice/ruled"
		rule := func(who string) string {
			return "package uma.share\n\nallow contains \"read\" if input.requesting_party.sub == \"" + who + "\"\n"
		}
		granted := func() (bool, error) {
			tk, err := n2.challenge(ruled)
			if err != nil {
				return false, err
			}
			a, err := n2.redeem(tk, c.bob)
			switch {
			case err != nil:
				return false, err
			case a.status == http.StatusOK:
				return true, nil
			case a.status == http.StatusForbidden && a.member("error") == "request_denied":
				return false, nil
			}
			return false, fmt.Errorf("node 2: grant: %s", a)
		}
		// The first grant compiles alice's rules on node 2.
		if _, err := until(10*time.Second, func() (bool, error) {
			if err := n1.putRule(ownerPAT, "main", rule("bob")); err != nil {
				return false, err
			}
			return granted()
		}); err != nil {
			t.Fatalf("node 2 does not decide with the rule saved on node 1: %v", err)
		}
		const what = "rule saved on node 1 until node 2 decides with it"
		var d delays
		who, want := "bob", true
		for range 10 {
			d.measure(t, what, func(limit time.Duration) (time.Duration, error) {
				if want {
					who, want = "carol", false
				} else {
					who, want = "bob", true
				}
				if err := n1.putRule(ownerPAT, "main", rule(who)); err != nil {
					return 0, err
				}
				took, err := until(limit, func() (bool, error) {
					g, err := granted()
					return g == want, err
				})
				if err != nil {
					return took, fmt.Errorf("node 2 does not decide with the rule (%s) saved on node 1: %w", who, err)
				}
				return took, nil
			})
		}
		d.report(t, what, 0)
	})

	t.Run("key rotated on one node verifies on the other", func(t *testing.T) {
		const what = "key rotated on one node until the other publishes it"
		var d delays
		for i := range 4 {
			signer, other := c.nodes[i%2], c.nodes[(i+1)%2]
			d.measure(t, what, func(limit time.Duration) (time.Duration, error) {
				before, err := signer.kids()
				if err != nil {
					return 0, err
				}
				// key_rotation 2s: the first RPT signed after that makes
				// a new key.
				var rpt string
				if _, err := until(10*time.Second, func() (bool, error) {
					tk, err := signer.challenge(record)
					if err != nil {
						return false, err
					}
					if rpt, err = signer.rpt(tk, c.bob); err != nil {
						return false, err
					}
					if slices.Contains(before, kidOf(rpt)) {
						time.Sleep(100 * time.Millisecond)
						return false, nil
					}
					return true, nil
				}); err != nil {
					return 0, fmt.Errorf("%s did not rotate its key: %v", signer.name, err)
				}
				kid := kidOf(rpt)
				took, err := until(limit, func() (bool, error) {
					kids, err := other.kids()
					return slices.Contains(kids, kid), err
				})
				if err != nil {
					return took, fmt.Errorf("%s does not publish the key %s rotated on %s: %w", other.name, kid, signer.name, err)
				}
				if a, err := other.api(record, rpt); err != nil || a.status != http.StatusOK {
					return took, fmt.Errorf("an RPT signed with the key rotated on %s, at %s: %v %v", signer.name, other.name, a, err)
				}
				return took, nil
			})
		}
		d.report(t, what, 0)
	})

	t.Run("kill -9 of node 1 under load loses no acknowledged write", func(t *testing.T) {
		// Writers register resources and obtain RPTs on both nodes; node 1
		// is killed once it has acknowledged killAfter writes, and the
		// load goes on until node 2 has acknowledged keepOn more.
		const killAfter, keepOn = 40, 40
		type write struct {
			node     string
			resource string // a registered resource's id, or
			rpt      string // an issued RPT
		}
		var (
			mu      sync.Mutex
			acked   []write
			perNode = map[string]int{}
			failed  []string // requests to node 2 that did not succeed
			killed  = make(chan struct{})
			stop    = make(chan struct{})
			wg      sync.WaitGroup
		)
		ack := func(w write) {
			mu.Lock()
			defer mu.Unlock()
			acked = append(acked, w)
			perNode[w.node]++
		}
		fail := func(n *node, err error) {
			select {
			case <-killed:
				if n == n1 {
					return // node 1's requests fail once it is killed: not acknowledged
				}
			default:
			}
			mu.Lock()
			failed = append(failed, err.Error())
			mu.Unlock()
		}
		for w := range 4 {
			wg.Go(func() {
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					n := c.nodes[(w+i)%2]
					if w%2 == 0 {
						a, err := n.expect(call{method: http.MethodPost, path: "/resource_set", bearer: pat2, contentType: "application/json",
							body: fmt.Sprintf(`{"name":"kill %d %d","owner":"alice","resource_scopes":["read"]}`, w, i)}, http.StatusCreated)
						if err != nil || a.member("_id") == "" {
							fail(n, fmt.Errorf("registering: %v %v", a, err))
							continue
						}
						ack(write{node: n.name, resource: a.member("_id")})
						continue
					}
					tk, err := n.challenge(record)
					if err != nil {
						fail(n, err)
						continue
					}
					rpt, err := n.rpt(tk, c.bob)
					if err != nil {
						fail(n, err)
						continue
					}
					ack(write{node: n.name, rpt: rpt})
				}
			})
		}
		count := func(name string) int {
			mu.Lock()
			defer mu.Unlock()
			return perNode[name]
		}
		if _, err := until(30*time.Second, func() (bool, error) { return count(n1.name) >= killAfter, nil }); err != nil {
			close(stop)
			wg.Wait()
			t.Fatalf("node 1 acknowledged %d writes: %v", count(n1.name), err)
		}
		close(killed)
		n1.kill9()
		mu.Lock()
		beforeKill := len(acked)
		fromN2 := perNode[n2.name]
		mu.Unlock()
		_, err := until(30*time.Second, func() (bool, error) { return count(n2.name) >= fromN2+keepOn, nil })
		close(stop)
		wg.Wait()
		if err != nil {
			t.Fatalf("node 2 acknowledged %d writes after node 1 was killed: %v", count(n2.name)-fromN2, err)
		}
		if len(failed) > 0 {
			t.Errorf("%d requests failed (to node 1 before its kill, or to node 2), such as: %s", len(failed), failed[0])
		}
		t.Logf("acknowledged writes: %d before the kill (%d by node 1), %d in all", beforeKill, perNode[n1.name], len(acked))

		// Every acknowledged write is there, read from node 2, and from
		// node 1 once restarted.
		readAll := func(n *node) {
			t.Helper()
			missing := 0
			for _, w := range acked {
				if w.resource != "" {
					if a, err := n.do(call{method: http.MethodGet, path: "/resource_set/" + w.resource, bearer: pat2}); err != nil || a.status != http.StatusOK {
						missing++
						t.Errorf("the resource registered on %s, read on %s: %v %v", w.node, n.name, a, err)
					}
					continue
				}
				if live, err := n.active(pat2, w.rpt); err != nil || !live {
					missing++
					t.Errorf("an RPT issued by %s, introspected on %s: active %v, %v", w.node, n.name, live, err)
				}
			}
			t.Logf("%d acknowledged writes read on %s, %d missing", len(acked), n.name, missing)
		}
		readAll(n2)
		n1 = c.restart(0)
		readAll(n1)
	})

	for _, n := range c.nodes {
		n.alive()
		n.checkLog()
	}
}
