package integration

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"text/template"
	"time"

	"github.com/Nerzal/gocloak/v13"
)

// protectionKeycloakCaddyfile is the Keycloak interop fixture
// (keycloakGlobalOptions) with the AS and the demo provider on one site.
var protectionKeycloakCaddyfile = template.Must(template.New("Caddyfile").Parse(keycloakGlobalOptions + `
http://127.0.0.1:{{.Port}} {
	bind 127.0.0.1
	uma_demo_idp /idp/* http://127.0.0.1:{{.Port}}/idp
	uma_server
	respond "site" 200
}
`))

// protectionKeycloak is a running fixture with gocloak pointed at it.
type protectionKeycloak struct {
	t      *testing.T
	ctx    context.Context
	server string // gocloak's base path: the issuer without /realms/demo
	issuer string
	kc     *gocloak.GoCloak
	pat    string
}

func startProtectionKeycloak(t *testing.T) *protectionKeycloak {
	t.Helper()
	inst := startCaddyfile(t, protectionKeycloakCaddyfile, map[string]any{
		"AliceHash": hash(t, alicePassword), "BobHash": hash(t, bobPassword),
	})
	f := &protectionKeycloak{t: t, ctx: t.Context(), server: inst.cfg.issuer()}
	f.issuer = f.server + "/realms/demo"
	f.kc = gocloak.NewClient(f.server)
	return f
}

// idToken mints an ID token of the demo provider for demo-app.
func (f *protectionKeycloak) idToken(sub string) string {
	f.t.Helper()
	resp, err := http.PostForm(f.server+"/idp/id_token", url.Values{"sub": {sub}, "aud": {"demo-app"}, "email": {sub + "@example.org"}})
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		IDToken string `json:"id_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || out.IDToken == "" {
		f.t.Fatalf("id token: %d %v", resp.StatusCode, err)
	}
	return out.IDToken
}

// rptFor asks for a ticket with gocloak (CreatePermissionTicket) and runs
// the UMA grant for sub as demo-app, pushing sub's ID token as claim token
// on the standard token endpoint (the requesting party by bearer token is
// the token calls' test). It returns the RPT, or "" when refused.
func (f *protectionKeycloak) rptFor(sub, resource string, scopes ...string) string {
	f.t.Helper()
	tk, err := f.kc.CreatePermissionTicket(f.ctx, f.pat, "demo", []gocloak.CreatePermissionTicketParams{
		{ResourceID: &resource, ResourceScopes: &scopes},
	})
	if err != nil || tk.Ticket == nil || *tk.Ticket == "" {
		f.t.Fatalf("CreatePermissionTicket: %v", err)
	}
	form := url.Values{
		"grant_type": {"urn:ietf:params:oauth:grant-type:uma-ticket"}, "ticket": {*tk.Ticket},
		"claim_token": {f.idToken(sub)}, "claim_token_format": {"http://openid.net/specs/openid-connect-core-1_0.html#IDToken"},
	}
	var out struct {
		AccessToken string `json:"access_token"`
		Error       string `json:"error"`
	}
	var resp *http.Response
	// The demo provider's keys may not be fetched yet (Caddy starts the
	// AS before it serves the provider): 503 with Retry-After, the same
	// ticket again.
	for try := 0; ; try++ {
		req, _ := http.NewRequest("POST", f.issuer+"/token", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth("demo-app", "demo-app-secret")
		var err error
		if resp, err = http.DefaultClient.Do(req); err != nil {
			f.t.Fatal(err)
		}
		_ = json.NewDecoder(resp.Body).Decode(&out)
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable || try == 10 {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if resp.StatusCode != 200 {
		if resp.StatusCode != 403 || out.Error == "" {
			f.t.Fatalf("grant for %s: %d %s", sub, resp.StatusCode, out.Error)
		}
		return ""
	}
	return out.AccessToken
}

// expectAccess checks with RetrospectToken whether sub obtains an RPT for
// scopes on resource.
func (f *protectionKeycloak) expectAccess(sub, resource string, want bool, scopes ...string) {
	f.t.Helper()
	rpt := f.rptFor(sub, resource, scopes...)
	if (rpt != "") != want {
		f.t.Fatalf("%s on %s %v: granted %v, want %v", sub, resource, scopes, rpt != "", want)
	}
	if rpt == "" {
		return
	}
	res, err := f.kc.RetrospectToken(f.ctx, rpt, "rs-api", "rs-api-secret", "demo")
	if err != nil || res.Active == nil || !*res.Active || res.Permissions == nil || len(*res.Permissions) != 1 {
		f.t.Fatalf("RetrospectToken of the RPT: %+v %v", res, err)
	}
	p := (*res.Permissions)[0]
	if id := gocloak.PString(p.RSID) + gocloak.PString(p.ResourceID); !strings.Contains(id, resource) {
		f.t.Fatalf("RPT permission %+v, want resource %s", p, resource)
	}
}

// get is a plain GET on a Keycloak path with the PAT, for what gocloak
// cannot send or read; it decodes the answer into out.
func (f *protectionKeycloak) get(path string, out any) int {
	f.t.Helper()
	req, _ := http.NewRequest("GET", f.issuer+path, nil)
	req.Header.Set("Authorization", "Bearer "+f.pat)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == 200 {
		if err := json.Unmarshal(b, out); err != nil {
			f.t.Fatalf("GET %s: %v: %s", path, err, b)
		}
	}
	return resp.StatusCode
}

// apiCode is the HTTP status of a gocloak error.
func apiCode(err error) int {
	var e *gocloak.APIError
	if errors.As(err, &e) {
		return e.Code
	}
	return -1
}

func names(rs []*gocloak.ResourceRepresentation) []string {
	var out []string
	for _, r := range rs {
		out = append(out, gocloak.PString(r.Name))
	}
	slices.Sort(out)
	return out
}

// TestKeycloakGocloakProtection drives the protection API with gocloak
// v13, unchanged, against a real Caddy: PATs, resources (Keycloak's
// representation and list query), permission tickets, the owner's
// permission tickets, UMA policies and introspection.
func TestKeycloakGocloakProtection(t *testing.T) {
	skipShort(t)
	f := startProtectionKeycloak(t)
	ctx := f.ctx

	// The PAT: GetToken (through LoginClient) on Keycloak's token path.
	jwt, err := f.kc.LoginClient(ctx, "rs-api", "rs-api-secret", "demo")
	if err != nil || jwt.AccessToken == "" {
		t.Fatalf("LoginClient: %v", err)
	}
	f.pat = jwt.AccessToken
	if _, err := f.kc.GetToken(ctx, "demo", gocloak.TokenOptions{ClientID: gocloak.StringP("rs-api"), ClientSecret: gocloak.StringP("wrong"),
		GrantType: gocloak.StringP("client_credentials")}); apiCode(err) != 401 {
		t.Fatalf("GetToken with a wrong secret: %v", err)
	}
	intro, err := f.kc.RetrospectToken(ctx, f.pat, "rs-api", "rs-api-secret", "demo")
	if err != nil || intro.Active == nil || !*intro.Active {
		t.Fatalf("RetrospectToken of the PAT: %+v %v", intro, err)
	}

	// Resources, in Keycloak's representation.
	album, err := f.kc.CreateResourceClient(ctx, f.pat, "demo", gocloak.ResourceRepresentation{
		Name: gocloak.StringP("Alice's album"), DisplayName: gocloak.StringP("Summer 2026"), Type: gocloak.StringP("urn:photos:album"),
		URIs:           &[]string{"/albums/alice/*"},
		ResourceScopes: &[]gocloak.ScopeRepresentation{{Name: gocloak.StringP("view")}, {Name: gocloak.StringP("edit")}},
		Owner:          &gocloak.ResourceOwnerRepresentation{Name: gocloak.StringP("alice")}, OwnerManagedAccess: gocloak.BoolP(true),
	})
	if err != nil {
		t.Fatalf("CreateResourceClient: %v", err)
	}
	albumID := gocloak.PString(album.ID)
	if albumID == "" || gocloak.PString(album.Owner.ID) != "alice" || !gocloak.PBool(album.OwnerManagedAccess) || len(*album.ResourceScopes) != 2 ||
		gocloak.PString((*album.ResourceScopes)[0].Name) != "view" || gocloak.PString(album.DisplayName) != "Summer 2026" {
		t.Fatalf("created: %+v", album)
	}
	notes, err := f.kc.CreateResourceClient(ctx, f.pat, "demo", gocloak.ResourceRepresentation{
		Name: gocloak.StringP("Alice's notes"), URIs: &[]string{"/notes/alice/{note}"},
		ResourceScopes: &[]gocloak.ScopeRepresentation{{Name: gocloak.StringP("read")}}, Owner: &gocloak.ResourceOwnerRepresentation{ID: gocloak.StringP("alice")},
	})
	if err != nil {
		t.Fatalf("CreateResourceClient: %v", err)
	}
	if _, err := f.kc.CreateResourceClient(ctx, f.pat, "demo", gocloak.ResourceRepresentation{
		Name: gocloak.StringP("Bob's ALBUM"), Type: gocloak.StringP("urn:photos:album"),
		ResourceScopes: &[]gocloak.ScopeRepresentation{{Name: gocloak.StringP("view")}}, Owner: &gocloak.ResourceOwnerRepresentation{ID: gocloak.StringP("bob")},
	}); err != nil {
		t.Fatalf("CreateResourceClient: %v", err)
	}
	if _, err := f.kc.CreateResourceClient(ctx, f.pat, "demo", gocloak.ResourceRepresentation{
		Name: gocloak.StringP("bad"), ResourceScopes: &[]gocloak.ScopeRepresentation{{Name: gocloak.StringP("has space")}},
	}); apiCode(err) != 400 {
		t.Fatalf("CreateResourceClient with a bad scope: %v", err)
	}

	got, err := f.kc.GetResourceClient(ctx, f.pat, "demo", albumID)
	if err != nil || gocloak.PString(got.Name) != "Alice's album" || gocloak.PString(got.Owner.Name) != "alice" || len(*got.ResourceScopes) != 2 ||
		!slices.Equal(*got.URIs, []string{"/albums/alice/*"}) || gocloak.PString(got.Type) != "urn:photos:album" {
		t.Fatalf("GetResourceClient: %+v %v", got, err)
	}
	if _, err := f.kc.GetResourceClient(ctx, f.pat, "demo", "no-such-resource"); apiCode(err) != 404 {
		t.Fatalf("GetResourceClient of nothing: %v", err)
	}

	// Keycloak's list query.
	queries := []struct {
		name   string
		params gocloak.GetResourceParams
		want   []string
	}{
		{"all", gocloak.GetResourceParams{}, []string{"Alice's album", "Alice's notes", "Bob's ALBUM"}},
		{"name: a case-insensitive substring", gocloak.GetResourceParams{Name: gocloak.StringP("album")}, []string{"Alice's album", "Bob's ALBUM"}},
		{"exactName", gocloak.GetResourceParams{Name: gocloak.StringP("Alice's album"), ExactName: gocloak.BoolP(true)}, []string{"Alice's album"}},
		{"matchingUri", gocloak.GetResourceParams{URI: gocloak.StringP("/albums/alice/summer"), MatchingURI: gocloak.BoolP(true)}, []string{"Alice's album"}},
		{"matchingUri {var}", gocloak.GetResourceParams{URI: gocloak.StringP("/notes/alice/1"), MatchingURI: gocloak.BoolP(true)}, []string{"Alice's notes"}},
		{"uri exactly", gocloak.GetResourceParams{URI: gocloak.StringP("/notes/alice/{note}")}, []string{"Alice's notes"}},
		{"owner", gocloak.GetResourceParams{Owner: gocloak.StringP("bob")}, []string{"Bob's ALBUM"}},
		{"type", gocloak.GetResourceParams{Type: gocloak.StringP("urn:photos:album")}, []string{"Alice's album", "Bob's ALBUM"}},
		{"scope", gocloak.GetResourceParams{Scope: gocloak.StringP("read")}, []string{"Alice's notes"}},
		{"nothing", gocloak.GetResourceParams{Name: gocloak.StringP("tax")}, nil},
	}
	for _, q := range queries {
		rs, err := f.kc.GetResourcesClient(ctx, f.pat, "demo", q.params)
		if err != nil || !slices.Equal(names(rs), q.want) {
			t.Errorf("GetResourcesClient %s: %q %v, want %q", q.name, names(rs), err, q.want)
		}
	}
	if rs, err := f.kc.GetResourcesClient(ctx, f.pat, "demo", gocloak.GetResourceParams{Max: gocloak.IntP(1)}); err != nil || len(rs) != 1 {
		t.Errorf("GetResourcesClient max=1: %d %v", len(rs), err)
	}
	if rs, err := f.kc.GetResourcesClient(ctx, f.pat, "demo", gocloak.GetResourceParams{First: gocloak.IntP(1), Max: gocloak.IntP(5)}); err != nil || len(rs) != 2 {
		t.Errorf("GetResourcesClient first=1: %d %v", len(rs), err)
	}
	// deep=true: Keycloak answers representations, which gocloak's
	// GetResourcesClient cannot read (it decodes ids, whatever deep says:
	// a gocloak bug, as against Keycloak), so a plain GET reads them into
	// gocloak's own model.
	if _, err := f.kc.GetResourcesClient(ctx, f.pat, "demo", gocloak.GetResourceParams{Deep: gocloak.BoolP(true)}); err == nil {
		t.Log("gocloak read a deep answer: its bug is fixed")
	}
	var deep []gocloak.ResourceRepresentation
	if code := f.get("/authz/protection/resource_set?deep=true&name=notes", &deep); code != 200 || len(deep) != 1 ||
		gocloak.PString(deep[0].ID) != gocloak.PString(notes.ID) || gocloak.PString(deep[0].Owner.ID) != "alice" ||
		len(*deep[0].ResourceScopes) != 1 || gocloak.PString((*deep[0].Scopes)[0].Name) != "read" {
		t.Fatalf("deep: %d %+v", code, deep)
	}

	// Update and delete.
	got.DisplayName = gocloak.StringP("Summer and autumn")
	*got.ResourceScopes = append(*got.ResourceScopes, gocloak.ScopeRepresentation{Name: gocloak.StringP("share")})
	if err := f.kc.UpdateResourceClient(ctx, f.pat, "demo", *got); err != nil {
		t.Fatalf("UpdateResourceClient: %v", err)
	}
	if got, err = f.kc.GetResourceClient(ctx, f.pat, "demo", albumID); err != nil || gocloak.PString(got.DisplayName) != "Summer and autumn" || len(*got.ResourceScopes) != 3 {
		t.Fatalf("after UpdateResourceClient: %+v %v", got, err)
	}
	if err := f.kc.DeleteResourceClient(ctx, f.pat, "demo", gocloak.PString(notes.ID)); err != nil {
		t.Fatalf("DeleteResourceClient: %v", err)
	}
	if _, err := f.kc.GetResourceClient(ctx, f.pat, "demo", gocloak.PString(notes.ID)); apiCode(err) != 404 {
		t.Fatalf("GetResourceClient after delete: %v", err)
	}
	if err := f.kc.DeleteResourceClient(ctx, f.pat, "demo", gocloak.PString(notes.ID)); apiCode(err) != 404 {
		t.Fatalf("DeleteResourceClient twice: %v", err)
	}

	// Permission tickets: an array with claims.
	claims := map[string][]string{"organization": {"acme"}}
	tk, err := f.kc.CreatePermissionTicket(ctx, f.pat, "demo", []gocloak.CreatePermissionTicketParams{
		{ResourceID: &albumID, ResourceScopes: &[]string{"view"}, Claims: &claims},
	})
	if err != nil || gocloak.PString(tk.Ticket) == "" {
		t.Fatalf("CreatePermissionTicket: %v", err)
	}
	if _, err := f.kc.CreatePermissionTicket(ctx, f.pat, "demo", []gocloak.CreatePermissionTicketParams{
		{ResourceID: gocloak.StringP("no-such-resource"), ResourceScopes: &[]string{"view"}},
	}); apiCode(err) != 400 {
		t.Fatalf("CreatePermissionTicket for nothing: %v", err)
	}

	// The owner's permission tickets: a grant is a share for bob.
	f.expectAccess("bob", albumID, false, "view")
	grant, err := f.kc.GrantUserPermission(ctx, f.pat, "demo", gocloak.PermissionGrantParams{
		ResourceID: &albumID, RequesterID: gocloak.StringP("bob"), ScopeName: gocloak.StringP("view"),
	})
	if err != nil || gocloak.PString(grant.ID) == "" || !gocloak.PBool(grant.Granted) || gocloak.PString(grant.Owner) != "alice" || gocloak.PString(grant.RequesterID) != "bob" {
		t.Fatalf("GrantUserPermission: %+v %v", grant, err)
	}
	f.expectAccess("bob", albumID, true, "view")
	perms, err := f.kc.GetUserPermissions(ctx, f.pat, "demo", gocloak.GetUserPermissionParams{ResourceID: &albumID, Requester: gocloak.StringP("bob")})
	if err != nil || len(perms) != 1 || gocloak.PString(perms[0].ID) != gocloak.PString(grant.ID) || gocloak.PString(perms[0].Scope) != "view" {
		t.Fatalf("GetUserPermissions: %+v %v", perms, err)
	}
	// granted=: gocloak cannot send it (its GetQueryParams turns the
	// *bool into a JSON boolean and fails to read it back as a string: a
	// gocloak bug, whatever the server), so a plain GET sends it.
	if _, err := f.kc.GetUserPermissions(ctx, f.pat, "demo", gocloak.GetUserPermissionParams{Granted: gocloak.BoolP(true)}); err == nil {
		t.Log("gocloak sent granted=: its bug is fixed")
	}
	var granted []gocloak.PermissionGrantResponseRepresentation
	if code := f.get("/authz/protection/permission/ticket?granted=true&returnNames=true", &granted); code != 200 || len(granted) != 1 {
		t.Fatalf("tickets granted=true: %d %+v", code, granted)
	}
	// UpdateUserPermission (PUT .../permission/ticket): granted=false
	// takes the permission back (gocloak's UpdatePermission is the admin
	// API's, not the protection API's).
	if _, err := f.kc.UpdateUserPermission(ctx, f.pat, "demo", gocloak.PermissionGrantParams{
		TicketID: grant.ID, ResourceID: &albumID, RequesterID: gocloak.StringP("bob"), ScopeName: gocloak.StringP("view"), Granted: gocloak.BoolP(false),
	}); err != nil {
		t.Fatalf("UpdateUserPermission: %v", err)
	}
	f.expectAccess("bob", albumID, false, "view")
	grant, err = f.kc.GrantUserPermission(ctx, f.pat, "demo", gocloak.PermissionGrantParams{
		ResourceID: &albumID, RequesterID: gocloak.StringP("bob"), ScopeName: gocloak.StringP("edit"),
	})
	if err != nil {
		t.Fatalf("GrantUserPermission: %v", err)
	}
	f.expectAccess("bob", albumID, true, "edit")
	if err := f.kc.DeleteUserPermission(ctx, f.pat, "demo", gocloak.PString(grant.ID)); err != nil {
		t.Fatalf("DeleteUserPermission: %v", err)
	}
	f.expectAccess("bob", albumID, false, "edit")
	if perms, err := f.kc.GetUserPermissions(ctx, f.pat, "demo", gocloak.GetUserPermissionParams{ResourceID: &albumID}); err != nil || len(perms) != 0 {
		t.Fatalf("GetUserPermissions after delete: %+v %v", perms, err)
	}
	if err := f.kc.DeleteUserPermission(ctx, f.pat, "demo", gocloak.PString(grant.ID)); apiCode(err) != 404 {
		t.Fatalf("DeleteUserPermission twice: %v", err)
	}

	// UMA policies: the resource server sets one for alice.
	policy, err := f.kc.CreateResourcePolicy(ctx, f.pat, "demo", albumID, gocloak.ResourcePolicyRepresentation{
		Name: gocloak.StringP("Bob may look"), Description: gocloak.StringP("for the holidays"), Scopes: &[]string{"view"}, Users: &[]string{"bob"},
	})
	if err != nil || gocloak.PString(policy.ID) == "" || gocloak.PString(policy.Owner) != "alice" || gocloak.PString(policy.Type) != "uma" {
		t.Fatalf("CreateResourcePolicy: %+v %v", policy, err)
	}
	f.expectAccess("bob", albumID, true, "view")
	policies, err := f.kc.GetResourcePolicies(ctx, f.pat, "demo", gocloak.GetResourcePoliciesParams{ResourceID: &albumID, Name: gocloak.StringP("look")})
	if err != nil || len(policies) != 1 || gocloak.PString(policies[0].ID) != gocloak.PString(policy.ID) {
		t.Fatalf("GetResourcePolicies: %+v %v", policies, err)
	}
	if one, err := f.kc.GetResourcePolicy(ctx, f.pat, "demo", gocloak.PString(policy.ID)); err != nil || gocloak.PString(one.Name) != "Bob may look" {
		t.Fatalf("GetResourcePolicy: %+v %v", one, err)
	}
	if err := f.kc.UpdateResourcePolicy(ctx, f.pat, "demo", gocloak.PString(policy.ID), gocloak.ResourcePolicyRepresentation{
		Name: gocloak.StringP("Bob may edit"), Scopes: &[]string{"edit"}, Users: &[]string{"bob"},
	}); err != nil {
		t.Fatalf("UpdateResourcePolicy: %v", err)
	}
	f.expectAccess("bob", albumID, false, "view")
	f.expectAccess("bob", albumID, true, "edit")
	if _, err := f.kc.CreateResourcePolicy(ctx, f.pat, "demo", albumID, gocloak.ResourcePolicyRepresentation{
		Name: gocloak.StringP("admins"), Roles: &[]string{"admin"},
	}); apiCode(err) != 400 {
		t.Fatalf("CreateResourcePolicy with roles: %v", err)
	}
	if err := f.kc.DeleteResourcePolicy(ctx, f.pat, "demo", gocloak.PString(policy.ID)); err != nil {
		t.Fatalf("DeleteResourcePolicy: %v", err)
	}
	f.expectAccess("bob", albumID, false, "edit")
	if policies, err := f.kc.GetResourcePolicies(ctx, f.pat, "demo", gocloak.GetResourcePoliciesParams{}); err != nil || len(policies) != 0 {
		t.Fatalf("GetResourcePolicies after delete: %+v %v", policies, err)
	}

	// Discovery names the policy endpoint.
	var meta map[string]any
	if code := f.get("/.well-known/uma2-configuration", &meta); code != 200 || meta["policy_endpoint"] != f.issuer+"/authz/protection/uma-policy" {
		t.Fatalf("discovery: %d %v", code, meta["policy_endpoint"])
	}
}
