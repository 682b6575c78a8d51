package signing_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwt"

	"github.com/caddy-uma/caddy-uma/authz/signing"
	"github.com/caddy-uma/caddy-uma/store"
	"github.com/caddy-uma/caddy-uma/store/badgerstore"
)

func newTestJWT(t *testing.T) jwt.Token {
	t.Helper()
	tok, err := jwt.NewBuilder().Issuer("test").Expiration(time.Now().Add(time.Minute)).Build()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func openStore(t *testing.T) store.Store {
	t.Helper()
	st, err := badgerstore.Open(badgerstore.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func openRing(t *testing.T, st store.Store, opts signing.Options) *signing.KeyRing {
	t.Helper()
	opts.Store = st
	kr, err := signing.Open(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	return kr
}

func TestSignAndVerify(t *testing.T) {
	for _, alg := range signing.Algorithms {
		t.Run(alg, func(t *testing.T) {
			kr := openRing(t, openStore(t), signing.Options{Alg: alg, Retention: time.Minute})
			signed, err := kr.Sign(context.Background(), newTestJWT(t))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := kr.Verify(context.Background(), signed); err != nil {
				t.Fatalf("verify own token: %v", err)
			}
			other := openRing(t, openStore(t), signing.Options{Alg: alg})
			if _, err := other.Verify(context.Background(), signed); err == nil {
				t.Fatal("a token signed by another key ring verified")
			}
			tampered := signed[:len(signed)-4] + "AAAA"
			if _, err := kr.Verify(context.Background(), tampered); err == nil {
				t.Fatal("tampered token verified")
			}
		})
	}
}

// TestRotate: a rotation makes a new key current, the retired key stays
// published (its tokens verify) until the retention has passed, and a
// second ring on the same store takes the new key when it loads.
func TestRotate(t *testing.T) {
	st := openStore(t)
	now := time.Now()
	clock := func() time.Time { return now }
	kr := openRing(t, st, signing.Options{Retention: time.Hour, Now: clock})
	other := openRing(t, st, signing.Options{Retention: time.Hour, Now: clock})
	first := kr.CurrentKeyID()
	if first == "" || other.CurrentKeyID() != first {
		t.Fatalf("current keys %q and %q, want one", first, other.CurrentKeyID())
	}
	old, err := kr.Sign(t.Context(), newTestJWT(t))
	if err != nil {
		t.Fatal(err)
	}
	kid, err := kr.Rotate(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	keys := kr.Keys()
	if kid == first || len(keys) != 2 || keys[0].KeyID != kid || !keys[0].Current || keys[1].KeyID != first || keys[1].Current {
		t.Fatalf("after rotation: kid %s, keys %+v", kid, keys)
	}
	var set struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(kr.JWKS(), &set); err != nil || len(set.Keys) != 2 {
		t.Fatalf("JWKS %s: %v", kr.JWKS(), err)
	}
	for _, k := range set.Keys {
		if _, private := k["d"]; private {
			t.Errorf("the JWKS publishes a private key: %v", k)
		}
	}
	if _, err := kr.Verify(t.Context(), old); err != nil {
		t.Errorf("a token of the retired key: %v", err)
	}
	if err := other.Load(t.Context()); err != nil || other.CurrentKeyID() != kid {
		t.Errorf("the other ring's current key %q (%v), want %q", other.CurrentKeyID(), err, kid)
	}
	now = now.Add(2 * time.Hour)
	if err := kr.Load(t.Context()); err != nil {
		t.Fatal(err)
	}
	if keys := kr.Keys(); len(keys) != 1 || keys[0].KeyID != kid {
		t.Errorf("past the retention, keys %+v, want only %s", keys, kid)
	}
}

func TestCheckAlg(t *testing.T) {
	for _, alg := range signing.Algorithms {
		if err := signing.CheckAlg(alg); err != nil {
			t.Errorf("%s: %v", alg, err)
		}
	}
	for _, alg := range []string{"", "none", "HS256", "es256"} {
		if signing.CheckAlg(alg) == nil {
			t.Errorf("%q accepted", alg)
		}
		if alg == "" {
			continue // Open's default
		}
		if _, err := signing.Open(context.Background(), signing.Options{Alg: alg}); err == nil {
			t.Errorf("Open with %q succeeded", alg)
		}
	}
}

// TestVerifiedTokensFollowTheKeys: a token verified once and kept stops
// verifying as soon as its key is no longer published, even though it has
// not expired.
func TestVerifiedTokensFollowTheKeys(t *testing.T) {
	now := time.Now()
	clock := func() time.Time { return now }
	kr := openRing(t, openStore(t), signing.Options{Retention: time.Hour, Now: clock})
	long, err := jwt.NewBuilder().Issuer("test").Expiration(now.Add(24 * time.Hour)).Build()
	if err != nil {
		t.Fatal(err)
	}
	signed, err := kr.Sign(t.Context(), long)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		tok, err := kr.Verify(t.Context(), signed)
		if err != nil {
			t.Fatalf("verify %d: %v", i, err)
		}
		if iss, _ := tok.Issuer(); iss != "test" {
			t.Fatalf("verify %d: issuer %q", i, iss)
		}
	}
	if _, err := kr.Verify(t.Context(), signed[:len(signed)-4]+"AAAA"); err == nil {
		t.Fatal("a tampered copy of a kept token verified")
	}
	if _, err := kr.Rotate(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := kr.Verify(t.Context(), signed); err != nil {
		t.Fatalf("a token of the retired key, still published: %v", err)
	}
	now = now.Add(2 * time.Hour)
	if err := kr.Load(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := kr.Verify(t.Context(), signed); err == nil {
		t.Fatal("a kept token verified after its key was no longer published")
	}
}
