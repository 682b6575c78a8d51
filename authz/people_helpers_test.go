package authz

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/caddy-uma/caddy-uma/authz/claimtoken/claimtokentest"
)

// Clients of the people tests, besides testClients: a resource server that
// obtains PATs by consent, and requesting parties' clients with claims
// redirect URIs.
var peopleClients = []Client{
	{ID: "rs-web", Secret: "rs-web-secret", ResourceServer: true, RedirectURIs: []string{"https://rs.example/cb", "http://127.0.0.1:9/cb"}},
	{ID: "rs-one", Secret: "rs-one-secret", ResourceServer: true, RedirectURIs: []string{"https://one.example/cb"}},
	{ID: "claims-app", Secret: "claims-app-secret", ClaimsRedirectURIs: []string{"https://app.example/claims?x=1"}},
	{ID: "two-claims", Secret: "two-claims-secret", ClaimsRedirectURIs: []string{"https://two.example/a", "https://two.example/b"}},
	{ID: "no-claims", Secret: "no-claims-secret"},
	{ID: "web-app", Secret: "web-app-secret", RedirectURIs: []string{"https://web.example/cb"}},
}

// Passwords of the test users.
const (
	alicePassword = "alice password"
	bobPassword   = "bob password"
)

var (
	hashOnce   sync.Once
	aliceHash  string
	bobHash    string
	carolHashV string
)

func testUsers(t *testing.T) []User {
	t.Helper()
	hashOnce.Do(func() {
		h := func(pw string) string {
			b, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
			if err != nil {
				panic(err)
			}
			return string(b)
		}
		aliceHash, bobHash, carolHashV = h(alicePassword), h(bobPassword), h("carol password")
	})
	return []User{
		{Name: "alice", PasswordHash: aliceHash, Email: "alice@example.org", DisplayName: "Alice Liddell"},
		{Name: "bob", PasswordHash: bobHash, Email: "Bob@Example.org", DisplayName: "Bob", Groups: []string{"family"}},
		{Name: "carol", PasswordHash: carolHashV, Email: "carol@example.org"},
	}
}

// peopleFixture is an AS where people log in: the grant fixture (alice's
// labs and photos registered by rs-a, alice's rules, a trusted IdP) with
// local users and the people clients.
type peopleFixture struct {
	*grantFixture
}

func newPeopleFixture(t *testing.T, mod func(*Config)) *peopleFixture {
	t.Helper()
	f := newGrantFixture(t, func(c *Config) {
		c.Clients = append(append([]Client{}, testClients...), peopleClients...)
		c.Users = testUsers(t)
		if mod != nil {
			mod(c)
		}
	})
	return &peopleFixture{grantFixture: f}
}

// browser is a client with a cookie jar that does not follow redirects.
type browser struct {
	t    *testing.T
	as   *testAS
	jar  *cookiejar.Jar
	http *http.Client
}

func (as *testAS) browser() *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{t: as.t, as: as, jar: jar, http: &http.Client{
		Jar:           jar,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

func (b *browser) url(path string) string {
	if strings.HasPrefix(path, "http") {
		return path
	}
	if strings.HasPrefix(path, b.as.srv.basePath+"/") {
		return b.as.http.URL + path
	}
	return b.as.issuer + path
}

func (b *browser) send(req *http.Request) response {
	b.t.Helper()
	resp, err := b.http.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, header: resp.Header, body: body}
}

func (b *browser) get(path string) response {
	b.t.Helper()
	req, err := http.NewRequest(http.MethodGet, b.url(path), nil)
	if err != nil {
		b.t.Fatal(err)
	}
	return b.send(req)
}

func (b *browser) post(path string, form url.Values) response {
	b.t.Helper()
	req, err := http.NewRequest(http.MethodPost, b.url(path), strings.NewReader(form.Encode()))
	if err != nil {
		b.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return b.send(req)
}

var csrfPattern = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrf returns the CSRF token of a page.
func csrf(t *testing.T, r response) string {
	t.Helper()
	m := csrfPattern.FindSubmatch(r.body)
	if m == nil {
		t.Fatalf("no CSRF token in the page (%d): %s", r.status, r.body)
	}
	return string(m[1])
}

// login logs the browser in as a local user and returns the CSRF token of
// the new session (read from the console).
func (b *browser) login(name, password string) string {
	b.t.Helper()
	page := b.get(PathLogin)
	if page.status != 200 {
		b.t.Fatalf("login page: %d %s", page.status, page.body)
	}
	r := b.post(PathLogin, url.Values{"csrf": {csrf(b.t, page)}, "username": {name}, "password": {password}})
	if r.status != http.StatusSeeOther {
		b.t.Fatalf("login as %s: %d %s", name, r.status, r.body)
	}
	return b.csrf()
}

// csrf returns the CSRF token of the logged-in session.
func (b *browser) csrf() string {
	b.t.Helper()
	return csrf(b.t, b.get(PathConsole+"/resources"))
}

// location returns the Location of a redirect, parsed.
func location(t *testing.T, r response) *url.URL {
	t.Helper()
	if r.status < 300 || r.status > 399 {
		t.Fatalf("status %d, want a redirect: %s", r.status, r.body)
	}
	u, err := url.Parse(r.header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// expectPage checks an HTML response's status and that its body contains
// every one of parts.
func expectPage(t *testing.T, r response, status int, parts ...string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status = %d, want %d: %s", r.status, status, r.body)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
		t.Fatalf("Content-Type = %q", ct)
	}
	for _, p := range parts {
		if !strings.Contains(string(r.body), p) {
			t.Fatalf("page does not contain %q: %s", p, r.body)
		}
	}
}

// expectErrorPage checks an error page that does not redirect.
func expectErrorPage(t *testing.T, r response, status int, parts ...string) {
	t.Helper()
	expectPage(t, r, status, parts...)
	if loc := r.header.Get("Location"); loc != "" {
		t.Fatalf("an error page redirects to %s", loc)
	}
}

// pkce returns a verifier and its S256 challenge.
func pkce() (verifier, challenge string) {
	verifier = randomToken(32)
	sum := sha256.Sum256([]byte(verifier))
	return verifier, base64.RawURLEncoding.EncodeToString(sum[:])
}

// fakeOP is an OpenID provider with an authorization and a token endpoint;
// it logs in whoever the test says, at once, and signs with a
// claimtokentest provider's key.
type fakeOP struct {
	t      *testing.T
	keys   *claimtokentest.Provider
	srv    *httptest.Server
	issuer string

	mu     sync.Mutex
	claims map[string]any            // of the next login
	codes  map[string]map[string]any // code -> claims with nonce, aud
	pkce   map[string]string         // code -> challenge
	tamper func(map[string]any)      // changes the ID token's claims
	secret string
}

func newFakeOP(t *testing.T) *fakeOP {
	t.Helper()
	op := &fakeOP{t: t, keys: claimtokentest.NewProvider(t), codes: map[string]map[string]any{}, pkce: map[string]string{}, secret: "op-secret"}
	mux := http.NewServeMux()
	op.srv = httptest.NewServer(mux)
	t.Cleanup(op.srv.Close)
	op.issuer = op.srv.URL
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]string{
			"issuer": op.issuer, "authorization_endpoint": op.issuer + "/authorize",
			"token_endpoint": op.issuer + "/token", "jwks_uri": op.keys.JWKSURI(),
		})
	})
	mux.HandleFunc("/authorize", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") == "" || q.Get("nonce") == "" ||
			!strings.Contains(q.Get("scope"), "openid") || q.Get("response_type") != "code" {
			http.Error(w, "bad authorization request", 400)
			return
		}
		code := randomToken(16)
		op.mu.Lock()
		c := map[string]any{}
		for k, v := range op.claims {
			c[k] = v
		}
		c["iss"], c["aud"], c["nonce"] = op.issuer, q.Get("client_id"), q.Get("nonce")
		op.codes[code], op.pkce[code] = c, q.Get("code_challenge")
		op.mu.Unlock()
		http.Redirect(w, r, addQuery(q.Get("redirect_uri"), url.Values{"code": {code}, "state": {q.Get("state")}}), http.StatusFound)
	})
	mux.HandleFunc("/token", func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		id, secret, ok := r.BasicAuth()
		if !ok || secret != op.secret {
			http.Error(w, `{"error":"invalid_client"}`, 401)
			return
		}
		code := r.PostForm.Get("code")
		op.mu.Lock()
		c, challenge, tamper := op.codes[code], op.pkce[code], op.tamper
		delete(op.codes, code)
		op.mu.Unlock()
		if c == nil || c["aud"] != id || pkceChallenge(r.PostForm.Get("code_verifier")) != challenge {
			http.Error(w, `{"error":"invalid_grant"}`, 400)
			return
		}
		if tamper != nil {
			tamper(c)
		}
		_ = json.NewEncoder(w).Encode(map[string]string{"access_token": "x", "token_type": "Bearer", "id_token": op.keys.Sign(op.t, c)})
	})
	return op
}

func (op *fakeOP) next(claims map[string]any) {
	op.mu.Lock()
	op.claims = claims
	op.mu.Unlock()
}
