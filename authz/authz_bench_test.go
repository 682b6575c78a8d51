package authz_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/caddy-uma/caddy-uma/authz"
	"github.com/caddy-uma/caddy-uma/authz/authztest"
	"github.com/caddy-uma/caddy-uma/authz/claimtoken"
	"github.com/caddy-uma/caddy-uma/authz/claimtoken/claimtokentest"
	"github.com/caddy-uma/caddy-uma/authz/keycloak"
	"github.com/caddy-uma/caddy-uma/authz/ownerapi"
	"github.com/caddy-uma/caddy-uma/store"
	"github.com/caddy-uma/caddy-uma/store/pgstore"
	"github.com/caddy-uma/caddy-uma/store/pgstore/pgtest"
)

// benchAS is an AS served in-process (no network) for benchmarks, on a
// Badger store.
func benchAS(b *testing.B) (*authz.Server, *claimtokentest.Provider) {
	b.Helper()
	st := authztest.OpenStore(b, b.TempDir())
	b.Cleanup(func() { st.Close() })
	return benchASOn(b, st)
}

// benchASOn is benchAS on the store st.
func benchASOn(b testing.TB, st store.Store) (*authz.Server, *claimtokentest.Provider) {
	b.Helper()
	idp := claimtokentest.NewProvider(b)
	cfg := authz.Config{
		Issuer: "https://as.example", Store: st, Clients: authztest.Clients,
		TrustedIssuers: []claimtoken.Issuer{{Issuer: idp.Issuer(), Audiences: []string{"app"}}},
	}
	keycloak.Extend(&cfg) // Keycloak's ticketless form and response modes
	srv, err := authz.New(context.Background(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { srv.Close() })
	return srv, idp
}

func serve(b testing.TB, srv http.Handler, method, path, body, ctype, auth string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, "https://as.example"+path, strings.NewReader(body))
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	rec := httptest.NewRecorder()
	srv.ServeHTTP(rec, req)
	return rec
}

// BenchmarkClientCredentials compares a PAT request authenticated with a
// plain secret and with a bcrypt hash (verified once, then cached): the
// ratio shows that hashed secrets do not cost a bcrypt per request.
func BenchmarkClientCredentials(b *testing.B) {
	srv, _ := benchAS(b)
	form := url.Values{"grant_type": {"client_credentials"}}.Encode()
	for _, c := range []struct{ name, id, secret string }{{"plain", "rs-a", "secret-a"}, {"bcrypt", "rs-hashed", "hashed-secret"}} {
		b.Run(c.name, func(b *testing.B) {
			auth := authztest.BasicAuth(c.id, c.secret)
			for b.Loop() {
				if rec := serve(b, srv, "POST", authz.PathToken, form, "application/x-www-form-urlencoded", auth); rec.Code != http.StatusOK {
					b.Fatal(rec.Code, rec.Body.String())
				}
			}
		})
	}
}

// BenchmarkPermissionTicket measures ticket issuance (no store write).
func BenchmarkPermissionTicket(b *testing.B) {
	srv, _ := benchAS(b)
	pat := strings.Split(serve(b, srv, "POST", authz.PathToken, "grant_type=client_credentials", "application/x-www-form-urlencoded", authztest.BasicAuth("rs-a", "secret-a")).Body.String(), `"`)[3]
	rec := serve(b, srv, "POST", authz.PathResourceSet, `{"name":"x","resource_scopes":["read"]}`, "application/json", "Bearer "+pat)
	id := strings.Split(rec.Body.String(), `"`)[3]
	body := `{"resource_id":"` + id + `","resource_scopes":["read"]}`
	for b.Loop() {
		if rec := serve(b, srv, "POST", authz.PathPermission, body, "application/json", "Bearer "+pat); rec.Code != http.StatusCreated {
			b.Fatal(rec.Code, rec.Body.String())
		}
	}
}

// BenchmarkUMAGrant measures a whole UMA grant: ticket redemption, ID
// token verification, rule evaluation, RPT, refresh token and PCT.
func BenchmarkUMAGrant(b *testing.B) {
	srv, idp := benchAS(b)
	grant := benchGrant(b, srv, idp)
	for b.Loop() {
		grant(b)
	}
}

// BenchmarkUMAGrantParallel is BenchmarkUMAGrant with 1 and 32 clients
// at once, on Badger and on PostgreSQL, in grants per second: what the
// synced commits of a grant, shared between concurrent grants, allow.
func BenchmarkUMAGrantParallel(b *testing.B) {
	backends := []struct {
		name string
		open func(b *testing.B) store.Store
	}{
		{"badger", func(b *testing.B) store.Store { return authztest.OpenStore(b, b.TempDir()) }},
		{"postgres", func(b *testing.B) store.Store {
			st, err := pgstore.Open(b.Context(), pgstore.Options{DSN: pgtest.DSN(b)})
			if err != nil {
				b.Fatal(err)
			}
			return st
		}},
	}
	for _, be := range backends {
		for _, clients := range []int{1, 32} {
			b.Run(fmt.Sprintf("%s/clients=%d", be.name, clients), func(b *testing.B) {
				st := be.open(b)
				b.Cleanup(func() { st.Close() })
				srv, idp := benchASOn(b, st)
				grant := benchGrant(b, srv, idp)
				var next atomic.Int64
				b.ResetTimer()
				var wg sync.WaitGroup
				for range clients {
					wg.Go(func() {
						for next.Add(1) <= int64(b.N) {
							grant(b)
						}
					})
				}
				wg.Wait()
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "grants/s")
			})
		}
	}
}

// benchGrant registers a resource of alice with rules that grant it to a
// doctor, and returns one UMA grant on it: a ticket, then the grant with
// the doctor's ID token, answered with an RPT, a refresh token and a PCT.
func benchGrant(b *testing.B, srv *authz.Server, idp *claimtokentest.Provider) func(b *testing.B) {
	b.Helper()
	pat, err := srv.IssuePAT(context.Background(), "rs-a", "alice")
	if err != nil {
		b.Fatal(err)
	}
	rec := serve(b, ownerapi.New(srv), "PUT", ownerapi.PathRules+"/main", authztest.AliceRules, "text/plain", "Bearer "+pat)
	if rec.Code != 200 {
		b.Fatal(rec.Body.String())
	}
	rec = serve(b, srv, "POST", authz.PathResourceSet, `{"name":"labs","resource_scopes":["read"]}`, "application/json", "Bearer "+pat)
	id := strings.Split(rec.Body.String(), `"`)[3]
	idToken := idp.Sign(b, map[string]any{"aud": "app", "sub": "doc", "email": "doctor@clinic.example"})
	app := authztest.BasicAuth("app", "app secret:with&chars")
	return func(b *testing.B) {
		tk, err := srv.RequestTicket(context.Background(), "rs-a", []authz.PermissionRequest{{ResourceID: id, Scopes: []string{"read"}}}, nil)
		if err != nil {
			b.Error(err)
			return
		}
		form := url.Values{"grant_type": {authz.GrantTypeUMATicket}, "ticket": {tk}, "claim_token": {idToken},
			"claim_token_format": {claimtoken.FormatIDToken}}.Encode()
		if rec := serve(b, srv, "POST", authz.PathToken, form, "application/x-www-form-urlencoded", app); rec.Code != http.StatusOK {
			b.Error(rec.Code, rec.Body.String())
		}
	}
}
