package authz

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

func TestProtectionAPIRequiresPAT(t *testing.T) {
	as := newTestAS(t, nil)
	scopedTok := func() string {
		r := as.do("POST", PathToken, url.Values{"grant_type": {"client_credentials"}}, "Authorization", basicAuth("scoped", "scoped-secret"))
		return r.json(t)["access_token"].(string)
	}
	for _, ep := range []struct{ method, path, body string }{
		{"GET", PathResourceSet, ""},
		{"POST", PathResourceSet, `{"resource_scopes":["read"]}`},
		{"GET", PathResourceSet + "/x", ""},
		{"PUT", PathResourceSet + "/x", `{"resource_scopes":["read"]}`},
		{"DELETE", PathResourceSet + "/x", ""},
		{"POST", PathPermission, `{"resource_id":"x","resource_scopes":[]}`},
	} {
		t.Run(ep.method+" "+ep.path, func(t *testing.T) {
			var body any
			if ep.body != "" {
				body = ep.body
			}
			// No token: 401 with a bare challenge.
			r := as.do(ep.method, ep.path, body)
			expectError(t, r, 401, "invalid_token")
			if got := r.header.Get("WWW-Authenticate"); got != `Bearer realm="`+as.issuer+`"` {
				t.Fatalf("challenge %q", got)
			}
			// An unknown token.
			r = as.do(ep.method, ep.path, body, "Authorization", "Bearer not-a-token")
			expectError(t, r, 401, "invalid_token")
			if got := r.header.Get("WWW-Authenticate"); !strings.Contains(got, `error="invalid_token"`) {
				t.Fatalf("challenge %q", got)
			}
			// A token without uma_protection.
			r = as.do(ep.method, ep.path, body, "Authorization", bearer(scopedTok()))
			expectError(t, r, 403, "insufficient_scope")
			if got := r.header.Get("WWW-Authenticate"); !strings.Contains(got, `error="insufficient_scope", scope="uma_protection"`) {
				t.Fatalf("challenge %q", got)
			}
		})
	}
}

func TestResourceRegistrationLifecycle(t *testing.T) {
	as := newTestAS(t, nil)
	pat := as.pat("rs-a", "secret-a")
	auth := []string{"Authorization", bearer(pat)}

	r := as.do("POST", PathResourceSet, `{"name":"Lab reports","type":"https://example.com/rsrcs/labs",
		"description":"Alice's lab results","icon_uri":"https://example.com/i.png",
		"resource_scopes":["read","write",{"name":"delete"}],"uris":["/labs/*"],"owner":"alice","ignored":{"x":1}}`, auth...)
	if r.status != 201 {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	id := r.json(t)["_id"].(string)
	if loc := r.header.Get("Location"); loc != as.issuer+PathResourceSet+"/"+id {
		t.Fatalf("Location = %q", loc)
	}

	r = as.do("GET", PathResourceSet+"/"+id, nil, auth...)
	var got resourceDescription
	if r.status != 200 || json.Unmarshal(r.body, &got) != nil {
		t.Fatalf("read: %d %s", r.status, r.body)
	}
	want := resourceDescription{ID: id, Name: "Lab reports", Type: "https://example.com/rsrcs/labs", Description: "Alice's lab results",
		IconURI: "https://example.com/i.png", ResourceScopes: []string{"read", "write", "delete"}, URIs: []string{"/labs/*"}, Owner: "alice"}
	if !equalJSON(got, want) {
		t.Fatalf("read = %+v, want %+v", got, want)
	}

	r = as.do("PUT", PathResourceSet+"/"+id, `{"_id":"`+id+`","name":"Labs","resource_scopes":["read"]}`, auth...)
	if r.status != 200 || r.json(t)["_id"] != id {
		t.Fatalf("update: %d %s", r.status, r.body)
	}
	r = as.do("GET", PathResourceSet+"/"+id, nil, auth...)
	got = resourceDescription{}
	if err := json.Unmarshal(r.body, &got); err != nil || got.Name != "Labs" || len(got.ResourceScopes) != 1 || got.Type != "" || got.Owner != "alice" {
		t.Fatalf("update is not a full replacement (owner kept): %s", r.body)
	}

	id2 := as.register(pat, `{"name":"Photos","resource_scopes":["view"]}`)
	for _, path := range []string{PathResourceSet, PathResourceSet + "/"} {
		r = as.do("GET", path, nil, auth...)
		var ids []string
		if r.status != 200 || json.Unmarshal(r.body, &ids) != nil || len(ids) != 2 {
			t.Fatalf("list %s: %d %s", path, r.status, r.body)
		}
	}
	r = as.do("GET", PathResourceSet+"?name=Photos", nil, auth...)
	if string(r.body) != `["`+id2+`"]` {
		t.Fatalf("list filtered by name: %s", r.body)
	}
	r = as.do("GET", PathResourceSet+"/"+id2, nil, auth...)
	if r.json(t)["owner"] != "rs-a" {
		t.Fatalf("owner of a resource registered with client credentials and no owner: %s", r.body)
	}

	r = as.do("DELETE", PathResourceSet+"/"+id, nil, auth...)
	if r.status != http.StatusNoContent || len(r.body) != 0 {
		t.Fatalf("delete: %d %s", r.status, r.body)
	}
	expectError(t, as.do("GET", PathResourceSet+"/"+id, nil, auth...), 404, "not_found")
	expectError(t, as.do("DELETE", PathResourceSet+"/"+id, nil, auth...), 404, "not_found")
	r = as.do("GET", PathResourceSet, nil, auth...)
	if string(r.body) != `["`+id2+`"]` {
		t.Fatalf("list after delete: %s", r.body)
	}
}

func equalJSON(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

func TestResourceRegistrationErrors(t *testing.T) {
	as := newTestAS(t, nil)
	auth := []string{"Authorization", bearer(as.pat("rs-a", "secret-a"))}
	id := as.register(as.pat("rs-a", "secret-a"), `{"resource_scopes":["read"]}`)
	tests := []struct {
		name, method, path string
		body               any
		status             int
		code               string
	}{
		{"missing resource_scopes", "POST", PathResourceSet, `{"name":"x"}`, 400, "invalid_request"},
		{"null resource_scopes", "POST", PathResourceSet, `{"resource_scopes":null}`, 400, "invalid_request"},
		{"scopes not an array", "POST", PathResourceSet, `{"resource_scopes":"read"}`, 400, "invalid_request"},
		{"scope not a string", "POST", PathResourceSet, `{"resource_scopes":[1]}`, 400, "invalid_request"},
		{"empty scope", "POST", PathResourceSet, `{"resource_scopes":[""]}`, 400, "invalid_request"},
		{"scope with space", "POST", PathResourceSet, `{"resource_scopes":["a b"]}`, 400, "invalid_request"},
		{"name not a string", "POST", PathResourceSet, `{"name":5,"resource_scopes":[]}`, 400, "invalid_request"},
		{"bad icon_uri", "POST", PathResourceSet, `{"icon_uri":"not a uri","resource_scopes":[]}`, 400, "invalid_request"},
		{"uris not strings", "POST", PathResourceSet, `{"uris":[1],"resource_scopes":[]}`, 400, "invalid_request"},
		{"invalid JSON", "POST", PathResourceSet, `{"resource_scopes":[`, 400, "invalid_request"},
		{"JSON array", "POST", PathResourceSet, `[]`, 400, "invalid_request"},
		{"too large", "POST", PathResourceSet, `{"description":"` + strings.Repeat("x", maxBodyBytes) + `","resource_scopes":[]}`, 400, "invalid_request"},
		{"conflicting _id", "PUT", PathResourceSet + "/" + id, `{"_id":"other","resource_scopes":[]}`, 400, "invalid_request"},
		{"update unknown", "PUT", PathResourceSet + "/nope", `{"resource_scopes":[]}`, 404, "not_found"},
		{"read unknown", "GET", PathResourceSet + "/nope", nil, 404, "not_found"},
		{"PATCH one", "PATCH", PathResourceSet + "/" + id, `{}`, 405, "unsupported_method_type"},
		{"POST one", "POST", PathResourceSet + "/" + id, `{}`, 405, "unsupported_method_type"},
		{"DELETE collection", "DELETE", PathResourceSet, nil, 405, "unsupported_method_type"},
		{"PUT collection", "PUT", PathResourceSet, `{}`, 405, "unsupported_method_type"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := as.do(tc.method, tc.path, tc.body, auth...)
			expectError(t, r, tc.status, tc.code)
			if tc.status == 405 && r.header.Get("Allow") == "" {
				t.Fatal("405 without Allow")
			}
		})
	}
	// Wrong content type.
	r := as.do("POST", PathResourceSet, `{"resource_scopes":[]}`, append(auth, "Content-Type", "text/plain")...)
	expectError(t, r, 400, "invalid_request")
}

func TestResourceServersAreIsolated(t *testing.T) {
	as := newTestAS(t, nil)
	patA, patB := as.pat("rs-a", "secret-a"), as.pat("rs-b", "secret-b")
	id := as.register(patA, `{"name":"A's","resource_scopes":["read","write"],"owner":"alice"}`)
	authB := []string{"Authorization", bearer(patB)}

	expectError(t, as.do("GET", PathResourceSet+"/"+id, nil, authB...), 404, "not_found")
	expectError(t, as.do("PUT", PathResourceSet+"/"+id, `{"name":"mine now","resource_scopes":["read"]}`, authB...), 404, "not_found")
	expectError(t, as.do("DELETE", PathResourceSet+"/"+id, nil, authB...), 404, "not_found")
	expectError(t, as.do("POST", PathPermission, `{"resource_id":"`+id+`","resource_scopes":["read"]}`, authB...), 400, "invalid_resource_id")
	if r := as.do("GET", PathResourceSet, nil, authB...); string(r.body) != "[]" {
		t.Fatalf("B lists A's resources: %s", r.body)
	}
	if r := as.do("GET", PathResourceSet+"?owner=alice", nil, authB...); string(r.body) != "[]" {
		t.Fatalf("B lists A's resources by owner: %s", r.body)
	}
	// Nothing changed for A.
	r := as.do("GET", PathResourceSet+"/"+id, nil, "Authorization", bearer(patA))
	if r.status != 200 || r.json(t)["name"] != "A's" || len(r.json(t)["resource_scopes"].([]any)) != 2 {
		t.Fatalf("A's resource changed: %d %s", r.status, r.body)
	}
}

// TestUserAccessPolicyURI: with the console on, registration answers name
// the console page where the owner sets who may do what; without it, none.
func TestUserAccessPolicyURI(t *testing.T) {
	f := newPeopleFixture(t, nil)
	r := f.do("POST", PathResourceSet, `{"name":"x","resource_scopes":["read"]}`, "Authorization", bearer(f.pat))
	id, _ := r.json(t)["_id"].(string)
	want := f.issuer + PathConsole + "/resources/" + id
	if r.status != 201 || r.json(t)["user_access_policy_uri"] != want {
		t.Fatalf("create: %d %s, want user_access_policy_uri %s", r.status, r.body, want)
	}
	if r := f.do("GET", PathResourceSet+"/"+id, nil, "Authorization", bearer(f.pat)); r.json(t)["user_access_policy_uri"] != want {
		t.Fatalf("read: %s", r.body)
	}
	if r := f.do("PUT", PathResourceSet+"/"+id, `{"name":"x","resource_scopes":["read"]}`, "Authorization", bearer(f.pat)); r.json(t)["user_access_policy_uri"] != want {
		t.Fatalf("update: %s", r.body)
	}
	plain := newTestAS(t, nil)
	r = plain.do("POST", PathResourceSet, `{"resource_scopes":["read"]}`, "Authorization", bearer(plain.pat("rs-a", "secret-a")))
	if _, has := r.json(t)["user_access_policy_uri"]; has {
		t.Fatalf("without the console: %s", r.body)
	}
}
