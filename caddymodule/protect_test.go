package caddymodule

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
	"go.uber.org/zap"

	"github.com/caddy-uma/caddy-uma/authz/pep"
)

// protectAS is an authorization server for the handler's tests: every
// resource exists, tickets are numbered, and the RPT "good" grants read on
// every resource.
type protectAS struct {
	mu      sync.Mutex
	tickets int
	request map[string][]string
	down    bool
}

func (a *protectAS) Issuer(context.Context) (string, error) { return "https://as.example", nil }
func (a *protectAS) EnsureResource(_ context.Context, res pep.Resource) (string, error) {
	return "id:" + res.Owner + ":" + res.Name, nil
}

func (a *protectAS) RequestTicket(_ context.Context, _ []pep.Permission, request map[string][]string) (string, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.down {
		return "", pep.ErrUnavailable
	}
	a.tickets++
	a.request = request
	return fmt.Sprintf("tk-%d", a.tickets), nil
}

func (a *protectAS) VerifyRPT(_ context.Context, token string) (*pep.RPT, error) {
	if token != "good" {
		return nil, pep.ErrInvalidRPT
	}
	return &pep.RPT{ID: "j", Subject: "bob", ClientID: "app", ExpiresAt: time.Now().Add(time.Hour),
		Permissions: []pep.Permission{{ResourceID: "id:alice:/api/records/alice/1", Scopes: []string{"read", "list"}}}}, nil
}
func (a *protectAS) RecheckInterval() time.Duration { return -1 }
func (a *protectAS) Recheck(_ context.Context, _ string, rpt *pep.RPT) (*pep.RPT, error) {
	return rpt, nil
}
func (a *protectAS) RegisteredResources(context.Context) ([]pep.Resource, error) { return nil, nil }

// newTestProtect returns a provisioned handler on as.
func newTestProtect(t *testing.T, as pep.AuthorizationServer, mod func(*pep.Config)) *Protect {
	t.Helper()
	cfg := pep.Config{
		AS: as, Realm: "records", Expand: expandPlaceholders,
		Templates: []pep.Template{{
			Path: "/api/records/{owner}/{id}", Owner: "{owner}",
			Context: map[string]string{"agent": "{http.request.header.User-Agent}", "id": "{id}"},
		}},
	}
	if mod != nil {
		mod(&cfg)
	}
	e, err := pep.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &Protect{enforcer: e, StripAuthorization: cfg.StripAuthorization, audit: zap.NewNop()}
}

// serve runs the handler on a request prepared as Caddy does.
func serve(t *testing.T, p *Protect, method, target, token string) (*httptest.ResponseRecorder, *caddy.Replacer, *http.Request, error) {
	t.Helper()
	r := httptest.NewRequest(method, target, nil)
	r.Header.Set("User-Agent", "test-agent")
	if token != "" {
		r.Header.Set("Authorization", "Bearer "+token)
	}
	repl := caddyhttp.NewTestReplacer(r)
	w := httptest.NewRecorder()
	var seen *http.Request
	next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		seen = r
		w.WriteHeader(http.StatusTeapot)
		return nil
	})
	err := p.ServeHTTP(w, r, next)
	return w, repl, seen, err
}

func TestProtectServeHTTP(t *testing.T) {
	as := &protectAS{}
	p := newTestProtect(t, as, func(c *pep.Config) { c.StripAuthorization = true })

	// No token: a 401 handler error, with the challenge already set.
	w, repl, seen, err := serve(t, p, "GET", "/api/records/alice/1", "")
	var he caddyhttp.HandlerError
	if !errors.As(err, &he) || he.StatusCode != http.StatusUnauthorized || seen != nil {
		t.Fatalf("no token: err %v, next called: %v", err, seen != nil)
	}
	if got := w.Header().Get("WWW-Authenticate"); got != `UMA realm="records", as_uri="https://as.example", ticket="tk-1"` {
		t.Errorf("WWW-Authenticate = %s", got)
	}
	if v, _ := repl.GetString("http.auth.uma.decision"); v != "no_token" {
		t.Errorf("decision placeholder = %q", v)
	}
	if v, _ := repl.GetString("http.auth.uma.resource_id"); v != "id:alice:/api/records/alice/1" {
		t.Errorf("resource_id placeholder = %q", v)
	}
	// Caddy placeholders and path parameters expand into the request context.
	if as.request["agent"][0] != "test-agent" || as.request["id"][0] != "1" {
		t.Errorf("request context = %v", as.request)
	}

	// A valid RPT: next, with the placeholders, without the Authorization header.
	_, repl, seen, err = serve(t, p, "GET", "/api/records/alice/1", "good")
	if err != nil || seen == nil {
		t.Fatalf("with the RPT: %v", err)
	}
	for k, want := range map[string]string{
		"http.auth.uma.subject": "bob", "http.auth.uma.client": "app", "http.auth.uma.scopes": "list read",
		"http.auth.uma.resource_id": "id:alice:/api/records/alice/1", "http.auth.uma.owner": "alice",
		"http.auth.user.id": "bob", "http.auth.uma.decision": "authorized",
	} {
		if got, _ := repl.GetString(k); got != want {
			t.Errorf("{%s} = %q, want %q", k, got, want)
		}
	}
	if seen.Header.Get("Authorization") != "" {
		t.Error("Authorization was not stripped")
	}

	// AS down: 403 with the Warning.
	as.mu.Lock()
	as.down = true
	as.mu.Unlock()
	w, _, _, err = serve(t, p, "GET", "/api/records/alice/2", "")
	if !errors.As(err, &he) || he.StatusCode != http.StatusForbidden || w.Header().Get("Warning") != pep.WarningUnreachable {
		t.Errorf("AS down: %v %v", err, w.Header())
	}
	// Ambiguous path: 400.
	if _, _, _, err = serve(t, p, "GET", "/api/records/alice/../bob/1", ""); !errors.As(err, &he) || he.StatusCode != http.StatusBadRequest {
		t.Errorf("ambiguous path: %v", err)
	}
}

func TestProtectModes(t *testing.T) {
	as := &protectAS{}
	for mode, wantNext := range map[pep.Mode]bool{pep.Enforcing: false, pep.Permissive: true, pep.Disabled: true} {
		p := newTestProtect(t, as, func(c *pep.Config) { c.Mode = mode })
		_, _, seen, err := serve(t, p, "DELETE", "/api/records/alice/1", "")
		if (seen != nil) != wantNext || (err == nil) != wantNext {
			t.Errorf("%s: next called %v, err %v", mode, seen != nil, err)
		}
	}
}

func TestExpandPlaceholdersIsOnePass(t *testing.T) {
	r := httptest.NewRequest("GET", "/x", nil)
	r.Header.Set("X-Owner", "{env.HOME}")
	caddyhttp.NewTestReplacer(r)
	params := pep.Params{{Name: "owner", Value: "{http.request.header.X-Owner}"}}
	for value, want := range map[string]string{
		"{http.request.header.X-Owner}": "{env.HOME}",                    // a header's value is not expanded
		"{owner}":                       "{http.request.header.X-Owner}", // nor a path parameter's
		"{http.request.method}-{owner}": "GET-{http.request.header.X-Owner}",
		"{nope}":                        "",
		"plain":                         "plain",
	} {
		if got := expandPlaceholders(r, params, value); got != want {
			t.Errorf("expand(%q) = %q, want %q", value, got, want)
		}
	}
}

func TestProtectProvisionErrors(t *testing.T) {
	tests := map[string]struct {
		p    Protect
		want string
	}{
		"no AS":                 {Protect{ResourceServer: "rs"}, "an authorization server is required"},
		"both":                  {Protect{ResourceServer: "rs", AS: "https://a", CoHosted: true}, "exclude each other"},
		"no resource server":    {Protect{CoHosted: true}, "resource_server"},
		"co-hosted, no uma app": {Protect{CoHosted: true, ResourceServer: "rs"}, "needs the uma app"},
		"co-hosted secret":      {Protect{CoHosted: true, ResourceServer: "rs", ClientSecret: "s"}, "co-hosted needs none"},
		"co-hosted revocation":  {Protect{CoHosted: true, ResourceServer: "rs", RevocationCheck: 1}, "revocation applies at once"},
		"remote, bad issuer":    {Protect{AS: "as.example", ResourceServer: "rs", ClientSecret: "s"}, "not an http or https URL"},
		"bad template":          {Protect{AS: "https://as.example", ResourceServer: "rs", ClientSecret: "s", Resources: []ProtectedResource{{Path: "x", Owner: "o"}}}, "must start with /"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			err := tt.p.Provision(newTestContext(t))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Provision = %v, want %q", err, tt.want)
			}
			_ = tt.p.Cleanup()
		})
	}
}

// TestProtectConfigErrorsNameTheFix: a configuration mistake is refused
// when the config loads, and the message starts with the directive and
// the value, then says what to do.
func TestProtectConfigErrorsNameTheFix(t *testing.T) {
	remote := func(mod func(*Protect)) Protect {
		p := Protect{AS: "https://as.example", ResourceServer: "rs", ClientSecret: "s"}
		mod(&p)
		return p
	}
	tests := map[string]struct {
		p    Protect
		want string // prefix
		also []string
	}{
		"remote, no secret": {remote(func(p *Protect) { p.ClientSecret = "" }),
			"client_secret is missing: uma_protect with as https://as.example needs", []string{"client_secret {env."}},
		"remote, unset secret": {remote(func(p *Protect) { p.ClientSecret = "{env.CADDY_UMA_UNSET_VAR}" }),
			"client_secret {env.CADDY_UMA_UNSET_VAR} expands to nothing: set the environment variable CADDY_UMA_UNSET_VAR", nil},
		"remote, unknown placeholder in the secret": {remote(func(p *Protect) { p.ClientSecret = "{secret}" }),
			"client_secret {secret}: unknown placeholder {secret}", []string{"{env.NAME}", "{file.PATH}"}},
		"remote, a literal secret with an unknown placeholder": {remote(func(p *Protect) { p.ClientSecret = "s3cr3t{x}" }),
			"client_secret {x}: unknown placeholder {x}", nil},
		"remote, unset issuer": {remote(func(p *Protect) { p.AS = "{env.CADDY_UMA_UNSET_VAR}" }),
			"as {env.CADDY_UMA_UNSET_VAR} expands to nothing: set the environment variable CADDY_UMA_UNSET_VAR", nil},
		"unset resource server": {remote(func(p *Protect) { p.ResourceServer = "{env.CADDY_UMA_UNSET_VAR}" }),
			"resource_server {env.CADDY_UMA_UNSET_VAR} expands to nothing: set the environment variable CADDY_UMA_UNSET_VAR", nil},
		"mistyped owner placeholder": {remote(func(p *Protect) {
			p.Resources = []ProtectedResource{{Path: "/api/records/{owner}/{id}", Owner: "{ownr}"}}
		}), "owner {ownr} of resource /api/records/{owner}/{id}: {ownr} names neither a parameter of the path", []string{"did you mean {owner}?"}},
		"bad method_override": {remote(func(p *Protect) { p.MethodOverride = "honour" }),
			`method_override "honour": want strip or keep`, nil},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			err := tt.p.Provision(newTestContext(t))
			_ = tt.p.Cleanup()
			if err == nil || !strings.HasPrefix(err.Error(), tt.want) || strings.Contains(err.Error(), "<nil>") {
				t.Fatalf("Provision = %v\nwant a message starting %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "s3cr3t") {
				t.Errorf("the message shows the secret: %v", err)
			}
			for _, s := range tt.also {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("%q does not say %q", err, s)
				}
			}
		})
	}
}

// TestKnownPlaceholdersAreCaddys: the fixed placeholder names a template
// may use are ones Caddy's replacer knows, so the list cannot drift from
// the Caddy it is built with.
func TestKnownPlaceholdersAreCaddys(t *testing.T) {
	// What Caddy's server puts in a request's context before handlers run.
	r := httptest.NewRequest("GET", "/a/b", nil)
	ctx := context.WithValue(r.Context(), http.LocalAddrContextKey, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 80})
	ctx = context.WithValue(ctx, caddyhttp.ExtraLogFieldsCtxKey, new(caddyhttp.ExtraLogFields))
	ctx = context.WithValue(ctx, caddyhttp.OriginalRequestCtxKey, *r)
	r = r.WithContext(context.WithValue(ctx, caddyhttp.VarsCtxKey, map[string]any{}))
	repl := caddyhttp.NewTestReplacer(r)
	for _, key := range append(slices.Clone(requestPlaceholders), globalPlaceholders...) {
		if key == "http.shutting_down" || key == "http.time_until_shutdown" {
			continue // they need a running server
		}
		if _, ok := repl.Get(key); !ok {
			t.Errorf("Caddy does not know {%s}", key)
		}
	}
	for key, want := range map[string]bool{
		"http.request.uri.path.0": true, "http.request.host.labels.1": true, "http.request.remote.host/24,64": true,
		"http.request.uri.path.x": false, "http.request.remote.host/x": false, "http.vars.": false, "ownr": false,
		"http.response.header.X": false, "http.reverse_proxy.upstream.host": false,
	} {
		if got := knownPlaceholder(key); got != want {
			t.Errorf("knownPlaceholder(%q) = %v, want %v", key, got, want)
		}
	}
}

func TestProtectCoHostedNeedsAResourceServerClient(t *testing.T) {
	for client, want := range map[string]string{
		"nobody":   `"nobody" is not a client of the uma app`,
		"demo-app": `client "demo-app" of the uma app is not a resource server`,
	} {
		cfg := caddy.Config{AppsRaw: caddy.ModuleMap{"uma": json.RawMessage(`{"issuer":"http://localhost:8080",` +
			`"clients":[{"id":"rs-api","secret":"s","resource_server":true},{"id":"demo-app","secret":"s"}]}`)}}
		handler := fmt.Sprintf(`{"handler":"uma_protect","co_hosted":true,"resource_server":%q}`, client)
		cfg.AppsRaw["http"] = json.RawMessage(`{"servers":{"s":{"listen":[":0"],"routes":[{"handle":[` + handler + `]}]}}}`)
		err := caddy.Validate(&cfg)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", client, err, want)
		}
	}
}

func TestProtectRemoteIsShared(t *testing.T) {
	a := Protect{AS: "https://as.example", ResourceServer: "rs", ClientSecret: "s"}
	b := a
	c := Protect{AS: "https://as.example", ResourceServer: "rs", ClientSecret: "other"}
	for _, p := range []*Protect{&a, &b, &c} {
		if err := p.Provision(newTestContext(t)); err != nil {
			t.Fatal(err)
		}
	}
	if a.remoteKey == "" || a.remoteKey != b.remoteKey || a.remoteKey == c.remoteKey {
		t.Errorf("keys %q %q %q: want a and b shared, c apart", a.remoteKey, b.remoteKey, c.remoteKey)
	}
	if strings.Contains(a.remoteKey, "s") && strings.Contains(a.remoteKey, "https") {
		t.Error("the pool key shows the settings")
	}
	for _, p := range []*Protect{&a, &b, &c} {
		if err := p.Cleanup(); err != nil {
			t.Fatal(err)
		}
	}
	if _, loaded := remotePool.References(a.remoteKey); loaded {
		t.Error("the shared remote outlived its handlers")
	}
}

func TestDemoIdP(t *testing.T) {
	p := &DemoIdP{Issuer: "http://localhost:8080/idp/"}
	if err := p.Provision(newTestContext(t)); err != nil {
		t.Fatal(err)
	}
	defer p.Cleanup()
	call := func(method, target string, form url.Values) *httptest.ResponseRecorder {
		var body io.Reader
		if form != nil {
			body = strings.NewReader(form.Encode())
		}
		r := httptest.NewRequest(method, target, body)
		if form != nil {
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		w := httptest.NewRecorder()
		err := p.ServeHTTP(w, r, caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
			w.WriteHeader(http.StatusTeapot)
			return nil
		}))
		var he caddyhttp.HandlerError
		if errors.As(err, &he) {
			w.Code = he.StatusCode
		}
		return w
	}

	var md map[string]any
	w := call("GET", "/idp/.well-known/openid-configuration", nil)
	if err := json.Unmarshal(w.Body.Bytes(), &md); err != nil || md["issuer"] != "http://localhost:8080/idp" || md["jwks_uri"] != "http://localhost:8080/idp/jwks" {
		t.Fatalf("discovery: %d %s", w.Code, w.Body)
	}
	set, err := jwk.Parse(call("GET", "/idp/jwks", nil).Body.Bytes())
	if err != nil || set.Len() != 1 {
		t.Fatalf("jwks: %v", err)
	}

	w = call("POST", "/idp/id_token", url.Values{"sub": {"bob"}, "aud": {"demo-app"}, "email": {"bob@example.com"}, "groups": {"family", "friends"}})
	var out struct {
		IDToken string `json:"id_token"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil || out.IDToken == "" {
		t.Fatalf("id_token: %d %s", w.Code, w.Body)
	}
	key, _ := set.Key(0)
	alg, _ := key.Algorithm()
	payload, err := jws.Verify([]byte(out.IDToken), jws.WithKey(alg, key))
	if err != nil {
		t.Fatalf("the ID token does not verify with the JWKS: %v", err)
	}
	var claims map[string]any
	json.Unmarshal(payload, &claims)
	if claims["iss"] != "http://localhost:8080/idp" || claims["sub"] != "bob" || claims["aud"] != "demo-app" ||
		claims["email"] != "bob@example.com" || claims["email_verified"] != true || claims["exp"] == nil || claims["iat"] == nil {
		t.Errorf("claims = %v", claims)
	}

	for name, tc := range map[string]struct {
		method, target string
		form           url.Values
		want           int
	}{
		"no sub":              {"POST", "/idp/id_token", url.Values{"aud": {"a"}}, http.StatusBadRequest},
		"no aud":              {"POST", "/idp/id_token", url.Values{"sub": {"a"}}, http.StatusBadRequest},
		"GET id_token":        {"GET", "/idp/id_token", nil, http.StatusMethodNotAllowed},
		"other path":          {"GET", "/idp/other", nil, http.StatusTeapot},
		"outside the issuer":  {"GET", "/jwks", nil, http.StatusTeapot},
		"prefix is not a dir": {"GET", "/idpx/jwks", nil, http.StatusTeapot},
	} {
		if w := call(tc.method, tc.target, tc.form); w.Code != tc.want {
			t.Errorf("%s: %d, want %d", name, w.Code, tc.want)
		}
	}

	// The key survives a reload: a second handler of the issuer shares it.
	q := &DemoIdP{Issuer: "http://localhost:8080/idp"}
	if err := q.Provision(newTestContext(t)); err != nil {
		t.Fatal(err)
	}
	defer q.Cleanup()
	if q.key != p.key {
		t.Error("a second handler of the same issuer has another key")
	}
}
