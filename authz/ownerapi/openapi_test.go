package ownerapi_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/caddy-uma/caddy-uma/authz/authztest"
)

// TestOpenAPIDocumentsEveryRoute checks docs/openapi.yaml against the
// owner API's route table (the AS's own: authz.TestOpenAPIDocumentsEveryRoute,
// which also sends each documented method to the AS with its owner API):
// every route is documented, and every documented path under /owner/ is
// one of its routes.
func TestOpenAPIDocumentsEveryRoute(t *testing.T) {
	doc, err := openapi3.NewLoader().LoadFromFile("../../docs/openapi.yaml")
	if err != nil {
		t.Fatalf("loading docs/openapi.yaml: %v", err)
	}
	f := authztest.New(t, nil)
	routes := f.OwnerAPI.RoutePatterns()
	if len(routes) == 0 {
		t.Fatal("the owner API has no routes")
	}
	documented := map[string]bool{}
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			documented[method+" "+path] = true
			if strings.HasPrefix(path, "/owner/") && !slices.Contains(routes, method+" "+path) {
				t.Errorf("docs/openapi.yaml documents %s %s, which the owner API does not serve", method, path)
			}
		}
	}
	for _, r := range routes {
		if !documented[r] {
			t.Errorf("route %s is not documented in docs/openapi.yaml", r)
		}
	}
}
