package pep

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
)

// keyAS is a minimal AS for JWT verification: discovery without an
// introspection endpoint, and a JWKS holding its current key.
type keyAS struct {
	t       *testing.T
	srv     *httptest.Server
	mu      sync.Mutex
	kid     string
	key     *ecdsa.PrivateKey
	fetches atomic.Int64
	// jwksPath is the path of the JWKS named by discovery ("/jwks");
	// every path under /jwks serves it. pathFetches counts fetches by
	// path.
	jwksPath    string
	pathFetches map[string]int
	// introspection, when set before the first request, answers
	// introspection requests (given the token) and makes discovery name an
	// introspection endpoint and a token endpoint that issues PATs.
	introspection func(token string) map[string]any
}

func newKeyAS(t *testing.T) *keyAS {
	a := &keyAS{t: t, jwksPath: "/jwks", pathFetches: map[string]int{}}
	a.rotate("k1")
	a.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch {
		case r.URL.Path == "/.well-known/uma2-configuration":
			a.mu.Lock()
			jwksPath := a.jwksPath
			a.mu.Unlock()
			doc := map[string]string{
				"issuer": a.srv.URL, "token_endpoint": a.srv.URL + "/token", "jwks_uri": a.srv.URL + jwksPath,
				"permission_endpoint": a.srv.URL + "/perm", "resource_registration_endpoint": a.srv.URL + "/rreg",
			}
			if a.introspection != nil {
				doc["introspection_endpoint"] = a.srv.URL + "/introspect"
			}
			json.NewEncoder(w).Encode(doc)
		case r.URL.Path == "/token" && a.introspection != nil:
			json.NewEncoder(w).Encode(map[string]any{"access_token": "pat", "token_type": "Bearer", "expires_in": 300})
		case r.URL.Path == "/introspect" && a.introspection != nil:
			r.ParseForm()
			json.NewEncoder(w).Encode(a.introspection(r.PostForm.Get("token")))
		case strings.HasPrefix(r.URL.Path, "/jwks"):
			a.fetches.Add(1)
			a.mu.Lock()
			a.pathFetches[r.URL.Path]++
			pub, _ := jwk.Import(a.key.Public())
			pub.Set(jwk.KeyIDKey, a.kid)
			pub.Set(jwk.AlgorithmKey, jwa.ES256())
			a.mu.Unlock()
			set := jwk.NewSet()
			set.AddKey(pub)
			json.NewEncoder(w).Encode(set)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(a.srv.Close)
	return a
}

func (a *keyAS) rotate(kid string) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		a.t.Fatal(err)
	}
	a.mu.Lock()
	a.kid, a.key = kid, k
	a.mu.Unlock()
}

// sign returns a JWT over claims, signed with the current key under kid
// (the current kid when empty).
func (a *keyAS) sign(claims map[string]any, kid string) string {
	if kid == "" {
		a.mu.Lock()
		kid = a.kid
		a.mu.Unlock()
	}
	return a.signHeaders(claims, map[string]any{jws.KeyIDKey: kid})
}

// signHeaders returns a JWT over claims, signed with the current key, with
// the protected headers given besides alg.
func (a *keyAS) signHeaders(claims map[string]any, headers map[string]any) string {
	a.mu.Lock()
	key := a.key
	a.mu.Unlock()
	payload, _ := json.Marshal(claims)
	hdr := jws.NewHeaders()
	for name, v := range headers {
		hdr.Set(name, v)
	}
	out, err := jws.Sign(payload, jws.WithKey(jwa.ES256(), key, jws.WithProtectedHeaders(hdr)))
	if err != nil {
		a.t.Fatal(err)
	}
	return string(out)
}

func (a *keyAS) claims(now time.Time) map[string]any {
	return map[string]any{
		"iss": a.srv.URL, "aud": []string{"rs"}, "sub": "bob", "azp": "app", "jti": "j1",
		"iat": now.Unix(), "exp": now.Add(time.Minute).Unix(),
		"permissions": []map[string]any{{"resource_id": "r1", "resource_scopes": []string{"read"}}},
	}
}

func TestRemoteJWTVerification(t *testing.T) {
	a := newKeyAS(t)
	clock := &testClock{t: time.Now()}
	rem, err := NewRemote(RemoteConfig{Issuer: a.srv.URL, ClientID: "rs", ClientSecret: "s", Now: clock.Now, MinKeyRefresh: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer rem.Close()
	ctx := context.Background()
	now := clock.Now()

	rpt, err := rem.VerifyRPT(ctx, a.sign(a.claims(now), ""))
	if err != nil {
		t.Fatalf("valid RPT: %v", err)
	}
	if rpt.Subject != "bob" || rpt.ClientID != "app" || len(rpt.Permissions) != 1 || rpt.Permissions[0].ResourceID != "r1" {
		t.Errorf("RPT = %+v", rpt)
	}

	invalid := map[string]func(map[string]any){
		"other issuer":    func(c map[string]any) { c["iss"] = "https://evil.example" },
		"other audience":  func(c map[string]any) { c["aud"] = "rs-other" },
		"expired":         func(c map[string]any) { c["exp"] = now.Unix() },
		"no exp":          func(c map[string]any) { delete(c, "exp") },
		"not yet valid":   func(c map[string]any) { c["nbf"] = now.Add(time.Minute).Unix() },
		"no permissions":  func(c map[string]any) { delete(c, "permissions") },
		"issued too late": func(c map[string]any) { c["iat"] = now.Add(time.Hour).Unix() },
	}
	for name, mod := range invalid {
		c := a.claims(now)
		mod(c)
		if _, err := rem.VerifyRPT(ctx, a.sign(c, "")); !errors.Is(err, ErrInvalidRPT) {
			t.Errorf("%s: %v, want ErrInvalidRPT", name, err)
		}
	}
	// Keycloak's RPT shape, with a single-string audience.
	kc := a.claims(now)
	delete(kc, "permissions")
	kc["aud"] = "rs"
	kc["authorization"] = map[string]any{"permissions": []map[string]any{{"rsid": "r2", "rsname": "x", "scopes": []string{"view"}}}}
	if rpt, err := rem.VerifyRPT(ctx, a.sign(kc, "")); err != nil || rpt.Permissions[0].ResourceID != "r2" || rpt.Permissions[0].Scopes[0] != "view" {
		t.Errorf("Keycloak RPT: %+v, %v", rpt, err)
	}
	// alg none and HMAC are refused before any key lookup.
	enc := base64.RawURLEncoding
	payload, _ := json.Marshal(a.claims(now))
	for _, alg := range []string{"none", "HS256"} {
		h, _ := json.Marshal(map[string]string{"alg": alg, "kid": "k1"})
		tok := enc.EncodeToString(h) + "." + enc.EncodeToString(payload) + ".c2ln"
		if _, err := rem.VerifyRPT(ctx, tok); !errors.Is(err, ErrInvalidRPT) {
			t.Errorf("alg %s: %v", alg, err)
		}
	}
	if n := a.fetches.Load(); n < 1 || n > 2 {
		// The first use registers the key set with the cache, which
		// fetches it, and fetches it once more synchronously.
		t.Errorf("%d JWKS fetches after the first use, want 1 or 2", n)
	}

	// Key rotation: the first token under the new kid fetches the set
	// again.
	before := a.fetches.Load()
	clock.Advance(31 * time.Second)
	a.rotate("k2")
	if _, err := rem.VerifyRPT(ctx, a.sign(a.claims(clock.Now()), "")); err != nil {
		t.Fatalf("after rotation: %v", err)
	}
	if n := a.fetches.Load(); n != before+1 {
		t.Errorf("JWKS fetched %d times for the rotation, want 1", n-before)
	}
	// Unknown kids within MinKeyRefresh cause no fetch.
	before = a.fetches.Load()
	for range 5 {
		if _, err := rem.VerifyRPT(ctx, a.sign(a.claims(clock.Now()), "made-up")); !errors.Is(err, ErrInvalidRPT) {
			t.Errorf("unknown kid: %v", err)
		}
	}
	if n := a.fetches.Load(); n != before {
		t.Errorf("%d fetches for unknown kids within the rate limit, want 0", n-before)
	}
	clock.Advance(30 * time.Second)
	rem.VerifyRPT(ctx, a.sign(a.claims(clock.Now()), "made-up"))
	if n := a.fetches.Load(); n != before+1 {
		t.Errorf("%d fetches for an unknown kid after the rate limit, want 1", n-before)
	}
	// Without an introspection endpoint, an opaque token cannot be an
	// RPT here.
	if _, err := rem.VerifyRPT(ctx, "opaque-token"); !errors.Is(err, ErrInvalidRPT) {
		t.Errorf("opaque token: %v", err)
	}
}

func TestRemoteDiscoveryIssuerMismatch(t *testing.T) {
	a := newKeyAS(t)
	rem, err := NewRemote(RemoteConfig{Issuer: a.srv.URL + "/", ClientID: "rs", ClientSecret: "s"})
	if err != nil {
		t.Fatal(err)
	}
	defer rem.Close()
	if _, err := rem.Issuer(context.Background()); !errors.Is(err, ErrUnavailable) {
		t.Errorf("issuer with a trailing slash: %v, want ErrUnavailable", err)
	}
}

// newKeyRemote returns a keyAS and a Remote of it, on a clock of its own.
func newKeyRemote(t *testing.T) (*keyAS, *testClock, *Remote) {
	t.Helper()
	a := newKeyAS(t)
	clock := &testClock{t: time.Unix(1_700_000_000, 0)}
	rem, err := NewRemote(RemoteConfig{Issuer: a.srv.URL, ClientID: "rs", ClientSecret: "s", Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rem.Close() })
	return a, clock, rem
}

func TestRemoteJWTChecks(t *testing.T) {
	a, clock, rem := newKeyRemote(t)
	now := clock.Now()
	kid := map[string]any{jws.KeyIDKey: "k1"}

	tests := []struct {
		name    string
		mod     func(map[string]any)
		headers map[string]any
		valid   bool
	}{
		{name: "valid", valid: true},
		{name: "exp 1s ahead", mod: func(c map[string]any) { c["exp"] = now.Add(time.Second).Unix() }, valid: true},
		{name: "exp 10s past: no skew on exp", mod: func(c map[string]any) { c["exp"] = now.Add(-10 * time.Second).Unix() }},
		{name: "exp a fraction ahead of now: cut to the second", mod: func(c map[string]any) { c["exp"] = float64(now.Unix()) + 0.5 }},
		{name: "nbf within the skew", mod: func(c map[string]any) { c["nbf"] = now.Add(clockSkew).Unix() }, valid: true},
		{name: "nbf beyond the skew", mod: func(c map[string]any) { c["nbf"] = now.Add(clockSkew + time.Second).Unix() }},
		{name: "iat within the skew", mod: func(c map[string]any) { c["iat"] = now.Add(clockSkew).Unix() }, valid: true},
		{name: "iat beyond the skew", mod: func(c map[string]any) { c["iat"] = now.Add(clockSkew + time.Second).Unix() }},
		{name: "no aud", mod: func(c map[string]any) { delete(c, "aud") }},
		{name: "aud among others", mod: func(c map[string]any) { c["aud"] = []string{"x", "rs"} }, valid: true},
		{name: "no iss", mod: func(c map[string]any) { delete(c, "iss") }},
		{name: "iss with a trailing slash", mod: func(c map[string]any) { c["iss"] = a.srv.URL + "/" }},
		{name: "no kid, the only key", headers: map[string]any{}, valid: true},
		{name: "crit header", headers: map[string]any{jws.KeyIDKey: "k1", jws.CriticalKey: []string{"exp"}, "exp": 1}},
		{name: "client_id over azp", mod: func(c map[string]any) { c["client_id"] = "app2" }, valid: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := a.claims(now)
			if tt.mod != nil {
				tt.mod(c)
			}
			headers := kid
			if tt.headers != nil {
				headers = tt.headers
			}
			rpt, err := rem.VerifyRPT(t.Context(), a.signHeaders(c, headers))
			if !tt.valid {
				if !errors.Is(err, ErrInvalidRPT) {
					t.Fatalf("%v, want ErrInvalidRPT", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("VerifyRPT: %v", err)
			}
			wantClient := "app"
			if id, ok := c["client_id"].(string); ok {
				wantClient = id
			}
			if rpt.ClientID != wantClient || rpt.ID != "j1" || !rpt.ExpiresAt.Equal(time.Unix(c["exp"].(int64), 0)) {
				t.Errorf("RPT = %+v", rpt)
			}
		})
	}
}

func TestRemoteJWKSURIChange(t *testing.T) {
	a, clock, rem := newKeyRemote(t)
	if _, err := rem.VerifyRPT(t.Context(), a.sign(a.claims(clock.Now()), "")); err != nil {
		t.Fatalf("first RPT: %v", err)
	}
	// The AS moves its key set; the next discovery (after an hour) names
	// it, and the RPT's key is fetched from there.
	a.mu.Lock()
	a.jwksPath = "/jwks/v2"
	a.mu.Unlock()
	a.rotate("k2")
	clock.Advance(discoveryTTL)
	if _, err := rem.VerifyRPT(t.Context(), a.sign(a.claims(clock.Now()), "")); err != nil {
		t.Fatalf("RPT after the move: %v", err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.pathFetches["/jwks/v2"] != 1 {
		t.Errorf("fetches by path %v, want one of /jwks/v2", a.pathFetches)
	}
}
