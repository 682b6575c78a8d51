package authz_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/caddy-uma/caddy-uma/authz"
	"github.com/caddy-uma/caddy-uma/authz/authztest"
)

func TestDiscoveryDocuments(t *testing.T) {
	as := authztest.New(t, nil)
	host := strings.TrimSuffix(as.Issuer, "/uma")
	for _, u := range []string{
		as.Issuer + authz.PathUMAConfiguration,
		as.Issuer + authz.PathOAuthMetadata,
		host + authz.PathOAuthMetadata + "/uma", // RFC 8414 section 3: inserted before the path
	} {
		t.Run(u, func(t *testing.T) {
			r := as.Do("GET", u, nil)
			if r.Status != 200 {
				t.Fatalf("status %d: %s", r.Status, r.Body)
			}
			m := r.JSON(t)
			if m["issuer"] != as.Issuer {
				t.Fatalf("issuer = %v, want %s", m["issuer"], as.Issuer)
			}
			for field, path := range map[string]string{
				"token_endpoint":                 authz.PathToken,
				"jwks_uri":                       authz.PathJWKS,
				"permission_endpoint":            authz.PathPermission,
				"resource_registration_endpoint": authz.PathResourceSet,
				"introspection_endpoint":         authz.PathIntrospect,
				"revocation_endpoint":            authz.PathRevoke,
			} {
				if m[field] != as.Issuer+path {
					t.Errorf("%s = %v, want %s", field, m[field], as.Issuer+path)
				}
			}
			for _, field := range []string{"response_types_supported", "grant_types_supported", "scopes_supported",
				"token_endpoint_auth_methods_supported", "uma_profiles_supported"} {
				if _, ok := m[field].([]any); !ok {
					t.Errorf("%s missing or not an array: %v", field, m[field])
				}
			}
			if !strings.Contains(string(r.Body), `"uma_protection"`) {
				t.Errorf("scopes_supported lacks uma_protection: %s", r.Body)
			}
		})
	}
	authztest.ExpectError(t, as.Do("POST", authz.PathUMAConfiguration, nil), 405, "invalid_request")
	authztest.ExpectError(t, as.Do("GET", "/nope", nil), 404, "not_found")
}

func TestHandles(t *testing.T) {
	as := authztest.New(t, nil)
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
		if got := as.Server.Handles(path); got != want {
			t.Errorf("Handles(%q) = %v, want %v", path, got, want)
		}
	}
}

func TestIssuerValidation(t *testing.T) {
	st := authztest.OpenStore(t, t.TempDir())
	defer st.Close()
	for _, iss := range []string{"", "localhost:8080", "ftp://x", "https://as.example/?q=1", "https://as.example/#f", "/relative"} {
		if _, err := authz.New(context.Background(), authz.Config{Issuer: iss, Store: st}); err == nil {
			t.Errorf("issuer %q accepted", iss)
		}
	}
}

type jwks struct {
	Keys []map[string]any `json:"keys"`
}

func fetchJWKS(t *testing.T, as *authztest.AS) jwks {
	t.Helper()
	r := as.Do("GET", authz.PathJWKS, nil)
	if r.Status != 200 || r.Header.Get("Content-Type") != "application/jwk-set+json" {
		t.Fatalf("jwks: %d %s %s", r.Status, r.Header.Get("Content-Type"), r.Body)
	}
	var set jwks
	if err := json.Unmarshal(r.Body, &set); err != nil {
		t.Fatal(err)
	}
	return set
}

func TestJWKSPublishesOnlyPublicKeys(t *testing.T) {
	for _, alg := range []string{"ES256", "EdDSA", "RS256"} {
		t.Run(alg, func(t *testing.T) {
			as := authztest.New(t, func(c *authz.Config) { c.SigningAlg = alg })
			set := fetchJWKS(t, as)
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
	st := authztest.OpenStore(t, t.TempDir())
	defer st.Close()
	as1 := authztest.NewWithStore(t, st, func(c *authz.Config) { c.KeyRotation = time.Hour })
	kid1 := fetchJWKS(t, as1).Keys[0]["kid"]

	// A second server on the same store (a reload) keeps the key.
	as2 := authztest.NewWithStore(t, st, func(c *authz.Config) { c.KeyRotation = time.Hour })
	if got := fetchJWKS(t, as2).Keys; len(got) != 1 || got[0]["kid"] != kid1 {
		t.Fatalf("key changed across restarts: %v vs %v", got, kid1)
	}

	// After the rotation period a new key signs; the old one stays
	// published until the tokens it signed have expired.
	as2.Clock.Advance(time.Hour + time.Second)
	if _, err := as2.Server.Sign(context.Background(), newTestJWT(t)); err != nil {
		t.Fatal(err)
	}
	keys := fetchJWKS(t, as2).Keys
	if len(keys) != 2 || keys[0]["kid"] == kid1 || keys[1]["kid"] != kid1 {
		t.Fatalf("after rotation want [new, old], got %v", keys)
	}
	as2.Clock.Advance(authz.DefaultRPTTTL + time.Second)
	if err := as2.Server.ReloadKeys(context.Background()); err != nil {
		t.Fatal(err)
	}
	keys = fetchJWKS(t, as2).Keys
	if len(keys) != 1 || keys[0]["kid"] == kid1 {
		t.Fatalf("retired key still published after retention: %v", keys)
	}
}
