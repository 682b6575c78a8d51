package authz

import (
	"slices"
	"testing"
)

// TestGrantOptionsShape: names left out on request, and the limit keeps
// the first new permissions, then the most recent of an upgrade.
func TestGrantOptionsShape(t *testing.T) {
	perm := func(id string) Permission {
		return Permission{ResourceID: id, ResourceScopes: []string{"read"}, ResourceName: "n-" + id}
	}
	ids := func(ps []Permission) []string {
		var out []string
		for _, p := range ps {
			out = append(out, p.ResourceID)
		}
		return out
	}
	tests := []struct {
		name              string
		opts              GrantOptions
		previous, granted []Permission
		want              []string
	}{
		{"no limit", GrantOptions{}, []Permission{perm("a")}, []Permission{perm("b"), perm("c")}, []string{"a", "b", "c"}},
		{"limit on new", GrantOptions{Limit: 2}, nil, []Permission{perm("b"), perm("c"), perm("d")}, []string{"b", "c"}},
		{"limit on an upgrade", GrantOptions{Limit: 2}, []Permission{perm("a"), perm("x")}, []Permission{perm("b")}, []string{"x", "b"}},
		{"merged scopes count once", GrantOptions{Limit: 1}, []Permission{perm("a")}, []Permission{perm("a")}, []string{"a"}},
	}
	for _, tt := range tests {
		got := tt.opts.shape(tt.previous, tt.granted)
		if !slices.Equal(ids(got), tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, ids(got), tt.want)
		}
	}
	granted := []Permission{perm("a")}
	if got := (GrantOptions{OmitNames: true}).shape(nil, granted); got[0].ResourceName != "" || granted[0].ResourceName == "" {
		t.Errorf("omitNames: %+v (granted changed: %+v)", got, granted)
	}
}
