package authztest

import (
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/caddy-uma/caddy-uma/authz"
	"github.com/caddy-uma/caddy-uma/authz/people"
)

// PeopleClients are the clients of the people tests, besides Clients: a
// resource server that obtains PATs by consent, and requesting parties'
// clients with claims redirect URIs.
var PeopleClients = []authz.Client{
	{ID: "rs-web", Secret: "rs-web-secret", ResourceServer: true, RedirectURIs: []string{"https://rs.example/cb", "http://127.0.0.1:9/cb"}},
	{ID: "rs-one", Secret: "rs-one-secret", ResourceServer: true, RedirectURIs: []string{"https://one.example/cb"}},
	{ID: "claims-app", Secret: "claims-app-secret", ClaimsRedirectURIs: []string{"https://app.example/claims?x=1"}},
	{ID: "two-claims", Secret: "two-claims-secret", ClaimsRedirectURIs: []string{"https://two.example/a", "https://two.example/b"}},
	{ID: "no-claims", Secret: "no-claims-secret"},
	{ID: "web-app", Secret: "web-app-secret", RedirectURIs: []string{"https://web.example/cb"}},
}

// Passwords of the test users.
const (
	AlicePassword = "alice password"
	BobPassword   = "bob password"
	CarolPassword = "carol password"
)

var (
	hashOnce                       sync.Once
	aliceHash, bobHash, carolHashV string
)

// Users are the test users alice, bob (group family) and carol, with
// bcrypt hashes of minimal cost.
func Users() []people.User {
	hashOnce.Do(func() {
		h := func(pw string) string {
			b, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
			if err != nil {
				panic(err)
			}
			return string(b)
		}
		aliceHash, bobHash, carolHashV = h(AlicePassword), h(BobPassword), h(CarolPassword)
	})
	return []people.User{
		{Name: "alice", PasswordHash: aliceHash, Email: "alice@example.org", DisplayName: "Alice Liddell"},
		{Name: "bob", PasswordHash: bobHash, Email: "Bob@Example.org", DisplayName: "Bob", Groups: []string{"family"}},
		{Name: "carol", PasswordHash: carolHashV, Email: "carol@example.org"},
	}
}

// PeopleFixture is an AS where people log in: the grant fixture (alice's
// labs and photos registered by rs-a, alice's rules, a trusted IdP) with
// the pages of package people, the test users and the people clients.
type PeopleFixture struct {
	*GrantFixture
	Site *people.Site
}

// NewPeopleFixture starts the fixture. mod may change both configs.
func NewPeopleFixture(t *testing.T, mod func(*authz.Config, *people.Config)) *PeopleFixture {
	t.Helper()
	pc := people.Config{Users: Users()}
	f := NewGrantFixture(t, func(c *authz.Config) {
		c.Clients = append(append([]authz.Client{}, Clients...), PeopleClients...)
		c.LoginPages = true
		if mod != nil {
			mod(c, &pc)
		}
	})
	if pc.Now == nil {
		pc.Now = f.Clock.Now
	}
	site, err := people.New(t.Context(), f.Server, f.Store, pc)
	if err != nil {
		t.Fatalf("people.New: %v", err)
	}
	t.Cleanup(func() { site.Close() })
	pf := &PeopleFixture{GrantFixture: f, Site: site}
	f.SetRoot(f.WithOwnerAPI(people.Endpoints{AS: f.Server, Site: site}))
	return pf
}

// Browser is a client with a cookie jar that does not follow redirects.
type Browser struct {
	T    *testing.T
	AS   *AS
	Jar  *cookiejar.Jar
	HTTP *http.Client
}

// Browser returns a new browser of the AS's pages.
func (as *AS) Browser() *Browser {
	jar, _ := cookiejar.New(nil)
	return &Browser{T: as.T, AS: as, Jar: jar, HTTP: &http.Client{
		Jar:           jar,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// URL is the absolute URL of a path: relative to the issuer, or absolute
// on the AS's host when it starts with the issuer's path.
func (b *Browser) URL(path string) string {
	if strings.HasPrefix(path, "http") {
		return path
	}
	if strings.HasPrefix(path, b.AS.Server.IssuerPath()+"/") {
		return b.AS.HTTP.URL + path
	}
	return b.AS.Issuer + path
}

// Send sends a request.
func (b *Browser) Send(req *http.Request) Response {
	b.T.Helper()
	resp, err := b.HTTP.Do(req)
	if err != nil {
		b.T.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return Response{Status: resp.StatusCode, Header: resp.Header, Body: body}
}

// Get gets a page.
func (b *Browser) Get(path string) Response {
	b.T.Helper()
	req, err := http.NewRequest(http.MethodGet, b.URL(path), nil)
	if err != nil {
		b.T.Fatal(err)
	}
	return b.Send(req)
}

// Post posts a form.
func (b *Browser) Post(path string, form url.Values) Response {
	b.T.Helper()
	req, err := http.NewRequest(http.MethodPost, b.URL(path), strings.NewReader(form.Encode()))
	if err != nil {
		b.T.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return b.Send(req)
}

var csrfPattern = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// CSRF returns the CSRF token of a page.
func CSRF(t testing.TB, r Response) string {
	t.Helper()
	m := csrfPattern.FindSubmatch(r.Body)
	if m == nil {
		t.Fatalf("no CSRF token in the page (%d): %s", r.Status, r.Body)
	}
	return string(m[1])
}

// Login logs the browser in as a local user and returns the CSRF token of
// the new session (read from the console).
func (b *Browser) Login(name, password string) string {
	b.T.Helper()
	page := b.Get(people.PathLogin)
	if page.Status != 200 {
		b.T.Fatalf("login page: %d %s", page.Status, page.Body)
	}
	r := b.Post(people.PathLogin, url.Values{"csrf": {CSRF(b.T, page)}, "username": {name}, "password": {password}})
	if r.Status != http.StatusSeeOther {
		b.T.Fatalf("login as %s: %d %s", name, r.Status, r.Body)
	}
	return b.CSRF()
}

// CSRF returns the CSRF token of the logged-in session.
func (b *Browser) CSRF() string {
	b.T.Helper()
	return CSRF(b.T, b.Get(people.PathConsole+"/resources"))
}

// Location returns the Location of a redirect, parsed.
func Location(t testing.TB, r Response) *url.URL {
	t.Helper()
	if r.Status < 300 || r.Status > 399 {
		t.Fatalf("status %d, want a redirect: %s", r.Status, r.Body)
	}
	u, err := url.Parse(r.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// ExpectPage checks an HTML response's status and that its body contains
// every one of parts.
func ExpectPage(t testing.TB, r Response, status int, parts ...string) {
	t.Helper()
	if r.Status != status {
		t.Fatalf("status = %d, want %d: %s", r.Status, status, r.Body)
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
		t.Fatalf("Content-Type = %q", ct)
	}
	for _, p := range parts {
		if !strings.Contains(string(r.Body), p) {
			t.Fatalf("page does not contain %q: %s", p, r.Body)
		}
	}
}

// ExpectErrorPage checks an error page that does not redirect.
func ExpectErrorPage(t testing.TB, r Response, status int, parts ...string) {
	t.Helper()
	ExpectPage(t, r, status, parts...)
	if loc := r.Header.Get("Location"); loc != "" {
		t.Fatalf("an error page redirects to %s", loc)
	}
}
