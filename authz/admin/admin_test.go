package admin_test

import (
	"bytes"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddy-uma/caddy-uma/authz"
	"github.com/caddy-uma/caddy-uma/authz/admin"
	"github.com/caddy-uma/caddy-uma/authz/authztest"
	"github.com/caddy-uma/caddy-uma/store/dump"
)

// adminFixture is a grant fixture with the operator's API mounted at
// /admin on its HTTP server.
type adminFixture struct {
	*authztest.GrantFixture
}

func newAdminFixture(t *testing.T, mod func(*authz.Config)) adminFixture {
	t.Helper()
	f := authztest.NewGrantFixture(t, mod)
	f.Mux.Handle("/admin/", admin.New(f.Server, f.Store, nil).Handler("/admin"))
	return adminFixture{f}
}

// admin sends a request to the operator's API.
func (f adminFixture) admin(method, path string, body any) authztest.Response {
	f.T.Helper()
	return f.Do(method, f.HTTP.URL+"/admin"+path, body)
}

// grantRPT obtains an RPT (and a refresh token) for bob, of alice's family,
// as client app.
func (f adminFixture) grantRPT() (rpt, refresh string) {
	f.T.Helper()
	r := f.Grant(authztest.WithClaims(f.LabsTicket("read"), f.IDToken(map[string]any{"sub": "bob", "groups": []string{"family"}})))
	if r.Status != 200 {
		f.T.Fatalf("grant: %d %s", r.Status, r.Body)
	}
	m := r.JSON(f.T)
	return m["access_token"].(string), m["refresh_token"].(string)
}

func (f adminFixture) introspectActive(tok string) bool {
	f.T.Helper()
	r := f.Do("POST", authz.PathIntrospect, url.Values{"token": {tok}}, "Authorization", authztest.Bearer(f.AlicePAT))
	return r.JSON(f.T)["active"] == true
}

// TestAdminTokens lists and revokes the tokens of a subject and of a
// client through the operator's API: the RPT, the refresh token and the
// PCT of a grant, and a resource server's PAT; revoked tokens are no
// longer active, and a filter is required.
func TestAdminTokens(t *testing.T) {
	f := newAdminFixture(t, nil)
	rpt, refresh := f.grantRPT()
	pat := f.PAT("rs-b", "secret-b")

	r := f.admin("GET", "/tokens?subject=bob", nil)
	if r.Status != 200 {
		t.Fatalf("list: %d %s", r.Status, r.Body)
	}
	var kinds []string
	for _, tok := range r.JSON(t)["tokens"].([]any) {
		m := tok.(map[string]any)
		if m["subject"] != "bob" || m["client_id"] != "app" || m["id"] == "" {
			t.Errorf("token %v", m)
		}
		kinds = append(kinds, m["kind"].(string))
	}
	slices.Sort(kinds)
	if !slices.Contains(kinds, authz.KindRPT) || !slices.Contains(kinds, "refresh_token") {
		t.Errorf("bob's tokens are %q, want an rpt and a refresh_token", kinds)
	}
	for _, secret := range []string{rpt, refresh, pat} {
		if bytes.Contains(r.Body, []byte(secret)) {
			t.Fatal("the token list shows a token")
		}
	}

	r = f.admin("DELETE", "/tokens?subject=bob&client_id=app", nil)
	if r.Status != 200 || len(r.JSON(t)["revoked"].([]any)) != len(kinds) {
		t.Fatalf("revoke: %d %s", r.Status, r.Body)
	}
	if f.introspectActive(rpt) {
		t.Error("the revoked RPT is still active")
	}
	refreshed := f.Do("POST", authz.PathToken, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh}},
		"Authorization", authztest.BasicAuth("app", authztest.AppSecret))
	authztest.ExpectError(t, refreshed, 400, "invalid_grant")
	if r := f.admin("GET", "/tokens?subject=bob", nil); len(r.JSON(t)["tokens"].([]any)) != 0 {
		t.Errorf("bob still has tokens: %s", r.Body)
	}

	// A client's PAT.
	if r := f.Do("GET", authz.PathResourceSet, nil, "Authorization", authztest.Bearer(pat)); r.Status != 200 {
		t.Fatalf("rs-b's PAT does not work: %d %s", r.Status, r.Body)
	}
	if r := f.admin("DELETE", "/tokens?client_id=rs-b", nil); r.Status != 200 || len(r.JSON(t)["revoked"].([]any)) != 1 {
		t.Fatalf("revoke rs-b: %d %s", r.Status, r.Body)
	}
	r = f.Do("GET", authz.PathResourceSet, nil, "Authorization", authztest.Bearer(pat))
	authztest.ExpectError(t, r, 401, "invalid_token")

	for _, q := range []string{"", "?subject=", "?owner=alice", "?client_id=app&x=1"} {
		for _, m := range []string{"GET", "DELETE"} {
			authztest.ExpectError(t, f.admin(m, "/tokens"+q, nil), 400, "invalid_request")
		}
	}
}

// TestAdminClients lists, registers and removes clients through the
// operator's API: the registered client gets tokens with its secret until
// it is removed, and configured clients cannot be removed.
func TestAdminClients(t *testing.T) {
	f := newAdminFixture(t, nil)
	r := f.admin("POST", "/clients", `{"client_name":"partner","redirect_uris":["https://partner.example/cb"],"scope":"read"}`)
	if r.Status != 201 {
		t.Fatalf("add: %d %s", r.Status, r.Body)
	}
	added := r.JSON(t)
	id, secret := added["client_id"].(string), added["client_secret"].(string)
	if !strings.HasPrefix(id, "dyn-") || secret == "" || added["dynamic"] != true {
		t.Fatalf("added %v", added)
	}

	r = f.admin("GET", "/clients", nil)
	var ids []string
	for _, c := range r.JSON(t)["clients"].([]any) {
		m := c.(map[string]any)
		if _, has := m["client_secret"]; has {
			t.Errorf("the list shows a secret: %v", m)
		}
		ids = append(ids, m["client_id"].(string))
	}
	if !slices.IsSorted(ids) || !slices.Contains(ids, id) || !slices.Contains(ids, "rs-a") {
		t.Errorf("clients %q", ids)
	}

	// The client works: a grant with its secret (here refused for want of
	// a share, which is an answer of the grant, not of client
	// authentication).
	tk := f.LabsTicket("read")
	g := f.Do("POST", authz.PathToken, url.Values{"grant_type": {authz.GrantTypeUMATicket}, "ticket": {tk}},
		"Authorization", authztest.BasicAuth(id, secret))
	if g.Status == 401 {
		t.Fatalf("the registered client is not authenticated: %s", g.Body)
	}

	if r := f.admin("DELETE", "/clients/"+id, nil); r.Status != 200 {
		t.Fatalf("remove: %d %s", r.Status, r.Body)
	}
	g = f.Do("POST", authz.PathToken, url.Values{"grant_type": {authz.GrantTypeUMATicket}, "ticket": {f.LabsTicket("read")}},
		"Authorization", authztest.BasicAuth(id, secret))
	authztest.ExpectError(t, g, 401, "invalid_client")

	authztest.ExpectError(t, f.admin("DELETE", "/clients/"+id, nil), 404, "not_found")
	authztest.ExpectError(t, f.admin("DELETE", "/clients/rs-a", nil), 400, "invalid_request")
	authztest.ExpectError(t, f.admin("POST", "/clients", `{"redirect_uris":["http://partner.example/cb"]}`), 400, "invalid_redirect_uri")
	authztest.ExpectError(t, f.admin("POST", "/clients", `{"grant_types":["client_credentials"]}`), 400, "invalid_client_metadata")
	authztest.ExpectError(t, f.admin("POST", "/clients", `{`), 400, "invalid_request")
}

// TestAdminKeys rotates the signing key through the operator's API: a new
// current key signs new RPTs, and the old one stays published, so that an
// RPT it signed still verifies.
func TestAdminKeys(t *testing.T) {
	f := newAdminFixture(t, nil)
	old, _ := f.grantRPT()
	r := f.admin("GET", "/keys", nil)
	keys := r.JSON(t)["keys"].([]any)
	if len(keys) != 1 || keys[0].(map[string]any)["current"] != true {
		t.Fatalf("keys %s", r.Body)
	}
	oldKid := keys[0].(map[string]any)["kid"]

	r = f.admin("POST", "/keys/rotate", nil)
	if r.Status != 200 {
		t.Fatalf("rotate: %d %s", r.Status, r.Body)
	}
	keys = r.JSON(t)["keys"].([]any)
	if len(keys) != 2 || keys[0].(map[string]any)["kid"] == oldKid || keys[0].(map[string]any)["current"] != true ||
		keys[1].(map[string]any)["kid"] != oldKid || keys[1].(map[string]any)["current"] != false {
		t.Fatalf("after rotation %s", r.Body)
	}
	jwks := f.Do("GET", authz.PathJWKS, nil)
	if !bytes.Contains(jwks.Body, []byte(oldKid.(string))) || !bytes.Contains(jwks.Body, []byte(keys[0].(map[string]any)["kid"].(string))) {
		t.Errorf("JWKS %s", jwks.Body)
	}
	if !f.introspectActive(old) {
		t.Error("an RPT signed by the retired key no longer verifies")
	}
	fresh, _ := f.grantRPT()
	rec, err := f.Server.VerifyRPT(t.Context(), fresh, "rs-a")
	if err != nil || rec == nil {
		t.Fatalf("a new RPT does not verify: %v", err)
	}
}

// TestAdminPolicies shows the operator directory's problems and reloads
// it on demand through the operator's API.
func TestAdminPolicies(t *testing.T) {
	dir := t.TempDir()
	carol := filepath.Join(dir, "carol")
	if err := os.Mkdir(carol, 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(src string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(carol, "diary.rego"), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("package uma.share\n\nallow contains \"read\" if input.claims.email == \"dan@example.com\"\n")
	f := newAdminFixture(t, func(c *authz.Config) {
		c.PolicyDir = dir
		c.PolicyPollInterval = time.Hour // only Reload reads it again
	})
	r := f.admin("GET", "/policies", nil)
	if r.Status != 200 || len(r.JSON(t)["problems"].([]any)) != 0 || r.JSON(t)["directory"] != dir {
		t.Fatalf("status %d %s", r.Status, r.Body)
	}

	write("package uma.share\n\nallow contains \"read\" if {\n") // does not parse
	r = f.admin("POST", "/policies/reload", nil)
	if r.Status != 200 {
		t.Fatalf("reload: %d %s", r.Status, r.Body)
	}
	problems := r.JSON(t)["problems"].([]any)
	if len(problems) != 1 {
		t.Fatalf("problems after a broken file: %s", r.Body)
	}
	p := problems[0].(map[string]any)
	if p["owner"] != "carol" || !strings.Contains(string(r.Body), filepath.Join(carol, "diary.rego")) || !strings.Contains(string(r.Body), "rego_parse_error") {
		t.Errorf("problem %s", r.Body)
	}
	if r := f.admin("GET", "/policies", nil); len(r.JSON(t)["problems"].([]any)) != 1 {
		t.Errorf("status after the reload %s", r.Body)
	}

	write("package uma.share\n\nallow contains \"read\" if input.claims.email == \"erin@example.com\"\n")
	if r := f.admin("POST", "/policies/reload", nil); r.Status != 200 || len(r.JSON(t)["problems"].([]any)) != 0 {
		t.Errorf("reload after the fix: %d %s", r.Status, r.Body)
	}

	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	r = f.admin("POST", "/policies/reload", nil)
	authztest.ExpectError(t, r, 503, "temporarily_unavailable")
	if r.Header.Get("Retry-After") == "" {
		t.Error("no Retry-After")
	}
	if r := f.admin("GET", "/policies", nil); r.JSON(t)["directory_error"] == nil {
		t.Errorf("the status does not show the directory error: %s", r.Body)
	}

	noDir := newAdminFixture(t, nil)
	authztest.ExpectError(t, noDir.admin("POST", "/policies/reload", nil), 404, "not_found")
}

// TestAdminResourcesAndBackup lists an owner's resources and takes a
// backup through the operator's API: the dump is complete and holds them.
func TestAdminResourcesAndBackup(t *testing.T) {
	f := newAdminFixture(t, nil)
	r := f.admin("GET", "/resources?owner=alice", nil)
	var names []string
	for _, res := range r.JSON(t)["resources"].([]any) {
		names = append(names, res.(map[string]any)["name"].(string))
	}
	slices.Sort(names)
	if !slices.Equal(names, []string{"labs", "photos"}) {
		t.Errorf("alice's resources %q: %s", names, r.Body)
	}
	if r := f.admin("GET", "/resources?owner=nobody", nil); r.Status != 200 || string(r.Body) != `{"resources":[]}` {
		t.Errorf("nobody's resources: %d %s", r.Status, r.Body)
	}
	authztest.ExpectError(t, f.admin("GET", "/resources", nil), 400, "invalid_request")

	r = f.admin("GET", "/backup", nil)
	if r.Status != 200 || r.Header.Get("Content-Type") != "application/x-ndjson" {
		t.Fatalf("backup: %d %s", r.Status, r.Header)
	}
	_, n, err := dump.Check(bytes.NewReader(r.Body))
	if err != nil {
		t.Fatal(err)
	}
	if n.Resources != 2 || n.Records == 0 {
		t.Errorf("the dump counts %+v", n)
	}

	// The store gone: a server fault, 503 with Retry-After.
	f.Store.Close()
	for _, path := range []string{"/backup", "/resources?owner=alice", "/tokens?subject=bob", "/clients"} {
		r := f.admin("GET", path, nil)
		authztest.ExpectError(t, r, 503, "temporarily_unavailable")
		if r.Header.Get("Retry-After") == "" {
			t.Errorf("%s: no Retry-After", path)
		}
	}
}

// TestAdminMethods checks that every path of the operator's API refuses
// the methods it does not take with a 405 and Allow, and that other paths
// are 404s, all in OAuth error format.
func TestAdminMethods(t *testing.T) {
	f := newAdminFixture(t, nil)
	cases := []struct {
		method, path, allow string
	}{
		{"PUT", "/clients", "GET, HEAD, POST"},
		{"GET", "/clients/x", "DELETE"},
		{"POST", "/tokens?subject=bob", "GET, HEAD, DELETE"},
		{"DELETE", "/keys", "GET, HEAD"},
		{"GET", "/keys/rotate", "POST"},
		{"POST", "/policies", "GET, HEAD"},
		{"GET", "/policies/reload", "POST"},
		{"POST", "/resources?owner=alice", "GET, HEAD"},
		{"POST", "/backup", "GET, HEAD"},
	}
	for _, c := range cases {
		t.Run(c.method+" "+c.path, func(t *testing.T) {
			r := f.admin(c.method, c.path, nil)
			authztest.ExpectError(t, r, http.StatusMethodNotAllowed, "invalid_request")
			if got := r.Header.Get("Allow"); got != c.allow {
				t.Errorf("Allow = %q, want %q", got, c.allow)
			}
		})
	}
	for _, path := range []string{"/", "/nothing", "/keys/rotate/x", "/clients/a/b"} {
		authztest.ExpectError(t, f.admin("GET", path, nil), 404, "not_found")
	}
}
