package people_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/caddy-uma/caddy-uma/authz"
	"github.com/caddy-uma/caddy-uma/authz/authztest"
	"github.com/caddy-uma/caddy-uma/authz/people"
	"github.com/caddy-uma/caddy-uma/authz/secret"
)

// sessionCookieOf returns the session cookie a authztest.Response sets.
func sessionCookieOf(t *testing.T, h http.Header) *http.Cookie {
	t.Helper()
	var last *http.Cookie
	for _, c := range (&http.Response{Header: h}).Cookies() {
		if c.Name == people.SessionCookie {
			last = c
		}
	}
	if last != nil {
		return last
	}
	t.Fatalf("no %s cookie set: %v", people.SessionCookie, h["Set-Cookie"])
	return nil
}

func TestLoginSessionCookie(t *testing.T) {
	f := newFixture(t, nil)
	b := f.Browser()
	page := b.Get(people.PathLogin)
	authztest.ExpectPage(t, page, 200, `name="username"`, `name="password"`)
	anon := sessionCookieOf(t, page.Header)
	if !anon.HttpOnly || anon.SameSite != http.SameSiteLaxMode || anon.Path != "/uma" || anon.Secure {
		t.Fatalf("anonymous cookie flags: %+v (http on loopback: not Secure)", anon)
	}
	for _, h := range []string{"Content-Security-Policy", "X-Frame-Options", "Referrer-Policy"} {
		if page.Header.Get(h) == "" {
			t.Errorf("login page without %s", h)
		}
	}
	if cc := page.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control = %q", cc)
	}

	r := b.Post(people.PathLogin, url.Values{"csrf": {authztest.CSRF(t, page)}, "username": {"alice"}, "password": {authztest.AlicePassword}, "next": {"/uma/console/history"}})
	if loc := authztest.Location(t, r); loc.Path != "/uma/console/history" {
		t.Fatalf("after login: %s", loc)
	}
	logged := sessionCookieOf(t, r.Header)
	if logged.Value == anon.Value {
		t.Fatal("the session id was not renewed at login")
	}
	if !logged.HttpOnly || logged.SameSite != http.SameSiteLaxMode || logged.Path != "/uma" || logged.MaxAge <= 0 {
		t.Fatalf("session cookie flags: %+v", logged)
	}
	// The anonymous session is gone: its id is worth nothing.
	if _, err := f.Store.Get(t.Context(), people.NSSession, secret.Key(anon.Value)); err == nil {
		t.Fatal("the anonymous session survived the login")
	}
	authztest.ExpectPage(t, b.Get(authz.PathConsole+"/resources"), 200, "Alice Liddell", "labs")

	// Logout needs the CSRF token, and ends the session.
	authztest.ExpectErrorPage(t, b.Post(people.PathLogout, url.Values{}), 403)
	authztest.ExpectPage(t, b.Get(authz.PathConsole+"/resources"), 200)
	r = b.Post(people.PathLogout, url.Values{"csrf": {b.CSRF()}})
	if loc := authztest.Location(t, r); loc.Path != "/uma/login" {
		t.Fatalf("after logout: %s", loc)
	}
	if c := sessionCookieOf(t, r.Header); c.MaxAge >= 0 {
		t.Fatalf("logout did not delete the cookie: %+v", c)
	}
	if _, err := f.Store.Get(t.Context(), people.NSSession, secret.Key(logged.Value)); err == nil {
		t.Fatal("the session survived the logout")
	}
	if loc := authztest.Location(t, b.Get(authz.PathConsole+"/resources")); loc.Path != "/uma/login" {
		t.Fatalf("console after logout: %s", loc)
	}

	// Next is only a path under the issuer.
	for _, next := range []string{"https://evil.example/", "//evil.example/x", "/elsewhere", "/uma\\evil"} {
		b2 := f.Browser()
		p := b2.Get(people.PathLogin)
		r := b2.Post(people.PathLogin, url.Values{"csrf": {authztest.CSRF(t, p)}, "username": {"alice"}, "password": {authztest.AlicePassword}, "next": {next}})
		if loc := authztest.Location(t, r); loc.String() != "/uma/console" {
			t.Errorf("next %q: redirected to %s", next, loc)
		}
	}
}

func TestSecureCookieOnHTTPSIssuer(t *testing.T) {
	st := authztest.OpenStore(t, t.TempDir())
	t.Cleanup(func() { st.Close() })
	srv, err := authz.New(t.Context(), authz.Config{Issuer: "https://as.example/uma", Store: st, LoginPages: true})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	site, err := people.New(t.Context(), srv, st, people.Config{Users: authztest.Users()})
	if err != nil {
		t.Fatal(err)
	}
	defer site.Close()
	rec := httptest.NewRecorder()
	site.ServeHTTP(rec, httptest.NewRequest("GET", "https://as.example/uma/login", nil))
	c := sessionCookieOf(t, rec.Header())
	if !c.Secure || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Path != "/uma" {
		t.Fatalf("cookie flags on an https issuer: %+v", c)
	}
	// Login on a plain http issuer elsewhere than loopback is refused.
	plain, err := authz.New(t.Context(), authz.Config{Issuer: "http://as.example", Store: st, LoginPages: true})
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if _, err := people.New(t.Context(), plain, st, people.Config{Users: authztest.Users()}); err == nil {
		t.Fatal("login accepted on a non-loopback http issuer")
	}
}

func TestLoginCSRFAndWrongPassword(t *testing.T) {
	f := newFixture(t, nil)
	b := f.Browser()
	page := b.Get(people.PathLogin)
	token := authztest.CSRF(t, page)
	good := url.Values{"username": {"alice"}, "password": {authztest.AlicePassword}}

	// No token, a wrong token, the token of another browser's session.
	authztest.ExpectErrorPage(t, b.Post(people.PathLogin, good), 403, "expired")
	bad := url.Values{"csrf": {token + "x"}, "username": good["username"], "password": good["password"]}
	authztest.ExpectErrorPage(t, b.Post(people.PathLogin, bad), 403)
	other := f.Browser()
	otherToken := authztest.CSRF(t, other.Get(people.PathLogin))
	bad.Set("csrf", otherToken)
	authztest.ExpectErrorPage(t, b.Post(people.PathLogin, bad), 403)
	// Without any session, a POST is refused too.
	authztest.ExpectErrorPage(t, f.Browser().Post(people.PathLogin, url.Values{"csrf": {token}, "username": {"alice"}, "password": {authztest.AlicePassword}}), 403)

	// Wrong password, unknown user: the same answer.
	for _, creds := range [][2]string{{"alice", "nope"}, {"mallory", "nope"}, {"alice", ""}} {
		r := b.Post(people.PathLogin, url.Values{"csrf": {token}, "username": {creds[0]}, "password": {creds[1]}})
		authztest.ExpectPage(t, r, 401, "The name or the password is wrong.")
	}
	if r := b.Get(authz.PathConsole + "/resources"); r.Status != http.StatusSeeOther {
		t.Fatalf("console after failed logins: %d", r.Status)
	}
	r := b.Post(people.PathLogin, url.Values{"csrf": {token}, "username": {"alice"}, "password": {authztest.AlicePassword}})
	if r.Status != http.StatusSeeOther {
		t.Fatalf("login: %d %s", r.Status, r.Body)
	}
}

func TestSessionExpires(t *testing.T) {
	f := newFixture(t, func(_ *authz.Config, p *people.Config) { p.SessionTTL = time.Hour })
	b := f.Browser()
	b.Login("alice", authztest.AlicePassword)
	f.Clock.Advance(time.Hour + time.Second)
	if r := b.Get(authz.PathConsole + "/resources"); r.Status != http.StatusSeeOther || !strings.HasPrefix(r.Header.Get("Location"), "/uma/login") {
		t.Fatalf("console after the session expired: %d %s", r.Status, r.Header.Get("Location"))
	}
}

func TestLoginConfigErrors(t *testing.T) {
	st := authztest.OpenStore(t, t.TempDir())
	t.Cleanup(func() { st.Close() })
	for name, users := range map[string][]people.User{
		"plain password": {{Name: "a", PasswordHash: "secret"}},
		"duplicate":      {authztest.Users()[0], authztest.Users()[0]},
		"space in name":  {{Name: "a b", PasswordHash: authztest.Users()[0].PasswordHash}},
	} {
		as, err := authz.New(context.Background(), authz.Config{Issuer: "http://127.0.0.1/x", Store: st, LoginPages: true})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := people.New(context.Background(), as, st, people.Config{Users: users}); err == nil {
			t.Errorf("%s: accepted", name)
		}
		as.Close()
	}
}

func TestPagesOffWithoutLogin(t *testing.T) {
	as := authztest.New(t, nil)
	for _, p := range []string{people.PathLogin, authz.PathConsole, authz.PathConsole + "/resources", authz.PathAuthorize, authz.PathClaims, authz.PathRegister, people.PathAssets} {
		if r := as.Do("GET", p, nil); r.Status != 404 {
			t.Errorf("%s: %d without login configured", p, r.Status)
		}
	}
	if md := as.Do("GET", authz.PathUMAConfiguration, nil).JSON(t); md["claims_interaction_endpoint"] != nil || md["authorization_endpoint"] != nil || md["registration_endpoint"] != nil {
		t.Fatalf("discovery without login: %v", md)
	}
}

func TestDiscoveryWithLogin(t *testing.T) {
	f := newFixture(t, func(c *authz.Config, _ *people.Config) {
		c.Registration = &authz.Registration{InitialAccessToken: "iat"}
	})
	md := f.Do("GET", authz.PathUMAConfiguration, nil).JSON(t)
	want := map[string]string{
		"claims_interaction_endpoint": f.Issuer + authz.PathClaims,
		"authorization_endpoint":      f.Issuer + authz.PathAuthorize,
		"registration_endpoint":       f.Issuer + authz.PathRegister,
	}
	for k, v := range want {
		if md[k] != v {
			t.Errorf("%s = %v, want %s", k, md[k], v)
		}
	}
	if !strings.Contains(string(f.Do("GET", authz.PathUMAConfiguration, nil).Body), `"code_challenge_methods_supported":["S256"]`) {
		t.Error("discovery does not advertise S256")
	}
	css := f.Do("GET", people.PathAssets, nil)
	if css.Status != 200 || !strings.HasPrefix(css.Header.Get("Content-Type"), "text/css") {
		t.Fatalf("style sheet: %d %s", css.Status, css.Header.Get("Content-Type"))
	}
}

func TestOIDCLogin(t *testing.T) {
	op := newFakeOP(t)
	f := newFixture(t, func(_ *authz.Config, p *people.Config) {
		p.OIDC = &people.OIDCLogin{Issuer: op.issuer, ClientID: "uma-as", ClientSecret: op.secret, Name: "Example ID"}
	})
	op.next(map[string]any{"sub": "248289761001", "email": "dana@example.org", "email_verified": true, "name": "Dana", "groups": []any{"staff"}})

	b := f.Browser()
	authztest.ExpectPage(t, b.Get(people.PathLogin), 200, "Log in with Example ID")
	start := b.Get(people.PathLoginOIDC + "?next=%2Fuma%2Fconsole%2Fhistory")
	atProvider := authztest.Location(t, start)
	if !strings.HasPrefix(atProvider.String(), op.issuer+"/authorize?") || atProvider.Query().Get("redirect_uri") != f.Issuer+people.PathLoginCallback {
		t.Fatalf("redirect to the provider: %s", atProvider)
	}
	atOP := b.Get(atProvider.String())
	callback := authztest.Location(t, atOP)

	// The callback in another browser (no session) or with another state fails.
	authztest.ExpectErrorPage(t, f.Browser().Get(callback.String()), 400, "not started in this browser")
	forged := *callback
	q := forged.Query()
	q.Set("state", "forged")
	forged.RawQuery = q.Encode()
	authztest.ExpectErrorPage(t, b.Get(forged.String()), 400)

	// The real callback logs in, once.
	done := b.Get(callback.String())
	if loc := authztest.Location(t, done); loc.Path != "/uma/console/history" {
		t.Fatalf("after the OpenID login: %s", loc)
	}
	authztest.ExpectErrorPage(t, b.Get(callback.String()), 400)
	authztest.ExpectPage(t, b.Get(authz.PathConsole+"/shared-with-me"), 200, "Dana")
	// Replaying the callback does not log in again.
	authztest.ExpectErrorPage(t, f.Browser().Get(callback.String()), 400)

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
		b := f.Browser()
		atProvider := authztest.Location(t, b.Get(people.PathLoginOIDC))
		callback := authztest.Location(t, b.Get(atProvider.String()))
		authztest.ExpectErrorPage(t, b.Get(callback.String()), 400, "could not be verified")
		if r := b.Get(authz.PathConsole + "/resources"); r.Status != http.StatusSeeOther {
			t.Errorf("%s: logged in anyway", name)
		}
	}
}

// loginForm posts the login form of page's session.
func loginForm(b *authztest.Browser, csrf, name, password string, headers ...string) authztest.Response {
	b.T.Helper()
	form := url.Values{"csrf": {csrf}, "username": {name}, "password": {password}}
	req, err := http.NewRequest(http.MethodPost, b.URL(people.PathLogin), strings.NewReader(form.Encode()))
	if err != nil {
		b.T.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	return b.Send(req)
}

// expectThrottled checks a 429 login page with Retry-After seconds.
func expectThrottled(t *testing.T, r authztest.Response, seconds int) {
	t.Helper()
	authztest.ExpectPage(t, r, http.StatusTooManyRequests, "Too many failed attempts")
	if got := r.Header.Get("Retry-After"); got != strconv.Itoa(seconds) {
		t.Fatalf("Retry-After = %q, want %d", got, seconds)
	}
}

// TestLoginThrottleDelayGrows: after the free failures of a name, each next
// attempt waits a delay that doubles with every failure (429 with
// Retry-After, no password checked meanwhile); after the wait the right
// password logs in. No hard lock.
func TestLoginThrottleDelayGrows(t *testing.T) {
	f := newFixture(t, nil)
	checks := 0
	var mu sync.Mutex
	people.OnPasswordCheck(f.Site, func(int) { mu.Lock(); checks++; mu.Unlock() })
	checked := func() int { mu.Lock(); defer mu.Unlock(); n := checks; checks = 0; return n }
	b := f.Browser()
	token := authztest.CSRF(t, b.Get(people.PathLogin))
	try := func(password string) authztest.Response { return loginForm(b, token, "alice", password) }
	for range people.MaxNameFailures {
		authztest.ExpectPage(t, try("guess"), 401, "The name or the password is wrong.")
	}
	// Each failure past the free ones doubles the wait.
	for i, wait := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second} {
		checked()
		expectThrottled(t, try(authztest.AlicePassword), int(wait.Seconds()))
		f.Clock.Advance(wait - time.Millisecond)
		expectThrottled(t, try("guess"), 1)
		if n := checked(); n != 0 {
			t.Fatalf("round %d: %d password comparisons while waiting", i, n)
		}
		f.Clock.Advance(time.Millisecond)
		authztest.ExpectPage(t, try("guess"), 401)
	}
	// Other names are not delayed.
	authztest.ExpectPage(t, loginForm(b, token, "bob", "guess"), 401)
	// After the wait the right password works, and resets the name's count.
	f.Clock.Advance(16 * time.Second)
	if r := try(authztest.AlicePassword); r.Status != http.StatusSeeOther {
		t.Fatalf("login after the wait: %d %s", r.Status, r.Body)
	}
	b = f.Browser()
	token = authztest.CSRF(t, b.Get(people.PathLogin))
	for range people.MaxNameFailures {
		authztest.ExpectPage(t, try("guess"), 401)
	}
	expectThrottled(t, try("guess"), 1)
	// The delay stops growing at its maximum.
	for range 20 {
		f.Clock.Advance(people.MaxLoginDelay)
		token = authztest.CSRF(t, b.Get(people.PathLogin)) // the anonymous session lasts 30 minutes
		authztest.ExpectPage(t, try("guess"), 401)
	}
	expectThrottled(t, try(authztest.AlicePassword), int(people.MaxLoginDelay.Seconds()))
	authztest.ExpectPage(t, try(authztest.AlicePassword), 429, "Try again in 5 minutes.")
}

// TestLoginThrottlePerAddress: failed logins are counted per client
// address across names (by default the request's RemoteAddr; here the
// configured ClientAddress), an IPv6 address by its /64.
func TestLoginThrottlePerAddress(t *testing.T) {
	for _, tc := range []struct {
		name         string
		clientHeader bool   // addresses from X-Test-Client through Config.ClientAddress
		first, same  string // an address, and another in the same bucket
		other        string // an address in another bucket
	}{
		{name: "RemoteAddr"},
		{name: "IPv4", clientHeader: true, first: "192.0.2.7", same: "192.0.2.7", other: "192.0.2.8"},
		{name: "IPv6 /64", clientHeader: true, first: "2001:db8:1:2::1", same: "2001:db8:1:2:ffff::9", other: "2001:db8:1:3::1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, func(_ *authz.Config, p *people.Config) {
				if tc.clientHeader {
					p.ClientAddress = func(r *http.Request) string { return r.Header.Get("X-Test-Client") }
				}
			})
			b := f.Browser()
			token := authztest.CSRF(t, b.Get(people.PathLogin))
			from := func(addr string) []string {
				if !tc.clientHeader {
					return nil
				}
				return []string{"X-Test-Client", addr}
			}
			// A different name each time: the names' counts stay low.
			for i := range people.MaxAddressFailures {
				authztest.ExpectPage(t, loginForm(b, token, "user"+strconv.Itoa(i), "guess", from(tc.first)...), 401)
			}
			expectThrottled(t, loginForm(b, token, "someone-else", "guess", from(tc.same)...), 1)
			expectThrottled(t, loginForm(b, token, "alice", authztest.AlicePassword, from(tc.first)...), 1)
			if !tc.clientHeader {
				return
			}
			// Another client logs in meanwhile.
			if r := loginForm(b, token, "alice", authztest.AlicePassword, from(tc.other)...); r.Status != http.StatusSeeOther {
				t.Fatalf("login from another address: %d %s", r.Status, r.Body)
			}
			// The address's count is not reset by that login.
			b = f.Browser()
			token = authztest.CSRF(t, b.Get(people.PathLogin))
			expectThrottled(t, loginForm(b, token, "someone", "guess", from(tc.first)...), 1)
		})
	}
}

// hashAt is a bcrypt hash of password at cost.
func hashAt(t *testing.T, password string, cost int) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(password), cost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

// TestLoginFailuresCostTheSame: an unknown name, a wrong password and an
// empty one make the server do the same bcrypt work (the sum of 2^cost of
// its comparisons), that of the costliest configured hash, so that the
// answer's time does not tell which names exist.
func TestLoginFailuresCostTheSame(t *testing.T) {
	for _, tc := range []struct {
		name            string
		aliceCost, bobC int
	}{
		{"same cost", 6, 6},
		{"mixed costs", 4, 6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			users := []people.User{
				{Name: "alice", PasswordHash: hashAt(t, authztest.AlicePassword, tc.aliceCost)},
				{Name: "bob", PasswordHash: hashAt(t, authztest.BobPassword, tc.bobC)},
			}
			f := newFixture(t, func(_ *authz.Config, p *people.Config) { p.Users = users })
			var mu sync.Mutex
			var costs []int
			people.OnPasswordCheck(f.Site, func(c int) { mu.Lock(); costs = append(costs, c); mu.Unlock() })
			b := f.Browser()
			token := authztest.CSRF(t, b.Get(people.PathLogin))
			want := 1 << max(tc.aliceCost, tc.bobC)
			for _, creds := range [][2]string{{"mallory", "guess"}, {"alice", "guess"}, {"bob", "guess"}, {"alice", ""}, {"", "guess"}} {
				mu.Lock()
				costs = nil
				mu.Unlock()
				r := b.Post(people.PathLogin, url.Values{"csrf": {token}, "username": {creds[0]}, "password": {creds[1]}})
				authztest.ExpectPage(t, r, 401, "The name or the password is wrong.")
				mu.Lock()
				work := 0
				for _, c := range costs {
					work += 1 << c
				}
				mu.Unlock()
				if work != want {
					t.Errorf("%q with password %q: bcrypt comparisons at costs %v (work %d), want work %d (cost %d)", creds[0], creds[1], costs, work, want, max(tc.aliceCost, tc.bobC))
				}
			}
		})
	}
}
