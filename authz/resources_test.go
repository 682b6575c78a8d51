package authz_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/caddy-uma/caddy-uma/authz"
	"github.com/caddy-uma/caddy-uma/authz/authztest"
	"github.com/caddy-uma/caddy-uma/authz/oauth"
	"github.com/caddy-uma/caddy-uma/store"
)

func TestProtectionAPIRequiresPAT(t *testing.T) {
	as := authztest.New(t, nil)
	scopedTok := func() string {
		r := as.Do("POST", authz.PathToken, url.Values{"grant_type": {"client_credentials"}}, "Authorization", authztest.BasicAuth("scoped", "scoped-secret"))
		return r.JSON(t)["access_token"].(string)
	}
	for _, ep := range []struct{ method, path, body string }{
		{"GET", authz.PathResourceSet, ""},
		{"POST", authz.PathResourceSet, `{"resource_scopes":["read"]}`},
		{"GET", authz.PathResourceSet + "/x", ""},
		{"PUT", authz.PathResourceSet + "/x", `{"resource_scopes":["read"]}`},
		{"DELETE", authz.PathResourceSet + "/x", ""},
		{"POST", authz.PathPermission, `{"resource_id":"x","resource_scopes":[]}`},
	} {
		t.Run(ep.method+" "+ep.path, func(t *testing.T) {
			var body any
			if ep.body != "" {
				body = ep.body
			}
			// No token: 401 with a bare challenge.
			r := as.Do(ep.method, ep.path, body)
			authztest.ExpectError(t, r, 401, "invalid_token")
			if got := r.Header.Get("WWW-Authenticate"); got != `Bearer realm="`+as.Issuer+`"` {
				t.Fatalf("challenge %q", got)
			}
			// An unknown token.
			r = as.Do(ep.method, ep.path, body, "Authorization", "Bearer not-a-token")
			authztest.ExpectError(t, r, 401, "invalid_token")
			if got := r.Header.Get("WWW-Authenticate"); !strings.Contains(got, `error="invalid_token"`) {
				t.Fatalf("challenge %q", got)
			}
			// A token without uma_protection.
			r = as.Do(ep.method, ep.path, body, "Authorization", authztest.Bearer(scopedTok()))
			authztest.ExpectError(t, r, 403, "insufficient_scope")
			if got := r.Header.Get("WWW-Authenticate"); !strings.Contains(got, `error="insufficient_scope", scope="uma_protection"`) {
				t.Fatalf("challenge %q", got)
			}
		})
	}
}

func TestResourceRegistrationLifecycle(t *testing.T) {
	as := authztest.New(t, nil)
	pat := as.PAT("rs-a", "secret-a")
	auth := []string{"Authorization", authztest.Bearer(pat)}

	r := as.Do("POST", authz.PathResourceSet, `{"name":"Lab reports","type":"https://example.com/rsrcs/labs",
		"description":"Alice's lab results","icon_uri":"https://example.com/i.png",
		"resource_scopes":["read","write",{"name":"delete"}],"uris":["/labs/*"],"owner":"alice","ignored":{"x":1}}`, auth...)
	if r.Status != 201 {
		t.Fatalf("create: %d %s", r.Status, r.Body)
	}
	id := r.JSON(t)["_id"].(string)
	if loc := r.Header.Get("Location"); loc != as.Issuer+authz.PathResourceSet+"/"+id {
		t.Fatalf("Location = %q", loc)
	}

	r = as.Do("GET", authz.PathResourceSet+"/"+id, nil, auth...)
	var got authz.ResourceDescription
	if r.Status != 200 || json.Unmarshal(r.Body, &got) != nil {
		t.Fatalf("read: %d %s", r.Status, r.Body)
	}
	want := authz.ResourceDescription{ID: id, Name: "Lab reports", Type: "https://example.com/rsrcs/labs", Description: "Alice's lab results",
		IconURI: "https://example.com/i.png", ResourceScopes: []string{"read", "write", "delete"}, URIs: []string{"/labs/*"}, Owner: "alice"}
	if !equalJSON(got, want) {
		t.Fatalf("read = %+v, want %+v", got, want)
	}

	r = as.Do("PUT", authz.PathResourceSet+"/"+id, `{"_id":"`+id+`","name":"Labs","resource_scopes":["read"]}`, auth...)
	if r.Status != 200 || r.JSON(t)["_id"] != id {
		t.Fatalf("update: %d %s", r.Status, r.Body)
	}
	r = as.Do("GET", authz.PathResourceSet+"/"+id, nil, auth...)
	got = authz.ResourceDescription{}
	if err := json.Unmarshal(r.Body, &got); err != nil || got.Name != "Labs" || len(got.ResourceScopes) != 1 || got.Type != "" || got.Owner != "alice" {
		t.Fatalf("update is not a full replacement (owner kept): %s", r.Body)
	}

	id2 := as.Register(pat, `{"name":"Photos","resource_scopes":["view"]}`)
	for _, path := range []string{authz.PathResourceSet, authz.PathResourceSet + "/"} {
		r = as.Do("GET", path, nil, auth...)
		var ids []string
		if r.Status != 200 || json.Unmarshal(r.Body, &ids) != nil || len(ids) != 2 {
			t.Fatalf("list %s: %d %s", path, r.Status, r.Body)
		}
	}
	r = as.Do("GET", authz.PathResourceSet+"?name=Photos", nil, auth...)
	if string(r.Body) != `["`+id2+`"]` {
		t.Fatalf("list filtered by name: %s", r.Body)
	}
	r = as.Do("GET", authz.PathResourceSet+"/"+id2, nil, auth...)
	if r.JSON(t)["owner"] != "rs-a" {
		t.Fatalf("owner of a resource registered with client credentials and no owner: %s", r.Body)
	}

	r = as.Do("DELETE", authz.PathResourceSet+"/"+id, nil, auth...)
	if r.Status != http.StatusNoContent || len(r.Body) != 0 {
		t.Fatalf("delete: %d %s", r.Status, r.Body)
	}
	authztest.ExpectError(t, as.Do("GET", authz.PathResourceSet+"/"+id, nil, auth...), 404, "not_found")
	authztest.ExpectError(t, as.Do("DELETE", authz.PathResourceSet+"/"+id, nil, auth...), 404, "not_found")
	r = as.Do("GET", authz.PathResourceSet, nil, auth...)
	if string(r.Body) != `["`+id2+`"]` {
		t.Fatalf("list after delete: %s", r.Body)
	}
}

func equalJSON(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

func TestResourceRegistrationErrors(t *testing.T) {
	as := authztest.New(t, nil)
	auth := []string{"Authorization", authztest.Bearer(as.PAT("rs-a", "secret-a"))}
	id := as.Register(as.PAT("rs-a", "secret-a"), `{"resource_scopes":["read"]}`)
	tests := []struct {
		name, method, path string
		body               any
		status             int
		code               string
	}{
		{"missing resource_scopes", "POST", authz.PathResourceSet, `{"name":"x"}`, 400, "invalid_request"},
		{"null resource_scopes", "POST", authz.PathResourceSet, `{"resource_scopes":null}`, 400, "invalid_request"},
		{"scopes not an array", "POST", authz.PathResourceSet, `{"resource_scopes":"read"}`, 400, "invalid_request"},
		{"scope not a string", "POST", authz.PathResourceSet, `{"resource_scopes":[1]}`, 400, "invalid_request"},
		{"empty scope", "POST", authz.PathResourceSet, `{"resource_scopes":[""]}`, 400, "invalid_request"},
		{"scope with space", "POST", authz.PathResourceSet, `{"resource_scopes":["a b"]}`, 400, "invalid_request"},
		{"name not a string", "POST", authz.PathResourceSet, `{"name":5,"resource_scopes":[]}`, 400, "invalid_request"},
		{"bad icon_uri", "POST", authz.PathResourceSet, `{"icon_uri":"not a uri","resource_scopes":[]}`, 400, "invalid_request"},
		{"uris not strings", "POST", authz.PathResourceSet, `{"uris":[1],"resource_scopes":[]}`, 400, "invalid_request"},
		{"invalid JSON", "POST", authz.PathResourceSet, `{"resource_scopes":[`, 400, "invalid_request"},
		{"JSON array", "POST", authz.PathResourceSet, `[]`, 400, "invalid_request"},
		{"too large", "POST", authz.PathResourceSet, `{"description":"` + strings.Repeat("x", oauth.MaxBodyBytes) + `","resource_scopes":[]}`, 400, "invalid_request"},
		{"conflicting _id", "PUT", authz.PathResourceSet + "/" + id, `{"_id":"other","resource_scopes":[]}`, 400, "invalid_request"},
		{"update unknown", "PUT", authz.PathResourceSet + "/nope", `{"resource_scopes":[]}`, 404, "not_found"},
		{"read unknown", "GET", authz.PathResourceSet + "/nope", nil, 404, "not_found"},
		{"PATCH one", "PATCH", authz.PathResourceSet + "/" + id, `{}`, 405, "unsupported_method_type"},
		{"POST one", "POST", authz.PathResourceSet + "/" + id, `{}`, 405, "unsupported_method_type"},
		{"DELETE collection", "DELETE", authz.PathResourceSet, nil, 405, "unsupported_method_type"},
		{"PUT collection", "PUT", authz.PathResourceSet, `{}`, 405, "unsupported_method_type"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := as.Do(tc.method, tc.path, tc.body, auth...)
			authztest.ExpectError(t, r, tc.status, tc.code)
			if tc.status == 405 && r.Header.Get("Allow") == "" {
				t.Fatal("405 without Allow")
			}
		})
	}
	// Wrong content type.
	r := as.Do("POST", authz.PathResourceSet, `{"resource_scopes":[]}`, append(auth, "Content-Type", "text/plain")...)
	authztest.ExpectError(t, r, 400, "invalid_request")
}

func TestResourceServersAreIsolated(t *testing.T) {
	as := authztest.New(t, nil)
	patA, patB := as.PAT("rs-a", "secret-a"), as.PAT("rs-b", "secret-b")
	id := as.Register(patA, `{"name":"A's","resource_scopes":["read","write"],"owner":"alice"}`)
	authB := []string{"Authorization", authztest.Bearer(patB)}

	authztest.ExpectError(t, as.Do("GET", authz.PathResourceSet+"/"+id, nil, authB...), 404, "not_found")
	authztest.ExpectError(t, as.Do("PUT", authz.PathResourceSet+"/"+id, `{"name":"mine now","resource_scopes":["read"]}`, authB...), 404, "not_found")
	authztest.ExpectError(t, as.Do("DELETE", authz.PathResourceSet+"/"+id, nil, authB...), 404, "not_found")
	authztest.ExpectError(t, as.Do("POST", authz.PathPermission, `{"resource_id":"`+id+`","resource_scopes":["read"]}`, authB...), 400, "invalid_resource_id")
	if r := as.Do("GET", authz.PathResourceSet, nil, authB...); string(r.Body) != "[]" {
		t.Fatalf("B lists A's resources: %s", r.Body)
	}
	if r := as.Do("GET", authz.PathResourceSet+"?owner=alice", nil, authB...); string(r.Body) != "[]" {
		t.Fatalf("B lists A's resources by owner: %s", r.Body)
	}
	// Nothing changed for A.
	r := as.Do("GET", authz.PathResourceSet+"/"+id, nil, "Authorization", authztest.Bearer(patA))
	if r.Status != 200 || r.JSON(t)["name"] != "A's" || len(r.JSON(t)["resource_scopes"].([]any)) != 2 {
		t.Fatalf("A's resource changed: %d %s", r.Status, r.Body)
	}
}

// TestUserAccessPolicyURI: with the console on, registration answers name
// the console page where the owner sets who may do what; without it, none.
func TestUserAccessPolicyURI(t *testing.T) {
	f := authztest.NewPeopleFixture(t, nil)
	r := f.Do("POST", authz.PathResourceSet, `{"name":"x","resource_scopes":["read"]}`, "Authorization", authztest.Bearer(f.AlicePAT))
	id, _ := r.JSON(t)["_id"].(string)
	want := f.Issuer + authz.PathConsole + "/resources/" + id
	if r.Status != 201 || r.JSON(t)["user_access_policy_uri"] != want {
		t.Fatalf("create: %d %s, want user_access_policy_uri %s", r.Status, r.Body, want)
	}
	if r := f.Do("GET", authz.PathResourceSet+"/"+id, nil, "Authorization", authztest.Bearer(f.AlicePAT)); r.JSON(t)["user_access_policy_uri"] != want {
		t.Fatalf("read: %s", r.Body)
	}
	if r := f.Do("PUT", authz.PathResourceSet+"/"+id, `{"name":"x","resource_scopes":["read"]}`, "Authorization", authztest.Bearer(f.AlicePAT)); r.JSON(t)["user_access_policy_uri"] != want {
		t.Fatalf("update: %s", r.Body)
	}
	plain := authztest.New(t, nil)
	r = plain.Do("POST", authz.PathResourceSet, `{"resource_scopes":["read"]}`, "Authorization", authztest.Bearer(plain.PAT("rs-a", "secret-a")))
	if _, has := r.JSON(t)["user_access_policy_uri"]; has {
		t.Fatalf("without the console: %s", r.Body)
	}
}

// TestListResourcesReadsPages: GET resource_set answers from pages of the
// resource server's resources, filters included, whatever page a match
// lies on, and a name through the store's index of names.
func TestListResourcesReadsPages(t *testing.T) {
	as := authztest.New(t, nil)
	ctx := t.Context()
	now := as.Clock.Now().UTC()
	var all, rare, named []string
	for i := range 2500 {
		res := store.Resource{ID: fmt.Sprintf("r-%04d", i), ResourceServer: "rs-a", Owner: "alice", Name: fmt.Sprintf("file %d", i%500),
			Scopes: []string{"read"}, CreatedAt: now, UpdatedAt: now}
		if i%997 == 5 {
			res.Scopes = append(res.Scopes, "rare")
			rare = append(rare, res.ID)
		}
		if i%500 == 7 {
			named = append(named, res.ID)
		}
		if err := as.Store.CreateResource(ctx, res); err != nil {
			t.Fatal(err)
		}
		all = append(all, res.ID)
	}
	other := store.Resource{ID: "other", ResourceServer: "rs-b", Owner: "alice", Name: "file 7", Scopes: []string{"read", "rare"}, CreatedAt: now, UpdatedAt: now}
	if err := as.Store.CreateResource(ctx, other); err != nil {
		t.Fatal(err)
	}
	auth := []string{"Authorization", authztest.Bearer(as.PAT("rs-a", "secret-a"))}
	tests := []struct {
		query string
		want  []string
	}{
		{"", all},
		{"?scope=rare", rare},
		{"?name=file%207", named},
		{"?name=file%207&scope=rare", nil},
		{"?name=file%205&scope=rare", []string{"r-0005"}},
		{"?name=nothing", nil},
		{"?name=file%0A7", nil},
		{"?owner=alice&name=file%207", named},
		{"?owner=bob&name=file%207", nil},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			r := as.Do("GET", authz.PathResourceSet+tt.query, nil, auth...)
			var ids []string
			if r.Status != 200 || json.Unmarshal(r.Body, &ids) != nil {
				t.Fatalf("%d %s", r.Status, r.Body)
			}
			if !slices.Equal(ids, tt.want) && (len(ids) != 0 || len(tt.want) != 0) {
				t.Errorf("%d ids (%.60q...), want %d (%.60q...)", len(ids), ids, len(tt.want), tt.want)
			}
		})
	}
}
