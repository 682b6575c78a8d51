package pep

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-uma/caddy-uma/authz"
	"github.com/caddy-uma/caddy-uma/authz/claimtoken"
	"github.com/caddy-uma/caddy-uma/authz/claimtoken/claimtokentest"
	"github.com/caddy-uma/caddy-uma/store"
	"github.com/caddy-uma/caddy-uma/store/badgerstore"
)

// A real authorization server for the tests: package authz on an
// httptest server with an in-memory store, alice's sharing rules in a
// rules directory, and a test OpenID provider as trusted issuer.

// aliceRules: alice shares her resources read-only with bob@example.com,
// asks for an e-mail address when none is known, and refuses requests
// whose request context says via=blocked.
const aliceRules = `package uma.share

import data.uma.lib

allow contains scope if {
	lib.is_email("bob@example.com")
	some scope in lib.read_scopes
}

required_claims contains lib.email_claim if not lib.email

deny contains scope if {
	input.request.via == "blocked"
	some scope in lib.available
}
`

type realAS struct {
	t      testing.TB
	srv    *authz.Server
	store  store.Store
	http   *httptest.Server
	issuer string
	idp    *claimtokentest.Provider
	clock  *testClock
	// patGrants counts client_credentials grants; down makes every
	// request fail with 503; while frozen is set, requests are held
	// unanswered (counted in frozenCalls) until it is closed or the caller
	// gives up.
	patGrants   atomic.Int64
	down        atomic.Bool
	frozen      atomic.Pointer[chan struct{}]
	frozenCalls atomic.Int64
}

// freeze holds every request unanswered, as a stopped process does, until
// thaw.
func (as *realAS) freeze() {
	ch := make(chan struct{})
	as.frozen.Store(&ch)
}

// thaw answers again, held requests included.
func (as *realAS) thaw() {
	if ch := as.frozen.Swap(nil); ch != nil {
		close(*ch)
	}
}

func newRealAS(t testing.TB, mod func(*authz.Config)) *realAS {
	t.Helper()
	as := &realAS{t: t, idp: claimtokentest.NewProvider(t), clock: &testClock{t: time.Now()}}
	st, err := badgerstore.Open(badgerstore.Options{InMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	as.store = st
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "alice"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "alice", "share.rego"), []byte(aliceRules), 0o644); err != nil {
		t.Fatal(err)
	}
	var handler atomic.Pointer[http.Handler]
	as.http = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if ch := as.frozen.Load(); ch != nil {
			as.frozenCalls.Add(1)
			select {
			case <-*ch:
			case <-r.Context().Done():
				return
			}
		}
		if as.down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		if r.URL.Path == "/token" && r.Method == http.MethodPost {
			body, _ := io.ReadAll(r.Body)
			r.Body = io.NopCloser(bytes.NewReader(body))
			if form, _ := url.ParseQuery(string(body)); form.Get("grant_type") == "client_credentials" {
				as.patGrants.Add(1)
			}
		}
		(*handler.Load()).ServeHTTP(w, r)
	}))
	t.Cleanup(func() {
		as.thaw()
		as.http.Close()
	})
	as.issuer = as.http.URL
	cfg := authz.Config{
		Issuer: as.issuer,
		Store:  st,
		Clients: []authz.Client{
			{ID: "rs-api", Secret: "rs-api-secret", ResourceServer: true},
			{ID: "rs-other", Secret: "rs-other-secret", ResourceServer: true},
			{ID: "demo-app", Secret: "demo-app-secret"},
		},
		PolicyDir:      dir,
		TrustedIssuers: []claimtoken.Issuer{{Issuer: as.idp.Issuer(), Audiences: []string{"demo-app"}}},
		Now:            as.clock.Now,
	}
	if mod != nil {
		mod(&cfg)
	}
	srv, err := authz.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	as.srv = srv
	var h http.Handler = srv
	handler.Store(&h)
	return as
}

// post sends a form to the AS with the client's credentials and decodes
// the JSON answer.
func (as *realAS) post(path, client string, form url.Values) (int, map[string]any) {
	as.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, as.issuer+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(client, client+"-secret")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		as.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var out map[string]any
	_ = json.Unmarshal(body, &out)
	return resp.StatusCode, out
}

// rptFor walks the UMA grant for a challenge's ticket as demo-app: the
// first request gets need_info, the second pushes bob's ID token.
func (as *realAS) rptFor(challenge string) string {
	as.t.Helper()
	params, ok := parseChallenge(challenge)
	if !ok {
		as.t.Fatalf("bad challenge %q", challenge)
	}
	if params["as_uri"] != as.issuer {
		as.t.Fatalf("as_uri = %q, want %q", params["as_uri"], as.issuer)
	}
	status, body := as.post("/token", "demo-app", url.Values{"grant_type": {authz.GrantTypeUMATicket}, "ticket": {params["ticket"]}})
	if status != http.StatusForbidden || body["error"] != "need_info" {
		as.t.Fatalf("first token request: %d %v, want need_info", status, body)
	}
	idToken := as.idp.Sign(as.t, map[string]any{"sub": "bob-sub", "aud": "demo-app", "email": "bob@example.com", "email_verified": true})
	status, body = as.post("/token", "demo-app", url.Values{
		"grant_type": {authz.GrantTypeUMATicket}, "ticket": {body["ticket"].(string)},
		"claim_token": {idToken}, "claim_token_format": {claimtoken.FormatIDToken},
	})
	if status != http.StatusOK {
		as.t.Fatalf("token request with claims: %d %v", status, body)
	}
	return body["access_token"].(string)
}

// revoke revokes token as client.
func (as *realAS) revoke(client, token string) {
	as.t.Helper()
	if status, body := as.post("/revoke", client, url.Values{"token": {token}}); status != http.StatusOK {
		as.t.Fatalf("revoking: %d %v", status, body)
	}
}

// enforcerFor returns an Enforcer of resource server rs at as, co-hosted
// or remote.
func enforcerFor(t testing.TB, as *realAS, rs string, remote bool, mod func(*RemoteConfig)) (*Enforcer, *Remote) {
	t.Helper()
	var ras AuthorizationServer
	var rem *Remote
	if remote {
		cfg := RemoteConfig{Issuer: as.issuer, ClientID: rs, ClientSecret: rs + "-secret", Now: as.clock.Now}
		if mod != nil {
			mod(&cfg)
		}
		var err error
		if rem, err = NewRemote(cfg); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { rem.Close() })
		ras = rem
	} else {
		ras = CoHosted(rs, func(context.Context) LocalServer { return as.srv })
	}
	e, err := New(Config{
		AS: ras, Realm: "records", Now: as.clock.Now,
		Templates: []Template{{
			Path: "/api/records/{owner}/{id}", Owner: "{owner}", Type: "urn:example:record",
			Context: map[string]string{"via": "{header.X-Via}"},
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return e, rem
}

func TestFlowAgainstTheAS(t *testing.T) {
	for _, mode := range []string{"co-hosted", "remote"} {
		t.Run(mode, func(t *testing.T) {
			remote := mode == "remote"
			as := newRealAS(t, nil)
			e, _ := enforcerFor(t, as, "rs-api", remote, nil)
			const path = "/api/records/alice/1"

			d := e.Decide(request("GET", path, ""))
			if d.Status != http.StatusUnauthorized || d.Reason != ReasonNoToken {
				t.Fatalf("no token: %+v", d)
			}
			rpt := as.rptFor(d.Challenge)

			d = e.Decide(request("GET", path, rpt))
			if !d.Allow || !d.Authorized || d.Subject != "bob-sub" || d.ClientID != "demo-app" || d.Owner != "alice" {
				t.Fatalf("with the RPT: %+v", d)
			}
			if strings.Join(d.Scopes, " ") != "read" {
				t.Errorf("granted scopes = %v, want [read]", d.Scopes)
			}
			if d2 := e.Decide(request("HEAD", path, rpt)); !d2.Allow {
				t.Errorf("HEAD with a read RPT: %+v", d2)
			}

			// Wrong scope: a new ticket, not the old one.
			d2 := e.Decide(request("DELETE", path, rpt))
			if d2.Status != http.StatusUnauthorized || d2.Reason != ReasonInsufficient || d2.Challenge == d.Challenge {
				t.Errorf("DELETE with a read RPT: %+v", d2)
			}

			// Forged: the RPT with another signature.
			parts := strings.Split(rpt, ".")
			forged := parts[0] + "." + parts[1] + "." + strings.Repeat("A", len(parts[2]))
			if d := e.Decide(request("GET", path, forged)); d.Status != http.StatusUnauthorized || d.Reason != ReasonInvalidToken {
				t.Errorf("forged RPT: %+v", d)
			}
			// A PAT is not an RPT.
			_, body := as.post("/token", "rs-api", url.Values{"grant_type": {"client_credentials"}, "scope": {"uma_protection"}})
			if d := e.Decide(request("GET", path, body["access_token"].(string))); d.Status != http.StatusUnauthorized || d.Reason != ReasonInvalidToken {
				t.Errorf("a PAT as RPT: %+v", d)
			}

			// Another resource server's RPT, for a resource of the same owner.
			other, _ := enforcerFor(t, as, "rs-other", remote, nil)
			od := other.Decide(request("GET", path, ""))
			otherRPT := as.rptFor(od.Challenge)
			if d := other.Decide(request("GET", path, otherRPT)); !d.Allow {
				t.Fatalf("rs-other's RPT at rs-other: %+v", d)
			}
			if d := e.Decide(request("GET", path, otherRPT)); d.Status != http.StatusUnauthorized || d.Reason != ReasonInvalidToken {
				t.Errorf("another audience's RPT: %+v", d)
			}

			// Request context reaches the owner's rules: alice refuses
			// requests that came via=blocked.
			r := request("GET", "/api/records/alice/2", "")
			r.Header.Set("X-Via", "blocked")
			d = e.Decide(r)
			params, _ := parseChallenge(d.Challenge)
			status, resp := as.post("/token", "demo-app", url.Values{"grant_type": {authz.GrantTypeUMATicket}, "ticket": {params["ticket"]},
				"claim_token":        {as.idp.Sign(t, map[string]any{"sub": "bob-sub", "aud": "demo-app", "email": "bob@example.com", "email_verified": true})},
				"claim_token_format": {claimtoken.FormatIDToken}})
			if status != http.StatusForbidden || resp["error"] != "request_denied" {
				t.Errorf("via=blocked: %d %v, want request_denied", status, resp)
			}

			// Expired.
			as.clock.Advance(authz.DefaultRPTTTL + time.Second)
			if d := e.Decide(request("GET", path, rpt)); d.Status != http.StatusUnauthorized || d.Reason != ReasonInvalidToken {
				t.Errorf("expired RPT: %+v", d)
			}
		})
	}
}

func TestRevocation(t *testing.T) {
	t.Run("co-hosted: at once", func(t *testing.T) {
		as := newRealAS(t, nil)
		e, _ := enforcerFor(t, as, "rs-api", false, nil)
		rpt := as.rptFor(e.Decide(request("GET", "/api/records/alice/1", "")).Challenge)
		if d := e.Decide(request("GET", "/api/records/alice/1", rpt)); !d.Allow {
			t.Fatalf("%+v", d)
		}
		as.revoke("demo-app", rpt)
		if d := e.Decide(request("GET", "/api/records/alice/1", rpt)); d.Allow || d.Reason != ReasonInvalidToken {
			t.Errorf("revoked RPT: %+v", d)
		}
	})
	t.Run("remote: within revocation_check", func(t *testing.T) {
		as := newRealAS(t, nil)
		e, _ := enforcerFor(t, as, "rs-api", true, func(c *RemoteConfig) { c.RevocationCheck = 10 * time.Second })
		rpt := as.rptFor(e.Decide(request("GET", "/api/records/alice/1", "")).Challenge)
		if d := e.Decide(request("GET", "/api/records/alice/1", rpt)); !d.Allow {
			t.Fatalf("%+v", d)
		}
		as.revoke("demo-app", rpt)
		if d := e.Decide(request("GET", "/api/records/alice/1", rpt)); !d.Allow {
			t.Errorf("within revocation_check the cache answers: %+v", d)
		}
		as.clock.Advance(10 * time.Second)
		if d := e.Decide(request("GET", "/api/records/alice/1", rpt)); d.Allow || d.Reason != ReasonInvalidToken {
			t.Errorf("after revocation_check: %+v", d)
		}
	})
	t.Run("remote, checks off: signature only", func(t *testing.T) {
		as := newRealAS(t, nil)
		e, _ := enforcerFor(t, as, "rs-api", true, func(c *RemoteConfig) { c.RevocationCheck = -1 })
		rpt := as.rptFor(e.Decide(request("GET", "/api/records/alice/1", "")).Challenge)
		as.revoke("demo-app", rpt)
		// Revoked before first use, and still accepted: only exp counts.
		if d := e.Decide(request("GET", "/api/records/alice/1", rpt)); !d.Allow {
			t.Errorf("JWT-only verification: %+v", d)
		}
	})
}

func TestRemoteIdempotentRegistration(t *testing.T) {
	as := newRealAS(t, nil)
	// Two enforcement points (two processes) of one resource server.
	e1, _ := enforcerFor(t, as, "rs-api", true, nil)
	e2, _ := enforcerFor(t, as, "rs-api", true, nil)
	d1 := e1.Decide(request("GET", "/api/records/alice/1", ""))
	d2 := e2.Decide(request("GET", "/api/records/alice/1", ""))
	if d1.ResourceID == "" || d1.ResourceID != d2.ResourceID {
		t.Errorf("resource ids %q and %q, want one resource", d1.ResourceID, d2.ResourceID)
	}
	// A remote enforcement point finds a resource the co-hosted one
	// registered.
	co, _ := enforcerFor(t, as, "rs-api", false, nil)
	dc := co.Decide(request("GET", "/api/records/alice/2", ""))
	if d := e1.Decide(request("GET", "/api/records/alice/2", "")); dc.ResourceID == "" || d.ResourceID != dc.ResourceID {
		t.Errorf("remote resource id %q, want the co-hosted %q", d.ResourceID, dc.ResourceID)
	}
}

func TestRemotePAT(t *testing.T) {
	as := newRealAS(t, func(c *authz.Config) { c.PATTTL = 100 * time.Second })
	e, rem := enforcerFor(t, as, "rs-api", true, nil)
	ticket := func() {
		t.Helper()
		if d := e.Decide(request("GET", fmt.Sprintf("/api/records/alice/%d", time.Now().UnixNano()), "")); d.Status != http.StatusUnauthorized {
			t.Fatalf("%+v", d)
		}
	}
	ticket()
	ticket()
	if n := as.patGrants.Load(); n != 1 {
		t.Errorf("%d PAT grants, want 1", n)
	}
	// Renewed before it expires: at 80% of its lifetime.
	as.clock.Advance(81 * time.Second)
	ticket()
	if n := as.patGrants.Load(); n != 2 {
		t.Errorf("%d PAT grants after 81%% of the lifetime, want 2", n)
	}
	// A PAT the AS no longer accepts: obtained again once, and the call
	// succeeds.
	rem.mu.Lock()
	pat := rem.pat
	rem.mu.Unlock()
	as.revoke("rs-api", pat)
	ticket()
	if n := as.patGrants.Load(); n != 3 {
		t.Errorf("%d PAT grants after a 401, want 3", n)
	}
}

func TestRemoteUnreachable(t *testing.T) {
	// Nothing listens on the port of a closed server.
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close()
	rem, err := NewRemote(RemoteConfig{Issuer: dead.URL, ClientID: "rs", ClientSecret: "s"})
	if err != nil {
		t.Fatal(err)
	}
	defer rem.Close()
	e, err := New(Config{AS: rem, Templates: []Template{recordsTemplate}})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		start := time.Now()
		d := e.Decide(request("GET", "/api/records/alice/1", ""))
		if d.Status != http.StatusForbidden || d.Warning != WarningUnreachable || d.Reason != ReasonUnavailable {
			t.Errorf("AS unreachable: %+v", d)
		}
		if time.Since(start) > 2*time.Second {
			t.Errorf("took %s", time.Since(start))
		}
	}

	// An AS that goes down after the RPT was verified: cached RPTs keep
	// working until their recheck; new requests get 403.
	as := newRealAS(t, nil)
	e2, _ := enforcerFor(t, as, "rs-api", true, func(c *RemoteConfig) { c.RevocationCheck = 10 * time.Second })
	rpt := as.rptFor(e2.Decide(request("GET", "/api/records/alice/1", "")).Challenge)
	if d := e2.Decide(request("GET", "/api/records/alice/1", rpt)); !d.Allow {
		t.Fatal(d)
	}
	as.down.Store(true)
	if d := e2.Decide(request("GET", "/api/records/alice/1", rpt)); !d.Allow {
		t.Errorf("cached RPT with the AS down: %+v", d)
	}
	if d := e2.Decide(request("GET", "/api/records/alice/2", "")); d.Status != http.StatusForbidden || d.Warning == "" {
		t.Errorf("new request with the AS down: %+v", d)
	}
	as.clock.Advance(10 * time.Second)
	if d := e2.Decide(request("GET", "/api/records/alice/1", rpt)); d.Status != http.StatusForbidden || d.Warning == "" {
		t.Errorf("recheck with the AS down: %+v", d)
	}
}

func TestRemoteRegisteredURIs(t *testing.T) {
	as := newRealAS(t, nil)
	// rs-api registers a resource with uris through the protection API.
	_, tok := as.post("/token", "rs-api", url.Values{"grant_type": {"client_credentials"}, "scope": {"uma_protection"}})
	body := `{"name":"alice's album","owner":"alice","resource_scopes":["read","write","delete"],"uris":["/photos/alice/*"]}`
	req, _ := http.NewRequest(http.MethodPost, as.issuer+"/resource_set", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+tok["access_token"].(string))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var created struct {
		ID string `json:"_id"`
	}
	json.NewDecoder(resp.Body).Decode(&created)
	resp.Body.Close()

	for _, remote := range []bool{false, true} {
		ras := AuthorizationServer(CoHosted("rs-api", func(context.Context) LocalServer { return as.srv }))
		if remote {
			rem, err := NewRemote(RemoteConfig{Issuer: as.issuer, ClientID: "rs-api", ClientSecret: "rs-api-secret", Now: as.clock.Now})
			if err != nil {
				t.Fatal(err)
			}
			defer rem.Close()
			ras = rem
		}
		e, err := New(Config{AS: ras, RegisteredURIs: true, Now: as.clock.Now})
		if err != nil {
			t.Fatal(err)
		}
		defer e.Close()
		d := e.Decide(request("GET", "/photos/alice/beach.jpg", ""))
		if d.Status != http.StatusUnauthorized || d.ResourceID != created.ID || d.Owner != "alice" {
			t.Fatalf("remote=%v: %+v", remote, d)
		}
		rpt := as.rptFor(d.Challenge)
		if d := e.Decide(request("GET", "/photos/alice/beach.jpg", rpt)); !d.Allow {
			t.Errorf("remote=%v: with the RPT: %+v", remote, d)
		}
		if d := e.Decide(request("GET", "/photos/bob/x.jpg", rpt)); d.Reason != ReasonUnmatched {
			t.Errorf("remote=%v: outside the uris: %+v", remote, d)
		}
	}
}

// TestFirstSightFloodIsLimited: anonymous requests for made-up owners
// register resources only at the AS's new_resource_rate; beyond it they get
// 503 with Retry-After, not a ticket.
func TestFirstSightFloodIsLimited(t *testing.T) {
	as := newRealAS(t, func(c *authz.Config) { c.NewResourceRate = 1 }) // bursts of 10
	e, _ := enforcerFor(t, as, "rs-api", false, nil)
	challenged, limited := 0, 0
	for i := range 25 {
		d := e.Decide(request("GET", fmt.Sprintf("/api/records/owner-%d/1", i), ""))
		switch {
		case d.Status == http.StatusUnauthorized && d.Challenge != "":
			challenged++
		case d.Status == http.StatusServiceUnavailable && d.Reason == ReasonBusy:
			limited++
			rec := httptest.NewRecorder()
			d.Respond(rec)
			if rec.Header().Get("Retry-After") == "" || rec.Header().Get("Warning") != "" {
				t.Fatalf("limited response headers: %v", rec.Header())
			}
		default:
			t.Fatalf("request %d: %+v", i, d)
		}
	}
	if challenged < 10 || challenged > 12 || limited != 25-challenged {
		t.Fatalf("%d challenged, %d limited; want about 10 challenged", challenged, limited)
	}
	// A known resource is still served a ticket.
	if d := e.Decide(request("GET", "/api/records/owner-0/1", "")); d.Status != http.StatusUnauthorized {
		t.Fatalf("known resource: %+v", d)
	}
}
