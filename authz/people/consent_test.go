package people_test

import (
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/caddy-uma/caddy-uma/authz"
	"github.com/caddy-uma/caddy-uma/authz/authztest"
)

// authorizeQuery is a valid authorization request of rs-web.
func authorizeQuery(challenge string) url.Values {
	return url.Values{
		"response_type": {"code"}, "client_id": {"rs-web"}, "redirect_uri": {"https://rs.example/cb"},
		"scope": {"uma_protection"}, "state": {"st-1"}, "code_challenge": {challenge}, "code_challenge_method": {"S256"},
	}
}

// consent logs alice in, asks for consent and allows it; it returns the
// code.
func consent(t *testing.T, b *authztest.Browser, q url.Values) string {
	t.Helper()
	page := b.Get(authz.PathAuthorize + "?" + q.Encode())
	authztest.ExpectPage(t, page, 200, "Allow rs-web to protect your resources?", "uma_protection")
	if csp := page.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "form-action 'self' https://rs.example") ||
		!strings.Contains(csp, "frame-ancestors 'none'") {
		t.Fatalf("consent page CSP: %s", csp)
	}
	form := url.Values{"csrf": {authztest.CSRF(t, page)}, "decision": {"allow"}}
	for k, v := range q {
		form[k] = v
	}
	loc := authztest.Location(t, b.Post(authz.PathAuthorize, form))
	if loc.Scheme+"://"+loc.Host+loc.Path != "https://rs.example/cb" || loc.Query().Get("state") != q.Get("state") ||
		loc.Query().Get("iss") != b.AS.Issuer || loc.Query().Get("code") == "" {
		t.Fatalf("consent redirect: %s", loc)
	}
	return loc.Query().Get("code")
}

func (f *fixture) redeem(client, secret string, form url.Values) authztest.Response {
	f.T.Helper()
	form.Set("grant_type", "authorization_code")
	return f.Do("POST", authz.PathToken, form, "Authorization", authztest.BasicAuth(client, secret))
}

func TestAuthorizationCodeFlow(t *testing.T) {
	f := newFixture(t, nil)
	b := f.Browser()
	verifier, challenge := pkce()
	q := authorizeQuery(challenge)

	// Not logged in: to the login page, and back.
	r := b.Get(authz.PathAuthorize + "?" + q.Encode())
	loc := authztest.Location(t, r)
	if loc.Path != "/uma/login" || !strings.HasPrefix(loc.Query().Get("next"), "/uma/authorize?") {
		t.Fatalf("authorize without login: %s", loc)
	}
	b.Login("alice", authztest.AlicePassword)
	code := consent(t, b, q)

	// The code needs the client's credentials, its verifier and redirect URI.
	authztest.ExpectError(t, f.redeem("rs-web", "rs-web-secret", url.Values{"code": {code}, "redirect_uri": {"https://rs.example/cb"}}), 400, "invalid_request")
	authztest.ExpectError(t, f.redeem("rs-web", "wrong", url.Values{"code": {code}, "code_verifier": {verifier}}), 401, "invalid_client")
	// A wrong verifier spends the code (single use).
	wrong, _ := pkce()
	authztest.ExpectError(t, f.redeem("rs-web", "rs-web-secret", url.Values{"code": {code}, "code_verifier": {wrong}, "redirect_uri": {"https://rs.example/cb"}}), 400, "invalid_grant")
	authztest.ExpectError(t, f.redeem("rs-web", "rs-web-secret", url.Values{"code": {code}, "code_verifier": {verifier}, "redirect_uri": {"https://rs.example/cb"}}), 400, "invalid_grant")

	// A good redemption: a PAT for alice; resources registered with it are hers.
	code = consent(t, b, q)
	authztest.ExpectError(t, f.redeem("rs-web", "rs-web-secret", url.Values{"code": {code}, "code_verifier": {verifier}, "redirect_uri": {"http://127.0.0.1:9/cb"}}), 400, "invalid_grant")
	code = consent(t, b, q)
	ok := f.redeem("rs-web", "rs-web-secret", url.Values{"code": {code}, "code_verifier": {verifier}, "redirect_uri": {"https://rs.example/cb"}})
	if ok.Status != 200 {
		t.Fatalf("redeeming: %d %s", ok.Status, ok.Body)
	}
	tok := ok.JSON(t)
	if tok["scope"] != "uma_protection" || tok["token_type"] != "Bearer" {
		t.Fatalf("PAT response: %v", tok)
	}
	pat := tok["access_token"].(string)
	id := f.Register(pat, `{"name":"diary","resource_scopes":["read"]}`)
	res, err := f.Store.GetResource(t.Context(), id)
	if err != nil || res.Owner != "alice" || res.ResourceServer != "rs-web" {
		t.Fatalf("resource registered with a consented PAT: %+v %v", res, err)
	}
	// Single use.
	authztest.ExpectError(t, f.redeem("rs-web", "rs-web-secret", url.Values{"code": {code}, "code_verifier": {verifier}, "redirect_uri": {"https://rs.example/cb"}}), 400, "invalid_grant")

	// Short-lived: a minute.
	code = consent(t, b, q)
	f.Clock.Advance(authz.AuthorizationCodeTTL + time.Second)
	authztest.ExpectError(t, f.redeem("rs-web", "rs-web-secret", url.Values{"code": {code}, "code_verifier": {verifier}, "redirect_uri": {"https://rs.example/cb"}}), 400, "invalid_grant")

	// Another client cannot redeem it.
	code = consent(t, b, q)
	authztest.ExpectError(t, f.redeem("rs-a", "secret-a", url.Values{"code": {code}, "code_verifier": {verifier}}), 400, "invalid_grant")

	// Denying sends access_denied back.
	page := b.Get(authz.PathAuthorize + "?" + q.Encode())
	form := url.Values{"csrf": {authztest.CSRF(t, page)}, "decision": {"deny"}}
	for k, v := range q {
		form[k] = v
	}
	if loc := authztest.Location(t, b.Post(authz.PathAuthorize, form)); loc.Query().Get("error") != "access_denied" || loc.Query().Get("code") != "" {
		t.Fatalf("deny: %s", loc)
	}
	// The consent POST needs the CSRF token.
	form.Set("decision", "allow")
	form.Del("csrf")
	authztest.ExpectErrorPage(t, b.Post(authz.PathAuthorize, form), 403)
}

func TestAuthorizationRequestErrors(t *testing.T) {
	f := newFixture(t, nil)
	b := f.Browser()
	b.Login("alice", authztest.AlicePassword)
	_, challenge := pkce()

	// Before the client and redirect URI are trusted: an error page, never a redirect.
	for name, change := range map[string]func(url.Values){
		"unknown client":         func(q url.Values) { q.Set("client_id", "nobody") },
		"no client":              func(q url.Values) { q.Del("client_id") },
		"unregistered redirect":  func(q url.Values) { q.Set("redirect_uri", "https://evil.example/cb") },
		"prefix of a registered": func(q url.Values) { q.Set("redirect_uri", "https://rs.example/cb/more") },
		"redirect with a query":  func(q url.Values) { q.Set("redirect_uri", "https://rs.example/cb?x=1") },
		"no redirect, several":   func(q url.Values) { q.Del("redirect_uri") },
		"repeated redirect":      func(q url.Values) { q.Add("redirect_uri", "https://rs.example/cb") },
	} {
		q := authorizeQuery(challenge)
		change(q)
		r := b.Get(authz.PathAuthorize + "?" + q.Encode())
		if r.Status != 400 || r.Header.Get("Location") != "" {
			t.Errorf("%s: %d %s", name, r.Status, r.Header.Get("Location"))
		}
	}

	// After: a redirect with the error and the state.
	for name, c := range map[string]struct {
		change func(url.Values)
		code   string
	}{
		"no PKCE":               {func(q url.Values) { q.Del("code_challenge"); q.Del("code_challenge_method") }, "invalid_request"},
		"plain PKCE":            {func(q url.Values) { q.Set("code_challenge_method", "plain") }, "invalid_request"},
		"short challenge":       {func(q url.Values) { q.Set("code_challenge", "abc") }, "invalid_request"},
		"token response":        {func(q url.Values) { q.Set("response_type", "token") }, "unsupported_response_type"},
		"other scope":           {func(q url.Values) { q.Set("scope", "uma_protection openid") }, "invalid_scope"},
		"not an RS":             {func(q url.Values) { q.Set("client_id", "claims-app"); q.Del("redirect_uri") }, ""},
		"repeated state":        {func(q url.Values) { q.Add("state", "again") }, "invalid_request"},
		"bad scope, one URI":    {func(q url.Values) { q.Set("client_id", "rs-one"); q.Del("redirect_uri"); q.Set("scope", "x") }, "invalid_scope"},
		"not a resource server": {func(q url.Values) { q.Set("client_id", "web-app"); q.Set("redirect_uri", "https://web.example/cb") }, "unauthorized_client"},
	} {
		q := authorizeQuery(challenge)
		c.change(q)
		r := b.Get(authz.PathAuthorize + "?" + q.Encode())
		if c.code == "" { // claims-app registered no redirect URI: error page
			authztest.ExpectErrorPage(t, r, 400)
			continue
		}
		loc := authztest.Location(t, r)
		if loc.Query().Get("error") != c.code || loc.Query().Get("code") != "" {
			t.Errorf("%s: %s", name, loc)
		}
		if name != "repeated state" && loc.Query().Get("state") != "st-1" {
			t.Errorf("%s: state not returned: %s", name, loc)
		}
	}

	// One registered redirect URI may be left out.
	q := authorizeQuery(challenge)
	q.Set("client_id", "rs-one")
	q.Del("redirect_uri")
	authztest.ExpectPage(t, b.Get(authz.PathAuthorize+"?"+q.Encode()), 200, "Allow rs-one")

	// Without login at the AS, the code grant does not exist.
	as := authztest.New(t, nil)
	authztest.ExpectError(t, as.Do("POST", authz.PathToken, url.Values{"grant_type": {"authorization_code"}, "code": {"x"}}, "Authorization", authztest.BasicAuth("rs-a", "secret-a")), 400, "unsupported_grant_type")
}
