package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"time"
)

// identityProvider is the OpenID provider of the harness: an ES256 key
// whose JWKS it serves on loopback, trusted by the AS as a claim-token
// issuer, and the ID tokens it signs for the requesting party.
type identityProvider struct {
	key    *ecdsa.PrivateKey
	kid    string
	issuer string
	srv    *http.Server
}

func newIdentityProvider() (*identityProvider, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("identity provider: %w", err)
	}
	p := &identityProvider{key: key, kid: "bench-1", issuer: "http://" + l.Addr().String()}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /jwks", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"keys": []any{p.jwk()}})
	})
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"issuer": p.issuer, "jwks_uri": p.issuer + "/jwks"})
	})
	p.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = p.srv.Serve(l) }()
	return p, nil
}

func (p *identityProvider) close() { _ = p.srv.Close() }

func (p *identityProvider) jwk() map[string]string {
	enc := base64.RawURLEncoding
	return map[string]string{
		"kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": p.kid,
		"x": enc.EncodeToString(pad32(p.key.X)), "y": enc.EncodeToString(pad32(p.key.Y)),
	}
}

// idToken signs an ID token of the requesting party of every scenario:
// bob, with a verified e-mail address and groups, issued to the client.
func (p *identityProvider) idToken(now time.Time) (string, error) {
	return p.sign(map[string]any{
		"iss": p.issuer, "sub": "bob", "aud": clientID,
		"iat": now.Unix(), "exp": now.Add(24 * time.Hour).Unix(),
		"email": "bob@example.com", "email_verified": true, "name": "Bob",
		"groups": []string{"family", "staff"},
	})
}

func (p *identityProvider) sign(claims map[string]any) (string, error) {
	enc := base64.RawURLEncoding
	hdr, err := json.Marshal(map[string]string{"alg": "ES256", "typ": "JWT", "kid": p.kid})
	if err != nil {
		return "", err
	}
	body, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	input := enc.EncodeToString(hdr) + "." + enc.EncodeToString(body)
	sum := sha256.Sum256([]byte(input))
	r, s, err := ecdsa.Sign(rand.Reader, p.key, sum[:])
	if err != nil {
		return "", err
	}
	// Low S, as strict verifiers want it.
	n := elliptic.P256().Params().N
	if s.Cmp(new(big.Int).Rsh(n, 1)) > 0 {
		s.Sub(n, s)
	}
	sig := append(pad32(r), pad32(s)...)
	return input + "." + enc.EncodeToString(sig), nil
}

func pad32(v *big.Int) []byte {
	b := make([]byte, 32)
	return v.FillBytes(b)
}

// upstream is the API behind both A and B: it answers a constant body.
type upstream struct {
	addr string
	srv  *http.Server
}

const upstreamBody = "upstream ok\n"

func newUpstream() (*upstream, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("upstream: %w", err)
	}
	u := &upstream{addr: l.Addr().String()}
	u.srv = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			_, _ = w.Write([]byte(upstreamBody))
		}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	go func() { _ = u.srv.Serve(l) }()
	return u, nil
}

func (u *upstream) close() { _ = u.srv.Close() }
