package authz_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/caddy-uma/caddy-uma/authz"
	"github.com/caddy-uma/caddy-uma/authz/authztest"
	"github.com/caddy-uma/caddy-uma/authz/claimtoken"
	"github.com/caddy-uma/caddy-uma/authz/claimtoken/claimtokentest"
	"github.com/caddy-uma/caddy-uma/store"
	"github.com/caddy-uma/caddy-uma/store/badgerstore"
)

// Request paths at 1, 10k and 100k registered resources (over 10k
// owners): their cost must not grow with the number of resources.

var indexSizes = []int{1, 10_000, 100_000}

// sizedAS is an AS on an in-memory store (seeding 100k resources with
// synced commits would take minutes) holding n resources of rs-a: alice's
// "labs" under her rules, and n-1 of other owners.
func sizedAS(b *testing.B, n int) (*authz.Server, *claimtokentest.Provider, store.Resource) {
	b.Helper()
	st, err := badgerstore.Open(badgerstore.Options{InMemory: true})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	srv, idp := benchASOn(b, st)
	ctx := context.Background()
	if err := srv.PutRule(ctx, "alice", "main", authztest.AliceRules); err != nil {
		b.Fatal(err)
	}
	now := time.Now().UTC()
	for i := range n - 1 {
		owner := fmt.Sprintf("owner-%d", i%10_000)
		err := st.CreateResource(ctx, store.Resource{ID: fmt.Sprintf("res-%06d", i), ResourceServer: "rs-a", Owner: owner,
			Name: fmt.Sprintf("file %d", i), Scopes: []string{"read", "write"}, CreatedAt: now, UpdatedAt: now})
		if err != nil {
			b.Fatal(err)
		}
	}
	labs := store.Resource{ID: "labs-id", ResourceServer: "rs-a", Owner: "alice", Name: "labs", Scopes: []string{"read", "write"},
		CreatedAt: now, UpdatedAt: now}
	if err := st.CreateResource(ctx, labs); err != nil {
		b.Fatal(err)
	}
	return srv, idp, labs
}

// BenchmarkTicketlessDecision is Keycloak's ticketless UMA grant with
// response_mode=decision, naming the resource by name, with the doctor's
// ID token pushed.
func BenchmarkTicketlessDecision(b *testing.B) {
	for _, n := range indexSizes {
		b.Run(fmt.Sprintf("resources=%d", n), func(b *testing.B) {
			srv, idp, _ := sizedAS(b, n)
			idToken := idp.Sign(b, map[string]any{"aud": "app", "sub": "doc", "email": "doctor@clinic.example"})
			form := url.Values{"grant_type": {authz.GrantTypeUMATicket}, "audience": {"rs-a"}, "permission": {"labs#read"},
				"response_mode": {"decision"}, "claim_token": {idToken}, "claim_token_format": {claimtoken.FormatIDToken}}.Encode()
			app := authztest.BasicAuth("app", authztest.AppSecret)
			b.ReportAllocs()
			for b.Loop() {
				if rec := serve(b, srv, "POST", authz.PathToken, form, "application/x-www-form-urlencoded", app); rec.Code != http.StatusOK {
					b.Fatal(rec.Code, rec.Body.String())
				}
			}
		})
	}
}
