// Package claimtokentest is a small OpenID provider for tests of code that
// verifies claim tokens with package claimtoken.
//
//	p := claimtokentest.NewProvider(t)
//	v, _ := claimtoken.NewVerifier(ctx, []claimtoken.Issuer{{Issuer: p.Issuer(), Audiences: []string{"as"}}}, claimtoken.Options{})
//	token := p.Sign(t, map[string]any{"sub": "alice", "aud": "as"})
//
// The provider serves /.well-known/openid-configuration (its issuer and
// jwks_uri) and /jwks (the public part of its current ES256 key, with a kid)
// over plain HTTP on the loopback interface. Tokens are signed with the
// current key; Rotate replaces it. Close takes the provider off the network
// (connections are refused) and Reopen brings it back at the same address,
// so the issuer URL stays valid; Fail makes it answer an error status while
// it stays reachable.
package claimtokentest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
)

// Provider is a test OpenID provider. Its methods are safe for concurrent use.
type Provider struct {
	discoveryIssuer string // issuer named in the discovery document
	omitAlg         bool

	mu      sync.Mutex
	srv     *httptest.Server
	release func() // while closed: gives back the reserved port
	addr    string
	issuer  string
	key     *signingKey

	failStatus        atomic.Int64 // non-zero: every request answers it
	jwksRequests      atomic.Int64
	discoveryRequests atomic.Int64
}

// signingKey is an ES256 key pair with its key id.
type signingKey struct {
	kid     string
	private *ecdsa.PrivateKey
}

// Option changes how NewProvider sets up a provider.
type Option func(*Provider)

// OmitAlg publishes keys without the "alg" and "use" members, as some
// identity providers do; a verifier must infer the algorithm from the key.
func OmitAlg() Option { return func(p *Provider) { p.omitAlg = true } }

// DiscoveryIssuer makes the discovery document name issuer instead of the
// provider's real issuer, to test that verifiers refuse a mismatched
// document.
func DiscoveryIssuer(issuer string) Option {
	return func(p *Provider) { p.discoveryIssuer = issuer }
}

// NewProvider starts a provider with a fresh ES256 key. It is closed when
// the test ends.
func NewProvider(t testing.TB, opts ...Option) *Provider {
	t.Helper()
	p := &Provider{key: newKey(t)}
	for _, o := range opts {
		o(p)
	}
	p.srv = httptest.NewServer(p.handler())
	p.addr = p.srv.Listener.Addr().String()
	p.issuer = p.srv.URL
	t.Cleanup(p.closedForGood)
	return p
}

// Issuer returns the provider's issuer URL, which is also its base URL.
func (p *Provider) Issuer() string { return p.issuer }

// JWKSURI returns the URL of the provider's key set.
func (p *Provider) JWKSURI() string { return p.issuer + "/jwks" }

// KeyID returns the kid of the current signing key.
func (p *Provider) KeyID() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.key.kid
}

// JWKSRequests returns how many times the key set has been requested.
func (p *Provider) JWKSRequests() int { return int(p.jwksRequests.Load()) }

// DiscoveryRequests returns how many times the discovery document has been
// requested.
func (p *Provider) DiscoveryRequests() int { return int(p.discoveryRequests.Load()) }

// JWKS returns the key set document as served: the public current key.
func (p *Provider) JWKS(t testing.TB) []byte {
	t.Helper()
	p.mu.Lock()
	key := p.key
	p.mu.Unlock()
	doc, err := p.jwks(key)
	if err != nil {
		t.Fatalf("claimtokentest: encoding JWKS: %v", err)
	}
	return doc
}

// Rotate replaces the signing key with a new one and returns its kid. The
// old key disappears from the key set at once.
func (p *Provider) Rotate(t testing.TB) string {
	t.Helper()
	key := newKey(t)
	p.mu.Lock()
	p.key = key
	p.mu.Unlock()
	return key.kid
}

// Close takes the provider off the network: connections to it are refused
// until Reopen. It may be called more than once.
//
// Its port stays reserved while it is closed (on Linux): connections to it
// are refused, and no other server of the test gets it meanwhile.
func (p *Provider) Close() {
	p.mu.Lock()
	srv := p.srv
	p.srv = nil
	p.mu.Unlock()
	if srv == nil {
		return
	}
	srv.Close() // outside p.mu: it waits for handlers, which take it
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.srv == nil && p.release == nil { // not reopened meanwhile
		if release, err := reserve(p.addr); err == nil {
			p.release = release
		}
	}
}

// releasePort gives back the port a closed provider reserved. p.mu is
// held.
func (p *Provider) releasePort() {
	if p.release != nil {
		p.release()
		p.release = nil
	}
}

// closedForGood is Close at the end of the test: the port is given back.
func (p *Provider) closedForGood() {
	p.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.releasePort()
}

// Fail makes the provider answer every request (discovery and key set)
// with status, counting them as usual; Fail(0) makes it serve again.
func (p *Provider) Fail(status int) { p.failStatus.Store(int64(status)) }

// Reopen brings a closed provider back at the same address.
func (p *Provider) Reopen(t testing.TB) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.srv != nil {
		return
	}
	p.releasePort()
	l, err := net.Listen("tcp", p.addr)
	if err != nil {
		t.Fatalf("claimtokentest: listening again on %s: %v", p.addr, err)
	}
	srv := httptest.NewUnstartedServer(p.handler())
	srv.Listener.Close()
	srv.Listener = l
	srv.Start()
	p.srv = srv
}

// Sign returns a compact ES256 JWT over claims, signed with the current
// key and carrying its kid. It fills in iss (the provider's issuer), iat
// (now) and exp (now + 5 minutes) unless claims has them; a claim set to
// nil is left out. claims is not modified.
func (p *Provider) Sign(t testing.TB, claims map[string]any) string {
	t.Helper()
	return p.SignWith(t, claims)
}

// SignOption changes how SignWith builds a token, mostly to make it
// invalid in one specific way.
type SignOption func(*signConfig)

type signConfig struct {
	alg     string // JWS algorithm; "" = RS256 for an RSA key, else ES256
	key     any    // signing key; nil = the provider's current key
	kid     *string
	noKid   bool
	headers map[string]any
}

// WithoutKeyID leaves the kid header out.
func WithoutKeyID() SignOption { return func(c *signConfig) { c.noKid = true } }

// WithHeader adds a protected header member, such as "crit" or "jku".
func WithHeader(name string, value any) SignOption {
	return func(c *signConfig) {
		if c.headers == nil {
			c.headers = map[string]any{}
		}
		c.headers[name] = value
	}
}

// WithKeyID sets the kid header to kid, whatever key signs.
func WithKeyID(kid string) SignOption { return func(c *signConfig) { c.kid = &kid } }

// WithUnknownKey signs with a fresh ES256 key that no provider publishes.
// The kid header is a fresh random value unless WithKeyID sets it.
func WithUnknownKey() SignOption {
	return func(c *signConfig) {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			panic(err)
		}
		c.key = k
		if c.kid == nil {
			kid := randomKID()
			c.kid = &kid
		}
	}
}

// WithKeyOf signs with other's current key and kid (while iss stays this
// provider's unless the claims say otherwise): a token one trusted issuer
// signed in another's name.
func WithKeyOf(other *Provider) SignOption {
	return func(c *signConfig) {
		other.mu.Lock()
		k := other.key
		other.mu.Unlock()
		c.key = k.private
		if c.kid == nil {
			c.kid = &k.kid
		}
	}
}

// WithRSAKey signs with a fresh RSA-2048 key that no provider publishes,
// with RS256 unless WithAlgorithm says otherwise. The kid header stays the
// current key's unless another option changes it.
func WithRSAKey() SignOption {
	return func(c *signConfig) {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		c.key = k
	}
}

// WithAlgorithm signs under the named JWS algorithm instead of the key's
// usual one, e.g. ES384 with the provider's P-256 key.
func WithAlgorithm(alg string) SignOption { return func(c *signConfig) { c.alg = alg } }

// WithAlgNone produces an unsecured JWT: alg "none" and an empty signature.
func WithAlgNone() SignOption { return func(c *signConfig) { c.alg = "none" } }

// WithHS256 signs with HMAC-SHA256 under secret, keeping the current kid:
// the key-confusion attack when secret is the provider's public key.
func WithHS256(secret []byte) SignOption {
	return func(c *signConfig) { c.alg = "HS256"; c.key = secret }
}

// SignWith is Sign with options that change the header or the key.
func (p *Provider) SignWith(t testing.TB, claims map[string]any, opts ...SignOption) string {
	t.Helper()
	var c signConfig
	for _, o := range opts {
		o(&c)
	}
	p.mu.Lock()
	cur := p.key
	p.mu.Unlock()

	now := time.Now()
	body := map[string]any{
		"iss": p.issuer,
		"iat": now.Unix(),
		"exp": now.Add(5 * time.Minute).Unix(),
	}
	for k, v := range claims {
		if v == nil {
			delete(body, k)
			continue
		}
		body[k] = v
	}
	payload, err := json.Marshal(body)
	if err != nil {
		t.Fatalf("claimtokentest: encoding claims: %v", err)
	}

	kid := cur.kid
	if c.kid != nil {
		kid = *c.kid
	}
	hdr := jws.NewHeaders()
	set := func(k string, v any) {
		if err := hdr.Set(k, v); err != nil {
			t.Fatalf("claimtokentest: setting header %s: %v", k, err)
		}
	}
	set(jws.TypeKey, "JWT")
	if !c.noKid {
		set(jws.KeyIDKey, kid)
	}
	for k, v := range c.headers {
		set(k, v)
	}

	if c.alg == "none" {
		set(jws.AlgorithmKey, "none")
		h, err := json.Marshal(hdr)
		if err != nil {
			t.Fatalf("claimtokentest: encoding header: %v", err)
		}
		enc := base64.RawURLEncoding
		return enc.EncodeToString(h) + "." + enc.EncodeToString(payload) + "."
	}
	key := any(cur.private)
	if c.key != nil {
		key = c.key
	}
	name := c.alg
	if name == "" {
		name = "ES256"
		if _, ok := key.(*rsa.PrivateKey); ok {
			name = "RS256"
		}
	}
	alg, ok := jwa.LookupSignatureAlgorithm(name)
	if !ok {
		t.Fatalf("claimtokentest: unknown algorithm %q", name)
	}
	out, err := jws.Sign(payload, jws.WithKey(alg, key, jws.WithProtectedHeaders(hdr)))
	if err != nil {
		t.Fatalf("claimtokentest: signing: %v", err)
	}
	return string(out)
}

func (p *Provider) handler() http.Handler {
	mux := http.NewServeMux()
	failing := func(w http.ResponseWriter) bool {
		status := int(p.failStatus.Load())
		if status == 0 {
			return false
		}
		http.Error(w, http.StatusText(status), status)
		return true
	}
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		p.discoveryRequests.Add(1)
		if failing(w) {
			return
		}
		iss := p.issuer
		if p.discoveryIssuer != "" {
			iss = p.discoveryIssuer
		}
		writeJSON(w, map[string]any{
			"issuer":                                iss,
			"jwks_uri":                              p.JWKSURI(),
			"id_token_signing_alg_values_supported": []string{"ES256"},
			"subject_types_supported":               []string{"public"},
			"response_types_supported":              []string{"code", "id_token"},
		})
	})
	mux.HandleFunc("GET /jwks", func(w http.ResponseWriter, r *http.Request) {
		p.jwksRequests.Add(1)
		if failing(w) {
			return
		}
		p.mu.Lock()
		key := p.key
		p.mu.Unlock()
		doc, err := p.jwks(key)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(doc)
	})
	return mux
}

// jwks encodes the public part of key as a key set.
func (p *Provider) jwks(key *signingKey) ([]byte, error) {
	pub, err := jwk.Import(key.private.Public())
	if err != nil {
		return nil, err
	}
	if err := pub.Set(jwk.KeyIDKey, key.kid); err != nil {
		return nil, err
	}
	if !p.omitAlg {
		if err := pub.Set(jwk.AlgorithmKey, jwa.ES256()); err != nil {
			return nil, err
		}
		if err := pub.Set(jwk.KeyUsageKey, jwk.ForSignature); err != nil {
			return nil, err
		}
	}
	set := jwk.NewSet()
	if err := set.AddKey(pub); err != nil {
		return nil, err
	}
	return json.Marshal(set)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

func newKey(t testing.TB) *signingKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("claimtokentest: generating key: %v", err)
	}
	return &signingKey{kid: randomKID(), private: k}
}

func randomKID() string {
	b := make([]byte, 8)
	rand.Read(b)
	return hex.EncodeToString(b)
}
