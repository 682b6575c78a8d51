package authz

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestDiscoveryDocuments(t *testing.T) {
	as := newTestAS(t, nil)
	host := strings.TrimSuffix(as.issuer, "/uma")
	for _, u := range []string{
		as.issuer + PathUMAConfiguration,
		as.issuer + PathOAuthMetadata,
		host + PathOAuthMetadata + "/uma", // RFC 8414 section 3: inserted before the path
	} {
		t.Run(u, func(t *testing.T) {
			r := as.do("GET", u, nil)
			if r.status != 200 {
				t.Fatalf("status %d: %s", r.status, r.body)
			}
			m := r.json(t)
			if m["issuer"] != as.issuer {
				t.Fatalf("issuer = %v, want %s", m["issuer"], as.issuer)
			}
			for field, path := range map[string]string{
				"token_endpoint":                 PathToken,
				"jwks_uri":                       PathJWKS,
				"permission_endpoint":            PathPermission,
				"resource_registration_endpoint": PathResourceSet,
				"introspection_endpoint":         PathIntrospect,
				"revocation_endpoint":            PathRevoke,
			} {
				if m[field] != as.issuer+path {
					t.Errorf("%s = %v, want %s", field, m[field], as.issuer+path)
				}
			}
			for _, field := range []string{"response_types_supported", "grant_types_supported", "scopes_supported",
				"token_endpoint_auth_methods_supported", "uma_profiles_supported"} {
				if _, ok := m[field].([]any); !ok {
					t.Errorf("%s missing or not an array: %v", field, m[field])
				}
			}
			if !strings.Contains(string(r.body), `"uma_protection"`) {
				t.Errorf("scopes_supported lacks uma_protection: %s", r.body)
			}
		})
	}
	expectError(t, as.do("POST", PathUMAConfiguration, nil), 405, "invalid_request")
	expectError(t, as.do("GET", "/nope", nil), 404, "not_found")
}

func TestHandles(t *testing.T) {
	as := newTestAS(t, nil)
	for path, want := range map[string]bool{
		"/uma/token":                                  true,
		"/uma/resource_set":                           true,
		"/uma/resource_set/":                          true,
		"/uma/resource_set/abc":                       true,
		"/uma/resource_set/abc/def":                   false,
		"/uma/.well-known/uma2-configuration":         true,
		"/.well-known/oauth-authorization-server/uma": true,
		"/umatoken":                                   false,
		"/token":                                      false,
		"/uma":                                        false,
		"/other":                                      false,
	} {
		if got := as.srv.Handles(path); got != want {
			t.Errorf("Handles(%q) = %v, want %v", path, got, want)
		}
	}
}

func TestIssuerValidation(t *testing.T) {
	st := openTestStore(t, t.TempDir())
	defer st.Close()
	for _, iss := range []string{"", "localhost:8080", "ftp://x", "https://as.example/?q=1", "https://as.example/#f", "/relative"} {
		if _, err := New(context.Background(), Config{Issuer: iss, Store: st}); err == nil {
			t.Errorf("issuer %q accepted", iss)
		}
	}
}

type jwks struct {
	Keys []map[string]any `json:"keys"`
}

func (as *testAS) jwks(t *testing.T) jwks {
	t.Helper()
	r := as.do("GET", PathJWKS, nil)
	if r.status != 200 || r.header.Get("Content-Type") != "application/jwk-set+json" {
		t.Fatalf("jwks: %d %s %s", r.status, r.header.Get("Content-Type"), r.body)
	}
	var set jwks
	if err := json.Unmarshal(r.body, &set); err != nil {
		t.Fatal(err)
	}
	return set
}

func TestJWKSPublishesOnlyPublicKeys(t *testing.T) {
	for _, alg := range []string{"ES256", "EdDSA", "RS256"} {
		t.Run(alg, func(t *testing.T) {
			as := newTestAS(t, func(c *Config) { c.SigningAlg = alg })
			set := as.jwks(t)
			if len(set.Keys) != 1 {
				t.Fatalf("want 1 key, got %d", len(set.Keys))
			}
			k := set.Keys[0]
			for _, private := range []string{"d", "p", "q", "dp", "dq", "qi"} {
				if _, ok := k[private]; ok {
					t.Fatalf("JWKS leaks private member %q", private)
				}
			}
			if k["alg"] != alg || k["kid"] == "" || k["use"] != "sig" {
				t.Fatalf("key = %v", k)
			}
		})
	}
}

func TestSigningKeyPersistsAndRotates(t *testing.T) {
	st := openTestStore(t, t.TempDir())
	defer st.Close()
	as1 := newTestASWithStore(t, st, func(c *Config) { c.KeyRotation = time.Hour })
	kid1 := as1.jwks(t).Keys[0]["kid"]

	// A second server on the same store (a reload) keeps the key.
	as2 := newTestASWithStore(t, st, func(c *Config) { c.KeyRotation = time.Hour })
	if got := as2.jwks(t).Keys; len(got) != 1 || got[0]["kid"] != kid1 {
		t.Fatalf("key changed across restarts: %v vs %v", got, kid1)
	}

	// After the rotation period a new key signs; the old one stays
	// published until the tokens it signed have expired.
	as2.clock.Advance(time.Hour + time.Second)
	if _, err := as2.srv.keys.sign(context.Background(), newTestJWT(t)); err != nil {
		t.Fatal(err)
	}
	keys := as2.jwks(t).Keys
	if len(keys) != 2 || keys[0]["kid"] == kid1 || keys[1]["kid"] != kid1 {
		t.Fatalf("after rotation want [new, old], got %v", keys)
	}
	as2.clock.Advance(DefaultRPTTTL + time.Second)
	if err := as2.srv.keys.load(context.Background()); err != nil {
		t.Fatal(err)
	}
	keys = as2.jwks(t).Keys
	if len(keys) != 1 || keys[0]["kid"] == kid1 {
		t.Fatalf("retired key still published after retention: %v", keys)
	}
}
