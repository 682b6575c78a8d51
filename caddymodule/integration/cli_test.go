//go:build unix

package integration

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// cli runs `caddy uma ...` commands of the built binary in a work
// directory, and checks their exit status and what they say.
type cli struct {
	t    *testing.T
	work string
}

// expect runs caddy with args and checks the exit status and that the
// output (stdout and stderr) holds each of wantIn; it returns stdout.
func (c cli) expect(t *testing.T, wantCode int, wantIn []string, in io.Reader, args ...string) string {
	t.Helper()
	stdout, stderr, code := umaCommand(t, c.work, nil, in, args...)
	if code != wantCode {
		t.Errorf("caddy %s: exit %d, want %d\n%s%s", strings.Join(args, " "), code, wantCode, stdout, stderr)
	}
	said := strings.ReplaceAll(stdout+stderr, `\"`, `"`) // errors come as JSON log lines
	for _, w := range wantIn {
		if !strings.Contains(said, w) {
			t.Errorf("caddy %s: the output does not say %q:\n%s%s", strings.Join(args, " "), w, stdout, stderr)
		}
	}
	return stdout
}

func (c cli) write(name, content string) string {
	c.t.Helper()
	path := filepath.Join(c.work, name)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		c.t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		c.t.Fatal(err)
	}
	return path
}

// TestUMACommandsOnline runs the commands that manage a running Caddy
// through its admin endpoint (the admin.api.uma module): resources,
// clients, tokens, keys, the operator's rules; then backup -> wipe ->
// restore gives the same store, and a stopped Caddy is backed up from its
// config.
func TestUMACommandsOnline(t *testing.T) {
	skipShort(t)
	c := cli{t, t.TempDir()}
	policiesDir := filepath.Join(c.work, "policies")
	c.write("policies/carol/diary.rego", "package uma.share\n\nallow contains \"read\" if input.claims.email == \"dan@example.com\"\n")
	cfg := newConfig(t)
	cfg.Policies = policiesDir
	inst := startCaddy(t, cfg)
	addr := []string{"--address", cfg.AdminAddr}
	uma := func(args ...string) []string { return append(append([]string{"uma"}, args...), addr...) }

	pat, err := getPAT(cfg.issuer())
	if err != nil {
		t.Fatal(err)
	}
	id, err := registerResource(cfg.issuer(), pat)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("resource list", func(t *testing.T) {
		c.expect(t, 0, []string{"ID", "RESOURCE_SERVER", id, "rs-api", "read"}, nil, uma("resource", "list", "--owner", "rs-api")...)
		out := c.expect(t, 0, nil, nil, uma("resource", "list", "--owner", "rs-api", "--json")...)
		var ans struct{ Resources []struct{ ID string } }
		if err := json.Unmarshal([]byte(out), &ans); err != nil || len(ans.Resources) != 1 || ans.Resources[0].ID != id {
			t.Errorf("--json: %v %s", err, out)
		}
		c.expect(t, 0, []string{"ID"}, nil, uma("resource", "list", "--owner", "nobody")...)
	})

	t.Run("client add, list, remove", func(t *testing.T) {
		out := c.expect(t, 0, []string{"client_id: dyn-", "client_secret: ", "shown once"}, nil,
			uma("client", "add", "--name", "partner", "--claims-redirect-uri", "https://partner.example/claims", "--scope", "read")...)
		m := regexp.MustCompile(`client_id: (\S+)`).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("no client id in %q", out)
		}
		dyn := m[1]
		c.expect(t, 0, []string{dyn, "partner", "registered", "rs-api", "configured, resource server"}, nil, uma("client", "list")...)
		c.expect(t, 0, []string{"removed client " + dyn}, nil, uma("client", "remove", dyn)...)
		c.expect(t, 1, []string{"no client registered at run time", "not_found, HTTP 404"}, nil, uma("client", "remove", dyn)...)
		c.expect(t, 1, []string{"is configured", "remove it from the configuration"}, nil, uma("client", "remove", "rs-api")...)
		c.expect(t, 1, []string{"redirect", "HTTP 400"}, nil, uma("client", "add", "--redirect-uri", "http://partner.example/cb")...)
	})

	t.Run("token list, revoke", func(t *testing.T) {
		c.expect(t, 0, []string{"access_token", "rs-api"}, nil, uma("token", "list", "--client", "rs-api")...)
		if strings.Contains(c.expect(t, 0, nil, nil, uma("token", "list", "--client", "rs-api", "--json")...), pat) {
			t.Error("the token list shows the token")
		}
		c.expect(t, 0, []string{"revoked 1 tokens"}, nil, uma("token", "revoke", "--client", "rs-api")...)
		if err := checkResource(cfg.issuer(), pat, id); err == nil {
			t.Error("the revoked PAT still works")
		}
		c.expect(t, 2, []string{"--client or --subject is required"}, nil, uma("token", "revoke")...)
	})

	t.Run("keys list, rotate", func(t *testing.T) {
		before, _ := signingKeyIDs(cfg.issuer())
		c.expect(t, 0, []string{"KID", "ES256", "current", before[0]}, nil, uma("keys", "list")...)
		c.expect(t, 0, []string{"current", "retired", before[0]}, nil, uma("keys", "rotate")...)
		after, err := signingKeyIDs(cfg.issuer())
		if err != nil || len(after) != 2 || after[1] != before[0] {
			t.Errorf("the JWKS after rotation: %q (before %q), %v", after, before, err)
		}
	})

	t.Run("policy status, reload", func(t *testing.T) {
		c.expect(t, 0, []string{"every rule compiles"}, nil, uma("policy", "status")...)
		broken := c.write("policies/carol/diary.rego", "package uma.share\n\nallow contains \"read\" if {\n")
		c.expect(t, 1, []string{"owner carol", broken, "rego_parse_error", "some rules are not in force"}, nil, uma("policy", "reload")...)
		c.expect(t, 1, []string{"owner carol", broken}, nil, uma("policy", "status")...)
		c.write("policies/carol/diary.rego", "package uma.share\n\nallow contains \"read\" if input.claims.email == \"erin@example.com\"\n")
		c.expect(t, 0, []string{"every rule compiles"}, nil, uma("policy", "reload")...)
	})

	t.Run("admin API routes", func(t *testing.T) {
		for _, r := range []struct {
			method, path string
			status       int
			allow        string
		}{
			{"GET", "/uma/clients", 200, ""},
			{"PUT", "/uma/clients", 405, "GET, HEAD, POST"},
			{"GET", "/uma/keys/rotate", 405, "POST"},
			{"GET", "/uma/tokens", 400, ""},
			{"GET", "/uma/nothing", 404, ""},
		} {
			req, _ := http.NewRequest(r.method, "http://"+cfg.AdminAddr+r.path, nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			var body map[string]any
			_ = json.NewDecoder(resp.Body).Decode(&body)
			resp.Body.Close()
			if resp.StatusCode != r.status || resp.Header.Get("Allow") != r.allow || resp.Header.Get("Content-Type") != "application/json" {
				t.Errorf("%s %s: %d Allow %q %s, want %d Allow %q", r.method, r.path, resp.StatusCode, resp.Header.Get("Allow"),
					resp.Header.Get("Content-Type"), r.status, r.allow)
			}
			if r.status >= 400 && body["error"] == nil {
				t.Errorf("%s %s: no OAuth error: %v", r.method, r.path, body)
			}
		}
	})

	// Backup while Caddy runs, wipe the store, restore it: the same
	// store, and the resource is there for the restarted Caddy.
	backup := filepath.Join(c.work, "uma.dump")
	c.expect(t, 0, []string{"backed up 1 resources", "from the running Caddy"}, nil, uma("backup", "--output", backup)...)
	if fi, err := os.Stat(backup); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("the backup file: %v %v", fi, err)
	}
	before := dumpBody(t, backup)
	inst.stop()
	if err := os.RemoveAll(cfg.Storage); err != nil {
		t.Fatal(err)
	}
	c.expect(t, 0, []string{"imported 1 resources"}, nil, "uma", "restore", "--config", inst.caddyfile, "--input", backup)

	// A stopped Caddy is backed up from its config.
	offline := filepath.Join(c.work, "offline.dump")
	c.expect(t, 0, []string{"backed up 1 resources", "Caddy not running"}, nil,
		"uma", "backup", "--config", inst.caddyfile, "--address", cfg.AdminAddr, "--output", offline)
	sameLines(t, "the backup of the restored store", dumpBody(t, offline), before)

	inst2 := startCaddy(t, cfg)
	defer inst2.stop()
	pat2, err := getPAT(cfg.issuer())
	if err != nil {
		t.Fatal(err)
	}
	if err := checkResource(cfg.issuer(), pat2, id); err != nil {
		t.Errorf("the restored resource: %v", err)
	}
	kids, _ := signingKeyIDs(cfg.issuer())
	if len(kids) != 2 {
		t.Errorf("the restored keys: %q", kids)
	}
	c.expect(t, 0, []string{id}, nil, uma("resource", "list", "--owner", "rs-api")...)
}

// TestUMACommandsOffline runs the commands that need no server (policy
// test and eval) on passing and failing rules, and every command's wrong
// uses: exit 2, naming the flag or argument and the fix.
func TestUMACommandsOffline(t *testing.T) {
	skipShort(t)
	c := cli{t, t.TempDir()}
	rules := "package uma.share\n\nimport data.uma.lib\n\nallow contains \"read\" if lib.is_email(\"bob@example.com\")\n\nrequired_claims contains lib.email_claim if not lib.email\n"
	good := filepath.Dir(c.write("good/alice/rules.rego", rules))
	c.write("good/alice/rules_test.rego", `package uma.share_test

import data.uma.share

test_bob_reads if share.allow == {"read"} with input as {"claims": {"email": "bob@example.com", "email_verified": true}}
`)
	bad := filepath.Dir(c.write("bad/rules.rego", rules))
	c.write("bad/rules_test.rego", `package uma.share_test

import data.uma.share

test_bob_reads if share.allow == {"read"} with input as {"claims": {"email": "bob@example.com", "email_verified": true}}

test_eve_reads if share.allow == {"read"} with input as {"claims": {"email": "eve@example.com", "email_verified": true}}
`)
	escape := filepath.Dir(c.write("escape/rules.rego", rules))
	c.write("escape/net_test.rego", "package uma.share_test\n\ntest_out if http.send({\"method\": \"GET\", \"url\": \"http://127.0.0.1:1/\"}).status_code == 200\n")
	empty := filepath.Join(c.work, "empty")
	if err := os.Mkdir(empty, 0o755); err != nil {
		t.Fatal(err)
	}

	t.Run("policy test", func(t *testing.T) {
		c.expect(t, 0, []string{"PASS  data.uma.share_test.test_bob_reads", "PASS: 1/1"}, nil, "uma", "policy", "test", good)
		// An operator directory: each owner's directory with tests.
		c.expect(t, 0, []string{good + ":", "PASS: 1/1"}, nil, "uma", "policy", "test", filepath.Dir(good))
		c.expect(t, 1, []string{"PASS  data.uma.share_test.test_bob_reads", "FAIL  data.uma.share_test.test_eve_reads",
			filepath.Join(bad, "rules_test.rego") + ":7", "FAIL: 1/2", "1 of 2 tests failed"}, nil, "uma", "policy", "test", bad)
		c.expect(t, 1, []string{"ERROR", "http.send is not allowed", filepath.Join(escape, "net_test.rego")}, nil, "uma", "policy", "test", escape)
		c.expect(t, 1, []string{"no tests in"}, nil, "uma", "policy", "test", empty)
		out := c.expect(t, 1, nil, nil, "uma", "policy", "test", bad, "--json")
		var results []struct {
			Report struct{ Passed, Failed int }
		}
		if err := json.Unmarshal([]byte(out), &results); err != nil || len(results) != 1 || results[0].Report.Passed != 1 || results[0].Report.Failed != 1 {
			t.Errorf("--json: %v %s", err, out)
		}
	})

	t.Run("policy eval", func(t *testing.T) {
		input := func(claims string) string {
			return c.write("input.json", fmt.Sprintf(`{"resource": {"id": "r1", "owner": "alice", "scopes": ["read", "write"]}, "scopes": ["read"], "claims": %s}`, claims))
		}
		c.expect(t, 0, []string{"outcome:   granted", "granted:   read", `"read" is granted by the owner's rules`}, nil,
			"uma", "policy", "eval", "--rules", good, "--input", input(`{"email": "bob@example.com", "email_verified": true}`))
		c.expect(t, 0, []string{"outcome:   need_info", "more claims"}, nil, "uma", "policy", "eval", "--rules", good, "--input", input(`{}`))
		c.expect(t, 0, []string{"outcome:   request_denied", `"read" is not granted`}, nil, "uma", "policy", "eval", "--rules", good,
			"--input", input(`{"email": "eve@example.com", "email_verified": true}`))
		out := c.expect(t, 0, nil, strings.NewReader(`{"resource": {"id": "r1", "scopes": ["read"]}, "claims": {"email": "bob@example.com", "email_verified": true}}`),
			"uma", "policy", "eval", "--rules", good, "--json")
		var ans struct{ Outcome, Owner string }
		if err := json.Unmarshal([]byte(out), &ans); err != nil || ans.Outcome != "granted" || ans.Owner != "alice" {
			t.Errorf("--json from stdin: %v %s", err, out)
		}
		broken := filepath.Dir(c.write("broken/rules.rego", "package uma.share\n\nallow := 1\n"))
		c.expect(t, 1, []string{"do not compile", "allow must be a set rule"}, nil, "uma", "policy", "eval", "--rules", broken, "--input", input(`{}`))
	})

	t.Run("usage", func(t *testing.T) {
		bogus := c.write("bogus.json", `{"resource": {"id": "r1", "scopes": ["read"]}, "claim": {}}`)
		valid := c.write("valid.json", `{"resource": {"id": "r1", "scopes": ["read"]}}`)
		for _, u := range []struct {
			want []string
			args []string
		}{
			{[]string{"--rules is required"}, []string{"policy", "eval", "--input", bogus}},
			{[]string{"--input", "unknown field", "claim"}, []string{"policy", "eval", "--rules", good, "--input", bogus}},
			{[]string{"--input", "no such file"}, []string{"policy", "eval", "--rules", good, "--input", filepath.Join(c.work, "missing.json")}},
			{[]string{"--rules", "holds no rule file"}, []string{"policy", "eval", "--rules", empty, "--input", valid}},
			{[]string{"takes 1 argument", "usage: caddy uma policy test"}, []string{"policy", "test"}},
			{[]string{"is not a directory"}, []string{"policy", "test", filepath.Join(c.work, "missing")}},
			{[]string{"unknown flag: --bogus"}, []string{"policy", "test", good, "--bogus"}},
			{[]string{"--owner is required"}, []string{"resource", "list", "--address", "127.0.0.1:1"}},
			{[]string{"--address", "is not an admin address"}, []string{"keys", "list", "--address", "tcp/127.0.0.1:1-9"}},
			{[]string{`unknown command "frob"`, "list", "rotate"}, []string{"keys", "frob"}},
			{[]string{`unknown command "frob"`, "backup", "policy"}, []string{"frob"}},
			{[]string{"takes 1 argument"}, []string{"client", "remove"}},
			{[]string{"unexpected argument"}, []string{"client", "list", "extra"}},
		} {
			c.expect(t, 2, u.want, nil, append([]string{"uma"}, u.args...)...)
		}
		// Nothing answers at the address.
		c.expect(t, 1, []string{"no Caddy answers there", "127.0.0.1:1", "--address"}, nil, "uma", "backup", "--address", "127.0.0.1:1", "--output", filepath.Join(c.work, "x.dump"))
		if _, err := os.Stat(filepath.Join(c.work, "x.dump")); err == nil {
			t.Error("a failed backup left its file")
		}
		c.expect(t, 1, []string{"no Caddy answers there"}, nil, "uma", "keys", "rotate", "--address", "127.0.0.1:1")
		for _, help := range [][]string{
			{"backup", "consistent snapshot", "Exit status"}, {"restore", "--force", "must be empty"},
			{"keys", "rotate"}, {"client", "add"}, {"token", "revoke"}, {"resource", "list"},
			{"policy", "test", "eval"},
		} {
			c.expect(t, 0, append([]string{"Usage:"}, help[1:]...), nil, "uma", help[0], "--help")
		}
		c.expect(t, 0, []string{"sandbox", "Exit status: 0 every test passed, 1 a test failed"}, nil, "uma", "policy", "test", "--help")
		c.expect(t, 0, []string{"resource.id and resource.scopes are required"}, nil, "uma", "policy", "eval", "--help")
	})
}
