package admin_test

import (
	"fmt"
	"testing"

	"github.com/caddy-uma/caddy-uma/authz"
	"github.com/caddy-uma/caddy-uma/authz/admin"
	"github.com/caddy-uma/caddy-uma/authz/authztest"
)

// BenchmarkAdminTokens lists the tokens of one subject among 2,000 live
// PATs of 100 owners: the operator's API reads the whole token namespace,
// so its cost grows with the live tokens.
func BenchmarkAdminTokens(b *testing.B) {
	st := authztest.OpenStore(b, b.TempDir())
	b.Cleanup(func() { st.Close() })
	srv, err := authz.New(b.Context(), authz.Config{Issuer: "https://as.example", Store: st, Clients: authztest.Clients})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { srv.Close() })
	for i := range 2000 {
		if _, err := srv.IssuePAT(b.Context(), "rs-a", fmt.Sprintf("owner-%d", i%100)); err != nil {
			b.Fatal(err)
		}
	}
	api := admin.New(srv, st, nil)
	for b.Loop() {
		toks, err := api.Tokens(b.Context(), admin.TokenFilter{Subject: "owner-7"})
		if err != nil || len(toks) != 20 {
			b.Fatal(len(toks), err)
		}
	}
}
