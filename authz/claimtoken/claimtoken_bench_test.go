package claimtoken

import (
	"testing"

	"github.com/caddy-uma/caddy-uma/authz/claimtoken/claimtokentest"
)

// BenchmarkVerify measures Verify of a typical ES256 ID token whose
// issuer's keys are cached.
func BenchmarkVerify(b *testing.B) {
	p := claimtokentest.NewProvider(b)
	v, err := NewVerifier(b.Context(), []Issuer{{Issuer: p.Issuer(), Audiences: []string{"as"}}}, Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer v.Close()
	token := p.Sign(b, map[string]any{
		"sub":    "248289761001",
		"aud":    "as",
		"email":  "janedoe@example.com",
		"name":   "Jane Doe",
		"groups": []string{"staff", "admins"},
	})
	if _, err := v.Verify(b.Context(), FormatIDToken, token, "as"); err != nil {
		b.Fatal(err)
	}

	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := v.Verify(b.Context(), FormatIDToken, token, "as"); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := v.Verify(b.Context(), FormatIDToken, token, "as"); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	b.Run("unknown-issuer", func(b *testing.B) {
		u := claimtokentest.NewProvider(b)
		bad := u.Sign(b, map[string]any{"sub": "x", "aud": "as"})
		b.ReportAllocs()
		for b.Loop() {
			if _, err := v.Verify(b.Context(), FormatIDToken, bad, "as"); err == nil {
				b.Fatal("verified")
			}
		}
	})
}
