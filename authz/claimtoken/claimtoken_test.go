package claimtoken

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-uma/caddy-uma/authz/claimtoken/claimtokentest"
)

// testClock runs with real time plus an offset that tests advance, so
// that tokens signed with the real time stay valid while the refresh rate
// limit can be passed without sleeping.
type testClock struct {
	mu     sync.Mutex
	offset time.Duration
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.offset)
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.offset += d
	c.mu.Unlock()
}

// testHTTPClient fails every request at once, for issuers that do not
// exist.
var testHTTPClient = http.Client{Transport: failingTransport{}}

type failingTransport struct{}

func (failingTransport) RoundTrip(*http.Request) (*http.Response, error) {
	return nil, errors.New("no network in this test")
}

// newTestVerifier returns a verifier of issuers whose start-up fetches are
// over, so that tests can count key set requests.
func newTestVerifier(t *testing.T, clock *testClock, issuers ...Issuer) *Verifier {
	t.Helper()
	v, err := NewVerifier(t.Context(), issuers, Options{Now: clock.Now})
	if err != nil {
		t.Fatalf("NewVerifier: %v", err)
	}
	t.Cleanup(func() {
		if err := v.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	v.wg.Wait()
	return v
}

func TestVerify(t *testing.T) {
	p := claimtokentest.NewProvider(t) // trusted, discovered, audience "as"
	q := claimtokentest.NewProvider(t) // trusted, explicit jwks_uri, no audiences
	r := claimtokentest.NewProvider(t) // trusted, RS256 only
	u := claimtokentest.NewProvider(t) // not trusted
	w := claimtokentest.NewProvider(t) // trusted, any_client_audience
	clock := &testClock{}
	v := newTestVerifier(t, clock,
		Issuer{Issuer: p.Issuer(), Audiences: []string{"as", "as-client"}},
		Issuer{Issuer: q.Issuer(), JWKSURI: q.JWKSURI()},
		Issuer{Issuer: r.Issuer(), Audiences: []string{"as"}, Algorithms: []string{"RS256"}},
		Issuer{Issuer: w.Issuer(), Audiences: []string{"as", "as-client"}, AnyClientAudience: true},
	)
	now := time.Now()

	valid := p.Sign(t, map[string]any{"sub": "alice", "aud": "as", "email": "alice@example.com", "groups": []string{"a", "b"}})
	parts := strings.Split(valid, ".")
	other := strings.Split(p.Sign(t, map[string]any{"sub": "mallory", "aud": "as"}), ".")

	tests := []struct {
		name    string
		format  string
		token   string
		client  string // the presenting client; "" means "as"
		wantErr error
		wantSub string
	}{
		{name: "ID token", format: FormatIDToken, token: valid, wantSub: "alice"},
		{name: "ID token, https alias", format: formatIDTokenHTTPS, token: valid, wantSub: "alice"},
		{name: "plain JWT without sub", format: FormatJWT, token: p.Sign(t, map[string]any{"aud": []string{"x", "as-client"}, "azp": "as-client"}), client: "as-client"},
		{name: "surrounding whitespace", format: FormatIDToken, token: " \n" + valid + "\r\n", wantSub: "alice"},
		{name: "no kid, one key", format: FormatIDToken, token: p.SignWith(t, map[string]any{"sub": "alice", "aud": "as"}, claimtokentest.WithoutKeyID()), wantSub: "alice"},
		{name: "no audiences configured: the client's", format: FormatJWT, token: q.Sign(t, map[string]any{"sub": "bob", "aud": "app"}), client: "app", wantSub: "bob"},
		{name: "azp the client", format: FormatIDToken, token: p.Sign(t, map[string]any{"sub": "alice", "aud": "as", "azp": "as"}), wantSub: "alice"},
		{name: "several audiences, azp the client", format: FormatIDToken, token: p.Sign(t, map[string]any{"sub": "alice", "aud": []string{"as-client", "as"}, "azp": "as"}), wantSub: "alice"},
		{name: "any_client_audience: another client's token", format: FormatIDToken, token: w.Sign(t, map[string]any{"sub": "alice", "aud": "as-client"}), wantSub: "alice"},
		{name: "any_client_audience: azp another client", format: FormatIDToken, token: w.Sign(t, map[string]any{"sub": "alice", "aud": []string{"as", "as-client"}, "azp": "as-client"}), wantSub: "alice"},
		{name: "expired within leeway", format: FormatJWT, token: p.Sign(t, map[string]any{"aud": "as", "exp": now.Add(-10 * time.Second).Unix()})},
		{name: "nbf within leeway", format: FormatJWT, token: p.Sign(t, map[string]any{"aud": "as", "nbf": now.Add(10 * time.Second).Unix()})},

		{name: "unsupported format", format: "urn:oasis:names:tc:SAML:2.0:assertion", token: valid, wantErr: ErrUnsupportedFormat},
		{name: "empty format", format: "", token: valid, wantErr: ErrUnsupportedFormat},
		{name: "keycloak JSON reading of jwt format", format: FormatJWT, token: "eyJlbWFpbCI6WyJhQGIuYyJdfQ", wantErr: ErrMalformed},
		{name: "empty", format: FormatIDToken, token: "  ", wantErr: ErrMalformed},
		{name: "not a JWS", format: FormatIDToken, token: "not-a-token", wantErr: ErrMalformed},
		{name: "bad base64", format: FormatIDToken, token: "!!!." + parts[1] + "." + parts[2], wantErr: ErrMalformed},
		{name: "JWE", format: FormatIDToken, token: "a.b.c.d.e", wantErr: ErrMalformed},
		{name: "too large", format: FormatJWT, token: p.Sign(t, map[string]any{"aud": "as", "pad": strings.Repeat("x", MaxTokenSize)}), wantErr: ErrMalformed},
		{name: "payload not an object", format: FormatJWT, token: parts[0] + ".WzFd." + parts[2], wantErr: ErrMalformed},
		{name: "no iss", format: FormatJWT, token: p.Sign(t, map[string]any{"aud": "as", "iss": nil}), wantErr: ErrMalformed},
		{name: "iss not a string", format: FormatJWT, token: p.Sign(t, map[string]any{"aud": "as", "iss": 7}), wantErr: ErrMalformed},
		{name: "no exp", format: FormatJWT, token: p.Sign(t, map[string]any{"aud": "as", "exp": nil}), wantErr: ErrMalformed},
		{name: "ID token without iat", format: FormatIDToken, token: p.Sign(t, map[string]any{"sub": "alice", "aud": "as", "iat": nil}), wantErr: ErrMalformed},
		{name: "ID token without sub", format: FormatIDToken, token: p.Sign(t, map[string]any{"aud": "as"}), wantErr: ErrMalformed},
		{name: "exp not a number", format: FormatJWT, token: p.Sign(t, map[string]any{"aud": "as", "exp": "tomorrow"}), wantErr: ErrMalformed},

		{name: "alg none", format: FormatIDToken, token: p.SignWith(t, map[string]any{"sub": "alice", "aud": "as"}, claimtokentest.WithAlgNone()), wantErr: ErrUnsigned},
		{name: "signature stripped", format: FormatIDToken, token: parts[0] + "." + parts[1] + ".", wantErr: ErrUnsigned},
		{name: "HS256 keyed with the public key", format: FormatIDToken, token: p.SignWith(t, map[string]any{"sub": "alice", "aud": "as"}, claimtokentest.WithHS256(p.JWKS(t))), wantErr: ErrSignature},
		{name: "header alg differs from the key's alg", format: FormatIDToken, token: p.SignWith(t, map[string]any{"sub": "alice", "aud": "as"}, claimtokentest.WithAlgorithm("ES384")), wantErr: ErrSignature},
		{name: "RSA signature under the EC key's kid", format: FormatIDToken, token: p.SignWith(t, map[string]any{"sub": "alice", "aud": "as"}, claimtokentest.WithRSAKey()), wantErr: ErrSignature},
		{name: "crit header", format: FormatIDToken, token: p.SignWith(t, map[string]any{"sub": "alice", "aud": "as"}, claimtokentest.WithHeader("crit", []string{"exp"}), claimtokentest.WithHeader("exp", 1)), wantErr: ErrMalformed},
		{name: "jku to another issuer's keys", format: FormatIDToken, token: p.SignWith(t, map[string]any{"sub": "alice", "aud": "as"}, claimtokentest.WithKeyOf(u), claimtokentest.WithHeader("jku", u.JWKSURI())), wantErr: ErrSignature},
		{name: "algorithm not accepted from issuer", format: FormatIDToken, token: r.Sign(t, map[string]any{"sub": "alice", "aud": "as"}), wantErr: ErrSignature},
		{name: "unknown key and kid", format: FormatIDToken, token: p.SignWith(t, map[string]any{"sub": "alice", "aud": "as"}, claimtokentest.WithUnknownKey()), wantErr: ErrSignature},
		{name: "unknown key, issuer's kid", format: FormatIDToken, token: p.SignWith(t, map[string]any{"sub": "alice", "aud": "as"}, claimtokentest.WithKeyID(p.KeyID()), claimtokentest.WithUnknownKey()), wantErr: ErrSignature},
		{name: "unknown key, no kid", format: FormatIDToken, token: p.SignWith(t, map[string]any{"sub": "alice", "aud": "as"}, claimtokentest.WithUnknownKey(), claimtokentest.WithoutKeyID()), wantErr: ErrSignature},
		{name: "cross-issuer: q's key, p's iss", format: FormatIDToken, token: p.SignWith(t, map[string]any{"sub": "alice", "aud": "as"}, claimtokentest.WithKeyOf(q)), wantErr: ErrSignature},
		{name: "cross-issuer: q's key, p's iss and kid", format: FormatIDToken, token: p.SignWith(t, map[string]any{"sub": "alice", "aud": "as"}, claimtokentest.WithKeyOf(q), claimtokentest.WithKeyID(p.KeyID())), wantErr: ErrSignature},
		{name: "tampered payload", format: FormatIDToken, token: parts[0] + "." + other[1] + "." + parts[2], wantErr: ErrSignature},
		{name: "untrusted issuer", format: FormatIDToken, token: u.Sign(t, map[string]any{"sub": "alice", "aud": "as"}), wantErr: ErrUntrustedIssuer},
		{name: "issuer differs by a trailing slash", format: FormatIDToken, token: p.Sign(t, map[string]any{"sub": "alice", "aud": "as", "iss": p.Issuer() + "/"}), wantErr: ErrUntrustedIssuer},
		{name: "expired", format: FormatIDToken, token: p.Sign(t, map[string]any{"sub": "alice", "aud": "as", "exp": now.Add(-2 * time.Minute).Unix()}), wantErr: ErrExpired},
		{name: "nbf in the future", format: FormatIDToken, token: p.Sign(t, map[string]any{"sub": "alice", "aud": "as", "nbf": now.Add(5 * time.Minute).Unix()}), wantErr: ErrNotYetValid},
		{name: "iat in the future", format: FormatIDToken, token: p.Sign(t, map[string]any{"sub": "alice", "aud": "as", "iat": now.Add(5 * time.Minute).Unix()}), wantErr: ErrNotYetValid},
		{name: "wrong audience", format: FormatIDToken, token: p.Sign(t, map[string]any{"sub": "alice", "aud": "another-as"}), wantErr: ErrAudience},
		{name: "no audience", format: FormatIDToken, token: p.Sign(t, map[string]any{"sub": "alice"}), wantErr: ErrAudience},
		{name: "the client, but not among the issuer's audiences", format: FormatIDToken, token: p.Sign(t, map[string]any{"sub": "alice", "aud": "app"}), client: "app", wantErr: ErrAudience},
		{name: "any_client_audience: not among the issuer's audiences", format: FormatIDToken, token: w.Sign(t, map[string]any{"sub": "alice", "aud": "app"}), client: "app", wantErr: ErrAudience},

		{name: "issued to another accepted audience", format: FormatIDToken, token: p.Sign(t, map[string]any{"sub": "alice", "aud": "as-client"}), wantErr: ErrNotForClient},
		{name: "no audiences configured: another client's", format: FormatJWT, token: q.Sign(t, map[string]any{"aud": "app-2"}), client: "app", wantErr: ErrNotForClient},
		{name: "several audiences, no azp", format: FormatIDToken, token: p.Sign(t, map[string]any{"sub": "alice", "aud": []string{"as", "as-client"}}), wantErr: ErrNotForClient},
		{name: "several audiences, azp another client", format: FormatIDToken, token: p.Sign(t, map[string]any{"sub": "alice", "aud": []string{"as", "as-client"}, "azp": "as-client"}), wantErr: ErrNotForClient},
		{name: "one audience, azp another client", format: FormatIDToken, token: p.Sign(t, map[string]any{"sub": "alice", "aud": "as", "azp": "as-client"}), wantErr: ErrNotForClient},
		{name: "azp the client, aud without it", format: FormatJWT, token: p.Sign(t, map[string]any{"aud": "as-client", "azp": "as"}), wantErr: ErrNotForClient},
		{name: "azp not a string", format: FormatIDToken, token: p.Sign(t, map[string]any{"sub": "alice", "aud": "as", "azp": []string{"as"}}), wantErr: ErrNotForClient},
		{name: "JWT format: several audiences, no azp", format: FormatJWT, token: q.Sign(t, map[string]any{"aud": []string{"app", "api"}}), client: "app", wantErr: ErrNotForClient},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client := tt.client
			if client == "" {
				client = "as"
			}
			claims, err := v.Verify(t.Context(), tt.format, tt.token, client)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Verify error = %v, want %v", err, tt.wantErr)
				}
				if tt.token != "" && strings.TrimSpace(tt.token) != "" && strings.Contains(err.Error(), strings.TrimSpace(tt.token)) {
					t.Errorf("error message contains the token: %v", err)
				}
				for _, part := range strings.Split(strings.TrimSpace(tt.token), ".") {
					if len(part) > 16 && strings.Contains(err.Error(), part) {
						t.Errorf("error message contains part of the token: %v", err)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if claims.Subject != tt.wantSub {
				t.Errorf("Subject = %q, want %q", claims.Subject, tt.wantSub)
			}
			if claims.Issuer != claims.Values["iss"] {
				t.Errorf("Issuer = %q, iss claim %v", claims.Issuer, claims.Values["iss"])
			}
			if claims.Expiry.IsZero() {
				t.Error("Expiry is zero")
			}
		})
	}

	t.Run("no client", func(t *testing.T) {
		if _, err := v.Verify(t.Context(), FormatJWT, q.Sign(t, map[string]any{"aud": ""}), ""); !errors.Is(err, ErrNotForClient) {
			t.Fatalf("Verify with no client: err = %v, want ErrNotForClient", err)
		}
	})

	t.Run("claims surfaced", func(t *testing.T) {
		claims, err := v.Verify(t.Context(), FormatIDToken, valid, "as")
		if err != nil {
			t.Fatal(err)
		}
		if claims.Issuer != p.Issuer() || claims.Subject != "alice" {
			t.Errorf("claims = %+v", claims)
		}
		if got := claims.Values["email"]; got != "alice@example.com" {
			t.Errorf("email = %v", got)
		}
		if got := fmt.Sprint(claims.Values["groups"]); got != "[a b]" {
			t.Errorf("groups = %v", got)
		}
		if exp, ok := claims.Values["exp"].(float64); !ok || int64(exp) != claims.Expiry.Unix() {
			t.Errorf("exp = %v, Expiry = %v", claims.Values["exp"], claims.Expiry)
		}
	})
}

func TestKeyRotation(t *testing.T) {
	p := claimtokentest.NewProvider(t)
	clock := &testClock{}
	v := newTestVerifier(t, clock, Issuer{Issuer: p.Issuer(), Audiences: []string{"as"}})
	claims := map[string]any{"sub": "alice", "aud": "as"}
	ctx := t.Context()

	if _, err := v.Verify(ctx, FormatIDToken, p.Sign(t, claims), "as"); err != nil {
		t.Fatalf("before rotation: %v", err)
	}
	if n := p.JWKSRequests(); n != 1 {
		t.Fatalf("JWKS requests after start = %d, want 1", n)
	}

	// An unknown kid within MinRefreshInterval of the last fetch is not
	// worth a request.
	p.Rotate(t)
	rotated := p.Sign(t, claims)
	if _, err := v.Verify(ctx, FormatIDToken, rotated, "as"); !errors.Is(err, ErrSignature) {
		t.Fatalf("new kid right after start: err = %v, want ErrSignature", err)
	}
	if n := p.JWKSRequests(); n != 1 {
		t.Fatalf("JWKS requests = %d, want 1 (rate-limited)", n)
	}

	clock.Advance(31 * time.Second)
	if _, err := v.Verify(ctx, FormatIDToken, rotated, "as"); err != nil {
		t.Fatalf("after rotation: %v", err)
	}
	if n := p.JWKSRequests(); n != 2 {
		t.Fatalf("JWKS requests after rotation = %d, want 2", n)
	}
	for range 10 {
		if _, err := v.Verify(ctx, FormatIDToken, p.Sign(t, claims), "as"); err != nil {
			t.Fatal(err)
		}
	}
	if n := p.JWKSRequests(); n != 2 {
		t.Fatalf("JWKS requests = %d, want 2 (new key cached)", n)
	}

	// A flood of made-up kids, sequential and concurrent: one fetch per
	// interval at most.
	clock.Advance(31 * time.Second)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 25 {
				tok := p.SignWith(t, claims, claimtokentest.WithUnknownKey())
				if _, err := v.Verify(ctx, FormatIDToken, tok, "as"); !errors.Is(err, ErrSignature) {
					t.Errorf("made-up kid: err = %v, want ErrSignature", err)
				}
			}
		})
	}
	wg.Wait()
	if n := p.JWKSRequests(); n != 3 {
		t.Fatalf("JWKS requests after flood = %d, want 3", n)
	}

	// The old key is gone from the key set.
	clock.Advance(31 * time.Second)
	old := p.SignWith(t, claims, claimtokentest.WithKeyID("gone"), claimtokentest.WithUnknownKey())
	if _, err := v.Verify(ctx, FormatIDToken, old, "as"); !errors.Is(err, ErrSignature) {
		t.Fatalf("old key: err = %v, want ErrSignature", err)
	}
}

func TestKeysWithoutAlg(t *testing.T) {
	p := claimtokentest.NewProvider(t, claimtokentest.OmitAlg())
	if strings.Contains(string(p.JWKS(t)), `"alg"`) {
		t.Fatalf("JWKS has alg: %s", p.JWKS(t))
	}
	v := newTestVerifier(t, &testClock{}, Issuer{Issuer: p.Issuer(), Audiences: []string{"as"}})
	claims := map[string]any{"sub": "alice", "aud": "as"}
	for name, tok := range map[string]string{
		"kid":    p.Sign(t, claims),
		"no kid": p.SignWith(t, claims, claimtokentest.WithoutKeyID()),
	} {
		if _, err := v.Verify(t.Context(), FormatIDToken, tok, "as"); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	// The key type still bounds the algorithm.
	for name, tok := range map[string]string{
		"RS256 under the EC key's kid": p.SignWith(t, claims, claimtokentest.WithRSAKey()),
		"RS256, no kid":                p.SignWith(t, claims, claimtokentest.WithRSAKey(), claimtokentest.WithoutKeyID()),
		"HS256":                        p.SignWith(t, claims, claimtokentest.WithHS256([]byte("secret"))),
	} {
		if _, err := v.Verify(t.Context(), FormatIDToken, tok, "as"); !errors.Is(err, ErrSignature) {
			t.Errorf("%s: err = %v, want ErrSignature", name, err)
		}
	}
}

func TestIssuerDownAtStart(t *testing.T) {
	for _, discovery := range []bool{true, false} {
		t.Run(fmt.Sprintf("discovery=%v", discovery), func(t *testing.T) {
			p := claimtokentest.NewProvider(t)
			iss := Issuer{Issuer: p.Issuer(), Audiences: []string{"as"}}
			if !discovery {
				iss.JWKSURI = p.JWKSURI()
			}
			token := p.Sign(t, map[string]any{"sub": "alice", "aud": "as"})
			p.Fail(http.StatusServiceUnavailable)
			requests := func() int { return p.JWKSRequests() + p.DiscoveryRequests() }

			clock := &testClock{}
			v := newTestVerifier(t, clock, iss)
			if n := requests(); n != 1 {
				t.Fatalf("requests at start = %d, want 1", n)
			}
			verify := func() error {
				_, err := v.Verify(t.Context(), FormatIDToken, token, "as")
				return err
			}
			if err := verify(); !errors.Is(err, ErrKeysUnavailable) {
				t.Fatalf("issuer down: err = %v, want ErrKeysUnavailable", err)
			}
			// While it stays down: one attempt per KeysRetryInterval,
			// however many tokens arrive, and no backoff.
			for i := range 5 {
				clock.Advance(KeysRetryInterval)
				for range 3 {
					if err := verify(); !errors.Is(err, ErrKeysUnavailable) {
						t.Fatalf("issuer down: err = %v, want ErrKeysUnavailable", err)
					}
				}
				if n := requests(); n != 2+i {
					t.Fatalf("%v after start: %d requests, want %d", time.Duration(i+1)*KeysRetryInterval, n, 2+i)
				}
			}

			p.Fail(0)
			before := requests()
			if err := verify(); !errors.Is(err, ErrKeysUnavailable) {
				t.Fatalf("back up within KeysRetryInterval of the failure: err = %v, want ErrKeysUnavailable", err)
			}
			clock.Advance(KeysRetryInterval)
			if err := verify(); err != nil {
				t.Fatalf("back up, KeysRetryInterval later: %v", err)
			}
			want := 1 // the key set
			if discovery {
				want = 2 // and the discovery document
			}
			if n := requests() - before; n != want {
				t.Errorf("requests after recovery = %d, want %d", n, want)
			}
		})
	}
}

func TestKeysKeptWhileIssuerDown(t *testing.T) {
	p := claimtokentest.NewProvider(t)
	clock := &testClock{}
	v := newTestVerifier(t, clock, Issuer{Issuer: p.Issuer(), Audiences: []string{"as"}})
	token := p.Sign(t, map[string]any{"sub": "alice", "aud": "as"})
	p.Close()
	if _, err := v.Verify(t.Context(), FormatIDToken, token, "as"); err != nil {
		t.Fatalf("cached keys: %v", err)
	}
	clock.Advance(31 * time.Second)
	unknown := p.SignWith(t, map[string]any{"sub": "alice", "aud": "as"}, claimtokentest.WithUnknownKey())
	if _, err := v.Verify(t.Context(), FormatIDToken, unknown, "as"); !errors.Is(err, ErrKeysUnavailable) {
		t.Fatalf("unknown kid, issuer down: err = %v, want ErrKeysUnavailable", err)
	}
	if _, err := v.Verify(t.Context(), FormatIDToken, token, "as"); err != nil {
		t.Fatalf("cached keys after failed refresh: %v", err)
	}
}

func TestDiscoveryIssuerMismatch(t *testing.T) {
	p := claimtokentest.NewProvider(t, claimtokentest.DiscoveryIssuer("https://evil.example"))
	clock := &testClock{}
	v := newTestVerifier(t, clock, Issuer{Issuer: p.Issuer(), Audiences: []string{"as"}})
	token := p.Sign(t, map[string]any{"sub": "alice", "aud": "as"})
	for range 2 {
		if _, err := v.Verify(t.Context(), FormatIDToken, token, "as"); !errors.Is(err, ErrKeysUnavailable) {
			t.Fatalf("err = %v, want ErrKeysUnavailable", err)
		}
		clock.Advance(31 * time.Second)
	}
	if n := p.JWKSRequests(); n != 0 {
		t.Errorf("JWKS requests = %d, want 0: the key set of a mismatched document must not be used", n)
	}
	if n := p.DiscoveryRequests(); n != 2 {
		t.Errorf("discovery requests = %d, want 2", n)
	}
}

func TestCanceledContext(t *testing.T) {
	p := claimtokentest.NewProvider(t)
	token := p.Sign(t, map[string]any{"sub": "alice", "aud": "as"})
	p.Close()
	clock := &testClock{}
	v := newTestVerifier(t, clock, Issuer{Issuer: p.Issuer(), Audiences: []string{"as"}})
	clock.Advance(time.Minute)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := v.Verify(ctx, FormatIDToken, token, "as")
	if !errors.Is(err, ErrKeysUnavailable) || !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want ErrKeysUnavailable and context.Canceled", err)
	}
}

func TestNewVerifier(t *testing.T) {
	good := Issuer{Issuer: "https://idp.example", JWKSURI: "https://idp.example/keys?v=1"}
	tests := []struct {
		name    string
		issuers []Issuer
		wantErr string
	}{
		{name: "ok", issuers: []Issuer{good, {Issuer: "https://other.example/realms/x", Algorithms: []string{"ES256", "RS256"}}}},
		{name: "none", wantErr: "no trusted issuers"},
		{name: "duplicate", issuers: []Issuer{good, {Issuer: good.Issuer}}, wantErr: "listed twice"},
		{name: "relative issuer", issuers: []Issuer{{Issuer: "idp.example"}}, wantErr: "not an http or https URL"},
		{name: "issuer with query", issuers: []Issuer{{Issuer: "https://idp.example/?x=1"}}, wantErr: "has a query"},
		{name: "issuer with fragment", issuers: []Issuer{{Issuer: "https://idp.example/#x"}}, wantErr: "has a fragment"},
		{name: "empty issuer", issuers: []Issuer{{}}, wantErr: "not an http or https URL"},
		{name: "bad jwks_uri", issuers: []Issuer{{Issuer: "https://idp.example", JWKSURI: "file:///etc/keys"}}, wantErr: "jwks_uri"},
		{name: "alg none", issuers: []Issuer{{Issuer: "https://idp.example", Algorithms: []string{"none"}}}, wantErr: "not allowed"},
		{name: "alg HS256", issuers: []Issuer{{Issuer: "https://idp.example", Algorithms: []string{"HS256"}}}, wantErr: "not allowed"},
		{name: "unknown alg", issuers: []Issuer{{Issuer: "https://idp.example", Algorithms: []string{"XS999"}}}, wantErr: "unknown signing algorithm"},
		{name: "empty audience", issuers: []Issuer{{Issuer: "https://idp.example", Audiences: []string{""}}}, wantErr: "empty audience"},
		{name: "any_client_audience without audiences", issuers: []Issuer{{Issuer: "https://idp.example", AnyClientAudience: true}}, wantErr: "any_client_audience needs the audiences"},
		{name: "any_client_audience", issuers: []Issuer{{Issuer: "https://idp.example", Audiences: []string{"api"}, AnyClientAudience: true}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The issuers do not exist: construction must not need them.
			hc := &testHTTPClient
			v, err := NewVerifier(t.Context(), tt.issuers, Options{HTTPClient: hc})
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("NewVerifier: %v", err)
				}
				if err := v.Close(); err != nil {
					t.Fatalf("Close: %v", err)
				}
				return
			}
			if err == nil {
				v.Close()
				t.Fatal("NewVerifier succeeded")
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want it to mention %q", err, tt.wantErr)
			}
		})
	}
}

func TestVerifyAfterClose(t *testing.T) {
	p := claimtokentest.NewProvider(t)
	clock := &testClock{}
	v := newTestVerifier(t, clock, Issuer{Issuer: p.Issuer(), Audiences: []string{"as"}})
	claims := map[string]any{"sub": "alice", "aud": "as"}
	if _, err := v.Verify(t.Context(), FormatIDToken, p.Sign(t, claims), "as"); err != nil {
		t.Fatal(err)
	}
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(t.Context(), FormatIDToken, p.Sign(t, claims), "as"); err != nil {
		t.Fatalf("keys fetched before Close: %v", err)
	}
	clock.Advance(time.Minute)
	p.Rotate(t)
	done := make(chan error, 1)
	go func() {
		_, err := v.Verify(t.Context(), FormatIDToken, p.Sign(t, claims), "as")
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("verified a new key after Close")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Verify hangs after Close")
	}
}

func TestConcurrentVerify(t *testing.T) {
	p := claimtokentest.NewProvider(t)
	q := claimtokentest.NewProvider(t, claimtokentest.OmitAlg())
	clock := &testClock{}
	v := newTestVerifier(t, clock,
		Issuer{Issuer: p.Issuer(), Audiences: []string{"as"}},
		Issuer{Issuer: q.Issuer(), Audiences: []string{"as"}},
	)
	claims := map[string]any{"sub": "alice", "aud": "as"}
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			for j := range 30 {
				switch (i + j) % 4 {
				case 0:
					if _, err := v.Verify(t.Context(), FormatIDToken, p.Sign(t, claims), "as"); err != nil && !errors.Is(err, ErrSignature) {
						// ErrSignature: signed just before a rotation whose
						// refresh is rate-limited.
						t.Errorf("p: %v", err)
					}
				case 1:
					if _, err := v.Verify(t.Context(), FormatJWT, q.Sign(t, claims), "as"); err != nil {
						t.Errorf("q: %v", err)
					}
				case 2:
					tok := p.SignWith(t, claims, claimtokentest.WithUnknownKey())
					if _, err := v.Verify(t.Context(), FormatIDToken, tok, "as"); !errors.Is(err, ErrSignature) {
						t.Errorf("unknown key: %v", err)
					}
				case 3:
					if j%10 == 3 && i == 3 {
						p.Rotate(t)
						clock.Advance(31 * time.Second)
					}
				}
			}
		})
	}
	wg.Wait()
}

func TestUnknownKidWhileLastFetchFailed(t *testing.T) {
	p := claimtokentest.NewProvider(t)
	clock := &testClock{}
	v := newTestVerifier(t, clock, Issuer{Issuer: p.Issuer(), Audiences: []string{"as"}})
	claims := map[string]any{"sub": "alice", "aud": "as"}
	p.Close()
	clock.Advance(31 * time.Second)
	unknown := func() string { return p.SignWith(t, claims, claimtokentest.WithUnknownKey()) }
	// The fetch for the unknown kid fails; until the next one may start,
	// callers with unknown kids share that outcome: the keys are
	// unavailable, not the signature wrong.
	for range 3 {
		if _, err := v.Verify(t.Context(), FormatIDToken, unknown(), "as"); !errors.Is(err, ErrKeysUnavailable) {
			t.Fatalf("unknown kid, issuer down: err = %v, want ErrKeysUnavailable", err)
		}
	}
	p.Reopen(t)
	if _, err := v.Verify(t.Context(), FormatIDToken, unknown(), "as"); !errors.Is(err, ErrKeysUnavailable) {
		t.Fatalf("unknown kid within KeysRetryInterval of the failed fetch: err = %v, want ErrKeysUnavailable", err)
	}
	clock.Advance(KeysRetryInterval)
	if _, err := v.Verify(t.Context(), FormatIDToken, unknown(), "as"); !errors.Is(err, ErrSignature) {
		t.Fatalf("unknown kid, issuer back: err = %v, want ErrSignature", err)
	}
	if n := p.JWKSRequests(); n != 2 {
		t.Errorf("JWKS requests = %d, want 2 (start, then back up)", n)
	}
}

func TestKeyErrorMessages(t *testing.T) {
	p := claimtokentest.NewProvider(t)
	v := newTestVerifier(t, &testClock{}, Issuer{Issuer: p.Issuer(), Audiences: []string{"as"}})
	claims := map[string]any{"sub": "alice", "aud": "as"}
	for _, tt := range []struct {
		name, token, want string
	}{
		{
			name:  "unknown kid",
			token: p.SignWith(t, claims, claimtokentest.WithKeyID("gone"), claimtokentest.WithUnknownKey()),
			want:  fmt.Sprintf(`claim token signature is not valid: issuer %q has no key with kid "gone"`, p.Issuer()),
		},
		{
			name:  "algorithm of another key",
			token: p.SignWith(t, claims, claimtokentest.WithAlgorithm("ES384")),
			want:  fmt.Sprintf(`claim token signature is not valid: key %q is for algorithm "ES256", not "ES384"`, p.KeyID()),
		},
	} {
		_, err := v.Verify(t.Context(), FormatIDToken, tt.token, "as")
		if err == nil || err.Error() != tt.want {
			t.Errorf("%s: error %v, want %q", tt.name, err, tt.want)
		}
	}
}

// TestVerifiedTokenKept: a token whose signature verified is kept, and
// only its signature is taken from memory: each Verify checks the client,
// the clock and the issuer's current key again.
func TestVerifiedTokenKept(t *testing.T) {
	p := claimtokentest.NewProvider(t)
	clock := &testClock{}
	v := newTestVerifier(t, clock, Issuer{Issuer: p.Issuer(), Audiences: []string{"app"}})
	ctx := t.Context()
	kept := v.verified.Len

	tok := p.Sign(t, map[string]any{"sub": "alice", "aud": "app", "email": "alice@example.org"})
	if _, err := v.Verify(ctx, FormatIDToken, tok, "other"); !errors.Is(err, ErrNotForClient) {
		t.Fatalf("another client first: %v, want ErrNotForClient", err)
	}
	if n := kept(); n != 0 {
		t.Fatalf("a token refused was kept: %d", n)
	}
	for i := range 3 {
		c, err := v.Verify(ctx, FormatIDToken, tok, "app")
		if err != nil || c.Subject != "alice" || c.Values["email"] != "alice@example.org" {
			t.Fatalf("verify %d: %+v %v", i, c, err)
		}
		c.Values["email"] = "changed by a caller"
	}
	if n := kept(); n != 1 {
		t.Fatalf("%d tokens kept, want 1", n)
	}
	tests := []struct {
		name    string
		format  string
		client  string
		advance time.Duration
		want    error
	}{
		{"another client, from memory", FormatIDToken, "other", 0, ErrNotForClient},
		{"the client, from memory", FormatIDToken, "app", 0, nil},
		{"as a plain JWT", FormatJWT, "app", 0, nil},
		{"past exp and the leeway", FormatIDToken, "app", 5*time.Minute + 31*time.Second, ErrExpired},
	}
	for _, tt := range tests {
		clock.Advance(tt.advance)
		c, err := v.Verify(ctx, tt.format, tok, tt.client)
		if !errors.Is(err, tt.want) || err == nil && c.Values["email"] != "alice@example.org" {
			t.Errorf("%s: %+v %v, want %v", tt.name, c, err, tt.want)
		}
	}
	if n := kept(); n != 0 {
		t.Errorf("an expired token is still kept: %d", n)
	}

	// The key that verified a kept token leaves the issuer's key set: the
	// token is refused once the verifier fetched the set again.
	fresh := func(sub string) map[string]any {
		return map[string]any{"sub": sub, "aud": "app", "iat": clock.Now().Unix(), "exp": clock.Now().Add(time.Hour).Unix()}
	}
	tok = p.Sign(t, fresh("alice"))
	for range 2 {
		if _, err := v.Verify(ctx, FormatIDToken, tok, "app"); err != nil {
			t.Fatal(err)
		}
	}
	p.Rotate(t)
	clock.Advance(31 * time.Second)
	if _, err := v.Verify(ctx, FormatIDToken, p.Sign(t, fresh("bob")), "app"); err != nil {
		t.Fatalf("a token of the new key: %v", err)
	}
	if _, err := v.Verify(ctx, FormatIDToken, tok, "app"); !errors.Is(err, ErrSignature) {
		t.Fatalf("a kept token whose key was removed: %v, want ErrSignature", err)
	}
}
