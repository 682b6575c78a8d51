package people_test

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/caddy-uma/caddy-uma/authz"
	"github.com/caddy-uma/caddy-uma/authz/authztest"
	"github.com/caddy-uma/caddy-uma/authz/people"
	"github.com/caddy-uma/caddy-uma/authz/secret"
	"golang.org/x/oauth2"

	"github.com/caddy-uma/caddy-uma/authz/claimtoken/claimtokentest"
)

// fixture is the people fixture of package authztest, with the helpers of
// these tests.
type fixture struct {
	*authztest.PeopleFixture
}

func newFixture(t *testing.T, mod func(*authz.Config, *people.Config)) *fixture {
	t.Helper()
	return &fixture{authztest.NewPeopleFixture(t, mod)}
}

// pkce returns a verifier and its S256 challenge.
func pkce() (verifier, challenge string) {
	verifier = secret.New(32)
	sum := sha256.Sum256([]byte(verifier))
	return verifier, base64.RawURLEncoding.EncodeToString(sum[:])
}

// fakeOP is an OpenID provider with an authorization and a token endpoint;
// it logs in whoever the test says, at once, and signs with a
// claimtokentest provider's key.
type fakeOP struct {
	t      *testing.T
	keys   *claimtokentest.Provider
	srv    *httptest.Server
	issuer string

	mu     sync.Mutex
	claims map[string]any            // of the next login
	codes  map[string]map[string]any // code -> claims with nonce, aud
	pkce   map[string]string         // code -> challenge
	tamper func(map[string]any)      // changes the ID token's claims
	secret string
}

func newFakeOP(t *testing.T) *fakeOP {
	t.Helper()
	op := &fakeOP{t: t, keys: claimtokentest.NewProvider(t), codes: map[string]map[string]any{}, pkce: map[string]string{}, secret: "op-secret"}
	mux := http.NewServeMux()
	op.srv = httptest.NewServer(mux)
	t.Cleanup(op.srv.Close)
	op.issuer = op.srv.URL
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]string{
			"issuer": op.issuer, "authorization_endpoint": op.issuer + "/authorize",
			"token_endpoint": op.issuer + "/token", "jwks_uri": op.keys.JWKSURI(),
		})
	})
	mux.HandleFunc("/authorize", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") == "" || q.Get("nonce") == "" ||
			!strings.Contains(q.Get("scope"), "openid") || q.Get("response_type") != "code" {
			http.Error(w, "bad authorization request", 400)
			return
		}
		code := secret.New(16)
		op.mu.Lock()
		c := map[string]any{}
		for k, v := range op.claims {
			c[k] = v
		}
		c["iss"], c["aud"], c["nonce"] = op.issuer, q.Get("client_id"), q.Get("nonce")
		op.codes[code], op.pkce[code] = c, q.Get("code_challenge")
		op.mu.Unlock()
		http.Redirect(w, r, authz.AddQuery(q.Get("redirect_uri"), url.Values{"code": {code}, "state": {q.Get("state")}}), http.StatusFound)
	})
	mux.HandleFunc("/token", func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		id, secret, ok := r.BasicAuth()
		if !ok || secret != op.secret {
			http.Error(w, `{"error":"invalid_client"}`, 401)
			return
		}
		code := r.PostForm.Get("code")
		op.mu.Lock()
		c, challenge, tamper := op.codes[code], op.pkce[code], op.tamper
		delete(op.codes, code)
		op.mu.Unlock()
		if c == nil || c["aud"] != id || oauth2.S256ChallengeFromVerifier(r.PostForm.Get("code_verifier")) != challenge {
			http.Error(w, `{"error":"invalid_grant"}`, 400)
			return
		}
		if tamper != nil {
			tamper(c)
		}
		// As RFC 6749 section 5.1 has it, and real providers answer.
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_ = json.NewEncoder(w).Encode(map[string]string{"access_token": "x", "token_type": "Bearer", "id_token": op.keys.Sign(op.t, c)})
	})
	return op
}

func (op *fakeOP) next(claims map[string]any) {
	op.mu.Lock()
	op.claims = claims
	op.mu.Unlock()
}
