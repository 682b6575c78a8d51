package ownerapi_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/caddy-uma/caddy-uma/authz/authztest"
	"github.com/caddy-uma/caddy-uma/authz/ownerapi"
	"github.com/caddy-uma/caddy-uma/policies"
)

func TestOwnerRulesAPI(t *testing.T) {
	f := authztest.NewGrantFixture(t, nil)
	auth := []string{"Authorization", authztest.Bearer(f.AlicePAT)}
	// A syntax error is refused with its line and column.
	r := f.PutRule(f.AlicePAT, "broken", "package uma.share\n\nallow contains \"read\" if {\n\tinput.x ==\n}\n")
	authztest.ExpectError(t, r, 400, "invalid_request")
	var ce struct {
		Errors []*policies.CompileError `json:"errors"`
	}
	if err := json.Unmarshal(r.Body, &ce); err != nil || len(ce.Errors) == 0 || ce.Errors[0].Line == 0 || ce.Errors[0].Module != "broken" {
		t.Fatalf("compile errors: %s", r.Body)
	}
	// Refused built-ins.
	r = f.PutRule(f.AlicePAT, "net", "package uma.share\n\nallow contains \"read\" if http.send({\"method\": \"get\", \"url\": \"http://x\"}).status_code == 200\n")
	authztest.ExpectError(t, r, 400, "invalid_request")
	// Bad names.
	authztest.ExpectError(t, f.PutRule(f.AlicePAT, "a%20b", "package uma.share\n"), 400, "invalid_request")
	// JSON body.
	r = f.Do("PUT", ownerapi.PathRules+"/family", `{"source":"package uma.share\n\nallow contains \"read\" if input.claims.family == true\n"}`, auth...)
	if r.Status != 200 {
		t.Fatalf("put JSON: %d %s", r.Status, r.Body)
	}
	r = f.Do("GET", ownerapi.PathRules, nil, auth...)
	if !strings.Contains(string(r.Body), `"name":"family"`) || !strings.Contains(string(r.Body), `"name":"main"`) {
		t.Fatalf("list: %s", r.Body)
	}
	if r := f.Do("GET", ownerapi.PathRules+"/family", nil, auth...); r.Status != 200 || !strings.Contains(string(r.Body), "input.claims.family") {
		t.Fatalf("get: %d %s", r.Status, r.Body)
	}
	// Dry run, saved rules and unsaved ones.
	r = f.Do("POST", ownerapi.PathEvaluate, `{"resource_id":"`+f.Labs+`","scopes":["read","write"],"claims":{"email":"doctor@clinic.example"}}`, auth...)
	if r.Status != 200 || !strings.Contains(string(r.Body), `"granted":["read","write"]`) {
		t.Fatalf("dry run: %d %s", r.Status, r.Body)
	}
	r = f.Do("POST", ownerapi.PathEvaluate, `{"resource_id":"`+f.Labs+`","scopes":["read"],"claims":{"family":true},"rules":{"x":"package uma.share\n\nallow contains \"delete\" if true\n"}}`, auth...)
	if r.Status != 200 || !strings.Contains(string(r.Body), `"granted":[]`) {
		t.Fatalf("dry run with unsaved rules: %d %s", r.Status, r.Body)
	}
	if r := f.Do("DELETE", ownerapi.PathRules+"/family", nil, auth...); r.Status != 204 {
		t.Fatalf("delete: %d", r.Status)
	}
	authztest.ExpectError(t, f.Do("DELETE", ownerapi.PathRules+"/family", nil, auth...), 404, "not_found")
	authztest.ExpectError(t, f.Do("GET", ownerapi.PathRules+"/family", nil, auth...), 404, "not_found")
	authztest.ExpectError(t, f.Do("GET", ownerapi.PathRules, nil), 401, "invalid_token")
}
