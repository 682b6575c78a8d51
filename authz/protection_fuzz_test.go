package authz_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"testing"

	"github.com/caddy-uma/caddy-uma/authz"
	"github.com/caddy-uma/caddy-uma/authz/authztest"
)

// FuzzResourceDescription sends any resource description to POST
// /resource_set (or, with update, PUT /resource_set/{id} of a resource
// registered for the purpose) with a valid PAT: alice's, or rs-a's own with
// clientPAT. Besides the rules of every answer, an accepted description
// reads back, and the AS accepts what it reads back unchanged; alice's PAT
// registers only for alice. Seeds: testdata/fuzz/FuzzResourceDescription.
func FuzzResourceDescription(f *testing.F) {
	as := newFuzzAS(f)
	f.Fuzz(func(t *testing.T, update, clientPAT bool, body string) {
		pat := as.values["$PAT"]
		if clientPAT {
			pat = as.values["$RSPAT"]
		}
		auth := authztest.Bearer(pat)
		body = as.expand(t, body)
		path := authz.PathResourceSet
		method := http.MethodPost
		if update {
			rec := as.serve(t, http.MethodPost, path, "application/json", `{"name":"scratch","resource_scopes":["read"]}`, auth)
			path += "/" + resourceID(t, rec)
			method = http.MethodPut
			defer as.serve(t, http.MethodDelete, path, "", "", auth)
		}
		rec := as.serve(t, method, path, "application/json", body, auth)
		switch {
		case rec.Code >= 300:
			return
		case update && rec.Code != http.StatusOK, !update && rec.Code != http.StatusCreated:
			t.Fatalf("%s answered %d: %s", method, rec.Code, rec.Body)
		}
		if !update {
			path += "/" + resourceID(t, rec)
			defer as.serve(t, http.MethodDelete, path, "", "", auth)
		}

		first := as.serve(t, http.MethodGet, path, "", "", auth)
		if first.Code != http.StatusOK {
			t.Fatalf("an accepted description does not read back: %d %s", first.Code, first.Body)
		}
		var desc map[string]any
		if err := json.Unmarshal(first.Body.Bytes(), &desc); err != nil {
			t.Fatal(err)
		}
		if !clientPAT && desc["owner"] != "alice" {
			t.Fatalf("alice's PAT registered a resource of %v", desc["owner"])
		}
		if rec := as.serve(t, http.MethodPut, path, "application/json", first.Body.String(), auth); rec.Code != http.StatusOK {
			t.Fatalf("the AS refuses its own description %s: %d %s", first.Body, rec.Code, rec.Body)
		}
		second := as.serve(t, http.MethodGet, path, "", "", auth)
		var again map[string]any
		if err := json.Unmarshal(second.Body.Bytes(), &again); err != nil || !reflect.DeepEqual(desc, again) {
			t.Fatalf("putting a description back changed it: %s, then %s", first.Body, second.Body)
		}
	})
}

// resourceID reads the _id of a create answer.
func resourceID(t *testing.T, rec *httptest.ResponseRecorder) string {
	t.Helper()
	var ref struct {
		ID string `json:"_id"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &ref); err != nil || ref.ID == "" {
		t.Fatalf("no _id in the answer: %d %s", rec.Code, rec.Body)
	}
	return ref.ID
}

// FuzzPermissionRequest sends any permission request body to POST
// /permission with a valid PAT: alice's, or rs-a's own with clientPAT.
// Besides the rules of every answer, a ticket names only resources of rs-a
// that belong to one owner (alice, for her PAT), with scopes they offer.
// Seeds: testdata/fuzz/FuzzPermissionRequest.
func FuzzPermissionRequest(f *testing.F) {
	as := newFuzzAS(f)
	scopes := map[string][]string{
		as.values["$LABS"]:   {"read", "write", "delete"},
		as.values["$PHOTOS"]: {"view"},
		as.values["$BOBS"]:   {"read"},
	}
	owners := map[string]string{as.values["$LABS"]: "alice", as.values["$PHOTOS"]: "alice", as.values["$BOBS"]: "bob"}
	f.Fuzz(func(t *testing.T, clientPAT bool, body string) {
		pat := as.values["$PAT"]
		if clientPAT {
			pat = as.values["$RSPAT"]
		}
		rec := as.serve(t, http.MethodPost, authz.PathPermission, "application/json", as.expand(t, body), authztest.Bearer(pat))
		if rec.Code >= 300 {
			return
		}
		var out struct {
			Ticket string `json:"ticket"`
		}
		if rec.Code != http.StatusCreated || json.Unmarshal(rec.Body.Bytes(), &out) != nil || out.Ticket == "" {
			t.Fatalf("%d without a ticket: %s", rec.Code, rec.Body)
		}
		tk, err := as.srv.OpenTicket(out.Ticket)
		if err != nil {
			t.Fatalf("the ticket does not open: %v", err)
		}
		if tk.ResourceServer != "rs-a" || (!clientPAT && tk.Owner != "alice") || len(tk.Permissions) == 0 {
			t.Fatalf("ticket of %s for %s with %d permissions", tk.ResourceServer, tk.Owner, len(tk.Permissions))
		}
		for _, p := range tk.Permissions {
			offered, ok := scopes[p.ResourceID]
			if !ok || owners[p.ResourceID] != tk.Owner {
				t.Fatalf("ticket for %s names resource %s, not one of its owner's at rs-a", tk.Owner, p.ResourceID)
			}
			for _, s := range p.Scopes {
				if !slices.Contains(offered, s) {
					t.Fatalf("ticket asks for scope %q, which resource %s does not offer", s, p.ResourceID)
				}
			}
		}
	})
}
