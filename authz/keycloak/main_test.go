package keycloak_test

import (
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"go.uber.org/goleak"

	"github.com/caddy-uma/caddy-uma/authz"
	"github.com/caddy-uma/caddy-uma/authz/authztest"
	"github.com/caddy-uma/caddy-uma/authz/keycloak"
)

// TestMain fails the package's tests when a goroutine outlives them.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// newCompatAS starts an AS under the issuer {server}/realms/demo with
// Keycloak's paths served beside its own, as the uma_server handler does
// in compat mode. mod may change the config first.
func newCompatAS(t *testing.T, mod func(*authz.Config)) (*authztest.AS, *keycloak.Compat) {
	t.Helper()
	issuer := ""
	as := authztest.New(t, func(c *authz.Config) {
		c.Issuer = strings.TrimSuffix(c.Issuer, "/uma") + "/realms/demo"
		if mod != nil {
			mod(c)
		}
		if err := keycloak.Configure(c); err != nil {
			t.Fatal(err)
		}
		issuer = c.Issuer
	})
	as.Issuer = issuer
	kc, err := keycloak.New(as.Server, as.Store, keycloak.Config{Now: as.Clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	as.SetRoot(authz.Join{First: kc, Next: as.WithOwnerAPI(as.Server)})
	return as, kc
}

// loadOpenAPI loads and validates docs/openapi.yaml.
func loadOpenAPI(t *testing.T) *openapi3.T {
	t.Helper()
	doc, err := openapi3.NewLoader().LoadFromFile("../../docs/openapi.yaml")
	if err != nil {
		t.Fatalf("loading docs/openapi.yaml: %v", err)
	}
	if err := doc.Validate(t.Context()); err != nil {
		t.Fatalf("docs/openapi.yaml is not a valid OpenAPI document: %v", err)
	}
	return doc
}
