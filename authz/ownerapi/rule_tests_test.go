package ownerapi_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddy-uma/caddy-uma/authz"
	"github.com/caddy-uma/caddy-uma/authz/authztest"
	"github.com/caddy-uma/caddy-uma/authz/ownerapi"
)

const aliceTests = `package uma.share_test

import data.uma.share

test_family_reads if "read" in share.allow with input as {"claims": {"groups": ["family"]}, "resource": {"scopes": ["read"]}, "scopes": ["read"]}

test_family_writes if "write" in share.allow with input as {"claims": {"groups": ["family"]}, "resource": {"scopes": ["write"]}, "scopes": ["write"]}
`

// TestOwnerRuleTests keeps Rego tests beside an owner's rules through the
// owner API: saved when they compile (failing or not), refused when they
// do not or leave the sandbox, never put in force, run by POST
// /owner/tests with a result per test, together with the tests kept in
// the operator directory.
func TestOwnerRuleTests(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "alice"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, src := range map[string]string{
		"extra.rego":      "package uma.share\n\nallow contains \"view\" if input.claims.email == \"gran@example.com\"\n",
		"extra_test.rego": "package uma.share_test\n\ntest_gran_views if \"view\" in data.uma.share.allow with input as {\"claims\": {\"email\": \"gran@example.com\"}}\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, "alice", name), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	f := authztest.NewGrantFixture(t, func(c *authz.Config) { c.PolicyDir = dir })
	pat := authztest.Bearer(f.AlicePAT)
	tests := func() authztest.Response { return f.Do("POST", ownerapi.PathTests, nil, "Authorization", pat) }

	if r := f.PutRule(f.AlicePAT, "main_test.rego", aliceTests); r.Status != 200 {
		t.Fatalf("saving a test: %d %s", r.Status, r.Body)
	}
	r := tests()
	if r.Status != 200 {
		t.Fatalf("tests: %d %s", r.Status, r.Body)
	}
	got := map[string]bool{}
	for _, res := range r.JSON(t)["results"].([]any) {
		m := res.(map[string]any)
		got[m["module"].(string)+" "+m["name"].(string)] = m["passed"].(bool)
	}
	want := map[string]bool{"main_test.rego test_family_reads": true, "main_test.rego test_family_writes": false, "dir/extra_test.rego test_gran_views": true}
	if len(got) != len(want) {
		t.Fatalf("results %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s passed = %v, want %v (%s)", k, got[k], v, r.Body)
		}
	}
	if m := r.JSON(t); m["passed"] != 2.0 || m["failed"] != 1.0 {
		t.Errorf("counts %s", r.Body)
	}

	// Refused: a test that leaves the sandbox, one posing as the rules, one
	// that does not parse; the saved tests stay as they were.
	for name, src := range map[string]string{
		"net_test.rego":  "package uma.share_test\n\ntest_out if http.send({\"method\": \"GET\", \"url\": \"http://127.0.0.1:1/\"})\n",
		"evil_test.rego": "package uma.share\n\nallow contains \"write\"\n",
		"bad_test.rego":  "package uma.share_test\n\ntest_x if {\n",
	} {
		r := f.PutRule(f.AlicePAT, name, src)
		authztest.ExpectError(t, r, 400, "invalid_request")
	}
	mods, err := f.Server.Rules(t.Context(), "alice")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"net_test.rego", "evil_test.rego", "bad_test.rego"} {
		if _, ok := mods[name]; ok {
			t.Errorf("the refused test %s was saved", name)
		}
	}
	if _, ok := mods["main_test.rego"]; !ok {
		t.Error("the owner's tests are not listed with the rules")
	}

	// A test is never in force: bob of the family still only reads.
	tk := f.LabsTicket("read", "write")
	g := f.Grant(authztest.WithClaims(tk, f.IDToken(map[string]any{"sub": "bob", "groups": []string{"family"}})))
	if g.Status != 200 {
		t.Fatalf("grant %d %s", g.Status, g.Body)
	}
	if perms := f.RPTPermissions(g.JSON(t)["access_token"].(string)); strings.Join(perms[f.Labs], " ") != "read" {
		t.Errorf("granted %v", perms)
	}

	if r := f.Do("DELETE", ownerapi.PathRules+"/main_test.rego", nil, "Authorization", pat); r.Status != 204 {
		t.Fatalf("deleting a test: %d %s", r.Status, r.Body)
	}
	if r := tests(); r.Status != 200 || len(r.JSON(t)["results"].([]any)) != 1 {
		t.Errorf("tests after the delete: %d %s", r.Status, r.Body)
	}

	// Without tests at all: 404; the route takes POST only.
	noTests := authztest.NewGrantFixture(t, nil)
	authztest.ExpectError(t, noTests.Do("POST", ownerapi.PathTests, nil, "Authorization", authztest.Bearer(noTests.AlicePAT)), 404, "not_found")
	authztest.ExpectError(t, noTests.Do("GET", ownerapi.PathTests, nil, "Authorization", authztest.Bearer(noTests.AlicePAT)), 405, "invalid_request")
	authztest.ExpectError(t, noTests.Do("POST", ownerapi.PathTests, nil), 401, "invalid_token")
}
