package authz

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

// sessionCookieOf returns the session cookie a response sets.
func sessionCookieOf(t *testing.T, h http.Header) *http.Cookie {
	t.Helper()
	var last *http.Cookie
	for _, c := range (&http.Response{Header: h}).Cookies() {
		if c.Name == sessionCookie {
			last = c
		}
	}
	if last != nil {
		return last
	}
	t.Fatalf("no %s cookie set: %v", sessionCookie, h["Set-Cookie"])
	return nil
}

func TestLoginSessionCookie(t *testing.T) {
	f := newPeopleFixture(t, nil)
	b := f.browser()
	page := b.get(PathLogin)
	expectPage(t, page, 200, `name="username"`, `name="password"`)
	anon := sessionCookieOf(t, page.header)
	if !anon.HttpOnly || anon.SameSite != http.SameSiteLaxMode || anon.Path != "/uma" || anon.Secure {
		t.Fatalf("anonymous cookie flags: %+v (http on loopback: not Secure)", anon)
	}
	for _, h := range []string{"Content-Security-Policy", "X-Frame-Options", "Referrer-Policy"} {
		if page.header.Get(h) == "" {
			t.Errorf("login page without %s", h)
		}
	}
	if cc := page.header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control = %q", cc)
	}

	r := b.post(PathLogin, url.Values{"csrf": {csrf(t, page)}, "username": {"alice"}, "password": {alicePassword}, "next": {"/uma/console/history"}})
	if loc := location(t, r); loc.Path != "/uma/console/history" {
		t.Fatalf("after login: %s", loc)
	}
	logged := sessionCookieOf(t, r.header)
	if logged.Value == anon.Value {
		t.Fatal("the session id was not renewed at login")
	}
	if !logged.HttpOnly || logged.SameSite != http.SameSiteLaxMode || logged.Path != "/uma" || logged.MaxAge <= 0 {
		t.Fatalf("session cookie flags: %+v", logged)
	}
	// The anonymous session is gone: its id is worth nothing.
	if _, err := f.store.Get(t.Context(), nsSession, tokenKey(anon.Value)); err == nil {
		t.Fatal("the anonymous session survived the login")
	}
	expectPage(t, b.get(PathConsole+"/resources"), 200, "Alice Liddell", "labs")

	// Logout needs the CSRF token, and ends the session.
	expectErrorPage(t, b.post(PathLogout, url.Values{}), 403)
	expectPage(t, b.get(PathConsole+"/resources"), 200)
	r = b.post(PathLogout, url.Values{"csrf": {b.csrf()}})
	if loc := location(t, r); loc.Path != "/uma/login" {
		t.Fatalf("after logout: %s", loc)
	}
	if c := sessionCookieOf(t, r.header); c.MaxAge >= 0 {
		t.Fatalf("logout did not delete the cookie: %+v", c)
	}
	if _, err := f.store.Get(t.Context(), nsSession, tokenKey(logged.Value)); err == nil {
		t.Fatal("the session survived the logout")
	}
	if loc := location(t, b.get(PathConsole+"/resources")); loc.Path != "/uma/login" {
		t.Fatalf("console after logout: %s", loc)
	}

	// Next is only a path under the issuer.
	for _, next := range []string{"https://evil.example/", "//evil.example/x", "/elsewhere", "/uma\\evil"} {
		b2 := f.browser()
		p := b2.get(PathLogin)
		r := b2.post(PathLogin, url.Values{"csrf": {csrf(t, p)}, "username": {"alice"}, "password": {alicePassword}, "next": {next}})
		if loc := location(t, r); loc.String() != "/uma/console" {
			t.Errorf("next %q: redirected to %s", next, loc)
		}
	}
}

func TestSecureCookieOnHTTPSIssuer(t *testing.T) {
	st := openTestStore(t, t.TempDir())
	t.Cleanup(func() { st.Close() })
	srv, err := New(t.Context(), Config{Issuer: "https://as.example/uma", Store: st, Users: testUsers(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	rec := httptest.NewRecorder()
	srv.ServeHTTP(rec, httptest.NewRequest("GET", "https://as.example/uma/login", nil))
	c := sessionCookieOf(t, rec.Header())
	if !c.Secure || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Path != "/uma" {
		t.Fatalf("cookie flags on an https issuer: %+v", c)
	}
	// Login on a plain http issuer elsewhere than loopback is refused.
	if _, err := New(t.Context(), Config{Issuer: "http://as.example", Store: st, Users: testUsers(t)}); err == nil {
		t.Fatal("login accepted on a non-loopback http issuer")
	}
}

func TestLoginCSRFAndWrongPassword(t *testing.T) {
	f := newPeopleFixture(t, nil)
	b := f.browser()
	page := b.get(PathLogin)
	token := csrf(t, page)
	good := url.Values{"username": {"alice"}, "password": {alicePassword}}

	// No token, a wrong token, the token of another browser's session.
	expectErrorPage(t, b.post(PathLogin, good), 403, "expired")
	bad := url.Values{"csrf": {token + "x"}, "username": good["username"], "password": good["password"]}
	expectErrorPage(t, b.post(PathLogin, bad), 403)
	other := f.browser()
	otherToken := csrf(t, other.get(PathLogin))
	bad.Set("csrf", otherToken)
	expectErrorPage(t, b.post(PathLogin, bad), 403)
	// Without any session, a POST is refused too.
	expectErrorPage(t, f.browser().post(PathLogin, url.Values{"csrf": {token}, "username": {"alice"}, "password": {alicePassword}}), 403)

	// Wrong password, unknown user: the same answer.
	for _, creds := range [][2]string{{"alice", "nope"}, {"mallory", "nope"}, {"alice", ""}} {
		r := b.post(PathLogin, url.Values{"csrf": {token}, "username": {creds[0]}, "password": {creds[1]}})
		expectPage(t, r, 401, "The name or the password is wrong.")
	}
	if r := b.get(PathConsole + "/resources"); r.status != http.StatusSeeOther {
		t.Fatalf("console after failed logins: %d", r.status)
	}
	r := b.post(PathLogin, url.Values{"csrf": {token}, "username": {"alice"}, "password": {alicePassword}})
	if r.status != http.StatusSeeOther {
		t.Fatalf("login: %d %s", r.status, r.body)
	}
}

func TestSessionExpires(t *testing.T) {
	f := newPeopleFixture(t, func(c *Config) { c.SessionTTL = time.Hour })
	b := f.browser()
	b.login("alice", alicePassword)
	f.clock.Advance(time.Hour + time.Second)
	if r := b.get(PathConsole + "/resources"); r.status != http.StatusSeeOther || !strings.HasPrefix(r.header.Get("Location"), "/uma/login") {
		t.Fatalf("console after the session expired: %d %s", r.status, r.header.Get("Location"))
	}
}

func TestLoginPasswordCheckedOnce(t *testing.T) {
	u := &localUser{User: User{Name: "x"}, hash: []byte(testUsers(t)[0].PasswordHash)}
	if !u.checkPassword(alicePassword) || !u.checkPassword(alicePassword) || u.checkPassword("other") {
		t.Fatal("password check")
	}
	if len(u.verified) != 1 {
		t.Fatalf("verified cache: %d entries", len(u.verified))
	}
}

func TestLoginConfigErrors(t *testing.T) {
	st := openTestStore(t, t.TempDir())
	t.Cleanup(func() { st.Close() })
	for name, users := range map[string][]User{
		"plain password": {{Name: "a", PasswordHash: "secret"}},
		"duplicate":      {testUsers(t)[0], testUsers(t)[0]},
		"space in name":  {{Name: "a b", PasswordHash: testUsers(t)[0].PasswordHash}},
	} {
		if _, err := New(context.Background(), Config{Issuer: "http://127.0.0.1/x", Store: st, Users: users}); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestPagesOffWithoutLogin(t *testing.T) {
	as := newTestAS(t, nil)
	for _, p := range []string{PathLogin, PathConsole, PathConsole + "/resources", PathAuthorize, PathClaims, PathRegister, PathAssets} {
		if r := as.do("GET", p, nil); r.status != 404 {
			t.Errorf("%s: %d without login configured", p, r.status)
		}
	}
	if md := as.do("GET", PathUMAConfiguration, nil).json(t); md["claims_interaction_endpoint"] != nil || md["authorization_endpoint"] != nil || md["registration_endpoint"] != nil {
		t.Fatalf("discovery without login: %v", md)
	}
}

func TestDiscoveryWithLogin(t *testing.T) {
	f := newPeopleFixture(t, func(c *Config) { c.Registration = &Registration{InitialAccessToken: "iat"} })
	md := f.do("GET", PathUMAConfiguration, nil).json(t)
	want := map[string]string{
		"claims_interaction_endpoint": f.issuer + PathClaims,
		"authorization_endpoint":      f.issuer + PathAuthorize,
		"registration_endpoint":       f.issuer + PathRegister,
	}
	for k, v := range want {
		if md[k] != v {
			t.Errorf("%s = %v, want %s", k, md[k], v)
		}
	}
	if !strings.Contains(string(f.do("GET", PathUMAConfiguration, nil).body), `"code_challenge_methods_supported":["S256"]`) {
		t.Error("discovery does not advertise S256")
	}
	css := f.do("GET", PathAssets, nil)
	if css.status != 200 || !strings.HasPrefix(css.header.Get("Content-Type"), "text/css") {
		t.Fatalf("style sheet: %d %s", css.status, css.header.Get("Content-Type"))
	}
}

func TestOIDCLogin(t *testing.T) {
	op := newFakeOP(t)
	f := newPeopleFixture(t, func(c *Config) {
		c.LoginOIDC = &OIDCLogin{Issuer: op.issuer, ClientID: "uma-as", ClientSecret: op.secret, Name: "Example ID"}
	})
	op.next(map[string]any{"sub": "248289761001", "email": "dana@example.org", "email_verified": true, "name": "Dana", "groups": []any{"staff"}})

	b := f.browser()
	expectPage(t, b.get(PathLogin), 200, "Log in with Example ID")
	start := b.get(PathLoginOIDC + "?next=%2Fuma%2Fconsole%2Fhistory")
	authz := location(t, start)
	if !strings.HasPrefix(authz.String(), op.issuer+"/authorize?") || authz.Query().Get("redirect_uri") != f.issuer+PathLoginCallback {
		t.Fatalf("redirect to the provider: %s", authz)
	}
	atOP := b.get(authz.String())
	callback := location(t, atOP)

	// The callback in another browser (no session) or with another state fails.
	expectErrorPage(t, f.browser().get(callback.String()), 400, "not started in this browser")
	forged := *callback
	q := forged.Query()
	q.Set("state", "forged")
	forged.RawQuery = q.Encode()
	expectErrorPage(t, b.get(forged.String()), 400)

	// The real callback logs in, once.
	done := b.get(callback.String())
	if loc := location(t, done); loc.Path != "/uma/console/history" {
		t.Fatalf("after the OpenID login: %s", loc)
	}
	expectErrorPage(t, b.get(callback.String()), 400)
	expectPage(t, b.get(PathConsole+"/shared-with-me"), 200, "Dana")
	// Replaying the callback does not log in again.
	expectErrorPage(t, f.browser().get(callback.String()), 400)

	// A wrong nonce, or an audience that is not ours, is refused.
	for name, tamper := range map[string]func(map[string]any){
		"nonce":    func(c map[string]any) { c["nonce"] = "other" },
		"audience": func(c map[string]any) { c["aud"] = "someone-else" },
		"issuer":   func(c map[string]any) { c["iss"] = "https://evil.example" },
		"expired":  func(c map[string]any) { c["exp"] = time.Now().Add(-time.Hour).Unix() },
		"azp":      func(c map[string]any) { c["aud"] = []any{"uma-as", "other"}; c["azp"] = "other" },
	} {
		op.mu.Lock()
		op.tamper = tamper
		op.mu.Unlock()
		b := f.browser()
		authz := location(t, b.get(PathLoginOIDC))
		callback := location(t, b.get(authz.String()))
		expectErrorPage(t, b.get(callback.String()), 400, "could not be verified")
		if r := b.get(PathConsole + "/resources"); r.status != http.StatusSeeOther {
			t.Errorf("%s: logged in anyway", name)
		}
	}
}

func TestLoginBruteForceIsThrottled(t *testing.T) {
	f := newPeopleFixture(t, nil)
	b := f.browser()
	token := csrf(t, b.get(PathLogin))
	try := func(password string) response {
		return b.post(PathLogin, url.Values{"csrf": {token}, "username": {"alice"}, "password": {password}})
	}
	for range maxLoginFailures {
		expectPage(t, try("guess"), 401, "The name or the password is wrong.")
	}
	// Blocked now, even with the right password; other names are not.
	expectPage(t, try(alicePassword), 429, "Too many failed attempts")
	expectPage(t, b.post(PathLogin, url.Values{"csrf": {token}, "username": {"bob"}, "password": {"guess"}}), 401)
	// After the window, the right password works and resets the count.
	f.clock.Advance(loginFailureWindow)
	if r := try(alicePassword); r.status != http.StatusSeeOther {
		t.Fatalf("login after the window: %d %s", r.status, r.body)
	}
}
