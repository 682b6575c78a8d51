package authz

import (
	"encoding/json"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-uma/caddy-uma/authz/claimtoken"
	"github.com/caddy-uma/caddy-uma/authz/claimtoken/claimtokentest"
)

// aliceRules: the doctor reads and writes, the family reads, people of the
// insurer's domain must be approved by alice, e-mail is asked for when
// missing.
const aliceRules = `package uma.share

import data.uma.lib

allow contains "read" if lib.is_email("doctor@clinic.example")
allow contains "write" if lib.is_email("doctor@clinic.example")
allow contains "read" if lib.in_group("family")

ask_owner contains scope if {
	lib.in_email_domain("insurer.example")
	some scope in lib.requested
}

deny contains "write" if lib.is_email("mallory@clinic.example")

required_claims contains lib.email_claim if not lib.email
`

// grantFixture is an AS trusting a test OpenID provider, with alice's
// resources registered by rs-a and alice's rules in force.
type grantFixture struct {
	*testAS
	idp    *claimtokentest.Provider
	pat    string // rs-a acting for alice
	labs   string // alice's lab reports: read, write, delete
	photos string // alice's photos: view
}

func newGrantFixture(t *testing.T, mod func(*Config)) *grantFixture {
	t.Helper()
	idp := claimtokentest.NewProvider(t)
	as := newTestAS(t, func(c *Config) {
		c.TrustedIssuers = []claimtoken.Issuer{{Issuer: idp.Issuer(), Audiences: []string{"app"}}}
		if mod != nil {
			mod(c)
		}
	})
	f := &grantFixture{testAS: as, idp: idp}
	var err error
	if f.pat, err = as.srv.IssuePAT(t.Context(), "rs-a", "alice"); err != nil {
		t.Fatal(err)
	}
	f.labs = as.register(f.pat, `{"name":"labs","resource_scopes":["read","write","delete"]}`)
	f.photos = as.register(f.pat, `{"name":"photos","resource_scopes":["view"]}`)
	f.putRule("alice", f.pat, "main", aliceRules)
	return f
}

func (f *grantFixture) putRule(owner, pat, name, src string) response {
	f.t.Helper()
	req := f.doRaw("PUT", PathOwnerRules+"/"+name, src, "text/plain", "Authorization", bearer(pat))
	return req
}

// doRaw sends a body with an explicit content type.
func (as *testAS) doRaw(method, path, body, contentType string, headers ...string) response {
	as.t.Helper()
	return as.do(method, path, rawBody{body, contentType}, headers...)
}

// ticket asks the permission endpoint for a ticket.
func (f *grantFixture) ticket(body string) string {
	f.t.Helper()
	r := f.do("POST", PathPermission, body, "Authorization", bearer(f.pat))
	if r.status != 201 {
		f.t.Fatalf("ticket: %d %s", r.status, r.body)
	}
	return r.json(f.t)["ticket"].(string)
}

func (f *grantFixture) labsTicket(scopes ...string) string {
	b, _ := json.Marshal(map[string]any{"resource_id": f.labs, "resource_scopes": scopes})
	return f.ticket(string(b))
}

// idToken is an ID token for the test client "app".
func (f *grantFixture) idToken(claims map[string]any) string {
	f.t.Helper()
	c := map[string]any{"aud": "app"}
	for k, v := range claims {
		c[k] = v
	}
	return f.idp.Sign(f.t, c)
}

// grant posts a UMA grant request as client "app".
func (f *grantFixture) grant(params url.Values) response {
	f.t.Helper()
	params.Set("grant_type", GrantTypeUMATicket)
	return f.do("POST", PathToken, params, "Authorization", basicAuth("app", "app secret:with&chars"))
}

func withClaims(tk, idToken string) url.Values {
	return url.Values{"ticket": {tk}, "claim_token": {idToken}, "claim_token_format": {claimtoken.FormatIDToken}}
}

// rptPermissions introspects an RPT as rs-a and returns resource -> scopes.
func (f *grantFixture) rptPermissions(rpt string) map[string][]string {
	f.t.Helper()
	r := f.do("POST", PathIntrospect, url.Values{"token": {rpt}}, "Authorization", bearer(f.pat))
	var resp introspectionResponse
	if err := json.Unmarshal(r.body, &resp); err != nil || !resp.Active {
		f.t.Fatalf("RPT inactive: %s", r.body)
	}
	if strings.Contains(string(r.body), `"scope"`) {
		f.t.Fatalf("introspection of an RPT carries scope: %s", r.body)
	}
	out := map[string][]string{}
	for _, p := range resp.Permissions {
		out[p.ResourceID] = p.ResourceScopes
	}
	return out
}

func expectUMAError(t *testing.T, r response, code string, wantTicket bool) map[string]any {
	t.Helper()
	status := 403
	if code == "invalid_grant" || code == "invalid_scope" || code == "invalid_request" {
		status = 400
	}
	expectError(t, r, status, code)
	m := r.json(t)
	if _, has := m["ticket"]; has != wantTicket {
		t.Fatalf("ticket present = %v, want %v: %s", has, wantTicket, r.body)
	}
	return m
}

func TestGrantNeedInfoThenRPT(t *testing.T) {
	f := newGrantFixture(t, nil)
	tk := f.labsTicket("read")

	// No claims: need_info with a new ticket and the rule's hint.
	m := expectUMAError(t, f.grant(url.Values{"ticket": {tk}}), "need_info", true)
	next := m["ticket"].(string)
	if next == tk {
		t.Fatal("need_info did not rotate the ticket")
	}
	hints, _ := json.Marshal(m["required_claims"])
	if !strings.Contains(string(hints), `"name":"email"`) || !strings.Contains(string(hints), claimtoken.FormatIDToken) {
		t.Fatalf("required_claims = %s", hints)
	}
	// The old ticket is spent.
	expectUMAError(t, f.grant(url.Values{"ticket": {tk}}), "invalid_grant", false)

	// Push an ID token with the ticket from need_info.
	r := f.grant(withClaims(next, f.idToken(map[string]any{"sub": "doc-1", "email": "doctor@clinic.example"})))
	if r.status != 200 {
		t.Fatalf("grant: %d %s", r.status, r.body)
	}
	resp := r.json(t)
	if resp["token_type"] != "Bearer" || resp["pct"] == nil || resp["refresh_token"] == nil || resp["scope"] != nil || resp["upgraded"] != nil {
		t.Fatalf("token response %s", r.body)
	}
	rpt := resp["access_token"].(string)
	perms := f.rptPermissions(rpt)
	if len(perms) != 1 || strings.Join(perms[f.labs], ",") != "read" {
		t.Fatalf("permissions %v, want labs:[read]", perms)
	}
	// The RPT is a JWT with the claims the issue names.
	tok, err := f.srv.keys.verify(rpt)
	if err != nil {
		t.Fatal(err)
	}
	for _, claim := range []string{"iss", "aud", "sub", "azp", "iat", "exp", "jti", "permissions"} {
		if !tok.Has(claim) {
			t.Errorf("RPT lacks %s", claim)
		}
	}
	if sub, _ := tok.Subject(); sub != "doc-1" {
		t.Errorf("RPT sub = %q", sub)
	}
	if aud, _ := tok.Audience(); len(aud) != 1 || aud[0] != "rs-a" {
		t.Errorf("RPT aud = %v", aud)
	}

	// A PCT stands for the claims next time, for another resource too.
	pct := resp["pct"].(string)
	r = f.grant(url.Values{"ticket": {f.labsTicket("read", "write")}, "pct": {pct}})
	if r.status != 200 {
		t.Fatalf("grant with PCT: %d %s", r.status, r.body)
	}
	if got := f.rptPermissions(r.json(t)["access_token"].(string)); strings.Join(got[f.labs], ",") != "read,write" {
		t.Fatalf("with PCT: %v", got)
	}
	// A PCT is bound to its client.
	r = f.do("POST", PathToken, url.Values{"grant_type": {GrantTypeUMATicket}, "ticket": {f.labsTicket("read")}, "pct": {pct}},
		"Authorization", basicAuth("scoped", "scoped-secret"))
	expectUMAError(t, r, "need_info", true)
}

func TestGrantRPTUpgradeAndRefresh(t *testing.T) {
	f := newGrantFixture(t, func(c *Config) {
		c.Clients = append(append([]Client{}, testClients...)[:3], Client{ID: "app", Secret: "app secret:with&chars", Scopes: []string{"view"}},
			testClients[4], testClients[5])
	})
	if err := f.srv.AddShareForTest(t, "alice", f.photos, "doc-1", "view"); err != nil {
		t.Fatal(err)
	}
	doc := f.idToken(map[string]any{"sub": "doc-1", "email": "doctor@clinic.example"})
	r := f.grant(withClaims(f.labsTicket("read"), doc))
	first := r.json(t)["access_token"].(string)

	b, _ := json.Marshal(map[string]any{"resource_id": f.photos, "resource_scopes": []string{"view"}})
	r = f.grant(url.Values{"ticket": {f.ticket(string(b))}, "claim_token": {doc}, "claim_token_format": {claimtoken.FormatIDToken}, "rpt": {first}})
	if r.status != 200 || r.json(t)["upgraded"] != true {
		t.Fatalf("upgrade: %d %s", r.status, r.body)
	}
	upgraded := r.json(t)["access_token"].(string)
	perms := f.rptPermissions(upgraded)
	if strings.Join(perms[f.labs], ",") != "read" || strings.Join(perms[f.photos], ",") != "view" {
		t.Fatalf("upgraded RPT permissions %v", perms)
	}
	// The upgraded-from RPT is revoked.
	if r := f.do("POST", PathIntrospect, url.Values{"token": {first}}, "Authorization", bearer(f.pat)); string(r.body) != `{"active":false}` {
		t.Fatalf("old RPT still active: %s", r.body)
	}

	// Refresh: same permissions without a new assessment, even after the
	// rules changed; the refresh token is rotated.
	refresh := r.json(t)["refresh_token"].(string)
	f.putRule("alice", f.pat, "main", "package uma.share\n")
	r = f.do("POST", PathToken, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh}}, "Authorization", basicAuth("app", "app secret:with&chars"))
	if r.status != 200 {
		t.Fatalf("refresh: %d %s", r.status, r.body)
	}
	if got := f.rptPermissions(r.json(t)["access_token"].(string)); len(got) != 2 {
		t.Fatalf("refreshed permissions %v", got)
	}
	again := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh}}
	expectError(t, f.do("POST", PathToken, again, "Authorization", basicAuth("app", "app secret:with&chars")), 400, "invalid_grant")
	// Narrowing by scope.
	next := r.json(t)["refresh_token"].(string)
	r = f.do("POST", PathToken, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {next}, "scope": {"view"}}, "Authorization", basicAuth("app", "app secret:with&chars"))
	if got := f.rptPermissions(r.json(t)["access_token"].(string)); len(got) != 1 || got[f.photos] == nil {
		t.Fatalf("narrowed permissions %v", got)
	}
	// Another client cannot use the refresh token.
	other := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {r.json(t)["refresh_token"].(string)}}
	expectError(t, f.do("POST", PathToken, other, "Authorization", basicAuth("scoped", "scoped-secret")), 400, "invalid_grant")
}

func TestGrantDeniedSubmittedApproved(t *testing.T) {
	f := newGrantFixture(t, func(c *Config) { c.RequestInterval = 7 * time.Second })

	// A stranger: request_denied, no ticket.
	stranger := f.idToken(map[string]any{"sub": "x", "email": "someone@else.example"})
	expectUMAError(t, f.grant(withClaims(f.labsTicket("read"), stranger)), "request_denied", false)

	// An insurer: request_submitted, then the owner approves.
	insurer := f.idToken(map[string]any{"sub": "ins-7", "email": "agent@insurer.example"})
	m := expectUMAError(t, f.grant(withClaims(f.labsTicket("read"), insurer)), "request_submitted", true)
	if m["interval"].(float64) != 7 {
		t.Fatalf("interval = %v", m["interval"])
	}
	// Polling before approval: submitted again, one pending request only.
	m = expectUMAError(t, f.grant(url.Values{"ticket": {m["ticket"].(string)}}), "request_submitted", true)
	ownerAuth := []string{"Authorization", bearer(f.pat)}
	r := f.do("GET", PathOwnerRequests, nil, ownerAuth...)
	var list struct {
		Requests []AccessRequest `json:"requests"`
	}
	if err := json.Unmarshal(r.body, &list); err != nil || len(list.Requests) != 1 || list.Requests[0].Status != RequestPending ||
		list.Requests[0].Subject != "ins-7" || list.Requests[0].ResourceID != f.labs {
		t.Fatalf("pending requests: %s", r.body)
	}
	// Another owner sees none of them and cannot decide them.
	bobPAT, _ := f.srv.IssuePAT(t.Context(), "rs-a", "bob")
	if r := f.do("GET", PathOwnerRequests, nil, "Authorization", bearer(bobPAT)); !strings.Contains(string(r.body), `"requests":[]`) {
		t.Fatalf("bob sees alice's requests: %s", r.body)
	}
	expectError(t, f.do("POST", PathOwnerRequests+"/"+list.Requests[0].ID, `{"decision":"approve"}`, "Authorization", bearer(bobPAT)), 404, "not_found")

	r = f.do("POST", PathOwnerRequests+"/"+list.Requests[0].ID, `{"decision":"approve"}`, ownerAuth...)
	if r.status != 200 || r.json(t)["status"] != RequestApproved {
		t.Fatalf("approve: %d %s", r.status, r.body)
	}
	expectError(t, f.do("POST", PathOwnerRequests+"/"+list.Requests[0].ID, `{"decision":"deny"}`, ownerAuth...), 409, "invalid_request")
	expectError(t, f.do("POST", PathOwnerRequests+"/"+list.Requests[0].ID, `{"decision":"maybe"}`, ownerAuth...), 400, "invalid_request")

	// The client's retry with the last ticket succeeds.
	r = f.grant(url.Values{"ticket": {m["ticket"].(string)}})
	if r.status != 200 {
		t.Fatalf("retry after approval: %d %s", r.status, r.body)
	}
	if got := f.rptPermissions(r.json(t)["access_token"].(string)); strings.Join(got[f.labs], ",") != "read" {
		t.Fatalf("after approval: %v", got)
	}

	// A denied request answers request_denied from then on.
	m = expectUMAError(t, f.grant(withClaims(f.labsTicket("write"), insurer)), "request_submitted", true)
	_ = m
	r = f.do("GET", PathOwnerRequests+"?status=pending", nil, ownerAuth...)
	_ = json.Unmarshal(r.body, &list)
	if len(list.Requests) != 1 {
		t.Fatalf("pending: %s", r.body)
	}
	f.do("POST", PathOwnerRequests+"/"+list.Requests[0].ID, `{"decision":"deny"}`, ownerAuth...)
	expectUMAError(t, f.grant(withClaims(f.labsTicket("write"), insurer)), "request_denied", false)
}

func TestGrantTicketFailures(t *testing.T) {
	f := newGrantFixture(t, func(c *Config) { c.TicketTTL = time.Minute })
	doc := f.idToken(map[string]any{"sub": "doc-1", "email": "doctor@clinic.example"})

	// Reused.
	tk := f.labsTicket("read")
	if r := f.grant(withClaims(tk, doc)); r.status != 200 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	expectUMAError(t, f.grant(withClaims(tk, doc)), "invalid_grant", false)
	// Expired.
	tk = f.labsTicket("read")
	f.clock.Advance(time.Minute)
	expectUMAError(t, f.grant(withClaims(tk, doc)), "invalid_grant", false)
	f.clock.Advance(-time.Minute)
	// Forged.
	expectUMAError(t, f.grant(withClaims("forged-ticket", doc)), "invalid_grant", false)
	expectUMAError(t, f.grant(withClaims(tk[:len(tk)-3]+"abc", doc)), "invalid_grant", false)
	// Missing.
	expectUMAError(t, f.grant(url.Values{"claim_token": {doc}, "claim_token_format": {claimtoken.FormatIDToken}}), "invalid_request", false)
	// Format without token.
	expectUMAError(t, f.grant(url.Values{"ticket": {f.labsTicket("read")}, "claim_token_format": {claimtoken.FormatIDToken}}), "invalid_request", false)
	// A scope no resource offers.
	expectUMAError(t, f.grant(url.Values{"ticket": {f.labsTicket("read")}, "scope": {"fly"}}), "invalid_scope", false)
	// Unauthenticated client.
	r := f.do("POST", PathToken, url.Values{"grant_type": {GrantTypeUMATicket}, "ticket": {f.labsTicket("read")}})
	expectError(t, r, 401, "invalid_client")
	// A rotated ticket is bound to the client that presented the process.
	m := expectUMAError(t, f.grant(url.Values{"ticket": {f.labsTicket("read")}}), "need_info", true)
	r = f.do("POST", PathToken, url.Values{"grant_type": {GrantTypeUMATicket}, "ticket": {m["ticket"].(string)}}, "Authorization", basicAuth("scoped", "scoped-secret"))
	expectUMAError(t, r, "invalid_grant", false)

	// Two concurrent redemptions of one ticket: exactly one wins.
	tk = f.labsTicket("read")
	var wg sync.WaitGroup
	statuses := make([]int, 8)
	for i := range statuses {
		wg.Add(1)
		go func() {
			defer wg.Done()
			statuses[i] = f.grant(withClaims(tk, doc)).status
		}()
	}
	wg.Wait()
	ok := 0
	for _, s := range statuses {
		if s == 200 {
			ok++
		} else if s != 400 {
			t.Fatalf("unexpected status %d", s)
		}
	}
	if ok != 1 {
		t.Fatalf("%d concurrent redemptions succeeded: %v", ok, statuses)
	}
}

func TestGrantClaimTokenFailures(t *testing.T) {
	f := newGrantFixture(t, nil)
	other := claimtokentest.NewProvider(t)
	good := map[string]any{"sub": "doc-1", "email": "doctor@clinic.example", "aud": "app"}
	with := func(k string, v any) map[string]any {
		c := map[string]any{}
		for a, b := range good {
			c[a] = b
		}
		c[k] = v
		return c
	}
	tests := []struct {
		name   string
		token  string
		format string
		reason string
	}{
		{"unsigned", f.idp.SignWith(t, good, claimtokentest.WithAlgNone()), claimtoken.FormatIDToken, "unsigned"},
		{"bad signature", f.idp.SignWith(t, good, claimtokentest.WithUnknownKey()), claimtoken.FormatIDToken, "signature"},
		{"HS256 with the public key", f.idp.SignWith(t, good, claimtokentest.WithHS256(f.idp.JWKS(t))), claimtoken.FormatIDToken, ""},
		{"expired", f.idp.Sign(t, with("exp", time.Now().Add(-time.Hour).Unix())), claimtoken.FormatIDToken, "expired"},
		{"wrong audience", f.idp.Sign(t, with("aud", "someone-else")), claimtoken.FormatIDToken, "aud"},
		{"untrusted issuer", other.Sign(t, good), claimtoken.FormatIDToken, "trusted"},
		{"not a JWT", "hello", claimtoken.FormatIDToken, ""},
		{"unsupported format", f.idp.Sign(t, good), "urn:example:saml", "format"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := f.grant(url.Values{"ticket": {f.labsTicket("read")}, "claim_token": {tc.token}, "claim_token_format": {tc.format}})
			m := expectUMAError(t, r, "need_info", true)
			desc, _ := m["error_description"].(string)
			if !strings.Contains(strings.ToLower(desc), tc.reason) {
				t.Fatalf("error_description %q does not say %q", desc, tc.reason)
			}
			if strings.Contains(desc, tc.token) {
				t.Fatal("error_description echoes the token")
			}
		})
	}
	// The plain JWT format is accepted.
	r := f.grant(url.Values{"ticket": {f.labsTicket("read")}, "claim_token": {f.idp.Sign(t, good)}, "claim_token_format": {claimtoken.FormatJWT}})
	if r.status != 200 {
		t.Fatalf("JWT format: %d %s", r.status, r.body)
	}
}

func TestOwnerRulesCannotReachOtherOwners(t *testing.T) {
	f := newGrantFixture(t, nil)
	bobPAT, _ := f.srv.IssuePAT(t.Context(), "rs-a", "bob")
	// Bob tries every way to grant on alice's resources.
	r := f.putRule("bob", bobPAT, "grab", `package uma.share

allow contains scope if some scope in input.resource.scopes
allow contains "read" if input.resource.owner == "alice"
`)
	if r.status != 200 {
		t.Fatalf("bob's rule: %d %s", r.status, r.body)
	}
	for _, src := range []string{
		"package uma.share\nallow contains s if some s in data.uma.share.allow\n", // recursion, not another owner
		"package uma.lib\nshared_scopes := {\"read\"}\n",
		"package uma.system\ndeny := set()\n",
	} {
		if r := f.putRule("bob", bobPAT, "evil", src); r.status != 400 {
			t.Fatalf("bob's rule %q accepted: %d %s", src, r.status, r.body)
		}
	}
	stranger := f.idToken(map[string]any{"sub": "bob", "email": "bob@example.com"})
	expectUMAError(t, f.grant(withClaims(f.labsTicket("read"), stranger)), "request_denied", false)
	// Bob cannot see alice's rules either.
	r = f.do("GET", PathOwnerRules, nil, "Authorization", bearer(bobPAT))
	if strings.Contains(string(r.body), "doctor@clinic.example") {
		t.Fatalf("bob reads alice's rules: %s", r.body)
	}
	// Nor dry-run on alice's resource.
	expectError(t, f.do("POST", PathOwnerEvaluate, `{"resource_id":"`+f.labs+`"}`, "Authorization", bearer(bobPAT)), 400, "invalid_resource_id")
}

func TestLoopingRuleTimesOut(t *testing.T) {
	f := newGrantFixture(t, func(c *Config) { c.PolicyTimeout = 200 * time.Millisecond })
	loopPAT, _ := f.srv.IssuePAT(t.Context(), "rs-a", "looper")
	res := f.register(loopPAT, `{"name":"loop","resource_scopes":["read"]}`)
	if r := f.putRule("looper", loopPAT, "loop", `package uma.share

allow contains "read" if {
	count([x | some x in numbers.range(1, 100000000); x % 7 == 3]) > 0
}
`); r.status != 200 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	loopTicket := func() string {
		r := f.do("POST", PathPermission, `{"resource_id":"`+res+`","resource_scopes":["read"]}`, "Authorization", bearer(loopPAT))
		return r.json(t)["ticket"].(string)
	}
	doc := f.idToken(map[string]any{"sub": "doc-1", "email": "doctor@clinic.example"})
	var wg sync.WaitGroup
	wg.Add(1)
	var loopResp response
	var loopTime time.Duration
	go func() {
		defer wg.Done()
		start := time.Now()
		loopResp = f.grant(withClaims(loopTicket(), doc))
		loopTime = time.Since(start)
	}()
	// Meanwhile others are answered.
	for range 3 {
		if r := f.grant(withClaims(f.labsTicket("read"), doc)); r.status != 200 {
			t.Fatalf("other owner's grant while a rule loops: %d %s", r.status, r.body)
		}
	}
	wg.Wait()
	m := expectUMAError(t, loopResp, "request_denied", false)
	if !strings.Contains(m["error_description"].(string), "time limit") {
		t.Fatalf("description %v", m["error_description"])
	}
	if loopTime > 5*time.Second {
		t.Fatalf("looping rule answered after %v", loopTime)
	}
}

func TestKeycloakExtensions(t *testing.T) {
	f := newGrantFixture(t, nil)
	if err := f.srv.AddShareForTest(t, "alice", f.photos, "pat-1", "view"); err != nil {
		t.Fatal(err)
	}
	patient := f.idToken(map[string]any{"sub": "pat-1", "email": "pat@example.com"})
	// Ticketless, by resource name, with pushed claims.
	kc := func(v url.Values) url.Values {
		v.Set("claim_token", patient)
		v.Set("claim_token_format", claimtoken.FormatIDToken)
		return v
	}
	base := kc(url.Values{"audience": {"rs-a"}, "permission": {"photos#view"}})
	r := f.grant(base)
	if r.status != 200 {
		t.Fatalf("ticketless: %d %s", r.status, r.body)
	}
	if got := f.rptPermissions(r.json(t)["access_token"].(string)); strings.Join(got[f.photos], ",") != "view" {
		t.Fatalf("ticketless permissions %v", got)
	}
	dec := kc(url.Values{"audience": {"rs-a"}, "permission": {f.photos + "#view"}, "response_mode": {"decision"}})
	if r := f.grant(dec); r.status != 200 || string(r.body) != `{"result":true}` {
		t.Fatalf("decision: %d %s", r.status, r.body)
	}
	perms := kc(url.Values{"audience": {"rs-a"}, "permission": {"photos", "labs#read"}, "response_mode": {"permissions"}})
	if r := f.grant(perms); r.status != 200 || !strings.Contains(string(r.body), `"rsid":"`+f.photos+`"`) || strings.Contains(string(r.body), f.labs) {
		t.Fatalf("permissions: %d %s", r.status, r.body)
	}
	denied := kc(url.Values{"audience": {"rs-a"}, "permission": {"labs#read"}, "response_mode": {"decision"}})
	expectError(t, f.grant(denied), 403, "access_denied")
	// Without claims there is no ticket to rotate for need_info: access_denied.
	expectError(t, f.grant(url.Values{"audience": {"rs-a"}, "permission": {"labs#read"}}), 403, "access_denied")
	expectError(t, f.grant(url.Values{"audience": {"rs-a"}, "permission": {"labs"}, "response_mode": {"nope"}}), 400, "invalid_request")
	expectError(t, f.grant(url.Values{"audience": {"rs-a"}, "permission": {"nothing#read"}}), 400, "invalid_resource")
	expectError(t, f.grant(url.Values{"audience": {"app"}, "permission": {"photos"}}), 400, "invalid_request")
}

func TestRPTRevocationAndIntrospection(t *testing.T) {
	f := newGrantFixture(t, nil)
	doc := f.idToken(map[string]any{"sub": "doc-1", "email": "doctor@clinic.example"})
	r := f.grant(withClaims(f.labsTicket("read"), doc))
	resp := r.json(t)
	rpt, refresh, pct := resp["access_token"].(string), resp["refresh_token"].(string), resp["pct"].(string)

	// Another resource server sees nothing.
	patB := f.pat2("rs-b", "secret-b")
	if r := f.do("POST", PathIntrospect, url.Values{"token": {rpt}}, "Authorization", bearer(patB)); string(r.body) != `{"active":false}` {
		t.Fatalf("rs-b introspects rs-a's RPT: %s", r.body)
	}
	// An RPT is not a PAT.
	expectError(t, f.do("GET", PathResourceSet, nil, "Authorization", bearer(rpt)), 401, "invalid_token")

	app := []string{"Authorization", basicAuth("app", "app secret:with&chars")}
	// Another client cannot revoke it.
	f.do("POST", PathRevoke, url.Values{"token": {rpt}}, "Authorization", basicAuth("scoped", "scoped-secret"))
	f.rptPermissions(rpt)
	if r := f.do("POST", PathRevoke, url.Values{"token": {rpt}}, app...); r.status != 200 {
		t.Fatalf("revoke: %d", r.status)
	}
	if r := f.do("POST", PathIntrospect, url.Values{"token": {rpt}}, "Authorization", bearer(f.pat)); string(r.body) != `{"active":false}` {
		t.Fatalf("revoked RPT active: %s", r.body)
	}
	if _, err := f.srv.VerifyRPT(t.Context(), rpt, "rs-a"); err == nil {
		t.Fatal("VerifyRPT accepted a revoked RPT")
	}
	// Revoking the refresh token and the PCT.
	f.do("POST", PathRevoke, url.Values{"token": {refresh}, "token_type_hint": {"refresh_token"}}, app...)
	expectError(t, f.do("POST", PathToken, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh}}, app...), 400, "invalid_grant")
	f.do("POST", PathRevoke, url.Values{"token": {pct}, "token_type_hint": {"pct"}}, app...)
	expectUMAError(t, f.grant(url.Values{"ticket": {f.labsTicket("read")}, "pct": {pct}}), "need_info", true)

	// Expired RPTs are inactive.
	r = f.grant(withClaims(f.labsTicket("read"), f.idToken(map[string]any{"sub": "doc-1", "email": "doctor@clinic.example"})))
	rpt = r.json(t)["access_token"].(string)
	f.clock.Advance(DefaultRPTTTL)
	if r := f.do("POST", PathIntrospect, url.Values{"token": {rpt}}, "Authorization", bearer(f.pat)); string(r.body) != `{"active":false}` {
		t.Fatalf("expired RPT active: %s", r.body)
	}
}

func TestOwnerRulesAPI(t *testing.T) {
	f := newGrantFixture(t, nil)
	auth := []string{"Authorization", bearer(f.pat)}
	// A syntax error is refused with its line and column.
	r := f.putRule("alice", f.pat, "broken", "package uma.share\n\nallow contains \"read\" if {\n\tinput.x ==\n}\n")
	expectError(t, r, 400, "invalid_request")
	var ce compileErrorResponse
	if err := json.Unmarshal(r.body, &ce); err != nil || len(ce.Errors) == 0 || ce.Errors[0].Line == 0 || ce.Errors[0].Module != "broken" {
		t.Fatalf("compile errors: %s", r.body)
	}
	// Refused built-ins.
	r = f.putRule("alice", f.pat, "net", "package uma.share\n\nallow contains \"read\" if http.send({\"method\": \"get\", \"url\": \"http://x\"}).status_code == 200\n")
	expectError(t, r, 400, "invalid_request")
	// Bad names.
	expectError(t, f.putRule("alice", f.pat, "a%20b", "package uma.share\n"), 400, "invalid_request")
	// JSON body.
	r = f.do("PUT", PathOwnerRules+"/family", `{"source":"package uma.share\n\nallow contains \"read\" if input.claims.family == true\n"}`, auth...)
	if r.status != 200 {
		t.Fatalf("put JSON: %d %s", r.status, r.body)
	}
	r = f.do("GET", PathOwnerRules, nil, auth...)
	if !strings.Contains(string(r.body), `"name":"family"`) || !strings.Contains(string(r.body), `"name":"main"`) {
		t.Fatalf("list: %s", r.body)
	}
	if r := f.do("GET", PathOwnerRules+"/family", nil, auth...); r.status != 200 || !strings.Contains(string(r.body), "input.claims.family") {
		t.Fatalf("get: %d %s", r.status, r.body)
	}
	// Dry run, saved rules and unsaved ones.
	r = f.do("POST", PathOwnerEvaluate, `{"resource_id":"`+f.labs+`","scopes":["read","write"],"claims":{"email":"doctor@clinic.example"}}`, auth...)
	if r.status != 200 || !strings.Contains(string(r.body), `"granted":["read","write"]`) {
		t.Fatalf("dry run: %d %s", r.status, r.body)
	}
	r = f.do("POST", PathOwnerEvaluate, `{"resource_id":"`+f.labs+`","scopes":["read"],"claims":{"family":true},"rules":{"x":"package uma.share\n\nallow contains \"delete\" if true\n"}}`, auth...)
	if r.status != 200 || !strings.Contains(string(r.body), `"granted":[]`) {
		t.Fatalf("dry run with unsaved rules: %d %s", r.status, r.body)
	}
	if r := f.do("DELETE", PathOwnerRules+"/family", nil, auth...); r.status != 204 {
		t.Fatalf("delete: %d", r.status)
	}
	expectError(t, f.do("DELETE", PathOwnerRules+"/family", nil, auth...), 404, "not_found")
	expectError(t, f.do("GET", PathOwnerRules+"/family", nil, auth...), 404, "not_found")
	expectError(t, f.do("GET", PathOwnerRules, nil), 401, "invalid_token")
}
