package urlcheck

import "testing"

func TestAbsolute(t *testing.T) {
	for raw, want := range map[string]string{
		"https://as.example.com":       "",
		"http://localhost:8080/uma":    "",
		"https://as.example.com/x?y=1": "has a query",
		"":                             "is not an http or https URL (it must be an absolute http or https URL)",
		"as.example.com":               "is not an http or https URL (it must be an absolute http or https URL)",
		"ftp://as.example.com":         "is not an http or https URL (it must be an absolute http or https URL)",
		"https://":                     "has no host",
		"https://u:p@as.example.com":   "has user information",
		"https://as.example.com/#f":    "has a fragment",
		"https://as.example.com/?":     "has a query",
		"https://as.example.com/%zz":   "is not a URL",
	} {
		got := ""
		if err := Absolute(raw, false); err != nil {
			got = err.Error()
		}
		if got != want {
			t.Errorf("Absolute(%q) = %q, want %q", raw, got, want)
		}
	}
	if err := Absolute("https://as.example.com/x?y=1", true); err != nil {
		t.Errorf("query refused with allowQuery: %v", err)
	}
}

func TestRedirectURI(t *testing.T) {
	for raw, ok := range map[string]bool{
		"https://app.example/cb?x=1":  true,
		"http://127.0.0.1:9/cb":       true,
		"http://127.3.4.5/cb":         true,
		"http://[::1]:9/cb":           true,
		"http://localhost/cb":         true,
		"http://app.localhost/cb":     true,
		"http://app.example/cb":       false,
		"https://app.example/cb#frag": false,
		"/cb":                         false,
		"javascript:alert(1)":         false,
		"custom://cb":                 false,
	} {
		if err := RedirectURI(raw); (err == nil) != ok {
			t.Errorf("RedirectURI(%q) = %v, want ok=%v", raw, err, ok)
		}
	}
}
