package keycloak_test

import (
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"testing"

	"github.com/caddy-uma/caddy-uma/authz/authztest"
	"github.com/caddy-uma/caddy-uma/authz/claimtoken"
	"github.com/caddy-uma/caddy-uma/store"
)

// TestTicketlessLookups: Keycloak's ticketless grant finds the resources a
// permission names (by ID or by name) at the audience only, through the
// store's indexes and pages: what lies on later pages of the resource
// server's resources is found, another resource server's resources are
// not, and more than 100 resources (named, or permission parameters) are
// refused.
func TestTicketlessLookups(t *testing.T) {
	f := authztest.NewGrantFixture(t, nil)
	ctx := t.Context()
	now := f.Clock.Now().UTC()
	create := func(id, rs, owner, name string, scopes ...string) {
		t.Helper()
		err := f.Store.CreateResource(ctx, store.Resource{ID: id, ResourceServer: rs, Owner: owner, Name: name,
			Scopes: scopes, CreatedAt: now, UpdatedAt: now})
		if err != nil {
			t.Fatal(err)
		}
	}
	// 600 of bob's resources around alice's, so that hers lie on several
	// pages of rs-a's resources, by ID.
	for i := range 600 {
		create(fmt.Sprintf("b-%03d", i), "rs-a", "bob", "bulk", "write")
	}
	xrays := []string{"b-050a", "b-300a", "b-599a"}
	for _, id := range xrays {
		create(id, "rs-a", "alice", "x-ray", "read")
	}
	create("other-rs", "rs-b", "alice", "x-ray", "read")
	for i := range 101 {
		create(fmt.Sprintf("m-%03d", i), "rs-a", "alice", "many", "delete")
	}

	doctor := f.IDToken(map[string]any{"sub": "doc", "email": "doctor@clinic.example"})
	grant := func(perms ...string) authztest.Response {
		return f.Grant(url.Values{"audience": {"rs-a"}, "permission": perms, "response_mode": {"permissions"},
			"claim_token": {doctor}, "claim_token_format": {claimtoken.FormatIDToken}})
	}
	tooMany := make([]string, 101)
	for i := range tooMany {
		tooMany[i] = fmt.Sprintf("nothing-%d#read", i)
	}
	tests := []struct {
		name   string
		perms  []string
		want   []string // granted resource IDs, sorted
		status int      // when nothing is granted
		code   string
	}{
		{name: "by name, on several pages", perms: []string{"x-ray#read"}, want: xrays},
		{name: "by name, no scope asked", perms: []string{"x-ray"}, want: xrays},
		{name: "by ID", perms: []string{"b-300a#read"}, want: []string{"b-300a"}},
		{name: "by name and by ID", perms: []string{"x-ray#read", "b-050a"}, want: xrays},
		{name: "every resource of a scope, on several pages", perms: []string{"#read"}, want: append([]string{f.Labs}, xrays...)},
		{name: "another resource server's by ID", perms: []string{"other-rs#read"}, status: 403, code: "access_denied"},
		{name: "a name without the scope", perms: []string{"bulk#read"}, status: 403, code: "access_denied"},
		{name: "a name no resource can have", perms: []string{"x\x01ray#read"}, status: 403, code: "access_denied"},
		{name: "more than 100 resources of one name", perms: []string{"many#delete"}, status: 400, code: "invalid_request"},
		{name: "more than 100 resources of one scope", perms: []string{"#delete"}, status: 400, code: "invalid_request"},
		{name: "more than 100 permissions", perms: tooMany, status: 400, code: "invalid_request"},
		{name: "every resource of the audience, more than 100", perms: nil, status: 400, code: "invalid_request"},
		{name: "more than 100 of one name, none with the scope", perms: []string{"many#read"}, status: 403, code: "access_denied"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := grant(tt.perms...)
			if tt.want == nil {
				authztest.ExpectError(t, r, tt.status, tt.code)
				return
			}
			if r.Status != 200 {
				t.Fatalf("%d %s", r.Status, r.Body)
			}
			var got []struct {
				RSID string `json:"rsid"`
			}
			if err := json.Unmarshal(r.Body, &got); err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, p := range got {
				ids = append(ids, p.RSID)
			}
			slices.Sort(ids)
			want := slices.Sorted(slices.Values(tt.want))
			if !slices.Equal(ids, want) {
				t.Errorf("granted %q, want %q", ids, want)
			}
		})
	}
}
