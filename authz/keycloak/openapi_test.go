package keycloak_test

import (
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
)

// isKeycloakPath reports whether a documented path is one of Keycloak's,
// served in Keycloak compatibility mode only.
func isKeycloakPath(item *openapi3.PathItem) bool {
	v, ok := item.Extensions["x-keycloak-compat"]
	return ok && v == true
}

// TestOpenAPIKeycloakRoutes checks docs/openapi.yaml against the route
// table of Keycloak's paths (the AS's own: authz.TestOpenAPIDocumentsEveryRoute):
// every route is documented, Keycloak's paths (and only they) carry x-keycloak-compat,
// and each of their documented methods answers without credentials as a
// route, with a documented status and an OAuth error.
func TestOpenAPIKeycloakRoutes(t *testing.T) {
	doc := loadOpenAPI(t)
	f := newKeycloakFixture(t)
	routes := f.Compat.RoutePatterns()
	documented := map[string]bool{}
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			documented[method+" "+path] = true
		}
	}
	keycloakPath := func(path string) bool {
		return strings.HasPrefix(path, "/protocol/openid-connect/") || strings.HasPrefix(path, "/authz/protection/")
	}
	for _, r := range routes {
		if !documented[r] {
			t.Errorf("route %s is not documented in docs/openapi.yaml", r)
		}
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for path, item := range doc.Paths.Map() {
		if isKeycloakPath(item) != keycloakPath(path) {
			t.Errorf("%s: x-keycloak-compat on Keycloak's paths, and only on them", path)
		}
		if !isKeycloakPath(item) {
			continue
		}
		for method, op := range item.Operations() {
			if !slices.Contains(routes, method+" "+path) {
				t.Errorf("docs/openapi.yaml documents %s %s, which compat mode does not serve", method, path)
			}
			if len(op.Tags) == 0 || op.Tags[0] != "keycloak" {
				t.Errorf("%s %s: tags %q", method, path, op.Tags)
			}
			target := f.Issuer + strings.ReplaceAll(path, "{id}", "no-such-id")
			req, err := http.NewRequest(method, target, strings.NewReader(""))
			if err != nil {
				t.Fatal(err)
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body := make([]byte, 4096)
			n, _ := resp.Body.Read(body)
			resp.Body.Close()
			text := string(body[:n])
			if resp.StatusCode == http.StatusMethodNotAllowed || (resp.StatusCode == http.StatusNotFound && strings.Contains(text, "no such endpoint")) {
				t.Errorf("%s %s: %d %s: the documented route does not answer", method, path, resp.StatusCode, text)
			}
			if _, ok := op.Responses.Map()[strconv.Itoa(resp.StatusCode)]; !ok {
				t.Errorf("%s %s: answered %d, which is not documented: %s", method, path, resp.StatusCode, text)
			}
			if resp.StatusCode >= 400 && !strings.Contains(text, `"error":`) {
				t.Errorf("%s %s: %d is not an OAuth error: %s", method, path, resp.StatusCode, text)
			}
		}
	}
}
