package authz_test

import (
	"net/url"
	"strings"
	"testing"

	"github.com/caddy-uma/caddy-uma/authz"
	"github.com/caddy-uma/caddy-uma/authz/authztest"
	"github.com/caddy-uma/caddy-uma/authz/oauth"
)

func TestClientCredentialsGrant(t *testing.T) {
	as := authztest.New(t, nil)
	cc := url.Values{"grant_type": {"client_credentials"}}
	tests := []struct {
		name    string
		form    url.Values
		headers []string
		status  int
		errCode string
		scope   string
	}{
		{"basic", cc, []string{"Authorization", authztest.BasicAuth("rs-a", "secret-a")}, 200, "", "uma_protection"},
		{"post", url.Values{"grant_type": {"client_credentials"}, "client_id": {"rs-a"}, "client_secret": {"secret-a"}}, nil, 200, "", "uma_protection"},
		{"bcrypt secret", cc, []string{"Authorization", authztest.BasicAuth("rs-hashed", "hashed-secret")}, 200, "", "uma_protection"},
		{"form-encoded basic credentials", url.Values{"grant_type": {"client_credentials"}}, []string{"Authorization", authztest.BasicAuth("app", "app secret:with&chars")}, 200, "", "read"},
		{"explicit scope", url.Values{"grant_type": {"client_credentials"}, "scope": {"uma_protection"}}, []string{"Authorization", authztest.BasicAuth("rs-a", "secret-a")}, 200, "", "uma_protection"},
		{"client scope without PAT rights", cc, []string{"Authorization", authztest.BasicAuth("scoped", "scoped-secret")}, 200, "", "reports"},
		{"wrong secret", cc, []string{"Authorization", authztest.BasicAuth("rs-a", "nope")}, 401, "invalid_client", ""},
		{"wrong bcrypt secret", cc, []string{"Authorization", authztest.BasicAuth("rs-hashed", "nope")}, 401, "invalid_client", ""},
		{"unknown client", cc, []string{"Authorization", authztest.BasicAuth("who", "x")}, 401, "invalid_client", ""},
		{"no client auth", cc, nil, 401, "invalid_client", ""},
		{"malformed basic", cc, []string{"Authorization", "Basic !!!"}, 401, "invalid_client", ""},
		{"two auth methods", url.Values{"grant_type": {"client_credentials"}, "client_secret": {"secret-a"}}, []string{"Authorization", authztest.BasicAuth("rs-a", "secret-a")}, 400, "invalid_request", ""},
		{"missing grant_type", url.Values{}, []string{"Authorization", authztest.BasicAuth("rs-a", "secret-a")}, 400, "invalid_request", ""},
		{"unsupported grant", url.Values{"grant_type": {"password"}}, []string{"Authorization", authztest.BasicAuth("rs-a", "secret-a")}, 400, "unsupported_grant_type", ""},
		{"scope not allowed", url.Values{"grant_type": {"client_credentials"}, "scope": {"admin"}}, []string{"Authorization", authztest.BasicAuth("rs-a", "secret-a")}, 400, "invalid_scope", ""},
		{"uma_protection for a non resource server", url.Values{"grant_type": {"client_credentials"}, "scope": {"uma_protection"}}, []string{"Authorization", authztest.BasicAuth("scoped", "scoped-secret")}, 400, "invalid_scope", ""},
		{"public client", url.Values{"grant_type": {"client_credentials"}, "client_id": {"public-app"}}, nil, 400, "unauthorized_client", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := as.Do("POST", authz.PathToken, tc.form, tc.headers...)
			if tc.errCode != "" {
				authztest.ExpectError(t, r, tc.status, tc.errCode)
				if tc.status == 401 && !strings.HasPrefix(r.Header.Get("WWW-Authenticate"), "Basic realm=") {
					t.Fatalf("401 without a Basic challenge: %q", r.Header.Get("WWW-Authenticate"))
				}
				return
			}
			if r.Status != tc.status {
				t.Fatalf("status %d: %s", r.Status, r.Body)
			}
			m := r.JSON(t)
			if m["token_type"] != "Bearer" || m["access_token"] == "" || m["scope"] != tc.scope || m["expires_in"].(float64) != 3600 {
				t.Fatalf("response %v", m)
			}
			if r.Header.Get("Cache-Control") != "no-store" || r.Header.Get("Pragma") != "no-cache" {
				t.Fatalf("token response cacheable: %v", r.Header)
			}
		})
	}
}

func TestTokenEndpointFraming(t *testing.T) {
	as := authztest.New(t, nil)
	auth := []string{"Authorization", authztest.BasicAuth("rs-a", "secret-a")}
	r := as.Do("GET", authz.PathToken, nil, auth...)
	authztest.ExpectError(t, r, 405, "invalid_request")
	if r.Header.Get("Allow") != "POST" {
		t.Fatalf("Allow = %q", r.Header.Get("Allow"))
	}
	authztest.ExpectError(t, as.Do("POST", authz.PathToken, `{"grant_type":"client_credentials"}`, auth...), 400, "invalid_request")
	// A repeated parameter is an error (RFC 6749 section 3.2).
	req := url.Values{"grant_type": {"client_credentials", "client_credentials"}}
	authztest.ExpectError(t, as.Do("POST", authz.PathToken, req, auth...), 400, "invalid_request")
	// Parameters in the query string are not read.
	authztest.ExpectError(t, as.Do("POST", authz.PathToken+"?grant_type=client_credentials", url.Values{}, auth...), 400, "invalid_request")
	huge := url.Values{"grant_type": {"client_credentials"}, "pad": {strings.Repeat("x", oauth.MaxBodyBytes)}}
	authztest.ExpectError(t, as.Do("POST", authz.PathToken, huge, auth...), 400, "invalid_request")
}

func TestBcryptSecretIsVerifiedOnce(t *testing.T) {
	as := authztest.New(t, nil)
	for range 3 {
		as.PAT("rs-hashed", "hashed-secret")
	}
	if _, cached := as.Server.ClientSecretMatches("rs-hashed", "hashed-secret"); cached != 1 {
		t.Fatalf("verified cache has %d entries, want 1", cached)
	}
	if ok, _ := as.Server.ClientSecretMatches("rs-hashed", "hashed-secret2"); ok {
		t.Fatal("wrong secret accepted")
	}
}

func TestInvalidClientConfig(t *testing.T) {
	for name, clients := range map[string][]authz.Client{
		"duplicate":           {{ID: "a", Secret: "x"}, {ID: "a", Secret: "y"}},
		"empty id":            {{ID: "", Secret: "x"}},
		"public rs":           {{ID: "a", ResourceServer: true}},
		"bad bcrypt":          {{ID: "a", Secret: "$2a$04$" + strings.Repeat("!", 53)}},
		"http redirect":       {{ID: "a", Secret: "x", RedirectURIs: []string{"http://example.com/cb"}}},
		"fragment redirect":   {{ID: "a", Secret: "x", RedirectURIs: []string{"https://example.com/cb#x"}}},
		"relative redirect":   {{ID: "a", Secret: "x", ClaimsRedirectURIs: []string{"/cb"}}},
		"javascript redirect": {{ID: "a", Secret: "x", ClaimsRedirectURIs: []string{"javascript:alert(1)"}}},
	} {
		if err := authz.CheckClients(clients); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if err := authz.CheckClients([]authz.Client{{ID: "a", Secret: "x", RedirectURIs: []string{"http://127.0.0.1:9/cb", "https://app.example/cb?x=1"}}}); err != nil {
		t.Errorf("valid redirect URIs refused: %v", err)
	}
}
