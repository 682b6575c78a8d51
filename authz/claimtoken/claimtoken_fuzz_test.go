package claimtoken

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/caddy-uma/caddy-uma/authz/claimtoken/claimtokentest"
)

// FuzzVerify gives any format, token and presenting client to
// Verifier.Verify with one trusted issuer, whose tokens count for client
// app: no panic, no hang, every refusal one of the Err* sentinels, and
// whatever it accepts is a token that issuer signed (the only subject it
// signs is alice), presented by app. In inputs, $TOKEN is a new token of
// the trusted issuer for app, $UNTRUSTED one of an issuer that is not
// trusted. Seeds: testdata/fuzz/FuzzVerify.
func FuzzVerify(f *testing.F) {
	const limit = 10 * time.Second
	trusted := claimtokentest.NewProvider(f)
	untrusted := claimtokentest.NewProvider(f)
	v, err := NewVerifier(f.Context(), []Issuer{{Issuer: trusted.Issuer(), Audiences: []string{"app"}}}, Options{})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { v.Close() })
	sentinels := []error{
		ErrUnsupportedFormat, ErrMalformed, ErrUnsigned, ErrUntrustedIssuer, ErrSignature,
		ErrExpired, ErrNotYetValid, ErrAudience, ErrNotForClient, ErrKeysUnavailable,
	}
	claims := map[string]any{"sub": "alice", "aud": "app", "email": "alice@example.com"}
	f.Fuzz(func(t *testing.T, format, token, client string) {
		for strings.Contains(token, "$TOKEN") {
			token = strings.Replace(token, "$TOKEN", trusted.Sign(t, claims), 1)
		}
		for strings.Contains(token, "$UNTRUSTED") {
			token = strings.Replace(token, "$UNTRUSTED", untrusted.Sign(t, claims), 1)
		}
		ctx, cancel := context.WithTimeout(context.Background(), limit)
		defer cancel()
		hang := time.AfterFunc(limit, func() { debug.SetTraceback("all"); panic(fmt.Sprintf("Verify: no answer within %s", limit)) })
		got, err := v.Verify(ctx, format, token, client)
		hang.Stop()
		if err != nil {
			for _, s := range sentinels {
				if errors.Is(err, s) {
					return
				}
			}
			t.Fatalf("Verify: an error that matches no sentinel: %v", err)
		}
		if client != "app" || got.Issuer != trusted.Issuer() || got.Subject != "alice" || got.Values["email"] != "alice@example.com" {
			t.Fatalf("accepted, presented by %q, claims the trusted issuer never signed for it: %+v", client, got)
		}
	})
}
