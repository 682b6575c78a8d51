package keycloak_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/caddy-uma/caddy-uma/authz"
	"github.com/caddy-uma/caddy-uma/authz/authztest"
	"github.com/caddy-uma/caddy-uma/authz/claimtoken"
	"github.com/caddy-uma/caddy-uma/authz/claimtoken/claimtokentest"
	"github.com/caddy-uma/caddy-uma/authz/keycloak"
)

// keycloakFixture is an AS in Keycloak compatibility mode (issuer
// {URL}/realms/demo) trusting a test OpenID provider for client "app",
// with rs-a's PATs: its own (client credentials) and alice's.
type keycloakFixture struct {
	*authztest.GrantFixture
	// RSPAT is rs-a's own PAT; BPAT rs-b's.
	RSPAT, BPAT string
	// Compat serves Keycloak's paths.
	Compat *keycloak.Compat
}

// keycloakRefusal is a request on a Keycloak path and the error it gets.
type keycloakRefusal struct {
	name, method, path, body, pat string
	status                        int
	code                          string
}

// expectRefusals sends each request (a JSON body if any, the PAT if any)
// and checks its error.
func (f *keycloakFixture) expectRefusals(t *testing.T, tests []keycloakRefusal) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var body any
			if tt.body != "" {
				body = tt.body
			}
			headers := []string{}
			if tt.pat != "" {
				headers = append(headers, "Authorization", authztest.Bearer(tt.pat))
			}
			authztest.ExpectError(t, f.Do(tt.method, tt.path, body, headers...), tt.status, tt.code)
		})
	}
}

func newKeycloakFixture(t *testing.T) *keycloakFixture {
	t.Helper()
	idp := claimtokentest.NewProvider(t)
	as, kc := newCompatAS(t, func(c *authz.Config) {
		c.TrustedIssuers = []claimtoken.Issuer{{Issuer: idp.Issuer(), Audiences: []string{"app"}}}
	})
	f := &keycloakFixture{GrantFixture: &authztest.GrantFixture{AS: as, IdP: idp}, Compat: kc}
	var err error
	if f.AlicePAT, err = as.Server.IssuePAT(t.Context(), "rs-a", "alice"); err != nil {
		t.Fatal(err)
	}
	f.RSPAT = as.PAT("rs-a", "secret-a")
	f.BPAT = as.PAT("rs-b", "secret-b")
	return f
}

// kc sends a request to a Keycloak path with a PAT.
func (f *keycloakFixture) kc(method, path string, body any, pat string) authztest.Response {
	f.T.Helper()
	if body == nil {
		return f.Do(method, path, nil, "Authorization", authztest.Bearer(pat))
	}
	return f.Do(method, path, body, "Authorization", authztest.Bearer(pat))
}

// create registers a resource on Keycloak's path and returns its id.
func (f *keycloakFixture) create(pat, body string) string {
	f.T.Helper()
	r := f.kc("POST", keycloak.PathResourceSet, body, pat)
	if r.Status != http.StatusCreated {
		f.T.Fatalf("create: %d %s", r.Status, r.Body)
	}
	return r.JSON(f.T)["_id"].(string)
}

// grantFor runs a UMA grant for the requesting party sub (an ID token of
// the test provider) on a ticket for scopes of a resource, and returns
// the answer.
func (f *keycloakFixture) grantFor(sub string, claims map[string]any, resource string, scopes ...string) authztest.Response {
	f.T.Helper()
	b, _ := json.Marshal([]map[string]any{{"resource_id": resource, "resource_scopes": scopes}})
	r := f.kc("POST", keycloak.PathPermission, string(b), f.RSPAT)
	if r.Status != http.StatusCreated {
		f.T.Fatalf("ticket: %d %s", r.Status, r.Body)
	}
	c := map[string]any{"sub": sub}
	for k, v := range claims {
		c[k] = v
	}
	return f.Grant(authztest.WithClaims(r.JSON(f.T)["ticket"].(string), f.IDToken(c)))
}

func TestKeycloakResourceRepresentation(t *testing.T) {
	f := newKeycloakFixture(t)
	r := f.kc("POST", keycloak.PathResourceSet, `{"name":"Alice's album","displayName":"The album","type":"urn:photos",
		"resource_scopes":[{"name":"view"},"edit"],"uris":["/albums/1"],"owner":{"name":"alice"},"ownerManagedAccess":true,
		"attributes":{"color":["red"]},"icon_uri":"https://img.example/a.png"}`, f.RSPAT)
	if r.Status != http.StatusCreated {
		t.Fatalf("create: %d %s", r.Status, r.Body)
	}
	var got struct {
		ID             string              `json:"_id"`
		Name           string              `json:"name"`
		DisplayName    string              `json:"displayName"`
		Type           string              `json:"type"`
		URIs           []string            `json:"uris"`
		ResourceScopes []map[string]string `json:"resource_scopes"`
		Owner          map[string]string   `json:"owner"`
		OMA            bool                `json:"ownerManagedAccess"`
		IconURI        string              `json:"icon_uri"`
	}
	if err := json.Unmarshal(r.Body, &got); err != nil {
		t.Fatal(err)
	}
	if got.ID == "" || got.Name != "Alice's album" || got.DisplayName != "The album" || got.Type != "urn:photos" ||
		!slices.Equal(got.URIs, []string{"/albums/1"}) || len(got.ResourceScopes) != 2 || got.ResourceScopes[0]["name"] != "view" ||
		got.ResourceScopes[1]["name"] != "edit" || got.Owner["id"] != "alice" || got.Owner["name"] != "alice" || !got.OMA ||
		got.IconURI != "https://img.example/a.png" {
		t.Fatalf("created representation: %s", r.Body)
	}
	if loc := r.Header.Get("Location"); !strings.HasSuffix(loc, keycloak.PathResourceSet+"/"+got.ID) {
		t.Errorf("Location = %q", loc)
	}
	read := f.kc("GET", keycloak.PathResourceSet+"/"+got.ID, nil, f.RSPAT)
	if read.Status != 200 || !strings.Contains(string(read.Body), `"resource_scopes":[{"id":"view","name":"view"},{"id":"edit","name":"edit"}]`) ||
		!strings.Contains(string(read.Body), `"owner":{"id":"alice","name":"alice"}`) {
		t.Fatalf("read: %d %s", read.Status, read.Body)
	}
	// Our own path keeps the standard representation.
	std := f.kc("GET", authz.PathResourceSet+"/"+got.ID, nil, f.RSPAT)
	if std.Status != 200 || !strings.Contains(string(std.Body), `"resource_scopes":["view","edit"]`) || !strings.Contains(string(std.Body), `"owner":"alice"`) {
		t.Fatalf("standard read: %d %s", std.Status, std.Body)
	}
	// An update answers 204, as Keycloak's; scopes may come as "scopes".
	up := f.kc("PUT", keycloak.PathResourceSet+"/"+got.ID, `{"_id":"`+got.ID+`","name":"Album","scopes":[{"name":"view"}],"owner":"alice"}`, f.RSPAT)
	if up.Status != http.StatusNoContent {
		t.Fatalf("update: %d %s", up.Status, up.Body)
	}
	read = f.kc("GET", keycloak.PathResourceSet+"/"+got.ID, nil, f.AlicePAT)
	if read.Status != 200 || !strings.Contains(string(read.Body), `"name":"Album"`) || !strings.Contains(string(read.Body), `"resource_scopes":[{"id":"view","name":"view"}]`) {
		t.Fatalf("read after update: %d %s", read.Status, read.Body)
	}
	// A resource without scopes, as Keycloak allows, owned by the
	// resource server itself: not owner-managed.
	own := f.kc("POST", keycloak.PathResourceSet, `{"name":"settings"}`, f.RSPAT)
	if own.Status != http.StatusCreated || !strings.Contains(string(own.Body), `"resource_scopes":[]`) || !strings.Contains(string(own.Body), `"ownerManagedAccess":false`) {
		t.Fatalf("resource of the resource server: %d %s", own.Status, own.Body)
	}
	if del := f.kc("DELETE", keycloak.PathResourceSet+"/"+got.ID, nil, f.RSPAT); del.Status != http.StatusNoContent {
		t.Fatalf("delete: %d %s", del.Status, del.Body)
	}
	authztest.ExpectError(t, f.kc("GET", keycloak.PathResourceSet+"/"+got.ID, nil, f.RSPAT), 404, "not_found")
}

func TestKeycloakResourceRefusals(t *testing.T) {
	f := newKeycloakFixture(t)
	id := f.create(f.AlicePAT, `{"name":"a","resource_scopes":["view"]}`)
	tests := []keycloakRefusal{
		{"no PAT", "GET", keycloak.PathResourceSet, "", "", 401, "invalid_token"},
		{"scope of the wrong type", "POST", keycloak.PathResourceSet, `{"name":"x","resource_scopes":[1]}`, f.RSPAT, 400, "invalid_request"},
		{"scope object without a name", "POST", keycloak.PathResourceSet, `{"name":"x","resource_scopes":[{"id":"v"}]}`, f.RSPAT, 400, "invalid_request"},
		{"bad scope characters", "POST", keycloak.PathResourceSet, `{"name":"x","resource_scopes":["a b"]}`, f.RSPAT, 400, "invalid_request"},
		{"another owner for an owner's PAT", "POST", keycloak.PathResourceSet, `{"name":"x","owner":{"id":"bob"}}`, f.AlicePAT, 400, "invalid_request"},
		{"ownerManagedAccess not a boolean", "POST", keycloak.PathResourceSet, `{"name":"x","ownerManagedAccess":"yes"}`, f.RSPAT, 400, "invalid_request"},
		{"displayName not text", "POST", keycloak.PathResourceSet, `{"name":"x","displayName":"a\u202eb"}`, f.RSPAT, 400, "invalid_request"},
		{"bad uri", "POST", keycloak.PathResourceSet, `{"name":"x","uri":"javascript:alert(1)"}`, f.RSPAT, 400, "invalid_request"},
		{"not JSON", "POST", keycloak.PathResourceSet, `{"name":`, f.RSPAT, 400, "invalid_request"},
		{"_id of another resource", "PUT", keycloak.PathResourceSet + "/" + id, `{"_id":"other","name":"a"}`, f.RSPAT, 400, "invalid_request"},
		{"another resource server's resource", "GET", keycloak.PathResourceSet + "/" + id, "", f.BPAT, 404, "not_found"},
		{"another resource server deletes", "DELETE", keycloak.PathResourceSet + "/" + id, "", f.BPAT, 404, "not_found"},
		{"bad first", "GET", keycloak.PathResourceSet + "?first=x", "", f.RSPAT, 400, "invalid_request"},
		{"bad max", "GET", keycloak.PathResourceSet + "?max=1e3", "", f.RSPAT, 400, "invalid_request"},
		{"method", "PATCH", keycloak.PathResourceSet, "", f.RSPAT, 405, "unsupported_method_type"},
	}
	f.expectRefusals(t, tests)
}

func TestKeycloakResourceQuery(t *testing.T) {
	f := newKeycloakFixture(t)
	bobPAT, err := f.Server.IssuePAT(t.Context(), "rs-a", "bob")
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]string{
		"Alice Photos": f.create(f.AlicePAT, `{"name":"Alice Photos","type":"photo","resource_scopes":["view"],"uris":["/photos/{id}"]}`),
		"alice docs":   f.create(f.AlicePAT, `{"name":"alice docs","type":"doc","resource_scopes":["read"],"uris":["/docs/*"]}`),
		"Report":       f.create(f.AlicePAT, `{"name":"Report","type":"doc","resource_scopes":["read"],"uris":["/reports/2024","/photos/special"]}`),
		"Bob photos":   f.create(bobPAT, `{"name":"Bob photos","type":"photo","resource_scopes":["view"],"uris":["/bob/{path...}"]}`),
	}
	f.create(f.BPAT, `{"name":"Photos of rs-b","resource_scopes":["view"]}`)
	names := map[string]string{}
	for n, id := range ids {
		names[id] = n
	}
	tests := []struct {
		name, query, pat string
		want             []string // names, in any order; nil: none
		count            int      // when the set depends on id order
	}{
		{"all", "", f.RSPAT, []string{"Alice Photos", "alice docs", "Report", "Bob photos"}, 0},
		{"name substring, any case", "name=PHOTOS", f.RSPAT, []string{"Alice Photos", "Bob photos"}, 0},
		{"exact name", "name=Alice+Photos&exactName=true", f.RSPAT, []string{"Alice Photos"}, 0},
		{"exact name is case-sensitive", "name=alice+photos&exactName=true", f.RSPAT, nil, 0},
		{"exact uri", "uri=/reports/2024", f.RSPAT, []string{"Report"}, 0},
		{"uri without matchingUri is exact", "uri=/photos/7", f.RSPAT, nil, 0},
		{"matchingUri: {id}", "uri=/photos/7&matchingUri=true", f.RSPAT, []string{"Alice Photos"}, 0},
		{"matchingUri: the most specific", "uri=/photos/special&matchingUri=true", f.RSPAT, []string{"Report"}, 0},
		{"matchingUri: final *", "uri=/docs/a/b&matchingUri=true", f.RSPAT, []string{"alice docs"}, 0},
		{"matchingUri: {path...}", "uri=/bob/x/y&matchingUri=true", f.RSPAT, []string{"Bob photos"}, 0},
		{"matchingUri: no match", "uri=/nothing&matchingUri=true", f.RSPAT, nil, 0},
		{"matchingUri: ambiguous path", "uri=/photos/../docs/a&matchingUri=true", f.RSPAT, nil, 0},
		{"matchingUri within the owner", "uri=/bob/x&matchingUri=true", f.AlicePAT, nil, 0},
		{"owner", "owner=bob", f.RSPAT, []string{"Bob photos"}, 0},
		{"type", "type=doc", f.RSPAT, []string{"alice docs", "Report"}, 0},
		{"scope", "scope=view", f.RSPAT, []string{"Alice Photos", "Bob photos"}, 0},
		{"unknown scope", "scope=fly", f.RSPAT, nil, 0},
		{"type and name", "type=photo&name=alice", f.RSPAT, []string{"Alice Photos"}, 0},
		{"_id", "_id=" + ids["Report"], f.RSPAT, []string{"Report"}, 0},
		{"_id of another owner for an owner's PAT", "_id=" + ids["Bob photos"], f.AlicePAT, nil, 0},
		{"max=1", "max=1", f.RSPAT, nil, 1},
		{"first=1&max=2", "first=1&max=2", f.RSPAT, nil, 2},
		{"first past the end", "first=10", f.RSPAT, nil, 0},
		{"max=-1 is all", "max=-1", f.RSPAT, []string{"Alice Photos", "alice docs", "Report", "Bob photos"}, 0},
		{"max=0", "max=0", f.RSPAT, nil, 0},
		{"an owner's PAT: the owner's only", "", f.AlicePAT, []string{"Alice Photos", "alice docs", "Report"}, 0},
		{"an owner's PAT asking for another owner", "owner=bob", f.AlicePAT, nil, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := f.kc("GET", keycloak.PathResourceSet+"?"+tt.query, nil, tt.pat)
			if r.Status != 200 {
				t.Fatalf("%d %s", r.Status, r.Body)
			}
			var got []string
			if err := json.Unmarshal(r.Body, &got); err != nil {
				t.Fatalf("%v: %s", err, r.Body)
			}
			if tt.count > 0 || tt.want == nil {
				if len(got) != tt.count {
					t.Fatalf("%d resources, want %d: %s", len(got), tt.count, r.Body)
				}
				return
			}
			var gotNames []string
			for _, id := range got {
				gotNames = append(gotNames, names[id])
			}
			slices.Sort(gotNames)
			want := slices.Clone(tt.want)
			slices.Sort(want)
			if !slices.Equal(gotNames, want) {
				t.Fatalf("got %q, want %q", gotNames, want)
			}
		})
	}
	// Pages do not overlap.
	first := f.kc("GET", keycloak.PathResourceSet+"?first=0&max=2", nil, f.RSPAT).Body
	second := f.kc("GET", keycloak.PathResourceSet+"?first=2&max=2", nil, f.RSPAT).Body
	var a, b []string
	_ = json.Unmarshal(first, &a)
	_ = json.Unmarshal(second, &b)
	if len(a) != 2 || len(b) != 2 || slices.ContainsFunc(a, func(id string) bool { return slices.Contains(b, id) }) {
		t.Fatalf("pages %q and %q", a, b)
	}
	// deep=true: the representations, scopes under both names.
	r := f.kc("GET", keycloak.PathResourceSet+"?name=report&deep=true", nil, f.RSPAT)
	var deep []map[string]any
	if err := json.Unmarshal(r.Body, &deep); err != nil || len(deep) != 1 {
		t.Fatalf("deep: %v %s", err, r.Body)
	}
	if deep[0]["_id"] != ids["Report"] || deep[0]["owner"].(map[string]any)["id"] != "alice" ||
		deep[0]["resource_scopes"].([]any)[0].(map[string]any)["name"] != "read" || deep[0]["scopes"].([]any)[0].(map[string]any)["name"] != "read" {
		t.Fatalf("deep: %s", r.Body)
	}
	// Our own path keeps exact names.
	std := f.kc("GET", authz.PathResourceSet+"?name=PHOTOS", nil, f.RSPAT)
	if std.Status != 200 || string(std.Body) != "[]" {
		t.Fatalf("standard list: %d %s", std.Status, std.Body)
	}
}

func TestKeycloakPermissionEndpoint(t *testing.T) {
	f := newKeycloakFixture(t)
	id := f.create(f.AlicePAT, `{"name":"a","resource_scopes":["view","edit"]}`)
	other := f.create(f.BPAT, `{"name":"b","resource_scopes":["view"]}`)
	tests := []struct {
		name, body string
		status     int
		code       string
	}{
		{"array with claims", `[{"resource_id":"` + id + `","resource_scopes":["view"],"claims":{"organization":["acme"]}}]`, 201, ""},
		{"object", `{"resource_id":"` + id + `","resource_scopes":["view","edit"]}`, 201, ""},
		{"empty array", `[]`, 400, "invalid_request"},
		{"unknown resource", `[{"resource_id":"nope","resource_scopes":["view"]}]`, 400, "invalid_resource_id"},
		{"another resource server's resource", `[{"resource_id":"` + other + `","resource_scopes":["view"]}]`, 400, "invalid_resource_id"},
		{"unknown scope", `[{"resource_id":"` + id + `","resource_scopes":["fly"]}]`, 400, "invalid_scope"},
		{"claims not strings", `[{"resource_id":"` + id + `","resource_scopes":["view"],"claims":{"n":[1]}}]`, 400, "invalid_request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := f.kc("POST", keycloak.PathPermission, tt.body, f.RSPAT)
			if tt.code != "" {
				authztest.ExpectError(t, r, tt.status, tt.code)
				return
			}
			if r.Status != tt.status || r.JSON(t)["ticket"] == "" {
				t.Fatalf("%d %s", r.Status, r.Body)
			}
		})
	}
}

func TestKeycloakDiscovery(t *testing.T) {
	f := newKeycloakFixture(t)
	m := f.Do("GET", authz.PathUMAConfiguration, nil).JSON(t)
	if m["policy_endpoint"] != f.Issuer+keycloak.PathUMAPolicy {
		t.Errorf("policy_endpoint = %v", m["policy_endpoint"])
	}
	if m["resource_registration_endpoint"] != f.Issuer+authz.PathResourceSet || m["permission_endpoint"] != f.Issuer+authz.PathPermission {
		t.Errorf("standard endpoints changed: %v", m)
	}
	// keycloak-js posts to the discovered token endpoint: Keycloak's.
	if m["token_endpoint"] != f.Issuer+keycloak.PathToken {
		t.Errorf("token_endpoint = %v, want Keycloak's", m["token_endpoint"])
	}
	std := authztest.New(t, nil)
	sm := std.Do("GET", authz.PathUMAConfiguration, nil).JSON(t)
	if _, ok := sm["policy_endpoint"]; ok {
		t.Error("policy_endpoint outside compat mode")
	}
	if sm["token_endpoint"] != std.Issuer+authz.PathToken {
		t.Errorf("token_endpoint outside compat mode = %v", sm["token_endpoint"])
	}
	for _, p := range []string{keycloak.PathResourceSet, keycloak.PathPermissionTicket, keycloak.PathUMAPolicy} {
		authztest.ExpectError(t, std.Do("GET", p, nil, "Authorization", authztest.Bearer(std.PAT("rs-a", "secret-a"))), 404, "not_found")
	}
}

// TestKeycloakBothClientAuthentications: keycloak-connect's introspection
// sends client_secret_basic and client_secret_post at once; Keycloak's
// paths take them when they agree, ours keep refusing two methods.
func TestKeycloakBothClientAuthentications(t *testing.T) {
	f := newKeycloakFixture(t)
	pat := f.PAT("rs-a", "secret-a")
	basic := authztest.BasicAuth("rs-a", "secret-a")
	tests := []struct {
		name       string
		path       string
		form       url.Values
		wantStatus int
		wantCode   string
	}{
		{"Keycloak's path, the same secret", keycloak.PathIntrospect, url.Values{"token": {pat}, "client_secret": {"secret-a"}}, 200, ""},
		{"Keycloak's path, the same id and secret", keycloak.PathIntrospect, url.Values{"token": {pat}, "client_id": {"rs-a"}, "client_secret": {"secret-a"}}, 200, ""},
		{"Keycloak's path, another secret", keycloak.PathIntrospect, url.Values{"token": {pat}, "client_secret": {"secret-b"}}, 400, "invalid_request"},
		{"Keycloak's path, another id", keycloak.PathIntrospect, url.Values{"token": {pat}, "client_id": {"rs-b"}, "client_secret": {"secret-a"}}, 400, "invalid_request"},
		{"our path, the same secret", authz.PathIntrospect, url.Values{"token": {pat}, "client_secret": {"secret-a"}}, 400, "invalid_request"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := f.Do("POST", tc.path, tc.form, "Authorization", basic)
			if tc.wantCode != "" {
				authztest.ExpectError(t, r, tc.wantStatus, tc.wantCode)
				return
			}
			if r.Status != tc.wantStatus || r.JSON(t)["active"] != true {
				t.Fatalf("%d %s", r.Status, r.Body)
			}
		})
	}
}

// TestKeycloakRealm: compat mode needs an issuer path .../realms/{realm}.
func TestKeycloakRealm(t *testing.T) {
	tests := []struct{ path, realm string }{
		{"/realms/demo", "demo"},
		{"/realms/demo/", "demo"},
		{"/auth/realms/demo", "demo"},
		{"", ""},
		{"/uma", ""},
		{"/realms", ""},
		{"/realms/", ""},
		{"/realmsx/demo", ""},
	}
	for _, tt := range tests {
		realm, err := keycloak.Realm(tt.path)
		if realm != tt.realm || (err != nil) != (tt.realm == "") {
			t.Errorf("Realm(%q) = %q, %v; want %q", tt.path, realm, err, tt.realm)
		}
	}
}
