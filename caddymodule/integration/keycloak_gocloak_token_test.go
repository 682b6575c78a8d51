//go:build unix

package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"text/template"
	"time"

	"github.com/Nerzal/gocloak/v13"
)

// keycloakTokenCaddyfile is the Keycloak interop fixture
// (keycloakGlobalOptions, with alice's rules from the operator directory)
// and uma_protect (co-hosted, rs-api) in front of alice's documents.
var keycloakTokenCaddyfile = template.Must(template.New("Caddyfile").Parse(keycloakGlobalOptions + `
http://127.0.0.1:{{.Port}} {
	bind 127.0.0.1
	uma_demo_idp /idp/* http://127.0.0.1:{{.Port}}/idp
	uma_server
	respond "site" 200
}

http://127.0.0.1:{{.APIPort}} {
	bind 127.0.0.1
	uma_protect {
		as co-hosted
		resource_server rs-api
		resource /docs/{owner}/{doc} {
			owner  {owner}
			name   {doc}
			type   document
			scopes read write
			method GET read
			method POST write
		}
	}
	respond "the document" 200
}
`))

// aliceKeycloakRules: bob (as the demo provider knows him) reads alice's
// documents; nobody writes them.
const aliceKeycloakRules = `package uma.share

allow contains "read" if {
	input.requesting_party.sub == "bob"
	endswith(input.requesting_party.iss, "/idp")
}
`

// TestKeycloakGocloakToken walks gocloak v13's token calls against a real
// Caddy: RPTs with a ticket (from the permission endpoint and from
// uma_protect's challenge) and without, the permissions and decision
// response modes, introspection and decoding of the RPT with the realm's
// certs; bob is granted read and refused write; a bad user token is 401.
func TestKeycloakGocloakToken(t *testing.T) {
	skipShort(t)
	policies := t.TempDir()
	if err := os.MkdirAll(filepath.Join(policies, "alice"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(policies, "alice", "main.rego"), []byte(aliceKeycloakRules), 0o600); err != nil {
		t.Fatal(err)
	}
	apiPort := freePort(t)
	inst := startCaddyfile(t, keycloakTokenCaddyfile, map[string]any{
		"AliceHash": hash(t, alicePassword), "BobHash": hash(t, bobPassword), "APIPort": apiPort, "Policies": policies,
	})
	server := inst.cfg.issuer()
	issuer := server + "/realms/demo"
	api := fmt.Sprintf("http://127.0.0.1:%d", apiPort)
	const realm = "demo"
	ctx := context.Background()
	kc := gocloak.NewClient(server)

	// The resource server's PAT, by client credentials at Keycloak's token
	// path, and alice's document registered through our resource_set.
	pat, err := kc.LoginClient(ctx, "rs-api", "rs-api-secret", realm)
	if err != nil {
		t.Fatalf("LoginClient: %v", err)
	}
	u := &umaClient{t: t, issuer: issuer, pat: pat.AccessToken}
	doc := u.register(`{"name":"alice-notes","type":"document","owner":"alice","resource_scopes":["read","write"]}`)

	bob := demoIDToken(t, server, "bob", "bob@example.org")
	// The AS fetches the demo provider's keys once the site answers: 503
	// until then, as for any issuer whose keys cannot be had yet.
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, err := kc.GetRequestingPartyPermissionDecision(ctx, bob, realm, gocloak.RequestingPartyTokenOptions{Audience: gocloak.StringP("rs-api"), Permissions: &[]string{doc + "#read"}})
		var apiErr *gocloak.APIError
		if !errors.As(err, &apiErr) || apiErr.Code != 503 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	ticket := func(scopes ...string) string {
		t.Helper()
		tk, err := kc.CreatePermissionTicket(ctx, pat.AccessToken, realm, []gocloak.CreatePermissionTicketParams{{ResourceID: gocloak.StringP(doc), ResourceScopes: &scopes}})
		if err != nil || tk.Ticket == nil {
			t.Fatalf("CreatePermissionTicket: %v", err)
		}
		return *tk.Ticket
	}
	permissions := func(perms ...string) *[]string { return &perms }

	var rpt string
	t.Run("GetRequestingPartyToken with a ticket, granted", func(t *testing.T) {
		tok, err := kc.GetRequestingPartyToken(ctx, bob, realm, gocloak.RequestingPartyTokenOptions{Ticket: gocloak.StringP(ticket("read"))})
		if err != nil {
			t.Fatalf("GetRequestingPartyToken: %v", err)
		}
		rpt = tok.AccessToken
		if !strings.EqualFold(tok.TokenType, "Bearer") || tok.ExpiresIn <= 0 || tok.RefreshToken == "" {
			t.Fatalf("token response %+v", tok)
		}
	})
	if rpt == "" {
		t.FailNow()
	}
	t.Run("GetRequestingPartyToken with a ticket, denied", func(t *testing.T) {
		_, err := kc.GetRequestingPartyToken(ctx, bob, realm, gocloak.RequestingPartyTokenOptions{Ticket: gocloak.StringP(ticket("write"))})
		expectAPIError(t, err, 403, "access_denied")
	})
	t.Run("DecodeAccessToken of the RPT with the realm's certs", func(t *testing.T) {
		tok, claims, err := kc.DecodeAccessToken(ctx, rpt, realm)
		if err != nil || !tok.Valid {
			t.Fatalf("DecodeAccessToken: %v", err)
		}
		c := *claims
		if tok.Header["alg"] != "RS256" || c["typ"] != "Bearer" || c["iss"] != issuer || c["sub"] != "bob" || c["azp"] != "demo-app" {
			t.Fatalf("header %v claims %v", tok.Header, c)
		}
		az, _ := json.Marshal(c["authorization"])
		if want := `{"permissions":[{"rsid":"` + doc + `","rsname":"alice-notes","scopes":["read"]}]}`; string(az) != want {
			t.Fatalf("authorization = %s, want %s", az, want)
		}
	})
	t.Run("RetrospectToken of the RPT", func(t *testing.T) {
		res, err := kc.RetrospectToken(ctx, rpt, "rs-api", "rs-api-secret", realm)
		if err != nil {
			t.Fatalf("RetrospectToken: %v", err)
		}
		if res.Active == nil || !*res.Active || res.Permissions == nil || len(*res.Permissions) != 1 {
			t.Fatalf("introspection %+v", res)
		}
		p := (*res.Permissions)[0]
		if p.ResourceID == nil || *p.ResourceID != doc || p.ResourceScopes == nil || !slices.Equal(*p.ResourceScopes, []string{"read"}) {
			t.Fatalf("permission %+v", p)
		}
		if res, err := kc.RetrospectToken(ctx, "not-a-token", "rs-api", "rs-api-secret", realm); err != nil || res.Active == nil || *res.Active {
			t.Fatalf("a bad token: %v %+v", err, res)
		}
	})
	t.Run("GetRequestingPartyToken without a ticket", func(t *testing.T) {
		tok, err := kc.GetRequestingPartyToken(ctx, bob, realm, gocloak.RequestingPartyTokenOptions{Audience: gocloak.StringP("rs-api"), Permissions: permissions(doc + "#read")})
		if err != nil || tok.AccessToken == "" {
			t.Fatalf("GetRequestingPartyToken: %v", err)
		}
		_, err = kc.GetRequestingPartyToken(ctx, bob, realm, gocloak.RequestingPartyTokenOptions{Audience: gocloak.StringP("rs-api"), Permissions: permissions(doc + "#write")})
		expectAPIError(t, err, 403, "not_authorized")
		// An upgrade of the first RPT, and a previous RPT that is not ours.
		if _, err := kc.GetRequestingPartyToken(ctx, bob, realm, gocloak.RequestingPartyTokenOptions{Audience: gocloak.StringP("rs-api"), Permissions: permissions(doc + "#read"), RPT: gocloak.StringP(rpt)}); err != nil {
			t.Fatalf("with rpt: %v", err)
		}
		_, err = kc.GetRequestingPartyToken(ctx, bob, realm, gocloak.RequestingPartyTokenOptions{Audience: gocloak.StringP("rs-api"), Permissions: permissions(doc + "#read"), RPT: gocloak.StringP(bob)})
		expectAPIError(t, err, 403, "invalid_rpt")
	})
	t.Run("GetRequestingPartyPermissions", func(t *testing.T) {
		perms, err := kc.GetRequestingPartyPermissions(ctx, bob, realm, gocloak.RequestingPartyTokenOptions{Audience: gocloak.StringP("rs-api"), Permissions: permissions(doc+"#read", doc+"#write")})
		if err != nil {
			t.Fatalf("GetRequestingPartyPermissions: %v", err)
		}
		if len(*perms) != 1 || *(*perms)[0].ResourceID != doc || *(*perms)[0].ResourceName != "alice-notes" || !slices.Equal(*(*perms)[0].Scopes, []string{"read"}) {
			t.Fatalf("permissions %+v", *perms)
		}
		_, err = kc.GetRequestingPartyPermissions(ctx, bob, realm, gocloak.RequestingPartyTokenOptions{Audience: gocloak.StringP("rs-api"), Permissions: permissions(doc + "#write")})
		expectAPIError(t, err, 403, "not_authorized")
	})
	t.Run("GetRequestingPartyPermissionDecision", func(t *testing.T) {
		d, err := kc.GetRequestingPartyPermissionDecision(ctx, bob, realm, gocloak.RequestingPartyTokenOptions{Audience: gocloak.StringP("rs-api"), Permissions: permissions(doc + "#read")})
		if err != nil || d.Result == nil || !*d.Result {
			t.Fatalf("GetRequestingPartyPermissionDecision: %v %+v", err, d)
		}
		_, err = kc.GetRequestingPartyPermissionDecision(ctx, bob, realm, gocloak.RequestingPartyTokenOptions{Audience: gocloak.StringP("rs-api"), Permissions: permissions(doc + "#write")})
		expectAPIError(t, err, 403, "not_authorized")
	})
	t.Run("uma_protect's challenge, then its ticket through gocloak", func(t *testing.T) {
		challenge := callAPI(t, api+"/docs/alice/report", "")
		if challenge.StatusCode != 401 {
			t.Fatalf("without a token: %d", challenge.StatusCode)
		}
		tok, err := kc.GetRequestingPartyToken(ctx, bob, realm, gocloak.RequestingPartyTokenOptions{Ticket: gocloak.StringP(ticketOf(t, challenge, issuer))})
		if err != nil {
			t.Fatalf("GetRequestingPartyToken: %v", err)
		}
		if r := callAPI(t, api+"/docs/alice/report", tok.AccessToken); r.StatusCode != 200 {
			t.Fatalf("uma_protect refuses the Keycloak-layout RPT: %d", r.StatusCode)
		}
		req, _ := http.NewRequest(http.MethodPost, api+"/docs/alice/report", nil)
		req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
		resp, err := httpClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 401 {
			t.Fatalf("writing with a read RPT: %d", resp.StatusCode)
		}
		// A new ticket, for write, which bob's request is refused.
		_, err = kc.GetRequestingPartyToken(ctx, bob, realm, gocloak.RequestingPartyTokenOptions{Ticket: gocloak.StringP(ticketOf(t, resp, issuer))})
		expectAPIError(t, err, 403, "access_denied")
	})
	t.Run("bad user tokens are 401 invalid_grant", func(t *testing.T) {
		forged := bob[:len(bob)-4] + strings.Repeat("A", 4)
		for name, tok := range map[string]string{
			"forged":               forged,
			"not a JWT":            "opaque",
			"another audience":     demoIDTokenFor(t, server, "bob", "bob@example.org", "rs-api"),
			"an unknown client":    demoIDTokenFor(t, server, "bob", "bob@example.org", "stranger"),
			"a PAT is no identity": pat.AccessToken,
		} {
			_, err := kc.GetRequestingPartyToken(ctx, tok, realm, gocloak.RequestingPartyTokenOptions{Audience: gocloak.StringP("rs-api"), Permissions: permissions(doc + "#read")})
			var apiErr *gocloak.APIError
			if !errors.As(err, &apiErr) || apiErr.Code != 401 || !strings.Contains(apiErr.Message, "invalid_grant") {
				t.Errorf("%s: %v", name, err)
			}
		}
	})
}

// expectAPIError checks that a gocloak call failed with status and an
// answer that mentions want.
func expectAPIError(t *testing.T, err error, status int, want string) {
	t.Helper()
	var apiErr *gocloak.APIError
	if !errors.As(err, &apiErr) || apiErr.Code != status || !strings.Contains(apiErr.Message, want) {
		t.Fatalf("error %v, want %d %s", err, status, want)
	}
}

// demoIDToken mints an ID token of the demo provider for demo-app.
func demoIDToken(t *testing.T, server, sub, email string) string {
	t.Helper()
	return demoIDTokenFor(t, server, sub, email, "demo-app")
}

// demoIDTokenFor mints an ID token of the demo provider for aud.
func demoIDTokenFor(t *testing.T, server, sub, email, aud string) string {
	t.Helper()
	resp, err := httpClient.PostForm(server+"/idp/id_token", url.Values{"sub": {sub}, "email": {email}, "aud": {aud}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out struct {
		IDToken string `json:"id_token"`
	}
	if resp.StatusCode != 200 || json.Unmarshal(b, &out) != nil || out.IDToken == "" {
		t.Fatalf("id_token: %d %s", resp.StatusCode, b)
	}
	return out.IDToken
}
