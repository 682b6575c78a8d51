package authz_test

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/caddy-uma/caddy-uma/authz"
	"github.com/caddy-uma/caddy-uma/authz/admin"
	"github.com/caddy-uma/caddy-uma/authz/authztest"
	"github.com/caddy-uma/caddy-uma/authz/people"
)

// loadOpenAPI loads and validates docs/openapi.yaml.
func loadOpenAPI(t *testing.T) *openapi3.T {
	t.Helper()
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromFile("../docs/openapi.yaml")
	if err != nil {
		t.Fatalf("loading docs/openapi.yaml: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.1") {
		t.Errorf("openapi %s, want 3.1", doc.OpenAPI)
	}
	if err := doc.Validate(t.Context()); err != nil {
		t.Fatalf("docs/openapi.yaml is not a valid OpenAPI document: %v", err)
	}
	return doc
}

// isAdminPath reports whether a documented path is the operator's API,
// served by Caddy's admin endpoint (its own server in the document).
func isAdminPath(item *openapi3.PathItem) bool {
	return len(item.Servers) > 0 && strings.Contains(item.Servers[0].URL, ":2019")
}

// TestOpenAPIDocumentsEveryRoute checks docs/openapi.yaml against the real
// route tables: every method of every route of the AS (with dynamic
// registration on) and of the operator's API is documented, with its
// error answers, and nothing is documented under the operator's API that
// is not one of its routes.
func TestOpenAPIDocumentsEveryRoute(t *testing.T) {
	doc := loadOpenAPI(t)
	f := authztest.New(t, func(c *authz.Config) { c.Registration = &authz.Registration{InitialAccessToken: "iat"} })
	asRoutes := f.Server.RoutePatterns()
	for _, r := range admin.Patterns() {
		method, path, _ := strings.Cut(r, " ")
		asRoutes = append(asRoutes, method+" /uma"+path)
	}
	documented := map[string]bool{}
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			documented[method+" "+path] = true
			if op.Responses == nil || op.Responses.Len() == 0 {
				t.Errorf("%s %s: no responses", method, path)
			}
			if op.OperationID == "" {
				t.Errorf("%s %s: no operationId", method, path)
			}
			if tags := op.Tags; len(tags) == 0 || (tags[0] == "pages") != isPage(path) {
				t.Errorf("%s %s: tags %q", method, path, tags)
			}
			if isAdminPath(item) != strings.HasPrefix(path, "/uma/") {
				t.Errorf("%s %s: the operator's API has its own server, and only it", method, path)
			}
		}
	}
	for _, r := range asRoutes {
		if !documented[r] {
			t.Errorf("route %s is not documented in docs/openapi.yaml", r)
		}
	}
	for r := range documented {
		if strings.Contains(r, " /uma/") && !slices.Contains(asRoutes, r) {
			t.Errorf("docs/openapi.yaml documents %s, which the operator's API does not serve", r)
		}
	}
}

// isKeycloakPath reports whether a documented path is one of Keycloak's,
// served in Keycloak compatibility mode only (package keycloak).
func isKeycloakPath(item *openapi3.PathItem) bool {
	v, ok := item.Extensions["x-keycloak-compat"]
	return ok && v == true
}

func isPage(path string) bool {
	for _, p := range []string{people.PathLogin, people.PathLogout, people.PathAuthorize, people.PathClaims, people.PathConsole} {
		if path == p {
			return true
		}
	}
	return false
}

// TestOpenAPIRoutesAnswer sends each documented method and path (the
// path parameters filled in) to a real server, the AS with its pages on
// one and the operator's API on another, without credentials: each must
// answer as a route, never with 405 nor with the 404 of a path that is no
// endpoint. (A 404 for a resource that does not exist is an answer of the
// route.) Every error answer of the AS's routes is an OAuth error object.
func TestOpenAPIRoutesAnswer(t *testing.T) {
	doc := loadOpenAPI(t)
	f := authztest.NewPeopleFixture(t, func(c *authz.Config, _ *people.Config) {
		c.Registration = &authz.Registration{InitialAccessToken: "iat"}
	})
	operator := httptest.NewServer(admin.New(f.Server, f.Store, nil).Handler("/uma"))
	t.Cleanup(operator.Close)
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for path, item := range doc.Paths.Map() {
		if isKeycloakPath(item) {
			continue // served in compat mode only: keycloak.TestOpenAPIKeycloakRoutes
		}
		for method := range item.Operations() {
			target := f.Issuer + path
			if isAdminPath(item) {
				target = operator.URL + path
			}
			target = strings.NewReplacer("{id}", "no-such-id", "{name}", "no-such-rule").Replace(target)
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
			if resp.StatusCode == http.StatusMethodNotAllowed ||
				(resp.StatusCode == http.StatusNotFound && (strings.Contains(text, "no such endpoint") || strings.Contains(text, "no such operator endpoint"))) {
				t.Errorf("%s %s: %d %s: the documented route does not answer", method, path, resp.StatusCode, text)
			}
			if _, documented := operation(item, method).Responses.Map()[strconv.Itoa(resp.StatusCode)]; !documented {
				t.Errorf("%s %s: answered %d, which is not documented: %s", method, path, resp.StatusCode, text)
			}
			if resp.StatusCode >= 400 && !isPage(path) && !strings.Contains(text, `"error":`) {
				t.Errorf("%s %s: %d is not an OAuth error: %s", method, path, resp.StatusCode, text)
			}
		}
	}
}

func operation(item *openapi3.PathItem, method string) *openapi3.Operation {
	return item.Operations()[method]
}
