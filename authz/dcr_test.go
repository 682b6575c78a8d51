package authz_test

import (
	"encoding/json"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/caddy-uma/caddy-uma/authz"
	"github.com/caddy-uma/caddy-uma/authz/authztest"
	"github.com/caddy-uma/caddy-uma/authz/people"
)

func TestRegistrationOffByDefault(t *testing.T) {
	f := authztest.NewPeopleFixture(t, nil)
	r := f.Do("POST", authz.PathRegister, `{"redirect_uris":["https://app.example/cb"]}`, "Authorization", "Bearer anything")
	if r.Status != 404 {
		t.Fatalf("registration without configuration: %d %s", r.Status, r.Body)
	}
	// Also without login: registration does not depend on it.
	as := authztest.New(t, nil)
	if r := as.Do("POST", authz.PathRegister, `{}`); r.Status != 404 {
		t.Fatalf("registration: %d", r.Status)
	}
}

func TestRegistration(t *testing.T) {
	f := authztest.NewPeopleFixture(t, func(c *authz.Config, _ *people.Config) {
		c.Registration = &authz.Registration{InitialAccessToken: "initial-token"}
	})
	register := func(body string, headers ...string) authztest.Response {
		return f.Do("POST", authz.PathRegister, body, headers...)
	}
	auth := []string{"Authorization", "Bearer initial-token"}
	good := `{"client_name":"Photo app","redirect_uris":["https://app.example/cb"],
		"claims_redirect_uris":["https://app.example/claims?from=uma","http://127.0.0.1:8000/claims","http://localhost/c"],
		"scope":"read download"}`

	// The initial access token is required.
	authztest.ExpectError(t, register(good), 401, "invalid_token")
	authztest.ExpectError(t, register(good, "Authorization", "Bearer wrong"), 401, "invalid_token")
	authztest.ExpectError(t, f.Do("GET", authz.PathRegister, nil, auth...), 405, "invalid_request")

	// Redirect URIs must be absolute, without fragment, https except on loopback.
	for name, body := range map[string]string{
		"relative redirect":       `{"redirect_uris":["/cb"]}`,
		"fragment":                `{"redirect_uris":["https://app.example/cb#x"]}`,
		"http redirect":           `{"redirect_uris":["http://app.example/cb"]}`,
		"other scheme":            `{"redirect_uris":["app://cb"]}`,
		"relative claims":         `{"claims_redirect_uris":["claims"]}`,
		"claims fragment":         `{"claims_redirect_uris":["https://app.example/claims#frag"]}`,
		"http claims, not local":  `{"claims_redirect_uris":["http://app.example/claims"]}`,
		"claims without host":     `{"claims_redirect_uris":["https:///claims"]}`,
		"one bad among good ones": `{"claims_redirect_uris":["https://app.example/a","http://evil.example/b"]}`,
	} {
		if r := register(body, auth...); r.Status != 400 || r.JSON(t)["error"] != "invalid_redirect_uri" {
			t.Errorf("%s: %d %s", name, r.Status, r.Body)
		}
	}
	for name, body := range map[string]string{
		"auth method":    `{"token_endpoint_auth_method":"private_key_jwt"}`,
		"grant type":     `{"grant_types":["client_credentials"]}`,
		"response types": `{"response_types":["code"]}`,
		"uma_protection": `{"scope":"uma_protection"}`,
	} {
		r := register(body, auth...)
		if r.Status != 400 || r.JSON(t)["error"] != "invalid_client_metadata" {
			t.Errorf("%s: %d %s", name, r.Status, r.Body)
		}
	}

	// A good registration is echoed.
	r := register(good, auth...)
	if r.Status != 201 {
		t.Fatalf("registration: %d %s", r.Status, r.Body)
	}
	var reg authz.RegistrationResponse
	if err := json.Unmarshal(r.Body, &reg); err != nil {
		t.Fatal(err)
	}
	if reg.ClientID == "" || reg.ClientSecret == "" || reg.ClientSecretExpiresAt == nil || *reg.ClientSecretExpiresAt != 0 ||
		!slices.Equal(reg.RedirectURIs, []string{"https://app.example/cb"}) ||
		!slices.Equal(reg.ClaimsRedirectURIs, []string{"https://app.example/claims?from=uma", "http://127.0.0.1:8000/claims", "http://localhost/c"}) ||
		reg.TokenEndpointAuthMethod != "client_secret_basic" || reg.Scope != "read download" || reg.ClientName != "Photo app" ||
		!slices.Contains(reg.GrantTypes, authz.GrantTypeUMATicket) {
		t.Fatalf("registration response: %s", r.Body)
	}
	// The store keeps only a hash of the secret.
	stored, err := f.Store.Get(t.Context(), authz.NSClient, reg.ClientID)
	if err != nil || !json.Valid(stored) || strings.Contains(string(stored), reg.ClientSecret) {
		t.Fatalf("stored client: %s %v", stored, err)
	}

	// The client authenticates at the token endpoint: a bad ticket is
	// invalid_grant, not invalid_client.
	grant := url.Values{"grant_type": {authz.GrantTypeUMATicket}, "ticket": {"nope"}}
	authztest.ExpectError(t, f.Do("POST", authz.PathToken, grant, "Authorization", authztest.BasicAuth(reg.ClientID, reg.ClientSecret)), 400, "invalid_grant")
	authztest.ExpectError(t, f.Do("POST", authz.PathToken, grant, "Authorization", authztest.BasicAuth(reg.ClientID, "wrong")), 401, "invalid_client")

	// It can use the claims interaction endpoint with a registered claims
	// redirect URI, and not with another.
	tk := f.LabsTicket("read")
	b := f.Browser()
	q := url.Values{"client_id": {reg.ClientID}, "ticket": {tk}, "claims_redirect_uri": {"https://app.example/claims?from=uma"}, "state": {"s"}}
	if loc := authztest.Location(t, b.Get(authz.PathClaims+"?"+q.Encode())); loc.Path != "/uma/claims" || loc.Query().Get("interaction") == "" {
		t.Fatalf("claims interaction of a registered client: %s", loc)
	}
	q.Set("claims_redirect_uri", "https://app.example/cb")
	authztest.ExpectErrorPage(t, b.Get(authz.PathClaims+"?"+q.Encode()), 400)

	// A public client gets no secret.
	r = register(`{"token_endpoint_auth_method":"none","claims_redirect_uris":["https://pub.example/c"]}`, auth...)
	if r.Status != 201 {
		t.Fatalf("public registration: %d %s", r.Status, r.Body)
	}
	if m := r.JSON(t); m["client_secret"] != nil || m["token_endpoint_auth_method"] != "none" {
		t.Fatalf("public registration: %s", r.Body)
	}
}
