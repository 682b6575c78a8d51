package keycloak

import "testing"

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
