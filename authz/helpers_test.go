package authz

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-uma/caddy-uma/store"
	"github.com/caddy-uma/caddy-uma/store/badgerstore"
)

// testClock is a settable clock.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// Test clients. rs-a and rs-b are resource servers; app is a client
// application; scoped has a client_credentials scope but no PAT rights.
var testClients = []Client{
	{ID: "rs-a", Secret: "secret-a", ResourceServer: true},
	{ID: "rs-b", Secret: "secret-b", ResourceServer: true},
	// bcrypt of "hashed-secret", cost 4.
	{ID: "rs-hashed", Secret: "$2a$04$x6lf/KCauiji2oWKmmxMNeL2xCcB7xIdPA/0uHhxG7cFi0scU6z4y", ResourceServer: true},
	{ID: "app", Secret: "app secret:with&chars", Scopes: []string{"read"}},
	{ID: "scoped", Secret: "scoped-secret", Scopes: []string{"reports"}},
	{ID: "public-app"},
}

type testAS struct {
	t      *testing.T
	srv    *Server
	http   *httptest.Server
	store  store.Store
	clock  *testClock
	issuer string
}

func openTestStore(t testing.TB, dir string) store.Store {
	t.Helper()
	st, err := badgerstore.Open(badgerstore.Options{Dir: dir})
	if err != nil {
		t.Fatalf("opening store: %v", err)
	}
	return st
}

// newTestAS starts an AS on an httptest server with a Badger store. mod
// may change the config before the server is created.
func newTestAS(t *testing.T, mod func(*Config)) *testAS {
	t.Helper()
	st := openTestStore(t, t.TempDir())
	t.Cleanup(func() { st.Close() })
	return newTestASWithStore(t, st, mod)
}

func newTestASWithStore(t *testing.T, st store.Store, mod func(*Config)) *testAS {
	t.Helper()
	clock := &testClock{t: time.Now()}
	as := &testAS{t: t, store: st, clock: clock}
	mux := http.NewServeMux()
	as.http = httptest.NewServer(mux)
	t.Cleanup(as.http.Close)
	as.issuer = as.http.URL + "/uma"
	cfg := Config{Issuer: as.issuer, Store: st, Clients: testClients, Now: clock.Now}
	if mod != nil {
		mod(&cfg)
	}
	srv, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	as.srv = srv
	mux.Handle("/", srv)
	return as
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("response is not a JSON object: %v: %s", err, r.body)
	}
	return m
}

// do sends a request to the AS. body may be url.Values (form), a string
// (sent as JSON) or nil.
func (as *testAS) do(method, path string, body any, headers ...string) response {
	as.t.Helper()
	var rd io.Reader
	ct := ""
	switch b := body.(type) {
	case url.Values:
		rd, ct = strings.NewReader(b.Encode()), "application/x-www-form-urlencoded"
	case string:
		rd, ct = strings.NewReader(b), "application/json"
	case rawBody:
		rd, ct = strings.NewReader(b.body), b.contentType
	case nil:
	default:
		as.t.Fatalf("unsupported body %T", body)
	}
	u := path
	if strings.HasPrefix(path, "/") {
		u = as.issuer + path
	}
	req, err := http.NewRequest(method, u, rd)
	if err != nil {
		as.t.Fatal(err)
	}
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		as.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

func basicAuth(id, secret string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(id)+":"+url.QueryEscape(secret)))
}

func bearer(tok string) string { return "Bearer " + tok }

// pat obtains a PAT for a resource server client.
func (as *testAS) pat(id, secret string) string {
	as.t.Helper()
	r := as.do("POST", PathToken, url.Values{"grant_type": {"client_credentials"}}, "Authorization", basicAuth(id, secret))
	if r.status != 200 {
		as.t.Fatalf("PAT for %s: %d %s", id, r.status, r.body)
	}
	return r.json(as.t)["access_token"].(string)
}

// register registers a resource and returns its id.
func (as *testAS) register(pat, body string) string {
	as.t.Helper()
	r := as.do("POST", PathResourceSet, body, "Authorization", bearer(pat))
	if r.status != 201 {
		as.t.Fatalf("register: %d %s", r.status, r.body)
	}
	return r.json(as.t)["_id"].(string)
}

// expectError checks an OAuth error response.
func expectError(t *testing.T, r response, status int, code string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status = %d, want %d; body %s", r.status, status, r.body)
	}
	if got := r.json(t)["error"]; got != code {
		t.Fatalf("error = %v, want %q; body %s", got, code, r.body)
	}
	if cc := r.header.Get("Cache-Control"); cc != "no-store" {
		t.Fatalf("Cache-Control = %q, want no-store", cc)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type = %q", ct)
	}
}

// rawBody is a request body with its content type.
type rawBody struct{ body, contentType string }

// pat2 is pat under another name, for fixtures that embed testAS.
func (as *testAS) pat2(id, secret string) string { return as.pat(id, secret) }

// AddShareForTest shares a resource with a subject.
func (s *Server) AddShareForTest(t *testing.T, owner, resourceID, subject string, scopes ...string) error {
	t.Helper()
	_, err := s.AddShare(t.Context(), Share{Owner: owner, ResourceID: resourceID, Subject: subject, Scopes: scopes})
	return err
}
