package authz

import (
	"net/url"
	"slices"
	"strings"
	"testing"
)

// grantAs posts a UMA grant request as a client.
func (f *peopleFixture) grantAs(client, secret string, params url.Values) response {
	f.t.Helper()
	params.Set("grant_type", GrantTypeUMATicket)
	return f.do("POST", PathToken, params, "Authorization", basicAuth(client, secret))
}

// needInfo runs a grant without claims as claims-app and returns the
// rotated ticket, checking redirect_user.
func (f *peopleFixture) needInfo(tk string) string {
	f.t.Helper()
	m := expectUMAError(f.t, f.grantAs("claims-app", "claims-app-secret", url.Values{"ticket": {tk}}), "need_info", true)
	if m["redirect_user"] != f.issuer+PathClaims {
		f.t.Fatalf("redirect_user = %v", m["redirect_user"])
	}
	return m["ticket"].(string)
}

// gatherClaims walks a browser through the claims interaction endpoint as
// a local user and returns where the browser is sent back to.
func (f *peopleFixture) gatherClaims(b *browser, q url.Values, user, password, decision string, remember bool) *url.URL {
	f.t.Helper()
	t := f.t
	start := location(t, b.get(PathClaims+"?"+q.Encode()))
	if start.Path != "/uma/claims" || start.Query().Get("interaction") == "" || start.Query().Get("ticket") != "" {
		t.Fatalf("claims interaction start: %s", start)
	}
	page := b.get(start.String())
	if page.status == 303 {
		login := location(t, page)
		if login.Path != "/uma/login" || login.Query().Get("next") != start.String() {
			t.Fatalf("claims interaction login: %s", login)
		}
		lp := b.get(login.String())
		r := b.post(PathLogin, url.Values{"csrf": {csrf(t, lp)}, "username": {user}, "password": {password}, "next": {login.Query().Get("next")}})
		if back := location(t, r); back.String() != start.String() {
			t.Fatalf("after login: %s, want %s", back, start)
		}
		page = b.get(start.String())
	}
	expectPage(t, page, 200, "asks who you are", "labs")
	form := url.Values{"csrf": {csrf(t, page)}, "interaction": {start.Query().Get("interaction")}, "decision": {decision}}
	if remember {
		form.Set("remember", "yes")
	}
	return location(t, b.post(PathClaims, form))
}

func TestClaimsInteraction(t *testing.T) {
	f := newPeopleFixture(t, nil)
	b := f.browser()

	// need_info points at the claims interaction endpoint.
	tk := f.needInfo(f.labsTicket("read"))
	back := f.gatherClaims(b, url.Values{"client_id": {"claims-app"}, "ticket": {tk}, "state": {"xyz"}}, "bob", bobPassword, "share", true)
	if back.Scheme+"://"+back.Host+back.Path != "https://app.example/claims" {
		t.Fatalf("sent back to %s", back)
	}
	got := back.Query()
	keys := make([]string, 0, len(got))
	for k := range got {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if !slices.Equal(keys, []string{"state", "ticket", "x"}) || got.Get("state") != "xyz" || got.Get("x") != "1" || got.Get("ticket") == tk {
		t.Fatalf("redirect back: %s (only ticket and state, and the URI's own query)", back)
	}

	// The next token request uses bob's claims (group family: read), and
	// bob agreed to keep them: a PCT.
	r := f.grantAs("claims-app", "claims-app-secret", url.Values{"ticket": {got.Get("ticket")}})
	if r.status != 200 {
		t.Fatalf("grant after claims gathering: %d %s", r.status, r.body)
	}
	tok := r.json(t)
	if tok["pct"] == nil {
		t.Fatalf("no PCT after consent: %s", r.body)
	}
	if perms := f.rptPermissions(tok["access_token"].(string)); !slices.Equal(perms[f.labs], []string{"read"}) {
		t.Fatalf("RPT permissions: %v", perms)
	}
	// The PCT works without the browser.
	r = f.grantAs("claims-app", "claims-app-secret", url.Values{"ticket": {f.labsTicket("read")}, "pct": {tok["pct"].(string)}})
	if r.status != 200 {
		t.Fatalf("grant with the PCT: %d %s", r.status, r.body)
	}
	// The ticket presented at the endpoint was consumed.
	q := url.Values{"client_id": {"claims-app"}, "ticket": {tk}, "state": {"again"}}
	loc := location(t, b.get(PathClaims+"?"+q.Encode()))
	if loc.Host != "app.example" || loc.Query().Get("error") != "invalid_request" || loc.Query().Get("state") != "again" || loc.Query().Get("ticket") != "" {
		t.Fatalf("replayed ticket: %s", loc)
	}

	// Without consent to keep the claims: no PCT.
	tk = f.needInfo(f.labsTicket("read"))
	back = f.gatherClaims(b, url.Values{"client_id": {"claims-app"}, "ticket": {tk}}, "bob", bobPassword, "share", false)
	if back.Query().Has("state") {
		t.Fatalf("state returned though none was sent: %s", back)
	}
	r = f.grantAs("claims-app", "claims-app-secret", url.Values{"ticket": {back.Query().Get("ticket")}})
	if r.status != 200 || r.json(t)["pct"] != nil {
		t.Fatalf("grant without consent to keep claims: %d %s", r.status, r.body)
	}

	// Cancel: access_denied with the state.
	tk = f.needInfo(f.labsTicket("read"))
	back = f.gatherClaims(b, url.Values{"client_id": {"claims-app"}, "ticket": {tk}, "state": {"c"}}, "bob", bobPassword, "cancel", false)
	if back.Query().Get("error") != "access_denied" || back.Query().Get("state") != "c" || back.Query().Get("ticket") != "" {
		t.Fatalf("cancel: %s", back)
	}
}

func TestClaimsInteractionErrors(t *testing.T) {
	f := newPeopleFixture(t, nil)
	b := f.browser()
	tk := f.needInfo(f.labsTicket("read")) // bound to claims-app

	// Before the client is trusted: an error page, never a redirect, and
	// the ticket is not consumed.
	for name, q := range map[string]url.Values{
		"unknown client":              {"client_id": {"nobody"}, "ticket": {tk}, "claims_redirect_uri": {"https://app.example/claims?x=1"}},
		"no client":                   {"ticket": {tk}, "claims_redirect_uri": {"https://app.example/claims?x=1"}},
		"unregistered redirect":       {"client_id": {"claims-app"}, "ticket": {tk}, "claims_redirect_uri": {"https://evil.example/claims"}},
		"registered, another query":   {"client_id": {"claims-app"}, "ticket": {tk}, "claims_redirect_uri": {"https://app.example/claims?x=2"}},
		"several registered, omitted": {"client_id": {"two-claims"}, "ticket": {tk}},
		"none registered":             {"client_id": {"no-claims"}, "ticket": {tk}},
		"only OAuth redirect URIs":    {"client_id": {"web-app"}, "ticket": {tk}, "claims_redirect_uri": {"https://web.example/cb"}},
		"repeated redirect":           {"client_id": {"claims-app"}, "ticket": {tk}, "claims_redirect_uri": {"https://app.example/claims?x=1", "https://evil.example/"}},
	} {
		r := b.get(PathClaims + "?" + q.Encode())
		if r.status != 400 || r.header.Get("Location") != "" || !strings.Contains(string(r.body), "cannot be accepted") {
			t.Errorf("%s: %d %q", name, r.status, r.header.Get("Location"))
		}
	}

	// After: back to the client with the error and the state.
	for name, c := range map[string]struct {
		q     url.Values
		where string
	}{
		"no ticket":      {url.Values{"client_id": {"claims-app"}, "state": {"s1"}}, "app.example"},
		"garbage ticket": {url.Values{"client_id": {"claims-app"}, "ticket": {"garbage"}, "state": {"s1"}}, "app.example"},
		"another client's ticket": {url.Values{"client_id": {"two-claims"}, "ticket": {tk}, "claims_redirect_uri": {"https://two.example/a"}, "state": {"s1"}},
			"two.example"},
	} {
		loc := location(t, b.get(PathClaims+"?"+c.q.Encode()))
		if loc.Host != c.where || loc.Query().Get("error") != "invalid_request" || loc.Query().Get("state") != "s1" {
			t.Errorf("%s: %s", name, loc)
		}
	}

	// The ticket survived all that: its client can still use it.
	start := location(t, b.get(PathClaims+"?"+url.Values{"client_id": {"claims-app"}, "ticket": {tk}}.Encode()))
	if start.Query().Get("interaction") == "" {
		t.Fatalf("the ticket was spent by refused requests: %s", start)
	}

	// The interaction belongs to the browser that started it.
	other := f.browser()
	other.login("bob", bobPassword)
	expectErrorPage(t, other.get(start.String()), 400, "expired")
	b.login("bob", bobPassword)
	page := b.get(start.String())
	expectPage(t, page, 200, "asks who you are")
	if csp := page.header.Get("Content-Security-Policy"); !strings.Contains(csp, "form-action 'self' https://app.example") {
		t.Fatalf("claims page CSP: %s", csp)
	}
	id := start.Query().Get("interaction")
	// CSRF: no token, another session's token.
	expectErrorPage(t, b.post(PathClaims, url.Values{"interaction": {id}, "decision": {"share"}}), 403)
	expectErrorPage(t, b.post(PathClaims, url.Values{"csrf": {other.csrf()}, "interaction": {id}, "decision": {"share"}}), 403)
	// Another browser, even with its own session's token, cannot answer it.
	expectErrorPage(t, other.post(PathClaims, url.Values{"csrf": {other.csrf()}, "interaction": {id}, "decision": {"share"}}), 400)
	// Answered once, then gone.
	if loc := location(t, b.post(PathClaims, url.Values{"csrf": {csrf(t, page)}, "interaction": {id}, "decision": {"share"}})); loc.Query().Get("ticket") == "" {
		t.Fatalf("answer: %s", loc)
	}
	expectErrorPage(t, b.post(PathClaims, url.Values{"csrf": {csrf(t, page)}, "interaction": {id}, "decision": {"share"}}), 400)
}

func TestAnonymousRequestGetsNeedInfo(t *testing.T) {
	// Owner carol has no rules, only a share with bob: a request with no
	// claims is sent to claims gathering rather than denied.
	f := newPeopleFixture(t, nil)
	pat, err := f.srv.IssuePAT(t.Context(), "rs-a", "carol")
	if err != nil {
		t.Fatal(err)
	}
	doc := f.register(pat, `{"name":"labs","resource_scopes":["read","write"]}`)
	if err := f.srv.AddShareForTest(t, "carol", doc, "bob", "read"); err != nil {
		t.Fatal(err)
	}
	tr := f.do("POST", PathPermission, `{"resource_id":"`+doc+`","resource_scopes":["read"]}`, "Authorization", bearer(pat))
	tk := tr.json(t)["ticket"].(string)
	tk = f.needInfo(tk)
	back := f.gatherClaims(f.browser(), url.Values{"client_id": {"claims-app"}, "ticket": {tk}}, "bob", bobPassword, "share", false)
	r := f.grantAs("claims-app", "claims-app-secret", url.Values{"ticket": {back.Query().Get("ticket")}})
	if r.status != 200 {
		t.Fatalf("grant: %d %s", r.status, r.body)
	}
	// An identified person with no share: request_denied, as before.
	tr = f.do("POST", PathPermission, `{"resource_id":"`+doc+`","resource_scopes":["read"]}`, "Authorization", bearer(pat))
	tk = f.needInfo(tr.json(t)["ticket"].(string))
	back = f.gatherClaims(f.browser(), url.Values{"client_id": {"claims-app"}, "ticket": {tk}}, "alice", alicePassword, "share", false)
	expectUMAError(t, f.grantAs("claims-app", "claims-app-secret", url.Values{"ticket": {back.Query().Get("ticket")}}), "request_denied", false)
}
