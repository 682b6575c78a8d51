package authz

import (
	"slices"
	"testing"
)

// TestURIMatches: Keycloak's URI matching of permission_resource_format=uri.
func TestURIMatches(t *testing.T) {
	tests := []struct {
		registered, uri string
		matching, want  bool
	}{
		{"/docs/a", "/docs/a", false, true},
		{"/docs/a/", "/docs/a", false, true},
		{"https://api.example/docs/a", "/docs/a", false, true},
		{"/docs/a", "/docs/b", false, false},
		{"/docs/*", "/docs/a", false, false},
		{"/docs/*", "/docs/a", true, true},
		{"/docs/*", "/docs/a/b/c", true, true},
		{"/docs/*", "/docs", true, true},
		{"/docs/*", "/other/a", true, false},
		{"/docs/{id}/pages", "/docs/7/pages", true, true},
		{"/docs/{id}/pages", "/docs/7/other", true, false},
		{"/docs/{id}", "/docs/7/8", true, false},
		{"/docs/*/pages", "/docs/7/pages", true, true},
		{"/docs/{id}", "/docs/7", false, false},
		{"/docs/../admin", "/admin", false, true},
		{"", "/", false, true},
	}
	for _, tt := range tests {
		if got := uriMatches(tt.registered, tt.uri, tt.matching); got != tt.want {
			t.Errorf("uriMatches(%q, %q, %v) = %v, want %v", tt.registered, tt.uri, tt.matching, got, tt.want)
		}
	}
}

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
		opts              grantOptions
		previous, granted []Permission
		want              []string
	}{
		{"no limit", grantOptions{}, []Permission{perm("a")}, []Permission{perm("b"), perm("c")}, []string{"a", "b", "c"}},
		{"limit on new", grantOptions{limit: 2}, nil, []Permission{perm("b"), perm("c"), perm("d")}, []string{"b", "c"}},
		{"limit on an upgrade", grantOptions{limit: 2}, []Permission{perm("a"), perm("x")}, []Permission{perm("b")}, []string{"x", "b"}},
		{"merged scopes count once", grantOptions{limit: 1}, []Permission{perm("a")}, []Permission{perm("a")}, []string{"a"}},
	}
	for _, tt := range tests {
		got := tt.opts.shape(tt.previous, tt.granted)
		if !slices.Equal(ids(got), tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, ids(got), tt.want)
		}
	}
	granted := []Permission{perm("a")}
	if got := (grantOptions{omitNames: true}).shape(nil, granted); got[0].ResourceName != "" || granted[0].ResourceName == "" {
		t.Errorf("omitNames: %+v (granted changed: %+v)", got, granted)
	}
}
