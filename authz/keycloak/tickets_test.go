package keycloak_test

import (
	"encoding/json"
	"net/http"
	"slices"
	"testing"

	"github.com/caddy-uma/caddy-uma/authz"
	"github.com/caddy-uma/caddy-uma/authz/authztest"
	"github.com/caddy-uma/caddy-uma/authz/keycloak"
)

type ticketView struct {
	ID            string `json:"id"`
	Owner         string `json:"owner"`
	Resource      string `json:"resource"`
	Scope         string `json:"scope"`
	Granted       bool   `json:"granted"`
	Requester     string `json:"requester"`
	ResourceName  string `json:"resourceName"`
	RequesterName string `json:"requesterName"`
}

func (f *keycloakFixture) tickets(query, pat string) []ticketView {
	f.T.Helper()
	r := f.kc("GET", keycloak.PathPermissionTicket+"?"+query, nil, pat)
	if r.Status != 200 {
		f.T.Fatalf("tickets: %d %s", r.Status, r.Body)
	}
	var out []ticketView
	if err := json.Unmarshal(r.Body, &out); err != nil {
		f.T.Fatalf("%v: %s", err, r.Body)
	}
	return out
}

func (f *keycloakFixture) postTicket(body, pat string) ticketView {
	f.T.Helper()
	r := f.kc("POST", keycloak.PathPermissionTicket, body, pat)
	if r.Status != 200 {
		f.T.Fatalf("ticket: %d %s", r.Status, r.Body)
	}
	var t ticketView
	if err := json.Unmarshal(r.Body, &t); err != nil {
		f.T.Fatal(err)
	}
	return t
}

// expectGranted checks whether a grant for sub on res with scopes is an
// RPT.
func (f *keycloakFixture) expectGranted(sub, res string, want bool, scopes ...string) {
	f.T.Helper()
	r := f.grantFor(sub, nil, res, scopes...)
	if got := r.Status == 200; got != want {
		f.T.Fatalf("grant for %s on %v: %d %s, want granted %v", sub, scopes, r.Status, r.Body, want)
	}
}

func TestKeycloakTicketGrants(t *testing.T) {
	f := newKeycloakFixture(t)
	album := f.create(f.AlicePAT, `{"name":"album","resource_scopes":["view","edit"]}`)
	f.expectGranted("bob", album, false, "view")

	// The resource server grants bob view for alice: a share.
	g := f.postTicket(`{"resource":"`+album+`","requester":"bob","granted":true,"scopeName":"view"}`, f.RSPAT)
	if !g.Granted || g.Owner != "alice" || g.Resource != album || g.Scope != "view" || g.Requester != "bob" || g.ID == "" {
		t.Fatalf("grant: %+v", g)
	}
	f.expectGranted("bob", album, true, "view")
	f.expectGranted("bob", album, false, "edit")
	shares, err := f.Server.ResourceShares(t.Context(), "alice", album)
	if err != nil || len(shares) != 1 || shares[0].Subject != "bob" || !slices.Equal(shares[0].Scopes, []string{"view"}) {
		t.Fatalf("shares %+v, %v", shares, err)
	}
	authztest.ExpectError(t, f.kc("POST", keycloak.PathPermissionTicket, `{"resource":"`+album+`","requester":"bob","granted":true,"scope":"view"}`, f.RSPAT), http.StatusConflict, "invalid_request")

	// Listed, with names on request; filters.
	if got := f.tickets("returnNames=true", f.RSPAT); len(got) != 1 || got[0].ID != g.ID || got[0].ResourceName != "album" || got[0].RequesterName != "bob" {
		t.Fatalf("tickets: %+v", got)
	}
	for _, q := range []string{"requester=carol", "scopeId=edit", "granted=false", "resourceId=other", "owner=bob", "first=1"} {
		if got := f.tickets(q, f.RSPAT); len(got) != 0 {
			t.Errorf("%s: %+v", q, got)
		}
	}
	for _, q := range []string{"requester=bob", "scopeId=view", "granted=true", "resourceId=" + album, "owner=alice", "max=1"} {
		if got := f.tickets(q, f.RSPAT); len(got) != 1 {
			t.Errorf("%s: %+v", q, got)
		}
	}
	if got := f.tickets("", f.AlicePAT); len(got) != 1 {
		t.Errorf("alice's PAT: %+v", got)
	}
	if got := f.tickets("", f.BPAT); len(got) != 0 {
		t.Errorf("rs-b sees rs-a's tickets: %+v", got)
	}

	// A second scope in a share of two; taking one back keeps the other.
	f.postTicket(`{"resource":"`+album+`","requester":"bob","granted":true,"scopeName":"edit"}`, f.AlicePAT)
	f.expectGranted("bob", album, true, "view", "edit")
	var edit ticketView
	for _, tk := range f.tickets("requester=bob", f.RSPAT) {
		if tk.Scope == "edit" {
			edit = tk
		}
	}
	up := f.kc("PUT", keycloak.PathPermissionTicket, `{"id":"`+edit.ID+`","granted":false}`, f.RSPAT)
	if up.Status != http.StatusNoContent {
		t.Fatalf("ungrant: %d %s", up.Status, up.Body)
	}
	f.expectGranted("bob", album, false, "edit")
	f.expectGranted("bob", album, true, "view")

	// DELETE revokes.
	authztest.ExpectError(t, f.kc("DELETE", keycloak.PathPermissionTicket+"/"+g.ID, nil, f.BPAT), 404, "not_found")
	if del := f.kc("DELETE", keycloak.PathPermissionTicket+"/"+g.ID, nil, f.RSPAT); del.Status != http.StatusNoContent {
		t.Fatalf("delete: %d %s", del.Status, del.Body)
	}
	f.expectGranted("bob", album, false, "view")
	if got := f.tickets("", f.RSPAT); len(got) != 0 {
		t.Fatalf("tickets after delete: %+v", got)
	}
	authztest.ExpectError(t, f.kc("DELETE", keycloak.PathPermissionTicket+"/"+g.ID, nil, f.RSPAT), 404, "not_found")
}

func TestKeycloakTicketRequests(t *testing.T) {
	f := newKeycloakFixture(t)
	album := f.create(f.AlicePAT, `{"name":"album","resource_scopes":["view","edit"]}`)
	// A pending ticket is a request to alice.
	p := f.postTicket(`{"resource":"`+album+`","requester":"carol","scopeName":"view"}`, f.RSPAT)
	if p.Granted || p.Requester != "carol" || p.Owner != "alice" {
		t.Fatalf("pending: %+v", p)
	}
	reqs, err := f.Server.Requests(t.Context(), "alice")
	if err != nil || len(reqs) != 1 || reqs[0].Status != authz.RequestPending || reqs[0].Subject != "carol" {
		t.Fatalf("requests %+v %v", reqs, err)
	}
	if got := f.tickets("granted=false", f.RSPAT); len(got) != 1 || got[0].ID != p.ID {
		t.Fatalf("pending tickets: %+v", got)
	}
	f.expectGranted("carol", album, false, "view")
	// Approving it shares the scope.
	if r := f.kc("PUT", keycloak.PathPermissionTicket, `{"id":"`+p.ID+`","granted":true}`, f.RSPAT); r.Status != http.StatusNoContent {
		t.Fatalf("approve: %d %s", r.Status, r.Body)
	}
	f.expectGranted("carol", album, true, "view")
	if got := f.tickets("requester=carol", f.RSPAT); len(got) != 1 || !got[0].Granted {
		t.Fatalf("after approval: %+v", got)
	}
	authztest.ExpectError(t, f.kc("PUT", keycloak.PathPermissionTicket, `{"id":"`+p.ID+`","granted":true}`, f.RSPAT), 404, "not_found")

	// A request of two scopes (as a grant that asked the owner files
	// it): approving one leaves the other pending.
	if _, err := f.Server.FileRequest(t.Context(), authz.AccessRequest{Owner: "alice", ResourceID: album, Scopes: []string{"view", "edit"}, ClientID: "app", Subject: "dave"}); err != nil {
		t.Fatal(err)
	}
	pending := f.tickets("requester=dave", f.RSPAT)
	if len(pending) != 2 {
		t.Fatalf("two scopes, two tickets: %+v", pending)
	}
	edit := pending[slices.IndexFunc(pending, func(tk ticketView) bool { return tk.Scope == "edit" })]
	if r := f.kc("PUT", keycloak.PathPermissionTicket, `{"id":"`+edit.ID+`","granted":true}`, f.AlicePAT); r.Status != http.StatusNoContent {
		t.Fatalf("approve edit: %d %s", r.Status, r.Body)
	}
	after := f.tickets("requester=dave", f.RSPAT)
	if len(after) != 2 || slices.ContainsFunc(after, func(tk ticketView) bool { return tk.Granted != (tk.Scope == "edit") }) {
		t.Fatalf("after approving edit: %+v", after)
	}
	// Denying the other (DELETE) leaves nothing pending.
	view := after[slices.IndexFunc(after, func(tk ticketView) bool { return tk.Scope == "view" })]
	if r := f.kc("DELETE", keycloak.PathPermissionTicket+"/"+view.ID, nil, f.RSPAT); r.Status != http.StatusNoContent {
		t.Fatalf("deny view: %d %s", r.Status, r.Body)
	}
	if got := f.tickets("requester=dave&granted=false", f.RSPAT); len(got) != 0 {
		t.Fatalf("still pending: %+v", got)
	}
}

func TestKeycloakTicketRefusals(t *testing.T) {
	f := newKeycloakFixture(t)
	album := f.create(f.AlicePAT, `{"name":"album","resource_scopes":["view"]}`)
	other := f.create(f.BPAT, `{"name":"b","resource_scopes":["view"]}`)
	bobPAT, err := f.Server.IssuePAT(t.Context(), "rs-a", "bob")
	if err != nil {
		t.Fatal(err)
	}
	tests := []keycloakRefusal{
		{"no PAT", "GET", keycloak.PathPermissionTicket, "", "", 401, "invalid_token"},
		{"no resource", "POST", keycloak.PathPermissionTicket, `{"requester":"bob","scopeName":"view","granted":true}`, f.RSPAT, 400, "invalid_request"},
		{"unknown resource", "POST", keycloak.PathPermissionTicket, `{"resource":"nope","requester":"bob","scopeName":"view","granted":true}`, f.RSPAT, 400, "invalid_resource_id"},
		{"another resource server's resource", "POST", keycloak.PathPermissionTicket, `{"resource":"` + other + `","requester":"bob","scopeName":"view","granted":true}`, f.RSPAT, 400, "invalid_resource_id"},
		{"another owner's resource", "POST", keycloak.PathPermissionTicket, `{"resource":"` + album + `","requester":"eve","scopeName":"view","granted":true}`, bobPAT, 400, "invalid_resource_id"},
		{"no requester", "POST", keycloak.PathPermissionTicket, `{"resource":"` + album + `","scopeName":"view","granted":true}`, f.RSPAT, 400, "invalid_request"},
		{"bad requester", "POST", keycloak.PathPermissionTicket, `{"resource":"` + album + `","requester":"a\u0000b","scopeName":"view","granted":true}`, f.RSPAT, 400, "invalid_request"},
		{"no scope", "POST", keycloak.PathPermissionTicket, `{"resource":"` + album + `","requester":"bob","granted":true}`, f.RSPAT, 400, "invalid_scope"},
		{"unknown scope", "POST", keycloak.PathPermissionTicket, `{"resource":"` + album + `","requester":"bob","scopeName":"fly","granted":true}`, f.RSPAT, 400, "invalid_scope"},
		{"granted not a boolean", "POST", keycloak.PathPermissionTicket, `{"resource":"` + album + `","requester":"bob","scopeName":"view","granted":"yes"}`, f.RSPAT, 400, "invalid_request"},
		{"update without id", "PUT", keycloak.PathPermissionTicket, `{"granted":true}`, f.RSPAT, 400, "invalid_request"},
		{"update without granted", "PUT", keycloak.PathPermissionTicket, `{"id":"x"}`, f.RSPAT, 400, "invalid_request"},
		{"update of an unknown ticket", "PUT", keycloak.PathPermissionTicket, `{"id":"Zm9v","granted":false}`, f.RSPAT, 404, "not_found"},
		{"delete of a malformed id", "DELETE", keycloak.PathPermissionTicket + "/%00", "", f.RSPAT, 404, "not_found"},
		{"delete of a forged id", "DELETE", keycloak.PathPermissionTicket + "/ZwBub3BlAHgAdmlldw", "", f.RSPAT, 404, "not_found"},
		{"bad max", "GET", keycloak.PathPermissionTicket + "?max=many", "", f.RSPAT, 400, "invalid_request"},
		{"method", "DELETE", keycloak.PathPermissionTicket, "", f.RSPAT, 405, "unsupported_method_type"},
	}
	f.expectRefusals(t, tests)
}
