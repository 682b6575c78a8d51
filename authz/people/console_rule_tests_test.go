package people_test

import (
	"net/url"
	"strings"
	"testing"

	"github.com/caddy-uma/caddy-uma/authz"
	"github.com/caddy-uma/caddy-uma/authz/authztest"
)

// TestConsoleRuleTests saves Rego tests in the console's rule editor: a
// test module that compiles is saved and the page shows each test passed
// or failed; one that leaves the sandbox is refused at its line; one
// without test rules is shown as such.
func TestConsoleRuleTests(t *testing.T) {
	f := newFixture(t, nil)
	alice := f.Browser()
	token := alice.Login("alice", authztest.AlicePassword)
	if page := alice.Get(authz.PathConsole + "/rules"); strings.Contains(string(page.Body), `id="tests"`) {
		t.Fatal("the page shows tests before there are any")
	}

	tests := `package uma.share_test

import data.uma.share

test_family_reads if "read" in share.allow with input as {"claims": {"groups": ["family"]}, "resource": {"scopes": ["read"]}, "scopes": ["read"]}

test_strangers_read if "read" in share.allow with input as {"claims": {}, "resource": {"scopes": ["read"]}, "scopes": ["read"]}
`
	r := alice.Post(authz.PathConsole+"/rules", url.Values{"csrf": {token}, "name": {"main_test.rego"}, "source": {tests}})
	l := authztest.Location(t, r)
	if l.Query().Get("done") != "saved" {
		t.Fatalf("save: %s", l)
	}
	authztest.ExpectPage(t, alice.Get(l.RequestURI()), 200, `id="tests"`, "1 passed, 1 failed",
		`class="good">PASS <code>test_family_reads</code>`, `class="bad">FAIL <code>test_strangers_read</code>`, "main_test.rego, line 7")
	authztest.ExpectPage(t, alice.Get(authz.PathConsole+"/rules"), 200, "1 passed, 1 failed")

	// A test that reaches the network does not compile, and is not saved.
	escape := "package uma.share_test\n\ntest_out if http.send({\"method\": \"GET\", \"url\": \"http://127.0.0.1:1/\"})\n"
	r = alice.Post(authz.PathConsole+"/rules", url.Values{"csrf": {token}, "name": {"net_test.rego"}, "source": {escape}})
	authztest.ExpectPage(t, r, 400, "do not compile", "http.send is not allowed", "Line 3")
	if mods, _ := f.Server.Rules(t.Context(), "alice"); mods["net_test.rego"] != "" {
		t.Fatal("a test that leaves the sandbox was saved")
	}

	// A test module with no test rules.
	if err := f.Server.DeleteRule(t.Context(), "alice", "main_test.rego"); err != nil {
		t.Fatal(err)
	}
	r = alice.Post(authz.PathConsole+"/rules", url.Values{"csrf": {token}, "name": {"empty_test.rego"}, "source": {"package uma.share_test\n\nx := 1\n"}})
	authztest.ExpectPage(t, alice.Get(authztest.Location(t, r).RequestURI()), 200, "define no test")
}
