package authz_test

import (
	"encoding/json"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-uma/caddy-uma/authz"
	"github.com/caddy-uma/caddy-uma/authz/authztest"
	"github.com/caddy-uma/caddy-uma/authz/claimtoken"
	"github.com/caddy-uma/caddy-uma/authz/claimtoken/claimtokentest"
	"github.com/caddy-uma/caddy-uma/authz/ownerapi"
)

func TestGrantNeedInfoThenRPT(t *testing.T) {
	f := authztest.NewGrantFixture(t, nil)
	tk := f.LabsTicket("read")

	// No claims: need_info with a new ticket and the rule's hint.
	m := authztest.ExpectUMAError(t, f.Grant(url.Values{"ticket": {tk}}), "need_info", true)
	next := m["ticket"].(string)
	if next == tk {
		t.Fatal("need_info did not rotate the ticket")
	}
	hints, _ := json.Marshal(m["required_claims"])
	if !strings.Contains(string(hints), `"name":"email"`) || !strings.Contains(string(hints), claimtoken.FormatIDToken) {
		t.Fatalf("required_claims = %s", hints)
	}
	// The old ticket is spent.
	authztest.ExpectUMAError(t, f.Grant(url.Values{"ticket": {tk}}), "invalid_grant", false)

	// Push an ID token with the ticket from need_info.
	r := f.Grant(authztest.WithClaims(next, f.IDToken(map[string]any{"sub": "doc-1", "email": "doctor@clinic.example"})))
	if r.Status != 200 {
		t.Fatalf("grant: %d %s", r.Status, r.Body)
	}
	resp := r.JSON(t)
	if resp["token_type"] != "Bearer" || resp["pct"] == nil || resp["refresh_token"] == nil || resp["scope"] != nil || resp["upgraded"] != nil {
		t.Fatalf("token response %s", r.Body)
	}
	rpt := resp["access_token"].(string)
	perms := f.RPTPermissions(rpt)
	if len(perms) != 1 || strings.Join(perms[f.Labs], ",") != "read" {
		t.Fatalf("permissions %v, want labs:[read]", perms)
	}
	// The RPT is a JWT with the claims the issue names.
	tok, err := f.Server.VerifySignature(rpt)
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
	r = f.Grant(url.Values{"ticket": {f.LabsTicket("read", "write")}, "pct": {pct}})
	if r.Status != 200 {
		t.Fatalf("grant with PCT: %d %s", r.Status, r.Body)
	}
	if got := f.RPTPermissions(r.JSON(t)["access_token"].(string)); strings.Join(got[f.Labs], ",") != "read,write" {
		t.Fatalf("with PCT: %v", got)
	}
	// A PCT is bound to its client.
	r = f.Do("POST", authz.PathToken, url.Values{"grant_type": {authz.GrantTypeUMATicket}, "ticket": {f.LabsTicket("read")}, "pct": {pct}},
		"Authorization", authztest.BasicAuth("scoped", "scoped-secret"))
	authztest.ExpectUMAError(t, r, "need_info", true)
}

func TestGrantRPTUpgradeAndRefresh(t *testing.T) {
	f := authztest.NewGrantFixture(t, func(c *authz.Config) {
		c.Clients = append(append([]authz.Client{}, authztest.Clients...)[:3], authz.Client{ID: "app", Secret: "app secret:with&chars", Scopes: []string{"view"}},
			authztest.Clients[4], authztest.Clients[5])
	})
	if err := f.Server.AddShareForTest(t, "alice", f.Photos, "doc-1", "view"); err != nil {
		t.Fatal(err)
	}
	doc := f.IDToken(map[string]any{"sub": "doc-1", "email": "doctor@clinic.example"})
	r := f.Grant(authztest.WithClaims(f.LabsTicket("read"), doc))
	first := r.JSON(t)["access_token"].(string)

	b, _ := json.Marshal(map[string]any{"resource_id": f.Photos, "resource_scopes": []string{"view"}})
	r = f.Grant(url.Values{"ticket": {f.Ticket(string(b))}, "claim_token": {doc}, "claim_token_format": {claimtoken.FormatIDToken}, "rpt": {first}})
	if r.Status != 200 || r.JSON(t)["upgraded"] != true {
		t.Fatalf("upgrade: %d %s", r.Status, r.Body)
	}
	upgraded := r.JSON(t)["access_token"].(string)
	perms := f.RPTPermissions(upgraded)
	if strings.Join(perms[f.Labs], ",") != "read" || strings.Join(perms[f.Photos], ",") != "view" {
		t.Fatalf("upgraded authz.RPT permissions %v", perms)
	}
	// The upgraded-from RPT is revoked.
	if r := f.Do("POST", authz.PathIntrospect, url.Values{"token": {first}}, "Authorization", authztest.Bearer(f.AlicePAT)); string(r.Body) != `{"active":false}` {
		t.Fatalf("old authz.RPT still active: %s", r.Body)
	}

	// Refresh: same permissions without a new assessment, even after the
	// rules changed; the refresh token is rotated.
	refresh := r.JSON(t)["refresh_token"].(string)
	f.PutRule(f.AlicePAT, "main", "package uma.share\n")
	r = f.Do("POST", authz.PathToken, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh}}, "Authorization", authztest.BasicAuth("app", "app secret:with&chars"))
	if r.Status != 200 {
		t.Fatalf("refresh: %d %s", r.Status, r.Body)
	}
	if got := f.RPTPermissions(r.JSON(t)["access_token"].(string)); len(got) != 2 {
		t.Fatalf("refreshed permissions %v", got)
	}
	again := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh}}
	authztest.ExpectError(t, f.Do("POST", authz.PathToken, again, "Authorization", authztest.BasicAuth("app", "app secret:with&chars")), 400, "invalid_grant")
	// Narrowing by scope.
	next := r.JSON(t)["refresh_token"].(string)
	r = f.Do("POST", authz.PathToken, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {next}, "scope": {"view"}}, "Authorization", authztest.BasicAuth("app", "app secret:with&chars"))
	if got := f.RPTPermissions(r.JSON(t)["access_token"].(string)); len(got) != 1 || got[f.Photos] == nil {
		t.Fatalf("narrowed permissions %v", got)
	}
	// Another client cannot use the refresh token.
	other := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {r.JSON(t)["refresh_token"].(string)}}
	authztest.ExpectError(t, f.Do("POST", authz.PathToken, other, "Authorization", authztest.BasicAuth("scoped", "scoped-secret")), 400, "invalid_grant")
}

func TestGrantDeniedSubmittedApproved(t *testing.T) {
	f := authztest.NewGrantFixture(t, func(c *authz.Config) { c.RequestInterval = 7 * time.Second })

	// A stranger: request_denied, no ticket.
	stranger := f.IDToken(map[string]any{"sub": "x", "email": "someone@else.example"})
	authztest.ExpectUMAError(t, f.Grant(authztest.WithClaims(f.LabsTicket("read"), stranger)), "request_denied", false)

	// An insurer: request_submitted, then the owner approves.
	insurer := f.IDToken(map[string]any{"sub": "ins-7", "email": "agent@insurer.example"})
	m := authztest.ExpectUMAError(t, f.Grant(authztest.WithClaims(f.LabsTicket("read"), insurer)), "request_submitted", true)
	if m["interval"].(float64) != 7 {
		t.Fatalf("interval = %v", m["interval"])
	}
	// Polling before approval: submitted again, one pending request only.
	m = authztest.ExpectUMAError(t, f.Grant(url.Values{"ticket": {m["ticket"].(string)}}), "request_submitted", true)
	ownerAuth := []string{"Authorization", authztest.Bearer(f.AlicePAT)}
	r := f.Do("GET", ownerapi.PathRequests, nil, ownerAuth...)
	var list struct {
		Requests []authz.AccessRequest `json:"requests"`
	}
	if err := json.Unmarshal(r.Body, &list); err != nil || len(list.Requests) != 1 || list.Requests[0].Status != authz.RequestPending ||
		list.Requests[0].Subject != "ins-7" || list.Requests[0].ResourceID != f.Labs {
		t.Fatalf("pending requests: %s", r.Body)
	}
	// Another owner sees none of them and cannot decide them.
	bobPAT, _ := f.Server.IssuePAT(t.Context(), "rs-a", "bob")
	if r := f.Do("GET", ownerapi.PathRequests, nil, "Authorization", authztest.Bearer(bobPAT)); !strings.Contains(string(r.Body), `"requests":[]`) {
		t.Fatalf("bob sees alice's requests: %s", r.Body)
	}
	authztest.ExpectError(t, f.Do("POST", ownerapi.PathRequests+"/"+list.Requests[0].ID, `{"decision":"approve"}`, "Authorization", authztest.Bearer(bobPAT)), 404, "not_found")

	r = f.Do("POST", ownerapi.PathRequests+"/"+list.Requests[0].ID, `{"decision":"approve"}`, ownerAuth...)
	if r.Status != 200 || r.JSON(t)["status"] != authz.RequestApproved {
		t.Fatalf("approve: %d %s", r.Status, r.Body)
	}
	authztest.ExpectError(t, f.Do("POST", ownerapi.PathRequests+"/"+list.Requests[0].ID, `{"decision":"deny"}`, ownerAuth...), 409, "invalid_request")
	authztest.ExpectError(t, f.Do("POST", ownerapi.PathRequests+"/"+list.Requests[0].ID, `{"decision":"maybe"}`, ownerAuth...), 400, "invalid_request")

	// The client's retry with the last ticket succeeds.
	r = f.Grant(url.Values{"ticket": {m["ticket"].(string)}})
	if r.Status != 200 {
		t.Fatalf("retry after approval: %d %s", r.Status, r.Body)
	}
	if got := f.RPTPermissions(r.JSON(t)["access_token"].(string)); strings.Join(got[f.Labs], ",") != "read" {
		t.Fatalf("after approval: %v", got)
	}

	// A denied request answers request_denied from then on.
	m = authztest.ExpectUMAError(t, f.Grant(authztest.WithClaims(f.LabsTicket("write"), insurer)), "request_submitted", true)
	_ = m
	r = f.Do("GET", ownerapi.PathRequests+"?status=pending", nil, ownerAuth...)
	_ = json.Unmarshal(r.Body, &list)
	if len(list.Requests) != 1 {
		t.Fatalf("pending: %s", r.Body)
	}
	f.Do("POST", ownerapi.PathRequests+"/"+list.Requests[0].ID, `{"decision":"deny"}`, ownerAuth...)
	authztest.ExpectUMAError(t, f.Grant(authztest.WithClaims(f.LabsTicket("write"), insurer)), "request_denied", false)
}

func TestGrantTicketFailures(t *testing.T) {
	f := authztest.NewGrantFixture(t, func(c *authz.Config) { c.TicketTTL = time.Minute })
	doc := f.IDToken(map[string]any{"sub": "doc-1", "email": "doctor@clinic.example"})

	// Reused.
	tk := f.LabsTicket("read")
	if r := f.Grant(authztest.WithClaims(tk, doc)); r.Status != 200 {
		t.Fatalf("%d %s", r.Status, r.Body)
	}
	authztest.ExpectUMAError(t, f.Grant(authztest.WithClaims(tk, doc)), "invalid_grant", false)
	// Expired.
	tk = f.LabsTicket("read")
	f.Clock.Advance(time.Minute)
	authztest.ExpectUMAError(t, f.Grant(authztest.WithClaims(tk, doc)), "invalid_grant", false)
	f.Clock.Advance(-time.Minute)
	// Forged.
	authztest.ExpectUMAError(t, f.Grant(authztest.WithClaims("forged-ticket", doc)), "invalid_grant", false)
	authztest.ExpectUMAError(t, f.Grant(authztest.WithClaims(tk[:len(tk)-3]+"abc", doc)), "invalid_grant", false)
	// Missing.
	authztest.ExpectUMAError(t, f.Grant(url.Values{"claim_token": {doc}, "claim_token_format": {claimtoken.FormatIDToken}}), "invalid_request", false)
	// Format without token.
	authztest.ExpectUMAError(t, f.Grant(url.Values{"ticket": {f.LabsTicket("read")}, "claim_token_format": {claimtoken.FormatIDToken}}), "invalid_request", false)
	// A scope no resource offers.
	authztest.ExpectUMAError(t, f.Grant(url.Values{"ticket": {f.LabsTicket("read")}, "scope": {"fly"}}), "invalid_scope", false)
	// Unauthenticated client.
	r := f.Do("POST", authz.PathToken, url.Values{"grant_type": {authz.GrantTypeUMATicket}, "ticket": {f.LabsTicket("read")}})
	authztest.ExpectError(t, r, 401, "invalid_client")
	// A rotated ticket is bound to the client that presented the process.
	m := authztest.ExpectUMAError(t, f.Grant(url.Values{"ticket": {f.LabsTicket("read")}}), "need_info", true)
	r = f.Do("POST", authz.PathToken, url.Values{"grant_type": {authz.GrantTypeUMATicket}, "ticket": {m["ticket"].(string)}}, "Authorization", authztest.BasicAuth("scoped", "scoped-secret"))
	authztest.ExpectUMAError(t, r, "invalid_grant", false)

	// Two concurrent redemptions of one ticket: exactly one wins.
	tk = f.LabsTicket("read")
	var wg sync.WaitGroup
	statuses := make([]int, 8)
	for i := range statuses {
		wg.Add(1)
		go func() {
			defer wg.Done()
			statuses[i] = f.Grant(authztest.WithClaims(tk, doc)).Status
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
	f := authztest.NewGrantFixture(t, nil)
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
		{"unsigned", f.IdP.SignWith(t, good, claimtokentest.WithAlgNone()), claimtoken.FormatIDToken, "unsigned"},
		{"bad signature", f.IdP.SignWith(t, good, claimtokentest.WithUnknownKey()), claimtoken.FormatIDToken, "signature"},
		{"HS256 with the public key", f.IdP.SignWith(t, good, claimtokentest.WithHS256(f.IdP.JWKS(t))), claimtoken.FormatIDToken, ""},
		{"expired", f.IdP.Sign(t, with("exp", time.Now().Add(-time.Hour).Unix())), claimtoken.FormatIDToken, "expired"},
		{"wrong audience", f.IdP.Sign(t, with("aud", "someone-else")), claimtoken.FormatIDToken, "aud"},
		{"untrusted issuer", other.Sign(t, good), claimtoken.FormatIDToken, "trusted"},
		{"not a JWT", "hello", claimtoken.FormatIDToken, ""},
		{"unsupported format", f.IdP.Sign(t, good), "urn:example:saml", "format"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := f.Grant(url.Values{"ticket": {f.LabsTicket("read")}, "claim_token": {tc.token}, "claim_token_format": {tc.format}})
			m := authztest.ExpectUMAError(t, r, "need_info", true)
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
	r := f.Grant(url.Values{"ticket": {f.LabsTicket("read")}, "claim_token": {f.IdP.Sign(t, good)}, "claim_token_format": {claimtoken.FormatJWT}})
	if r.Status != 200 {
		t.Fatalf("JWT format: %d %s", r.Status, r.Body)
	}
}

func TestOwnerRulesCannotReachOtherOwners(t *testing.T) {
	f := authztest.NewGrantFixture(t, nil)
	bobPAT, _ := f.Server.IssuePAT(t.Context(), "rs-a", "bob")
	// Bob tries every way to grant on alice's resources.
	r := f.PutRule(bobPAT, "grab", `package uma.share

allow contains scope if some scope in input.resource.scopes
allow contains "read" if input.resource.owner == "alice"
`)
	if r.Status != 200 {
		t.Fatalf("bob's rule: %d %s", r.Status, r.Body)
	}
	for _, src := range []string{
		"package uma.share\nallow contains s if some s in data.uma.share.allow\n", // recursion, not another owner
		"package uma.lib\nshared_scopes := {\"read\"}\n",
		"package uma.system\ndeny := set()\n",
	} {
		if r := f.PutRule(bobPAT, "evil", src); r.Status != 400 {
			t.Fatalf("bob's rule %q accepted: %d %s", src, r.Status, r.Body)
		}
	}
	stranger := f.IDToken(map[string]any{"sub": "bob", "email": "bob@example.com"})
	authztest.ExpectUMAError(t, f.Grant(authztest.WithClaims(f.LabsTicket("read"), stranger)), "request_denied", false)
	// Bob cannot see alice's rules either.
	r = f.Do("GET", ownerapi.PathRules, nil, "Authorization", authztest.Bearer(bobPAT))
	if strings.Contains(string(r.Body), "doctor@clinic.example") {
		t.Fatalf("bob reads alice's rules: %s", r.Body)
	}
	// Nor dry-run on alice's resource.
	authztest.ExpectError(t, f.Do("POST", ownerapi.PathEvaluate, `{"resource_id":"`+f.Labs+`"}`, "Authorization", authztest.Bearer(bobPAT)), 400, "invalid_resource_id")
}

func TestLoopingRuleTimesOut(t *testing.T) {
	f := authztest.NewGrantFixture(t, func(c *authz.Config) { c.PolicyTimeout = 200 * time.Millisecond })
	loopPAT, _ := f.Server.IssuePAT(t.Context(), "rs-a", "looper")
	res := f.Register(loopPAT, `{"name":"loop","resource_scopes":["read"]}`)
	if r := f.PutRule(loopPAT, "loop", `package uma.share

allow contains "read" if {
	count([x | some x in numbers.range(1, 100000000); x % 7 == 3]) > 0
}
`); r.Status != 200 {
		t.Fatalf("%d %s", r.Status, r.Body)
	}
	loopTicket := func() string {
		r := f.Do("POST", authz.PathPermission, `{"resource_id":"`+res+`","resource_scopes":["read"]}`, "Authorization", authztest.Bearer(loopPAT))
		return r.JSON(t)["ticket"].(string)
	}
	doc := f.IDToken(map[string]any{"sub": "doc-1", "email": "doctor@clinic.example"})
	var wg sync.WaitGroup
	wg.Add(1)
	var loopResp authztest.Response
	var loopTime time.Duration
	go func() {
		defer wg.Done()
		start := time.Now()
		loopResp = f.Grant(authztest.WithClaims(loopTicket(), doc))
		loopTime = time.Since(start)
	}()
	// Meanwhile others are answered.
	for range 3 {
		if r := f.Grant(authztest.WithClaims(f.LabsTicket("read"), doc)); r.Status != 200 {
			t.Fatalf("other owner's grant while a rule loops: %d %s", r.Status, r.Body)
		}
	}
	wg.Wait()
	m := authztest.ExpectUMAError(t, loopResp, "request_denied", false)
	if !strings.Contains(m["error_description"].(string), "time limit") {
		t.Fatalf("description %v", m["error_description"])
	}
	if loopTime > 5*time.Second {
		t.Fatalf("looping rule answered after %v", loopTime)
	}
}

func TestKeycloakExtensions(t *testing.T) {
	f := authztest.NewGrantFixture(t, nil)
	if err := f.Server.AddShareForTest(t, "alice", f.Photos, "pat-1", "view"); err != nil {
		t.Fatal(err)
	}
	patient := f.IDToken(map[string]any{"sub": "pat-1", "email": "pat@example.com"})
	// Ticketless, by resource name, with pushed claims.
	kc := func(v url.Values) url.Values {
		v.Set("claim_token", patient)
		v.Set("claim_token_format", claimtoken.FormatIDToken)
		return v
	}
	base := kc(url.Values{"audience": {"rs-a"}, "permission": {"photos#view"}})
	r := f.Grant(base)
	if r.Status != 200 {
		t.Fatalf("ticketless: %d %s", r.Status, r.Body)
	}
	if got := f.RPTPermissions(r.JSON(t)["access_token"].(string)); strings.Join(got[f.Photos], ",") != "view" {
		t.Fatalf("ticketless permissions %v", got)
	}
	dec := kc(url.Values{"audience": {"rs-a"}, "permission": {f.Photos + "#view"}, "response_mode": {"decision"}})
	if r := f.Grant(dec); r.Status != 200 || string(r.Body) != `{"result":true}` {
		t.Fatalf("decision: %d %s", r.Status, r.Body)
	}
	perms := kc(url.Values{"audience": {"rs-a"}, "permission": {"photos", "labs#read"}, "response_mode": {"permissions"}})
	if r := f.Grant(perms); r.Status != 200 || !strings.Contains(string(r.Body), `"rsid":"`+f.Photos+`"`) || strings.Contains(string(r.Body), f.Labs) {
		t.Fatalf("permissions: %d %s", r.Status, r.Body)
	}
	denied := kc(url.Values{"audience": {"rs-a"}, "permission": {"labs#read"}, "response_mode": {"decision"}})
	authztest.ExpectError(t, f.Grant(denied), 403, "access_denied")
	// Without claims there is no ticket to rotate for need_info: access_denied.
	authztest.ExpectError(t, f.Grant(url.Values{"audience": {"rs-a"}, "permission": {"labs#read"}}), 403, "access_denied")
	authztest.ExpectError(t, f.Grant(url.Values{"audience": {"rs-a"}, "permission": {"labs"}, "response_mode": {"nope"}}), 400, "invalid_request")
	// A name that matches nothing is answered as a refusal is: the answer
	// tells nothing about which resources exist.
	authztest.ExpectError(t, f.Grant(url.Values{"audience": {"rs-a"}, "permission": {"nothing#read"}}), 403, "access_denied")
	authztest.ExpectError(t, f.Grant(url.Values{"audience": {"app"}, "permission": {"photos"}}), 400, "invalid_request")
}

func TestRPTRevocationAndIntrospection(t *testing.T) {
	f := authztest.NewGrantFixture(t, nil)
	doc := f.IDToken(map[string]any{"sub": "doc-1", "email": "doctor@clinic.example"})
	r := f.Grant(authztest.WithClaims(f.LabsTicket("read"), doc))
	resp := r.JSON(t)
	rpt, refresh, pct := resp["access_token"].(string), resp["refresh_token"].(string), resp["pct"].(string)

	// Another resource server sees nothing.
	patB := f.PAT("rs-b", "secret-b")
	if r := f.Do("POST", authz.PathIntrospect, url.Values{"token": {rpt}}, "Authorization", authztest.Bearer(patB)); string(r.Body) != `{"active":false}` {
		t.Fatalf("rs-b introspects rs-a's RPT: %s", r.Body)
	}
	// An RPT is not a PAT.
	authztest.ExpectError(t, f.Do("GET", authz.PathResourceSet, nil, "Authorization", authztest.Bearer(rpt)), 401, "invalid_token")

	app := []string{"Authorization", authztest.BasicAuth("app", "app secret:with&chars")}
	// Another client cannot revoke it.
	f.Do("POST", authz.PathRevoke, url.Values{"token": {rpt}}, "Authorization", authztest.BasicAuth("scoped", "scoped-secret"))
	f.RPTPermissions(rpt)
	if r := f.Do("POST", authz.PathRevoke, url.Values{"token": {rpt}}, app...); r.Status != 200 {
		t.Fatalf("revoke: %d", r.Status)
	}
	if r := f.Do("POST", authz.PathIntrospect, url.Values{"token": {rpt}}, "Authorization", authztest.Bearer(f.AlicePAT)); string(r.Body) != `{"active":false}` {
		t.Fatalf("revoked authz.RPT active: %s", r.Body)
	}
	if _, err := f.Server.VerifyRPT(t.Context(), rpt, "rs-a"); err == nil {
		t.Fatal("VerifyRPT accepted a revoked RPT")
	}
	// Revoking the refresh token and the PCT.
	f.Do("POST", authz.PathRevoke, url.Values{"token": {refresh}, "token_type_hint": {"refresh_token"}}, app...)
	authztest.ExpectError(t, f.Do("POST", authz.PathToken, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh}}, app...), 400, "invalid_grant")
	f.Do("POST", authz.PathRevoke, url.Values{"token": {pct}, "token_type_hint": {"pct"}}, app...)
	authztest.ExpectUMAError(t, f.Grant(url.Values{"ticket": {f.LabsTicket("read")}, "pct": {pct}}), "need_info", true)

	// Expired RPTs are inactive.
	r = f.Grant(authztest.WithClaims(f.LabsTicket("read"), f.IDToken(map[string]any{"sub": "doc-1", "email": "doctor@clinic.example"})))
	rpt = r.JSON(t)["access_token"].(string)
	f.Clock.Advance(authz.DefaultRPTTTL)
	if r := f.Do("POST", authz.PathIntrospect, url.Values{"token": {rpt}}, "Authorization", authztest.Bearer(f.AlicePAT)); string(r.Body) != `{"active":false}` {
		t.Fatalf("expired authz.RPT active: %s", r.Body)
	}
}
