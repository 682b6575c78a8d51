// Package authztest runs an authorization server of package authz on an
// httptest server with a real Badger store and a settable clock, for the
// tests of authz and of the packages built on it. Everything goes through
// the server's HTTP interface or its exported API. The AS serves what the
// uma_server handler serves on the AS's paths: the owner API (package
// ownerapi), and Keycloak's RPT layout and grant parameters (keycloak.
// Extend: the ticketless form, response modes).
package authztest

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

	"github.com/caddy-uma/caddy-uma/authz"
	"github.com/caddy-uma/caddy-uma/authz/claimtoken"
	"github.com/caddy-uma/caddy-uma/authz/claimtoken/claimtokentest"
	"github.com/caddy-uma/caddy-uma/authz/keycloak"
	"github.com/caddy-uma/caddy-uma/authz/ownerapi"
	"github.com/caddy-uma/caddy-uma/store"
	"github.com/caddy-uma/caddy-uma/store/badgerstore"
)

// Clock is a settable clock.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// Now returns the clock's time.
func (c *Clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

// Advance moves the clock forward.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// Clients are the test clients. rs-a and rs-b are resource servers; app is
// a client application; scoped has a client_credentials scope but no PAT
// rights.
var Clients = []authz.Client{
	{ID: "rs-a", Secret: "secret-a", ResourceServer: true},
	{ID: "rs-b", Secret: "secret-b", ResourceServer: true},
	// bcrypt of "hashed-secret", cost 4.
	{ID: "rs-hashed", Secret: "$2a$04$x6lf/KCauiji2oWKmmxMNeL2xCcB7xIdPA/0uHhxG7cFi0scU6z4y", ResourceServer: true},
	{ID: "app", Secret: AppSecret, Scopes: []string{"read"}},
	{ID: "scoped", Secret: "scoped-secret", Scopes: []string{"reports"}},
	{ID: "public-app"},
}

// AppSecret is the secret of the client "app".
const AppSecret = "app secret:with&chars"

// AS is an authorization server on an httptest server. Its issuer is
// {HTTP.URL}/uma. Mux serves the AS with its owner API (or what SetRoot
// says) at "/"; tests may add handlers.
type AS struct {
	T      *testing.T
	Server *authz.Server
	// OwnerAPI is the owner API of Server.
	OwnerAPI *ownerapi.API
	HTTP     *httptest.Server
	Mux      *http.ServeMux
	Store    store.Store
	Clock    *Clock
	Issuer   string

	mu   sync.RWMutex
	root http.Handler
}

// SetRoot makes h serve the paths Mux has no other handler for.
func (as *AS) SetRoot(h http.Handler) {
	as.mu.Lock()
	as.root = h
	as.mu.Unlock()
}

func (as *AS) serveRoot(w http.ResponseWriter, r *http.Request) {
	as.mu.RLock()
	h := as.root
	as.mu.RUnlock()
	h.ServeHTTP(w, r)
}

// WithOwnerAPI joins the owner API with next (the AS, or the AS with its
// pages), as the uma_server handler serves them.
func (as *AS) WithOwnerAPI(next authz.Paths) authz.Join {
	return authz.Join{First: as.OwnerAPI, Next: next}
}

// OpenStore opens a Badger store in dir.
func OpenStore(t testing.TB, dir string) store.Store {
	t.Helper()
	st, err := badgerstore.Open(badgerstore.Options{Dir: dir})
	if err != nil {
		t.Fatalf("opening store: %v", err)
	}
	return st
}

// New starts an AS with a Badger store in a temporary directory. mod may
// change the config before the server is created.
func New(t *testing.T, mod func(*authz.Config)) *AS {
	t.Helper()
	st := OpenStore(t, t.TempDir())
	t.Cleanup(func() { st.Close() })
	return NewWithStore(t, st, mod)
}

// NewWithStore starts an AS on st.
func NewWithStore(t *testing.T, st store.Store, mod func(*authz.Config)) *AS {
	t.Helper()
	return newNode(t, st, "", &Clock{t: time.Now()}, mod)
}

// NewCluster starts one AS node on each of stores (stores of one
// database, as several Caddy nodes have), with one issuer (the first
// node's URL) and one clock. Each node's Do sends to that node.
func NewCluster(t *testing.T, stores []store.Store, mod func(*authz.Config)) []*AS {
	t.Helper()
	clock := &Clock{t: time.Now()}
	var nodes []*AS
	issuer := ""
	for _, st := range stores {
		n := newNode(t, st, issuer, clock, mod)
		if issuer == "" {
			issuer = n.Issuer
		}
		nodes = append(nodes, n)
	}
	return nodes
}

// newNode starts an AS on st; an empty issuer means its own URL.
func newNode(t *testing.T, st store.Store, issuer string, clock *Clock, mod func(*authz.Config)) *AS {
	t.Helper()
	as := &AS{T: t, Store: st, Clock: clock, Mux: http.NewServeMux()}
	as.HTTP = httptest.NewServer(as.Mux)
	t.Cleanup(as.HTTP.Close)
	as.Issuer = as.HTTP.URL + "/uma"
	if issuer == "" {
		issuer = as.Issuer
	}
	cfg := authz.Config{Issuer: issuer, Store: st, Clients: Clients, Now: clock.Now}
	// Keycloak's RPT layout and grant parameters, as the uma_server
	// handler always serves them.
	keycloak.Extend(&cfg)
	if mod != nil {
		mod(&cfg)
	}
	srv, err := authz.New(context.Background(), cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { srv.Close() })
	as.Server = srv
	as.OwnerAPI = ownerapi.New(srv)
	as.root = as.WithOwnerAPI(srv)
	as.Mux.HandleFunc("/", as.serveRoot)
	return as
}

// Response is an HTTP response, read.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// JSON decodes the body as a JSON object.
func (r Response) JSON(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.Body, &m); err != nil {
		t.Fatalf("response is not a JSON object: %v: %s", err, r.Body)
	}
	return m
}

// RawBody is a request body with its content type.
type RawBody struct{ Body, ContentType string }

// Do sends a request to the AS: path is relative to the issuer, or an
// absolute URL. body may be url.Values (a form), a string (sent as JSON), a
// RawBody, or nil. headers are name, value pairs.
func (as *AS) Do(method, path string, body any, headers ...string) Response {
	as.T.Helper()
	var rd io.Reader
	ct := ""
	switch b := body.(type) {
	case url.Values:
		rd, ct = strings.NewReader(b.Encode()), "application/x-www-form-urlencoded"
	case string:
		rd, ct = strings.NewReader(b), "application/json"
	case RawBody:
		rd, ct = strings.NewReader(b.Body), b.ContentType
	case nil:
	default:
		as.T.Fatalf("unsupported body %T", body)
	}
	u := path
	if strings.HasPrefix(path, "/") {
		u = as.Issuer + path
	}
	req, err := http.NewRequest(method, u, rd)
	if err != nil {
		as.T.Fatal(err)
	}
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		as.T.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return Response{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

// DoRaw sends a body with an explicit content type.
func (as *AS) DoRaw(method, path, body, contentType string, headers ...string) Response {
	as.T.Helper()
	return as.Do(method, path, RawBody{body, contentType}, headers...)
}

// BasicAuth is the Authorization header of client_secret_basic.
func BasicAuth(id, secret string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(id)+":"+url.QueryEscape(secret)))
}

// Bearer is the Authorization header of a Bearer token.
func Bearer(tok string) string { return "Bearer " + tok }

// PAT obtains a PAT for a resource server client.
func (as *AS) PAT(id, secret string) string {
	as.T.Helper()
	r := as.Do("POST", authz.PathToken, url.Values{"grant_type": {"client_credentials"}}, "Authorization", BasicAuth(id, secret))
	if r.Status != 200 {
		as.T.Fatalf("PAT for %s: %d %s", id, r.Status, r.Body)
	}
	return r.JSON(as.T)["access_token"].(string)
}

// Register registers a resource and returns its id.
func (as *AS) Register(pat, body string) string {
	as.T.Helper()
	r := as.Do("POST", authz.PathResourceSet, body, "Authorization", Bearer(pat))
	if r.Status != 201 {
		as.T.Fatalf("register: %d %s", r.Status, r.Body)
	}
	return r.JSON(as.T)["_id"].(string)
}

// ExpectError checks an OAuth error response.
func ExpectError(t testing.TB, r Response, status int, code string) {
	t.Helper()
	if r.Status != status {
		t.Fatalf("status = %d, want %d; body %s", r.Status, status, r.Body)
	}
	if got := r.JSON(t)["error"]; got != code {
		t.Fatalf("error = %v, want %q; body %s", got, code, r.Body)
	}
	if cc := r.Header.Get("Cache-Control"); cc != "no-store" {
		t.Fatalf("Cache-Control = %q, want no-store", cc)
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type = %q", ct)
	}
}

// AliceRules: the doctor reads and writes, the family reads, people of the
// insurer's domain must be approved by alice, e-mail is asked for when
// missing.
const AliceRules = `package uma.share

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

// GrantFixture is an AS trusting a test OpenID provider, with alice's
// resources registered by rs-a and alice's rules in force.
type GrantFixture struct {
	*AS
	IdP *claimtokentest.Provider
	// AlicePAT is rs-a's PAT acting for alice.
	AlicePAT string
	// Labs are alice's lab reports (read, write, delete), Photos her
	// photos (view).
	Labs, Photos string
}

// NewGrantFixture starts the fixture. mod may change the config.
func NewGrantFixture(t *testing.T, mod func(*authz.Config)) *GrantFixture {
	t.Helper()
	idp := claimtokentest.NewProvider(t)
	as := New(t, func(c *authz.Config) {
		c.TrustedIssuers = []claimtoken.Issuer{{Issuer: idp.Issuer(), Audiences: []string{"app"}}}
		if mod != nil {
			mod(c)
		}
	})
	f := &GrantFixture{AS: as, IdP: idp}
	var err error
	if f.AlicePAT, err = as.Server.IssuePAT(t.Context(), "rs-a", "alice"); err != nil {
		t.Fatal(err)
	}
	f.Labs = as.Register(f.AlicePAT, `{"name":"labs","resource_scopes":["read","write","delete"]}`)
	f.Photos = as.Register(f.AlicePAT, `{"name":"photos","resource_scopes":["view"]}`)
	f.PutRule(f.AlicePAT, "main", AliceRules)
	return f
}

// PutRule stores a rule module through the owner API, as the PAT's owner.
func (f *GrantFixture) PutRule(pat, name, src string) Response {
	f.T.Helper()
	return f.DoRaw("PUT", ownerapi.PathRules+"/"+name, src, "text/plain", "Authorization", Bearer(pat))
}

// Ticket asks the permission endpoint for a ticket, as rs-a for alice.
func (f *GrantFixture) Ticket(body string) string {
	f.T.Helper()
	r := f.Do("POST", authz.PathPermission, body, "Authorization", Bearer(f.AlicePAT))
	if r.Status != 201 {
		f.T.Fatalf("ticket: %d %s", r.Status, r.Body)
	}
	return r.JSON(f.T)["ticket"].(string)
}

// LabsTicket is a ticket for scopes on alice's labs.
func (f *GrantFixture) LabsTicket(scopes ...string) string {
	b, _ := json.Marshal(map[string]any{"resource_id": f.Labs, "resource_scopes": scopes})
	return f.Ticket(string(b))
}

// IDToken is an ID token of the test provider for the client "app".
func (f *GrantFixture) IDToken(claims map[string]any) string {
	f.T.Helper()
	c := map[string]any{"aud": "app"}
	for k, v := range claims {
		c[k] = v
	}
	return f.IdP.Sign(f.T, c)
}

// Grant posts a UMA grant request as client "app".
func (f *GrantFixture) Grant(params url.Values) Response {
	f.T.Helper()
	params.Set("grant_type", authz.GrantTypeUMATicket)
	return f.Do("POST", authz.PathToken, params, "Authorization", BasicAuth("app", AppSecret))
}

// WithClaims are the parameters of a grant request with a ticket and an ID
// token pushed as claim token.
func WithClaims(tk, idToken string) url.Values {
	return url.Values{"ticket": {tk}, "claim_token": {idToken}, "claim_token_format": {claimtoken.FormatIDToken}}
}

// RPTPermissions introspects an RPT as rs-a and returns resource -> scopes.
func (f *GrantFixture) RPTPermissions(rpt string) map[string][]string {
	f.T.Helper()
	r := f.Do("POST", authz.PathIntrospect, url.Values{"token": {rpt}}, "Authorization", Bearer(f.AlicePAT))
	var resp struct {
		Active      bool               `json:"active"`
		Permissions []authz.Permission `json:"permissions"`
	}
	if err := json.Unmarshal(r.Body, &resp); err != nil || !resp.Active {
		f.T.Fatalf("RPT inactive: %s", r.Body)
	}
	if strings.Contains(string(r.Body), `"scope"`) {
		f.T.Fatalf("introspection of an RPT carries scope: %s", r.Body)
	}
	out := map[string][]string{}
	for _, p := range resp.Permissions {
		out[p.ResourceID] = p.ResourceScopes
	}
	return out
}

// ExpectUMAError checks a UMA grant error and whether it carries a ticket,
// and returns its body.
func ExpectUMAError(t testing.TB, r Response, code string, wantTicket bool) map[string]any {
	t.Helper()
	status := 403
	if code == "invalid_grant" || code == "invalid_scope" || code == "invalid_request" {
		status = 400
	}
	ExpectError(t, r, status, code)
	m := r.JSON(t)
	if _, has := m["ticket"]; has != wantTicket {
		t.Fatalf("ticket present = %v, want %v: %s", has, wantTicket, r.Body)
	}
	return m
}
