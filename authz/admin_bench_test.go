package authz_test

import (
	"fmt"
	"testing"

	"github.com/caddy-uma/caddy-uma/authz"
)

// BenchmarkAdminTokens lists the tokens of one subject among 2,000 live
// PATs of 100 owners: the operator's API reads the whole token namespace,
// so its cost grows with the live tokens.
func BenchmarkAdminTokens(b *testing.B) {
	srv, _ := benchAS(b)
	for i := range 2000 {
		if _, err := srv.IssuePAT(b.Context(), "rs-a", fmt.Sprintf("owner-%d", i%100)); err != nil {
			b.Fatal(err)
		}
	}
	for b.Loop() {
		toks, err := srv.Tokens(b.Context(), authz.TokenFilter{Subject: "owner-7"})
		if err != nil || len(toks) != 20 {
			b.Fatal(len(toks), err)
		}
	}
}
