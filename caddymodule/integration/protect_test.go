//go:build unix

package integration

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"text/template"
	"time"

	"github.com/caddy-uma/caddy-uma/authz/claimtoken/claimtokentest"
	"github.com/caddy-uma/caddy-uma/authz/pep/peptest"
)

// uma_protect with a real Caddy in front of a real upstream: the
// upstream is an httptest server of the test process that records what
// reaches it.

// aliceRules: alice shares her records read-only with bob@example.com,
// asks for an e-mail address when none is known, and refuses requests
// whose context says via=banned.
const aliceRules = `package uma.share

import data.uma.lib

allow contains scope if {
	lib.is_email("bob@example.com")
	some scope in lib.read_scopes
}

required_claims contains lib.email_claim if not lib.email

deny contains scope if {
	input.request.via == "banned"
	some scope in lib.available
}
`

// port returns a TCP port that was free a moment ago.
func port(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// protectConfig is what the uma_protect Caddyfiles vary.
type protectConfig struct {
	AdminAddr string
	ASPort    int    // the AS site; 0: no uma app in this Caddy
	APIPort   int    // the protected site
	Storage   string // Badger directory
	Policies  string // rules directory
	IdP       string // trusted issuer of ID tokens
	Upstream  string // host:port of the upstream
	RemoteAS  string // issuer of a remote AS; empty: co-hosted
	DeadAS    string // issuer of an AS that does not answer (remote only)
	// KeycloakAS is the issuer of an AS that answers as Keycloak does,
	// for the /kc/ site (remote only).
	KeycloakAS string
	RPTTTL     string // default 5s
	// RevocationCheck is the remote revocation_check; default 1s.
	RevocationCheck string
	// Quiet leaves out the debug option (benchmarks).
	Quiet bool
}

var protectTemplate = template.Must(template.New("Caddyfile").Parse(`{
{{- if not .Quiet}}
	debug
{{- end}}
	admin {{.AdminAddr}}
	persist_config off
{{- if .ASPort}}
	uma {
		issuer http://127.0.0.1:{{.ASPort}}
		storage badger {{.Storage}}
		policies {{.Policies}}
		rpt_ttl {{.RPTTTL}}
		trust_issuer {{.IdP}} {
			audience demo-app
		}
		client rs-api {
			secret rs-api-secret
			resource_server
		}
		client rs-other {
			secret rs-other-secret
			resource_server
		}
		client demo-app {
			secret demo-app-secret
		}
	}
{{- end}}
}
{{if .ASPort}}
http://127.0.0.1:{{.ASPort}} {
	bind 127.0.0.1
	uma_server
	respond "not an AS endpoint" 404
}
{{end}}
{{- if .APIPort}}
http://127.0.0.1:{{.APIPort}} {
	bind 127.0.0.1
	handle /api/* {
		uma_protect {
{{- if .RemoteAS}}
			as {{.RemoteAS}}
			client_id rs-api
			client_secret {env.RS_API_SECRET}
			revocation_check {{.RevocationCheck}}
{{- else}}
			as co-hosted
			resource_server rs-api
{{- end}}
			realm records
			strip_authorization
			resource /api/records/{owner}/{id} {
				owner {owner}
				type urn:example:record
				context via {http.request.header.X-Via}
			}
		}
		reverse_proxy {{.Upstream}} {
			header_up X-UMA-Subject {http.auth.uma.subject}
			header_up X-UMA-Client {http.auth.uma.client}
			header_up X-UMA-Scopes {http.auth.uma.scopes}
			header_up X-UMA-Resource {http.auth.uma.resource_id}
			header_up X-UMA-Decision {http.auth.uma.decision}
		}
	}
	handle /other/* {
		uma_protect {
{{- if .RemoteAS}}
			as {{.RemoteAS}}
			client_id rs-other
			client_secret rs-other-secret
{{- else}}
			co-hosted
			resource_server rs-other
{{- end}}
			resource /other/records/{owner}/{id} {
				owner {owner}
			}
		}
		reverse_proxy {{.Upstream}}
	}
{{- if .DeadAS}}
	handle /down/* {
		uma_protect {
			as {{.DeadAS}}
			client_id rs-api
			client_secret rs-api-secret
			timeout 2s
			resource /down/{owner} {
				owner {owner}
			}
		}
		reverse_proxy {{.Upstream}}
	}
{{- end}}
{{- if .KeycloakAS}}
	handle /kc/* {
		uma_protect {
			as {{.KeycloakAS}}
			client_id rs-kc
			client_secret kc-secret
			timeout 1s
			resource /kc/records/{owner}/{id} {
				owner {owner}
			}
		}
		reverse_proxy {{.Upstream}} {
			header_up X-UMA-Subject {http.auth.uma.subject}
			header_up X-UMA-Client {http.auth.uma.client}
		}
	}
{{- end}}
	handle /plain/* {
		reverse_proxy {{.Upstream}}
	}
	respond "public" 200
}
{{- end}}
`))

// recorder is the upstream: it answers "upstream: <path>" and records
// every request that reaches it.
type recorder struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []*http.Request
}

func newRecorder(t testing.TB) *recorder {
	rec := &recorder{}
	rec.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec.mu.Lock()
		rec.reqs = append(rec.reqs, r.Clone(r.Context()))
		rec.mu.Unlock()
		fmt.Fprintf(w, "upstream: %s %s", r.Method, r.URL.Path)
	}))
	t.Cleanup(rec.Close)
	return rec
}

// count returns how many requests reached the upstream.
func (rec *recorder) count() int {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return len(rec.reqs)
}

// last returns the last request that reached the upstream.
func (rec *recorder) last() *http.Request {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.reqs) == 0 {
		return nil
	}
	return rec.reqs[len(rec.reqs)-1]
}

// writeRules writes alice's rules into a new rules directory.
func writeRules(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "alice"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "alice", "share.rego"), []byte(aliceRules), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// startProtectCaddy runs caddy with the Caddyfile of pc and waits until
// readyPort's site answers.
func startProtectCaddy(t testing.TB, pc protectConfig, readyPort int, env ...string) *instance {
	t.Helper()
	if pc.RPTTTL == "" {
		pc.RPTTTL = "5s"
	}
	if pc.RevocationCheck == "" {
		pc.RevocationCheck = "1s"
	}
	return startTemplate(t, protectTemplate, pc, config{AdminAddr: pc.AdminAddr, Port: readyPort}, 30*time.Second, env...)
}

// startTemplate runs caddy with the Caddyfile of tmpl and data, and waits
// (at most timeout) until the admin API of cfg and the site of cfg.Port
// answer.
func startTemplate(t testing.TB, tmpl *template.Template, data any, cfg config, timeout time.Duration, env ...string) *instance {
	t.Helper()
	dir := t.TempDir()
	tt, _ := t.(*testing.T) // nil in benchmarks: no lifecycle assertions there
	inst := &instance{
		t: tt, dir: dir, caddyfile: filepath.Join(dir, "Caddyfile"),
		cfg: cfg, log: new(syncBuffer), exited: make(chan struct{}),
	}
	var buf strings.Builder
	if err := tmpl.Execute(&buf, data); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(inst.caddyfile, []byte(buf.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	inst.run(t, env, "Caddyfile:\n"+buf.String()+"\n")
	if err := inst.waitReady(timeout); err != nil {
		t.Fatalf("caddy did not start: %v\n%s", err, inst.log)
	}
	return inst
}

// response is an HTTP response with its body read.
type response struct {
	status int
	header http.Header
	body   string
}

// send makes a request with an optional RPT and extra headers.
func send(t testing.TB, method, u, rpt string, headers ...string) response {
	t.Helper()
	req, err := http.NewRequest(method, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rpt != "" {
		req.Header.Set("Authorization", "Bearer "+rpt)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, header: resp.Header, body: string(body)}
}

// challengeParams parses the auth-params of a UMA challenge.
func challengeParams(t testing.TB, h string) map[string]string {
	t.Helper()
	rest, ok := strings.CutPrefix(h, "UMA ")
	if !ok {
		t.Fatalf("not a UMA challenge: %q", h)
	}
	out := map[string]string{}
	for _, part := range strings.Split(rest, ", ") {
		name, val, ok := strings.Cut(part, "=")
		if !ok || len(val) < 2 || val[0] != '"' || val[len(val)-1] != '"' {
			t.Fatalf("bad auth-param %q in %q", part, h)
		}
		out[name] = val[1 : len(val)-1]
	}
	return out
}

// tokenRequest posts a UMA grant request as demo-app.
func tokenRequest(t testing.TB, issuer string, form url.Values) (int, map[string]any) {
	t.Helper()
	form.Set("grant_type", "urn:ietf:params:oauth:grant-type:uma-ticket")
	return postAs(t, issuer+"/token", "demo-app", "demo-app-secret", form)
}

func postAs(t testing.TB, u, user, pass string, form url.Values) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(user, pass)
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

// bobsIDToken is an ID token of bob for demo-app.
func bobsIDToken(t testing.TB, idp *claimtokentest.Provider) string {
	return idp.Sign(t, map[string]any{"sub": "bob", "aud": "demo-app", "email": "bob@example.com", "email_verified": true})
}

const idTokenFormat = "http://openid.net/specs/openid-connect-core-1_0.html#IDToken"

// obtainRPT redeems the ticket of a 401 as the UMA grant goes: need_info
// first, then bob's ID token pushed as claim token.
func obtainRPT(t testing.TB, issuer string, resp response, idp *claimtokentest.Provider) string {
	t.Helper()
	if resp.status != http.StatusUnauthorized {
		t.Fatalf("want a 401 challenge, got %d %q", resp.status, resp.body)
	}
	params := challengeParams(t, resp.header.Get("WWW-Authenticate"))
	if params["as_uri"] != issuer {
		t.Fatalf("as_uri = %q, want %q", params["as_uri"], issuer)
	}
	status, body := tokenRequest(t, issuer, url.Values{"ticket": {params["ticket"]}})
	if status != http.StatusForbidden || body["error"] != "need_info" {
		t.Fatalf("first token request: %d %v, want need_info", status, body)
	}
	next, _ := body["ticket"].(string)
	status, body = tokenRequest(t, issuer, url.Values{"ticket": {next},
		"claim_token": {bobsIDToken(t, idp)}, "claim_token_format": {idTokenFormat}})
	if status != http.StatusOK {
		t.Fatalf("token request with claims: %d %v", status, body)
	}
	rpt, _ := body["access_token"].(string)
	if rpt == "" {
		t.Fatalf("no access_token in %v", body)
	}
	return rpt
}

// rptExpiry reads the exp claim of a JWT RPT.
func rptExpiry(t testing.TB, rpt string) time.Time {
	t.Helper()
	parts := strings.Split(rpt, ".")
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		Exp int64 `json:"exp"`
	}
	if err := json.Unmarshal(payload, &c); err != nil {
		t.Fatal(err)
	}
	return time.Unix(c.Exp, 0)
}

// checkChallenge checks a 401 UMA challenge and returns its ticket.
func checkChallenge(t testing.TB, what string, resp response, issuer string) string {
	t.Helper()
	if resp.status != http.StatusUnauthorized {
		t.Errorf("%s: status %d %q, want 401", what, resp.status, resp.body)
		return ""
	}
	h := resp.header.Get("WWW-Authenticate")
	params := challengeParams(t, h)
	if params["realm"] != "records" || params["as_uri"] != issuer || params["ticket"] == "" {
		t.Errorf("%s: challenge %q", what, h)
	}
	if resp.header.Get("Cache-Control") != "no-store" {
		t.Errorf("%s: Cache-Control %q, want no-store", what, resp.header.Get("Cache-Control"))
	}
	return params["ticket"]
}

// enforcementFlow runs the acceptance checks against a protected site
// whose AS is issuer; revokedWithin is how long a revocation may take.
func enforcementFlow(t *testing.T, api, issuer string, up *recorder, idp *claimtokentest.Provider, revokedWithin time.Duration, log func() string) {
	const record = "/api/records/alice/1"

	// Unauthenticated: 401 + ticket, and nothing reaches the upstream.
	before := up.count()
	first := checkChallenge(t, "no token", send(t, "GET", api+record, ""), issuer)
	if up.count() != before {
		t.Fatal("an unauthenticated request reached the upstream")
	}

	// The ticket redeemed: an RPT, and 200 with the upstream's body.
	rpt := obtainRPT(t, issuer, send(t, "GET", api+record, ""), idp)
	resp := send(t, "GET", api+record, rpt)
	if resp.status != http.StatusOK || resp.body != "upstream: GET "+record {
		t.Fatalf("with the RPT: %d %q", resp.status, resp.body)
	}
	seen := up.last()
	for h, want := range map[string]string{
		"X-UMA-Subject": "bob", "X-UMA-Client": "demo-app", "X-UMA-Scopes": "read", "X-UMA-Decision": "authorized",
	} {
		if got := seen.Header.Get(h); got != want {
			t.Errorf("upstream saw %s = %q, want %q", h, got, want)
		}
	}
	if seen.Header.Get("X-UMA-Resource") == "" {
		t.Error("upstream saw no X-UMA-Resource")
	}
	if seen.Header.Get("Authorization") != "" {
		t.Error("the RPT reached the upstream despite strip_authorization")
	}

	// A read-only RPT with a method override: the upstream sees neither
	// the override headers nor ?_method, so an upstream that honours them
	// cannot be made to run a DELETE.
	resp = send(t, "GET", api+record+"?_method=DELETE&page=2", rpt,
		"X-HTTP-Method-Override", "DELETE", "X-HTTP-Method", "DELETE", "X-Method-Override", "DELETE")
	if resp.status != http.StatusOK {
		t.Fatalf("GET with a read RPT and an override: %d %q", resp.status, resp.body)
	}
	seen = up.last()
	for _, h := range []string{"X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override"} {
		if v := seen.Header.Get(h); v != "" {
			t.Errorf("the upstream saw %s: %s", h, v)
		}
	}
	if seen.URL.RawQuery != "page=2" {
		t.Errorf("the upstream saw the query %q, want page=2", seen.URL.RawQuery)
	}

	// Copies of the RPT that a lenient parser reads as the same token
	// (padding, standard base64, trailing bits, the ECDSA twin) are not
	// the token the AS issued: 401 with a fresh ticket.
	before = up.count()
	for name, tok := range peptest.Malleated(rpt) {
		checkChallenge(t, "malleated RPT ("+name+")", send(t, "GET", api+record, tok), issuer)
	}
	if up.count() != before {
		t.Errorf("%d malleated RPTs reached the upstream", up.count()-before)
	}

	// Wrong scope: a read-only RPT for DELETE gets a new ticket.
	before = up.count()
	if tk := checkChallenge(t, "DELETE with a read RPT", send(t, "DELETE", api+record, rpt), issuer); tk == first {
		t.Error("the same ticket twice")
	}
	// Another resource of alice is not covered either.
	checkChallenge(t, "another record", send(t, "GET", api+"/api/records/alice/2", rpt), issuer)
	// Forged: the RPT's payload with another subject, signature kept.
	parts := strings.Split(rpt, ".")
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	evil := base64.RawURLEncoding.EncodeToString([]byte(strings.Replace(string(payload), `"sub":"bob"`, `"sub":"eve"`, 1)))
	checkChallenge(t, "forged RPT", send(t, "GET", api+record, parts[0]+"."+evil+"."+parts[2]), issuer)
	checkChallenge(t, "garbage token", send(t, "GET", api+record, "not-an-rpt"), issuer)
	// Another resource server's RPT (audience rs-other), for alice's record there.
	otherRPT := obtainRPT(t, issuer, send(t, "GET", api+"/other/records/alice/1", ""), idp)
	if r := send(t, "GET", api+"/other/records/alice/1", otherRPT); r.status != http.StatusOK {
		t.Errorf("rs-other's RPT at rs-other: %d %q", r.status, r.body)
	}
	checkChallenge(t, "other-audience RPT", send(t, "GET", api+record, otherRPT), issuer)
	if up.count() != before+1 {
		t.Errorf("%d refused requests reached the upstream", up.count()-before-1)
	}

	// Request context reaches alice's rules: via=banned is refused.
	r := send(t, "GET", api+"/api/records/alice/3", "", "X-Via", "banned")
	tk := challengeParams(t, r.header.Get("WWW-Authenticate"))["ticket"]
	status, body := tokenRequest(t, issuer, url.Values{"ticket": {tk},
		"claim_token": {bobsIDToken(t, idp)}, "claim_token_format": {idTokenFormat}})
	if status != http.StatusForbidden || body["error"] != "request_denied" {
		t.Errorf("via=banned: %d %v, want request_denied", status, body)
	}

	// Revoked: the client revokes its RPT at the revocation endpoint.
	if status, body := postAs(t, issuer+"/revoke", "demo-app", "demo-app-secret", url.Values{"token": {rpt}}); status != http.StatusOK {
		t.Fatalf("revoking: %d %v", status, body)
	}
	deadline := time.Now().Add(revokedWithin)
	for {
		r := send(t, "GET", api+record, rpt)
		if r.status == http.StatusUnauthorized {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the revoked RPT still works after %s: %d", revokedWithin, r.status)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// Expired (rpt_ttl 5s): refused once exp has passed.
	fresh := obtainRPT(t, issuer, send(t, "GET", api+record, ""), idp)
	if r := send(t, "GET", api+record, fresh); r.status != http.StatusOK {
		t.Fatalf("fresh RPT: %d", r.status)
	}
	time.Sleep(time.Until(rptExpiry(t, fresh)) + 100*time.Millisecond)
	checkChallenge(t, "expired RPT", send(t, "GET", api+record, fresh), issuer)

	// Unmatched paths under /api/ are refused, public ones are not protected.
	if r := send(t, "GET", api+"/api/elsewhere", ""); r.status != http.StatusForbidden {
		t.Errorf("unmatched: %d, want 403", r.status)
	}
	if r := send(t, "GET", api+"/", ""); r.status != http.StatusOK || r.body != "public" {
		t.Errorf("public: %d %q", r.status, r.body)
	}

	// Tokens are never logged.
	for _, tok := range []string{rpt, fresh, otherRPT} {
		if strings.Contains(log(), tok) || strings.Contains(log(), strings.Split(tok, ".")[2]) {
			t.Error("an RPT appears in the log")
		}
	}
}

func TestProtectCoHosted(t *testing.T) {
	skipShort(t)
	idp := claimtokentest.NewProvider(t)
	up := newRecorder(t)
	pc := protectConfig{
		AdminAddr: fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		ASPort:    freePort(t),
		APIPort:   freePort(t),
		Storage:   filepath.Join(t.TempDir(), "uma"),
		Policies:  writeRules(t),
		IdP:       idp.Issuer(),
		Upstream:  up.Listener.Addr().String(),
	}
	inst := startProtectCaddy(t, pc, pc.APIPort)
	issuer := fmt.Sprintf("http://127.0.0.1:%d", pc.ASPort)
	api := fmt.Sprintf("http://127.0.0.1:%d", pc.APIPort)

	// Co-hosted, a revocation applies at once.
	enforcementFlow(t, api, issuer, up, idp, 0, inst.log.String)
	inst.checkLog()
}

func TestProtectRemote(t *testing.T) {
	skipShort(t)
	idp := claimtokentest.NewProvider(t)
	up := newRecorder(t)
	asCfg := protectConfig{
		AdminAddr: fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		ASPort:    freePort(t),
		Storage:   filepath.Join(t.TempDir(), "uma"),
		Policies:  writeRules(t),
		IdP:       idp.Issuer(),
	}
	asInst := startProtectCaddy(t, asCfg, asCfg.ASPort)
	issuer := fmt.Sprintf("http://127.0.0.1:%d", asCfg.ASPort)

	kc := peptest.NewKeycloak(t, "rs-kc", "kc-secret")
	pepCfg := protectConfig{
		AdminAddr:  fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		APIPort:    freePort(t),
		Upstream:   up.Listener.Addr().String(),
		RemoteAS:   issuer,
		DeadAS:     fmt.Sprintf("http://127.0.0.1:%d", freePort(t)),
		KeycloakAS: kc.Issuer(),
	}
	pepInst := startProtectCaddy(t, pepCfg, pepCfg.APIPort, "RS_API_SECRET=rs-api-secret")
	api := fmt.Sprintf("http://127.0.0.1:%d", pepCfg.APIPort)

	// Remote, a revocation applies within revocation_check (1s).
	enforcementFlow(t, api, issuer, up, idp, 3*time.Second, func() string { return pepInst.log.String() + asInst.log.String() })

	// An AS that does not answer: 403 with the Warning, nothing upstream.
	before := up.count()
	r := send(t, "GET", api+"/down/alice", "")
	if r.status != http.StatusForbidden || r.header.Get("Warning") != `199 - "UMA Authorization Server Unreachable"` ||
		r.header.Get("WWW-Authenticate") != "" {
		t.Errorf("dead AS: %d %v", r.status, r.header)
	}
	// The AS goes away: new requests get 403 with the Warning.
	asInst.stop()
	r = send(t, "GET", api+"/api/records/alice/9", "")
	if r.status != http.StatusForbidden || r.header.Get("Warning") != `199 - "UMA Authorization Server Unreachable"` {
		t.Errorf("AS stopped: %d %v", r.status, r.header)
	}
	if up.count() != before {
		t.Error("a request reached the upstream while the AS was unreachable")
	}

	keycloakFlow(t, api, kc, up, pepInst)
	pepInst.checkLog()
}

// keycloakFlow checks uma_protect against an AS that answers as Keycloak
// does (timeout 1s, revocation_check 1m): the requesting party and the
// client reach the upstream although Keycloak's RPT introspection names
// neither; and when that AS freezes, the breaker opens after three timed
// out calls: later requests are refused at once without calling it, and
// the outage is logged once.
func keycloakFlow(t *testing.T, api string, kc *peptest.Keycloak, up *recorder, inst *instance) {
	const record = "/kc/records/alice/1"
	r := send(t, "GET", api+record, "")
	if r.status != http.StatusUnauthorized {
		t.Fatalf("Keycloak, no token: %d %q", r.status, r.body)
	}
	rpt := kc.RPTForTicket(t, challengeParams(t, r.header.Get("WWW-Authenticate"))["ticket"], "bob-id", "app")
	if r := send(t, "GET", api+record, rpt); r.status != http.StatusOK {
		t.Fatalf("Keycloak's RPT: %d %q", r.status, r.body)
	}
	seen := up.last()
	if s, c := seen.Header.Get("X-UMA-Subject"), seen.Header.Get("X-UMA-Client"); s != "bob-id" || c != "app" {
		t.Errorf("with Keycloak's RPT the upstream saw subject %q and client %q, want bob-id and app", s, c)
	}
	for name, tok := range peptest.Malleated(rpt) {
		if r := send(t, "GET", api+record, tok); r.status != http.StatusUnauthorized {
			t.Errorf("malleated Keycloak RPT (%s): %d", name, r.status)
		}
	}

	kc.Freeze()
	defer kc.Thaw()
	const requests = 12
	for i := range requests {
		r := send(t, "GET", api+record, "")
		if r.status != http.StatusForbidden || r.header.Get("Warning") != `199 - "UMA Authorization Server Unreachable"` {
			t.Fatalf("request %d with Keycloak frozen: %d %v", i, r.status, r.header)
		}
	}
	// Three calls time out and open the breaker (a fourth would be the
	// probe after the 5s cool-down).
	if n := kc.FrozenCalls(); n < 3 || n > 4 {
		t.Errorf("the frozen AS got %d calls for %d requests, want 3 (4 with a probe)", n, requests)
	}
	if n := inst.countLog(`"level":"warn"`, "uma decision", "as_unavailable", "/kc/"); n > 2 {
		t.Errorf("%d warn lines for %d requests refused while the AS was frozen, want at most 2", n, requests)
	}
}

// TestProtectValidateRefusesAMistypedPlaceholder: a template value whose
// placeholder names neither a parameter of the path nor a known placeholder
// ({ownr} for {owner}) would refuse every request with 403; caddy validate
// refuses it, naming the value and the fix.
func TestProtectValidateRefusesAMistypedPlaceholder(t *testing.T) {
	skipShort(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "Caddyfile")
	caddyfile := `http://127.0.0.1:9 {
	uma_protect {
		as https://as.example
		resource_server rs-api
		client_secret rs-api-secret
		resource /api/records/{owner}/{id} {
			owner {ownr}
		}
	}
	respond "upstream"
}
`
	if err := os.WriteFile(path, []byte(caddyfile), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(caddyBin, "validate", "--config", path, "--adapter", "caddyfile")
	cmd.Dir, cmd.Env = dir, caddyEnv(dir)
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("caddy validate accepted owner {ownr}:\n%s", out)
	}
	if want := "owner {ownr} of resource /api/records/{owner}/{id}: {ownr} names neither a parameter of the path ({owner}, {id}) nor a known placeholder; did you mean {owner}?"; !strings.Contains(string(out), want) {
		t.Errorf("validate output does not say %q:\n%s", want, out)
	}
}
