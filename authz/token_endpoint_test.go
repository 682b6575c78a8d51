package authz

import (
	"net/url"
	"strings"
	"testing"
)

func TestClientCredentialsGrant(t *testing.T) {
	as := newTestAS(t, nil)
	cc := url.Values{"grant_type": {"client_credentials"}}
	tests := []struct {
		name    string
		form    url.Values
		headers []string
		status  int
		errCode string
		scope   string
	}{
		{"basic", cc, []string{"Authorization", basicAuth("rs-a", "secret-a")}, 200, "", "uma_protection"},
		{"post", url.Values{"grant_type": {"client_credentials"}, "client_id": {"rs-a"}, "client_secret": {"secret-a"}}, nil, 200, "", "uma_protection"},
		{"bcrypt secret", cc, []string{"Authorization", basicAuth("rs-hashed", "hashed-secret")}, 200, "", "uma_protection"},
		{"form-encoded basic credentials", url.Values{"grant_type": {"client_credentials"}}, []string{"Authorization", basicAuth("app", "app secret:with&chars")}, 200, "", "read"},
		{"explicit scope", url.Values{"grant_type": {"client_credentials"}, "scope": {"uma_protection"}}, []string{"Authorization", basicAuth("rs-a", "secret-a")}, 200, "", "uma_protection"},
		{"client scope without PAT rights", cc, []string{"Authorization", basicAuth("scoped", "scoped-secret")}, 200, "", "reports"},
		{"wrong secret", cc, []string{"Authorization", basicAuth("rs-a", "nope")}, 401, "invalid_client", ""},
		{"wrong bcrypt secret", cc, []string{"Authorization", basicAuth("rs-hashed", "nope")}, 401, "invalid_client", ""},
		{"unknown client", cc, []string{"Authorization", basicAuth("who", "x")}, 401, "invalid_client", ""},
		{"no client auth", cc, nil, 401, "invalid_client", ""},
		{"malformed basic", cc, []string{"Authorization", "Basic !!!"}, 401, "invalid_client", ""},
		{"two auth methods", url.Values{"grant_type": {"client_credentials"}, "client_secret": {"secret-a"}}, []string{"Authorization", basicAuth("rs-a", "secret-a")}, 400, "invalid_request", ""},
		{"missing grant_type", url.Values{}, []string{"Authorization", basicAuth("rs-a", "secret-a")}, 400, "invalid_request", ""},
		{"unsupported grant", url.Values{"grant_type": {"password"}}, []string{"Authorization", basicAuth("rs-a", "secret-a")}, 400, "unsupported_grant_type", ""},
		{"scope not allowed", url.Values{"grant_type": {"client_credentials"}, "scope": {"admin"}}, []string{"Authorization", basicAuth("rs-a", "secret-a")}, 400, "invalid_scope", ""},
		{"uma_protection for a non resource server", url.Values{"grant_type": {"client_credentials"}, "scope": {"uma_protection"}}, []string{"Authorization", basicAuth("scoped", "scoped-secret")}, 400, "invalid_scope", ""},
		{"public client", url.Values{"grant_type": {"client_credentials"}, "client_id": {"public-app"}}, nil, 400, "unauthorized_client", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := as.do("POST", PathToken, tc.form, tc.headers...)
			if tc.errCode != "" {
				expectError(t, r, tc.status, tc.errCode)
				if tc.status == 401 && !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Basic realm=") {
					t.Fatalf("401 without a Basic challenge: %q", r.header.Get("WWW-Authenticate"))
				}
				return
			}
			if r.status != tc.status {
				t.Fatalf("status %d: %s", r.status, r.body)
			}
			m := r.json(t)
			if m["token_type"] != "Bearer" || m["access_token"] == "" || m["scope"] != tc.scope || m["expires_in"].(float64) != 3600 {
				t.Fatalf("response %v", m)
			}
			if r.header.Get("Cache-Control") != "no-store" || r.header.Get("Pragma") != "no-cache" {
				t.Fatalf("token response cacheable: %v", r.header)
			}
		})
	}
}

func TestTokenEndpointFraming(t *testing.T) {
	as := newTestAS(t, nil)
	auth := []string{"Authorization", basicAuth("rs-a", "secret-a")}
	r := as.do("GET", PathToken, nil, auth...)
	expectError(t, r, 405, "invalid_request")
	if r.header.Get("Allow") != "POST" {
		t.Fatalf("Allow = %q", r.header.Get("Allow"))
	}
	expectError(t, as.do("POST", PathToken, `{"grant_type":"client_credentials"}`, auth...), 400, "invalid_request")
	// A repeated parameter is an error (RFC 6749 section 3.2).
	req := url.Values{"grant_type": {"client_credentials", "client_credentials"}}
	expectError(t, as.do("POST", PathToken, req, auth...), 400, "invalid_request")
	// Parameters in the query string are not read.
	expectError(t, as.do("POST", PathToken+"?grant_type=client_credentials", url.Values{}, auth...), 400, "invalid_request")
	huge := url.Values{"grant_type": {"client_credentials"}, "pad": {strings.Repeat("x", maxBodyBytes)}}
	expectError(t, as.do("POST", PathToken, huge, auth...), 400, "invalid_request")
}

func TestBcryptSecretIsVerifiedOnce(t *testing.T) {
	as := newTestAS(t, nil)
	c := as.srv.clients["rs-hashed"]
	for range 3 {
		as.pat("rs-hashed", "hashed-secret")
	}
	if len(c.verified) != 1 {
		t.Fatalf("verified cache has %d entries, want 1", len(c.verified))
	}
	if c.checkSecret("hashed-secret2") {
		t.Fatal("wrong secret accepted")
	}
}

func TestInvalidClientConfig(t *testing.T) {
	for name, clients := range map[string][]Client{
		"duplicate":           {{ID: "a", Secret: "x"}, {ID: "a", Secret: "y"}},
		"empty id":            {{ID: "", Secret: "x"}},
		"public rs":           {{ID: "a", ResourceServer: true}},
		"bad bcrypt":          {{ID: "a", Secret: "$2a$04$" + strings.Repeat("!", 53)}},
		"http redirect":       {{ID: "a", Secret: "x", RedirectURIs: []string{"http://example.com/cb"}}},
		"fragment redirect":   {{ID: "a", Secret: "x", RedirectURIs: []string{"https://example.com/cb#x"}}},
		"relative redirect":   {{ID: "a", Secret: "x", ClaimsRedirectURIs: []string{"/cb"}}},
		"javascript redirect": {{ID: "a", Secret: "x", ClaimsRedirectURIs: []string{"javascript:alert(1)"}}},
	} {
		if _, err := newClientRegistry(clients); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := newClientRegistry([]Client{{ID: "a", Secret: "x", RedirectURIs: []string{"http://127.0.0.1:9/cb", "https://app.example/cb?x=1"}}}); err != nil {
		t.Errorf("valid redirect URIs refused: %v", err)
	}
}
