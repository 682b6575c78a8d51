package keycloak_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/caddy-uma/caddy-uma/authz/authztest"
	"github.com/caddy-uma/caddy-uma/authz/keycloak"
)

type policyView struct {
	ID      string   `json:"id"`
	Name    string   `json:"name"`
	Type    string   `json:"type"`
	Owner   string   `json:"owner"`
	Scopes  []string `json:"scopes"`
	Users   []string `json:"users"`
	Groups  []string `json:"groups"`
	Clients []string `json:"clients"`
}

func (f *keycloakFixture) policies(query, pat string) []policyView {
	f.T.Helper()
	r := f.kc("GET", keycloak.PathUMAPolicy+"?"+query, nil, pat)
	if r.Status != 200 {
		f.T.Fatalf("policies: %d %s", r.Status, r.Body)
	}
	var out []policyView
	if err := json.Unmarshal(r.Body, &out); err != nil {
		f.T.Fatalf("%v: %s", err, r.Body)
	}
	return out
}

func (f *keycloakFixture) createPolicy(resource, body, pat string) policyView {
	f.T.Helper()
	r := f.kc("POST", keycloak.PathUMAPolicy+"/"+resource, body, pat)
	if r.Status != 200 {
		f.T.Fatalf("create policy: %d %s", r.Status, r.Body)
	}
	var p policyView
	if err := json.Unmarshal(r.Body, &p); err != nil {
		f.T.Fatal(err)
	}
	return p
}

func TestKeycloakPolicyUsers(t *testing.T) {
	f := newKeycloakFixture(t)
	album := f.create(f.AlicePAT, `{"name":"album","resource_scopes":["view","edit"]}`)
	p := f.createPolicy(album, `{"name":"Friends","description":"my friends","scopes":["view"],"users":["bob","carol"]}`, f.RSPAT)
	if p.ID == "" || p.Type != "uma" || p.Owner != "alice" || p.Name != "Friends" || len(p.Users) != 2 {
		t.Fatalf("policy: %+v", p)
	}
	f.expectGranted("bob", album, true, "view")
	f.expectGranted("carol", album, true, "view")
	f.expectGranted("bob", album, false, "edit")
	// Users only: shares, which the console shows.
	if shares, _ := f.Server.ResourceShares(t.Context(), "alice", album); len(shares) != 2 {
		t.Fatalf("shares: %+v", shares)
	}
	if r := f.kc("GET", keycloak.PathUMAPolicy+"/"+p.ID, nil, f.AlicePAT); r.Status != 200 || !strings.Contains(string(r.Body), `"name":"Friends"`) {
		t.Fatalf("read: %d %s", r.Status, r.Body)
	}
	for q, n := range map[string]int{"": 1, "resource=" + album: 1, "resource=x": 0, "name=friend": 1, "name=foes": 0, "scope=view": 1, "scope=edit": 0, "first=1": 0, "max=0": 0} {
		if got := f.policies(q, f.RSPAT); len(got) != n {
			t.Errorf("%q: %d policies, want %d", q, len(got), n)
		}
	}
	if got := f.policies("", f.BPAT); len(got) != 0 {
		t.Errorf("rs-b sees rs-a's policies: %+v", got)
	}
	// An update replaces what the policy made; no scopes means all.
	if r := f.kc("PUT", keycloak.PathUMAPolicy+"/"+p.ID, `{"name":"Friends","users":["bob"]}`, f.RSPAT); r.Status != http.StatusNoContent {
		t.Fatalf("update: %d %s", r.Status, r.Body)
	}
	f.expectGranted("bob", album, true, "view", "edit")
	f.expectGranted("carol", album, false, "view")
	if got := f.policies("", f.RSPAT); len(got) != 1 || len(got[0].Scopes) != 2 {
		t.Fatalf("after update: %+v", got)
	}
	// Deleting it takes the access back.
	authztest.ExpectError(t, f.kc("DELETE", keycloak.PathUMAPolicy+"/"+p.ID, nil, f.BPAT), 404, "not_found")
	if r := f.kc("DELETE", keycloak.PathUMAPolicy+"/"+p.ID, nil, f.RSPAT); r.Status != http.StatusNoContent {
		t.Fatalf("delete: %d %s", r.Status, r.Body)
	}
	f.expectGranted("bob", album, false, "view")
	if shares, _ := f.Server.ResourceShares(t.Context(), "alice", album); len(shares) != 0 {
		t.Fatalf("shares after delete: %+v", shares)
	}
	authztest.ExpectError(t, f.kc("GET", keycloak.PathUMAPolicy+"/"+p.ID, nil, f.RSPAT), 404, "not_found")
}

func TestKeycloakPolicyGroupsAndClients(t *testing.T) {
	f := newKeycloakFixture(t)
	album := f.create(f.AlicePAT, `{"name":"album","resource_scopes":["view","edit"]}`)
	p := f.createPolicy(album, `{"name":"Family","scopes":["view"],"groups":["/family"],"clients":["app"]}`, f.AlicePAT)
	rules, err := f.Server.Rules(t.Context(), "alice")
	if err != nil || rules["keycloak-policy-"+p.ID] == "" {
		t.Fatalf("rules %v %v", rules, err)
	}
	family := map[string]any{"groups": []string{"/family"}}
	if r := f.grantFor("erin", family, album, "view"); r.Status != 200 {
		t.Fatalf("family member through app: %d %s", r.Status, r.Body)
	}
	if r := f.grantFor("erin", map[string]any{"groups": []string{"/work"}}, album, "view"); r.Status == 200 {
		t.Fatalf("another group granted: %s", r.Body)
	}
	if r := f.grantFor("erin", family, album, "edit"); r.Status == 200 {
		t.Fatalf("a scope the policy does not grant: %s", r.Body)
	}
	// Users and groups: both must hold (Keycloak's UNANIMOUS).
	if r := f.kc("PUT", keycloak.PathUMAPolicy+"/"+p.ID, `{"name":"Family","scopes":["view"],"groups":["/family"],"users":["frank"]}`, f.RSPAT); r.Status != http.StatusNoContent {
		t.Fatalf("update: %d %s", r.Status, r.Body)
	}
	if r := f.grantFor("erin", family, album, "view"); r.Status == 200 {
		t.Fatalf("a family member who is not frank: %s", r.Body)
	}
	if r := f.grantFor("frank", family, album, "view"); r.Status != 200 {
		t.Fatalf("frank of the family: %d %s", r.Status, r.Body)
	}
	if r := f.grantFor("frank", nil, album, "view"); r.Status == 200 {
		t.Fatalf("frank without the group: %s", r.Body)
	}
	if r := f.kc("DELETE", keycloak.PathUMAPolicy+"/"+p.ID, nil, f.RSPAT); r.Status != http.StatusNoContent {
		t.Fatalf("delete: %d %s", r.Status, r.Body)
	}
	if rules, _ := f.Server.Rules(t.Context(), "alice"); rules["keycloak-policy-"+p.ID] != "" {
		t.Fatal("the rule outlived its policy")
	}
	if r := f.grantFor("frank", family, album, "view"); r.Status == 200 {
		t.Fatalf("granted after delete: %s", r.Body)
	}
}

func TestKeycloakPolicyRefusals(t *testing.T) {
	f := newKeycloakFixture(t)
	album := f.create(f.AlicePAT, `{"name":"album","resource_scopes":["view"]}`)
	other := f.create(f.BPAT, `{"name":"b","resource_scopes":["view"]}`)
	bobPAT, err := f.Server.IssuePAT(t.Context(), "rs-a", "bob")
	if err != nil {
		t.Fatal(err)
	}
	p := f.createPolicy(album, `{"name":"p","users":["bob"]}`, f.RSPAT)
	path := keycloak.PathUMAPolicy + "/" + album
	tests := []keycloakRefusal{
		{"no PAT", "POST", path, `{"name":"p","users":["bob"]}`, "", 401, "invalid_token"},
		{"JavaScript condition", "POST", path, `{"name":"p","condition":"$evaluation.grant()"}`, f.RSPAT, 400, "invalid_request"},
		{"roles", "POST", path, `{"name":"p","roles":["admin"]}`, f.RSPAT, 400, "invalid_request"},
		{"nobody", "POST", path, `{"name":"p","scopes":["view"]}`, f.RSPAT, 400, "invalid_request"},
		{"no name", "POST", path, `{"users":["bob"]}`, f.RSPAT, 400, "invalid_request"},
		{"negative logic", "POST", path, `{"name":"p","users":["bob"],"logic":"NEGATIVE"}`, f.RSPAT, 400, "invalid_request"},
		{"affirmative strategy", "POST", path, `{"name":"p","users":["bob"],"decisionStrategy":"AFFIRMATIVE"}`, f.RSPAT, 400, "invalid_request"},
		{"unknown scope", "POST", path, `{"name":"p","users":["bob"],"scopes":["fly"]}`, f.RSPAT, 400, "invalid_scope"},
		{"bad user", "POST", path, `{"name":"p","users":[""]}`, f.RSPAT, 400, "invalid_request"},
		{"rego in a group name stays a string", "POST", path, `{"name":"p","groups":["\"}\nallow contains \"view\" if true #"]}`, f.RSPAT, 400, "invalid_request"},
		{"users not strings", "POST", path, `{"name":"p","users":[1]}`, f.RSPAT, 400, "invalid_request"},
		{"unknown resource", "POST", keycloak.PathUMAPolicy + "/nope", `{"name":"p","users":["bob"]}`, f.RSPAT, 400, "invalid_request"},
		{"another resource server's resource", "POST", keycloak.PathUMAPolicy + "/" + other, `{"name":"p","users":["bob"]}`, f.RSPAT, 400, "invalid_request"},
		{"another owner's resource", "POST", path, `{"name":"p","users":["eve"]}`, bobPAT, 400, "invalid_request"},
		{"another owner's policy", "GET", keycloak.PathUMAPolicy + "/" + p.ID, "", bobPAT, 404, "not_found"},
		{"another resource server's policy", "PUT", keycloak.PathUMAPolicy + "/" + p.ID, `{"name":"p","users":["eve"]}`, f.BPAT, 404, "not_found"},
		{"update refused keeps the policy", "PUT", keycloak.PathUMAPolicy + "/" + p.ID, `{"name":"p","roles":["x"]}`, f.RSPAT, 400, "invalid_request"},
		{"bad first", "GET", keycloak.PathUMAPolicy + "?first=-", "", f.RSPAT, 400, "invalid_request"},
		{"method", "POST", keycloak.PathUMAPolicy, "", f.RSPAT, 405, "unsupported_method_type"},
	}
	f.expectRefusals(t, tests)
	f.expectGranted("bob", album, true, "view")
}

// TestKeycloakPolicyConcurrentUpdates updates one policy from several
// goroutines: each update wins or answers 409, and the shares in force are
// those of the policy as stored.
func TestKeycloakPolicyConcurrentUpdates(t *testing.T) {
	f := newKeycloakFixture(t)
	album := f.create(f.AlicePAT, `{"name":"album","resource_scopes":["view"]}`)
	p := f.createPolicy(album, `{"name":"p","users":["u0"]}`, f.RSPAT)
	const n = 4
	statuses := make(chan int, n)
	for i := range n {
		go func() {
			body := `{"name":"p","users":["u` + string(rune('1'+i)) + `"]}`
			statuses <- f.kc("PUT", keycloak.PathUMAPolicy+"/"+p.ID, body, f.RSPAT).Status
		}()
	}
	won := 0
	for range n {
		switch st := <-statuses; st {
		case http.StatusNoContent:
			won++
		case http.StatusConflict:
		default:
			t.Fatalf("update answered %d", st)
		}
	}
	if won == 0 {
		t.Fatal("no update won")
	}
	stored := f.policies("", f.RSPAT)
	shares, err := f.Server.ResourceShares(t.Context(), "alice", album)
	if err != nil || len(stored) != 1 || len(shares) != 1 || shares[0].Subject != stored[0].Users[0] {
		t.Fatalf("policy %+v, shares %+v, %v", stored, shares, err)
	}
}
