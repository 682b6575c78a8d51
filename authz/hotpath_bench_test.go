package authz_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/caddy-uma/caddy-uma/authz"
	"github.com/caddy-uma/caddy-uma/authz/authztest"
	"github.com/caddy-uma/caddy-uma/authz/claimtoken"
	"github.com/caddy-uma/caddy-uma/authz/ownerapi"
)

// The hot paths of the AS, each through its exported API or its HTTP
// interface, on the real store on disk (synced commits). BENCHMARKS.md
// lists them; bench/ measures the same paths under load.

const formType = "application/x-www-form-urlencoded"

// grantBench is an AS with alice's rules, resources of hers registered by
// rs-a, and a doctor's ID token that her rules grant read.
type grantBench struct {
	srv     *authz.Server
	pat     string // rs-a's PAT acting for alice
	ids     []string
	idToken string
	app     string // the client's Authorization header
}

// newGrantBench registers resources resources of alice's.
func newGrantBench(b *testing.B, resources int) *grantBench {
	b.Helper()
	srv, idp := benchAS(b)
	pat, err := srv.IssuePAT(context.Background(), "rs-a", "alice")
	if err != nil {
		b.Fatal(err)
	}
	if rec := serve(b, ownerapi.New(srv), "PUT", ownerapi.PathRules+"/main", authztest.AliceRules, "text/plain", "Bearer "+pat); rec.Code != http.StatusOK {
		b.Fatal(rec.Code, rec.Body.String())
	}
	g := &grantBench{srv: srv, pat: pat, app: authztest.BasicAuth("app", authztest.AppSecret),
		idToken: idp.Sign(b, map[string]any{"aud": "app", "sub": "doc", "email": "doctor@clinic.example"})}
	for i := range resources {
		rec := serve(b, srv, "POST", authz.PathResourceSet, fmt.Sprintf(`{"name":"labs-%d","resource_scopes":["read","write"]}`, i), "application/json", "Bearer "+pat)
		var out struct {
			ID string `json:"_id"`
		}
		if rec.Code != http.StatusCreated || json.Unmarshal(rec.Body.Bytes(), &out) != nil || out.ID == "" {
			b.Fatal(rec.Code, rec.Body.String())
		}
		g.ids = append(g.ids, out.ID)
	}
	return g
}

func (g *grantBench) ticket(b *testing.B, id string) string {
	tk, err := g.srv.RequestTicket(context.Background(), "rs-a", []authz.PermissionRequest{{ResourceID: id, Scopes: []string{"read"}}}, nil)
	if err != nil {
		b.Fatal(err)
	}
	return tk
}

func (g *grantBench) grantForm(tk string) string {
	return url.Values{"grant_type": {authz.GrantTypeUMATicket}, "ticket": {tk}, "claim_token": {g.idToken},
		"claim_token_format": {claimtoken.FormatIDToken}}.Encode()
}

// rpt redeems a ticket for read on id and returns the RPT.
func (g *grantBench) rpt(b *testing.B, id string) string {
	rec := serve(b, g.srv, "POST", authz.PathToken, g.grantForm(g.ticket(b, id)), formType, g.app)
	var out struct {
		AccessToken string `json:"access_token"`
	}
	if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &out) != nil || out.AccessToken == "" {
		b.Fatal(rec.Code, rec.Body.String())
	}
	return out.AccessToken
}

// BenchmarkVerifyRPT is the co-hosted enforcement point's check of an RPT
// it has not cached: parse, signature, claims.
func BenchmarkVerifyRPT(b *testing.B) {
	g := newGrantBench(b, 1)
	rpt := g.rpt(b, g.ids[0])
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := g.srv.VerifyRPT(ctx, rpt, "rs-a"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRequestTicket is a permission ticket as the co-hosted
// enforcement point asks for it (a tokenless request's 401).
func BenchmarkRequestTicket(b *testing.B) {
	g := newGrantBench(b, 1)
	b.ReportAllocs()
	for b.Loop() {
		g.ticket(b, g.ids[0])
	}
}

// BenchmarkTicketReplay is a second redemption of a spent ticket: opening
// it and finding its replay record, answered invalid_grant.
func BenchmarkTicketReplay(b *testing.B) {
	g := newGrantBench(b, 1)
	form := g.grantForm(g.ticket(b, g.ids[0]))
	if rec := serve(b, g.srv, "POST", authz.PathToken, form, formType, g.app); rec.Code != http.StatusOK {
		b.Fatal(rec.Code, rec.Body.String())
	}
	b.ReportAllocs()
	for b.Loop() {
		rec := serve(b, g.srv, "POST", authz.PathToken, form, formType, g.app)
		if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), `"invalid_grant"`) {
			b.Fatal(rec.Code, rec.Body.String())
		}
	}
}

// BenchmarkDecisionMode is Keycloak's ticketless request for a decision
// (permission=<id>#read, response_mode=decision) on one resource, with
// more and more resources registered by the same resource server: a flat
// path costs the same at every size.
func BenchmarkDecisionMode(b *testing.B) {
	for _, n := range []int{1, 100, 1000} {
		b.Run(fmt.Sprintf("resources=%d", n), func(b *testing.B) {
			g := newGrantBench(b, n)
			form := url.Values{"grant_type": {authz.GrantTypeUMATicket}, "audience": {"rs-a"},
				"permission": {g.ids[n/2] + "#read"}, "response_mode": {"decision"},
				"claim_token": {g.idToken}, "claim_token_format": {claimtoken.FormatIDToken}}.Encode()
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				rec := serve(b, g.srv, "POST", authz.PathToken, form, formType, g.app)
				if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `"result":true`) {
					b.Fatal(rec.Code, rec.Body.String())
				}
			}
		})
	}
}
