package people_test

import (
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/caddy-uma/caddy-uma/authz"
	"github.com/caddy-uma/caddy-uma/authz/authztest"
	"github.com/caddy-uma/caddy-uma/authz/people"
)

// grantAs posts a UMA grant request as a client.
func (f *fixture) grantAs(client, secret string, params url.Values) authztest.Response {
	f.T.Helper()
	params.Set("grant_type", authz.GrantTypeUMATicket)
	return f.Do("POST", authz.PathToken, params, "Authorization", authztest.BasicAuth(client, secret))
}

// needInfo runs a grant without claims as claims-app and returns the
// rotated ticket, checking redirect_user.
func (f *fixture) needInfo(tk string) string {
	f.T.Helper()
	m := authztest.ExpectUMAError(f.T, f.grantAs("claims-app", "claims-app-secret", url.Values{"ticket": {tk}}), "need_info", true)
	if m["redirect_user"] != f.Issuer+authz.PathClaims {
		f.T.Fatalf("redirect_user = %v", m["redirect_user"])
	}
	return m["ticket"].(string)
}

// gatherClaims walks a browser through the claims interaction endpoint as
// a local user and returns where the browser is sent back to.
func (f *fixture) gatherClaims(b *authztest.Browser, q url.Values, user, password, decision string, remember bool) *url.URL {
	f.T.Helper()
	t := f.T
	start := authztest.Location(t, b.Get(authz.PathClaims+"?"+q.Encode()))
	if start.Path != "/uma/claims" || start.Query().Get("interaction") == "" || start.Query().Get("ticket") != "" {
		t.Fatalf("claims interaction start: %s", start)
	}
	page := b.Get(start.String())
	if page.Status == 303 {
		login := authztest.Location(t, page)
		if login.Path != "/uma/login" || login.Query().Get("next") != start.String() {
			t.Fatalf("claims interaction login: %s", login)
		}
		lp := b.Get(login.String())
		r := b.Post(people.PathLogin, url.Values{"csrf": {authztest.CSRF(t, lp)}, "username": {user}, "password": {password}, "next": {login.Query().Get("next")}})
		if back := authztest.Location(t, r); back.String() != start.String() {
			t.Fatalf("after login: %s, want %s", back, start)
		}
		page = b.Get(start.String())
	}
	authztest.ExpectPage(t, page, 200, "asks who you are", "labs")
	form := url.Values{"csrf": {authztest.CSRF(t, page)}, "interaction": {start.Query().Get("interaction")}, "decision": {decision}}
	if remember {
		form.Set("remember", "yes")
	}
	return authztest.Location(t, b.Post(authz.PathClaims, form))
}

func TestClaimsInteraction(t *testing.T) {
	f := newFixture(t, nil)
	b := f.Browser()

	// need_info points at the claims interaction endpoint.
	tk := f.needInfo(f.LabsTicket("read"))
	back := f.gatherClaims(b, url.Values{"client_id": {"claims-app"}, "ticket": {tk}, "state": {"xyz"}}, "bob", authztest.BobPassword, "share", true)
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
	if r.Status != 200 {
		t.Fatalf("grant after claims gathering: %d %s", r.Status, r.Body)
	}
	tok := r.JSON(t)
	if tok["pct"] == nil {
		t.Fatalf("no PCT after consent: %s", r.Body)
	}
	if perms := f.RPTPermissions(tok["access_token"].(string)); !slices.Equal(perms[f.Labs], []string{"read"}) {
		t.Fatalf("RPT permissions: %v", perms)
	}
	// The PCT works without the browser.
	r = f.grantAs("claims-app", "claims-app-secret", url.Values{"ticket": {f.LabsTicket("read")}, "pct": {tok["pct"].(string)}})
	if r.Status != 200 {
		t.Fatalf("grant with the PCT: %d %s", r.Status, r.Body)
	}
	// The ticket presented at the endpoint was consumed.
	q := url.Values{"client_id": {"claims-app"}, "ticket": {tk}, "state": {"again"}}
	loc := authztest.Location(t, b.Get(authz.PathClaims+"?"+q.Encode()))
	if loc.Host != "app.example" || loc.Query().Get("error") != "invalid_request" || loc.Query().Get("state") != "again" || loc.Query().Get("ticket") != "" {
		t.Fatalf("replayed ticket: %s", loc)
	}

	// Without consent to keep the claims: no PCT.
	tk = f.needInfo(f.LabsTicket("read"))
	back = f.gatherClaims(b, url.Values{"client_id": {"claims-app"}, "ticket": {tk}}, "bob", authztest.BobPassword, "share", false)
	if back.Query().Has("state") {
		t.Fatalf("state returned though none was sent: %s", back)
	}
	r = f.grantAs("claims-app", "claims-app-secret", url.Values{"ticket": {back.Query().Get("ticket")}})
	if r.Status != 200 || r.JSON(t)["pct"] != nil {
		t.Fatalf("grant without consent to keep claims: %d %s", r.Status, r.Body)
	}

	// Cancel: access_denied with the state.
	tk = f.needInfo(f.LabsTicket("read"))
	back = f.gatherClaims(b, url.Values{"client_id": {"claims-app"}, "ticket": {tk}, "state": {"c"}}, "bob", authztest.BobPassword, "cancel", false)
	if back.Query().Get("error") != "access_denied" || back.Query().Get("state") != "c" || back.Query().Get("ticket") != "" {
		t.Fatalf("cancel: %s", back)
	}
}

func TestClaimsInteractionErrors(t *testing.T) {
	f := newFixture(t, nil)
	b := f.Browser()
	tk := f.needInfo(f.LabsTicket("read")) // bound to claims-app

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
		r := b.Get(authz.PathClaims + "?" + q.Encode())
		if r.Status != 400 || r.Header.Get("Location") != "" || !strings.Contains(string(r.Body), "cannot be accepted") {
			t.Errorf("%s: %d %q", name, r.Status, r.Header.Get("Location"))
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
		loc := authztest.Location(t, b.Get(authz.PathClaims+"?"+c.q.Encode()))
		if loc.Host != c.where || loc.Query().Get("error") != "invalid_request" || loc.Query().Get("state") != "s1" {
			t.Errorf("%s: %s", name, loc)
		}
	}

	// The ticket survived all that: its client can still use it.
	start := authztest.Location(t, b.Get(authz.PathClaims+"?"+url.Values{"client_id": {"claims-app"}, "ticket": {tk}}.Encode()))
	if start.Query().Get("interaction") == "" {
		t.Fatalf("the ticket was spent by refused requests: %s", start)
	}

	// The interaction belongs to the browser that started it.
	other := f.Browser()
	other.Login("bob", authztest.BobPassword)
	authztest.ExpectErrorPage(t, other.Get(start.String()), 400, "expired")
	b.Login("bob", authztest.BobPassword)
	page := b.Get(start.String())
	authztest.ExpectPage(t, page, 200, "asks who you are")
	if csp := page.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "form-action 'self' https://app.example") {
		t.Fatalf("claims page CSP: %s", csp)
	}
	id := start.Query().Get("interaction")
	// CSRF: no token, another session's token.
	authztest.ExpectErrorPage(t, b.Post(authz.PathClaims, url.Values{"interaction": {id}, "decision": {"share"}}), 403)
	authztest.ExpectErrorPage(t, b.Post(authz.PathClaims, url.Values{"csrf": {other.CSRF()}, "interaction": {id}, "decision": {"share"}}), 403)
	// Another browser, even with its own session's token, cannot answer it.
	authztest.ExpectErrorPage(t, other.Post(authz.PathClaims, url.Values{"csrf": {other.CSRF()}, "interaction": {id}, "decision": {"share"}}), 400)
	// Answered once, then gone.
	if loc := authztest.Location(t, b.Post(authz.PathClaims, url.Values{"csrf": {authztest.CSRF(t, page)}, "interaction": {id}, "decision": {"share"}})); loc.Query().Get("ticket") == "" {
		t.Fatalf("answer: %s", loc)
	}
	authztest.ExpectErrorPage(t, b.Post(authz.PathClaims, url.Values{"csrf": {authztest.CSRF(t, page)}, "interaction": {id}, "decision": {"share"}}), 400)
}

func TestAnonymousRequestGetsNeedInfo(t *testing.T) {
	// Owner carol has no rules, only a share with bob: a request with no
	// claims is sent to claims gathering rather than denied.
	f := newFixture(t, nil)
	pat, err := f.Server.IssuePAT(t.Context(), "rs-a", "carol")
	if err != nil {
		t.Fatal(err)
	}
	doc := f.Register(pat, `{"name":"labs","resource_scopes":["read","write"]}`)
	if _, err := f.Server.AddShare(t.Context(), authz.Share{Owner: "carol", ResourceID: doc, Subject: "bob", Scopes: []string{"read"}}); err != nil {
		t.Fatal(err)
	}
	tr := f.Do("POST", authz.PathPermission, `{"resource_id":"`+doc+`","resource_scopes":["read"]}`, "Authorization", authztest.Bearer(pat))
	tk := tr.JSON(t)["ticket"].(string)
	tk = f.needInfo(tk)
	back := f.gatherClaims(f.Browser(), url.Values{"client_id": {"claims-app"}, "ticket": {tk}}, "bob", authztest.BobPassword, "share", false)
	r := f.grantAs("claims-app", "claims-app-secret", url.Values{"ticket": {back.Query().Get("ticket")}})
	if r.Status != 200 {
		t.Fatalf("grant: %d %s", r.Status, r.Body)
	}
	// An identified person with no share: request_denied, as before.
	tr = f.Do("POST", authz.PathPermission, `{"resource_id":"`+doc+`","resource_scopes":["read"]}`, "Authorization", authztest.Bearer(pat))
	tk = f.needInfo(tr.JSON(t)["ticket"].(string))
	back = f.gatherClaims(f.Browser(), url.Values{"client_id": {"claims-app"}, "ticket": {tk}}, "alice", authztest.AlicePassword, "share", false)
	authztest.ExpectUMAError(t, f.grantAs("claims-app", "claims-app-secret", url.Values{"ticket": {back.Query().Get("ticket")}}), "request_denied", false)
}
