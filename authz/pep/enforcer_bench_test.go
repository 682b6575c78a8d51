package pep_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/caddy-uma/caddy-uma/authz"
	"github.com/caddy-uma/caddy-uma/authz/authztest"
	"github.com/caddy-uma/caddy-uma/authz/claimtoken"
	"github.com/caddy-uma/caddy-uma/authz/claimtoken/claimtokentest"
	"github.com/caddy-uma/caddy-uma/authz/ownerapi"
	"github.com/caddy-uma/caddy-uma/authz/pep"
)

// The enforcement point's hot paths through its exported API, co-hosted
// with a real AS (package authz on a Badger store on disk): an authorized
// request with a cached RPT, mapped by a template or by the registered
// uris of more and more resources.

// enforcerBench is an AS with alice's rules and a doctor's ID token that
// they grant read, as the co-hosted enforcement point of rs-a sees it.
type enforcerBench struct {
	srv     *authz.Server
	paths   http.Handler // the AS's paths with the owner API
	pat     string       // rs-a's PAT acting for alice
	idToken string
}

func newEnforcerBench(b *testing.B) *enforcerBench {
	b.Helper()
	idp := claimtokentest.NewProvider(b)
	st := authztest.OpenStore(b, b.TempDir())
	b.Cleanup(func() { st.Close() })
	srv, err := authz.New(context.Background(), authz.Config{
		Issuer: "https://as.example", Store: st, Clients: authztest.Clients,
		TrustedIssuers: []claimtoken.Issuer{{Issuer: idp.Issuer(), Audiences: []string{"app"}}},
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { srv.Close() })
	pat, err := srv.IssuePAT(context.Background(), "rs-a", "alice")
	if err != nil {
		b.Fatal(err)
	}
	eb := &enforcerBench{srv: srv, paths: authz.Join{First: ownerapi.New(srv), Next: srv}, pat: pat,
		idToken: idp.Sign(b, map[string]any{"aud": "app", "sub": "doc", "email": "doctor@clinic.example"})}
	if rec := eb.serve("PUT", ownerapi.PathRules+"/main", authztest.AliceRules, "text/plain", "Bearer "+pat); rec.Code != http.StatusOK {
		b.Fatal(rec.Code, rec.Body.String())
	}
	return eb
}

func (eb *enforcerBench) serve(method, path, body, ctype, auth string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, "https://as.example"+path, strings.NewReader(body))
	req.Header.Set("Content-Type", ctype)
	req.Header.Set("Authorization", auth)
	rec := httptest.NewRecorder()
	eb.paths.ServeHTTP(rec, req)
	return rec
}

func (eb *enforcerBench) enforcer(b *testing.B, cfg pep.Config) http.Handler {
	b.Helper()
	cfg.AS = pep.CoHosted("rs-a", func(context.Context) pep.LocalServer { return eb.srv })
	e, err := pep.New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	return e.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
}

var ticketParam = regexp.MustCompile(`ticket="([^"]+)"`)

// rptFor sends path without a token through h, redeems the ticket of its
// challenge with the doctor's ID token, and returns the RPT, checked once
// through h.
func (eb *enforcerBench) rptFor(b *testing.B, h http.Handler, path string) *http.Request {
	b.Helper()
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", path, nil))
	m := ticketParam.FindStringSubmatch(w.Header().Get("WWW-Authenticate"))
	if w.Code != http.StatusUnauthorized || m == nil {
		b.Fatalf("%s without a token: %d %q", path, w.Code, w.Header().Get("WWW-Authenticate"))
	}
	form := url.Values{"grant_type": {authz.GrantTypeUMATicket}, "ticket": {m[1]}, "claim_token": {eb.idToken},
		"claim_token_format": {claimtoken.FormatIDToken}}.Encode()
	rec := eb.serve("POST", authz.PathToken, form, "application/x-www-form-urlencoded", authztest.BasicAuth("app", authztest.AppSecret))
	var out struct {
		AccessToken string `json:"access_token"`
	}
	if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &out) != nil {
		b.Fatal(rec.Code, rec.Body.String())
	}
	r := httptest.NewRequest("GET", path, nil)
	r.Header.Set("Authorization", "Bearer "+out.AccessToken)
	w = httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != http.StatusOK {
		b.Fatalf("%s with its RPT: %d %s", path, w.Code, w.Body.String())
	}
	return r
}

func benchAuthorized(b *testing.B, h http.Handler, r *http.Request) {
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != http.StatusOK {
			b.Fatal(w.Code, w.Body.String())
		}
	}
}

// BenchmarkEnforcerCachedRPT is an authorized request mapped by a
// template (/api/records/{owner}/{id}), with its RPT in the cache: the
// path match, the cache lookup, and the co-hosted revocation check.
func BenchmarkEnforcerCachedRPT(b *testing.B) {
	eb := newEnforcerBench(b)
	h := eb.enforcer(b, pep.Config{Templates: []pep.Template{{Path: "/api/records/{owner}/{id}", Owner: "{owner}"}}})
	benchAuthorized(b, h, eb.rptFor(b, h, "/api/records/alice/1"))
}

// BenchmarkEnforcerRegisteredURIs is the same request mapped by the uris
// of the resources that rs-a registered (registered_uris), with more and
// more of them: a flat match costs the same at every size.
func BenchmarkEnforcerRegisteredURIs(b *testing.B) {
	for _, n := range []int{1, 100, 1000} {
		b.Run(fmt.Sprintf("resources=%d", n), func(b *testing.B) {
			eb := newEnforcerBench(b)
			for i := range n {
				body := fmt.Sprintf(`{"name":"album-%d","resource_scopes":["read","write"],"uris":["/photos/alice/%d/*"]}`, i, i)
				if rec := eb.serve("POST", authz.PathResourceSet, body, "application/json", "Bearer "+eb.pat); rec.Code != http.StatusCreated {
					b.Fatal(rec.Code, rec.Body.String())
				}
			}
			h := eb.enforcer(b, pep.Config{RegisteredURIs: true})
			benchAuthorized(b, h, eb.rptFor(b, h, fmt.Sprintf("/photos/alice/%d/beach.jpg", n/2)))
		})
	}
}
