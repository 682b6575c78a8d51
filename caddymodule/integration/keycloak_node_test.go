//go:build unix

package integration

import (
	"bytes"
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"text/template"
	"time"
)

// Keycloak's Node client libraries against caddy-uma, unchanged: the
// scripts of tests/keycloak (keycloak-connect in a resource server of
// their own, keycloak-js's authorization client) run with `node --test`
// against a real Caddy serving the AS in Keycloak compatibility mode and
// uma_protect in front of an upstream. CI installs tests/keycloak's
// node_modules (npm ci in .ci/run).

// keycloakCaddyfile is the fixture of issue 13's interop tests: the realm
// demo, bob as requesting party with tokens of the demo IdP, rs-api as a
// Keycloak resource server, and an API behind uma_protect.
var keycloakCaddyfile = template.Must(template.New("Caddyfile").Parse(`{
	debug
	admin {{.AdminAddr}}
	persist_config off

	uma {
		issuer http://127.0.0.1:{{.Port}}/realms/demo
		keycloak_compat
		signing_alg RS256
		storage badger {{.Storage}}
		policies {{.Policies}}
		user alice {
			password_hash {{.AliceHash}}
			email alice@example.org
		}
		user bob {
			password_hash {{.BobHash}}
			email bob@example.org
		}
		trust_issuer http://127.0.0.1:{{.Port}}/idp {
			audience demo-app
		}
		client rs-api {
			secret rs-api-secret
			resource_server
			rpt_format keycloak
			push_claims
		}
		client demo-app {
			secret demo-app-secret
		}
	}
}

http://127.0.0.1:{{.Port}} {
	bind 127.0.0.1
	uma_demo_idp /idp/* http://127.0.0.1:{{.Port}}/idp
	uma_server
	respond "not an AS endpoint" 404
}

http://127.0.0.1:{{.APIPort}} {
	bind 127.0.0.1
	uma_protect {
		as co-hosted
		resource_server rs-api
		realm demo
		resource /albums/{owner}/{album} {
			owner  {owner}
			name   {album}
			type   photo-album
			scopes read write
			method GET read
			method POST write
		}
	}
	reverse_proxy {{.Upstream}}
}
`))

// keycloakRules are alice's: bob (by his verified e-mail address) reads
// shared-report and holiday-photos, and writes shared-report when the
// resource server pushes department=finance (a claim only a push_claims
// client can push: input.pushed_claims); when he asks to write
// holiday-photos, alice is asked. Nothing else is anyone's.
const keycloakRules = `package uma.share

import data.uma.lib

allow contains "read" if {
	lib.is_email("bob@example.org")
	input.resource.name in {"shared-report", "holiday-photos"}
}

allow contains "write" if {
	lib.is_email("bob@example.org")
	input.resource.name == "shared-report"
	"finance" in input.pushed_claims.department
}

ask_owner contains "write" if {
	lib.is_email("bob@example.org")
	input.resource.name == "holiday-photos"
}
`

func TestKeycloakNode(t *testing.T) {
	skipShort(t)
	node, dir := nodeTests(t)

	rules := t.TempDir()
	if err := os.MkdirAll(filepath.Join(rules, "alice"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rules, "alice", "share.rego"), []byte(keycloakRules), 0o644); err != nil {
		t.Fatal(err)
	}
	upstream := newUpstream(t)
	apiPort := freePort(t)
	inst := startCaddyfile(t, keycloakCaddyfile, map[string]any{
		"AliceHash": hash(t, alicePassword), "BobHash": hash(t, bobPassword), "Policies": rules,
		"APIPort": apiPort, "Upstream": strings.TrimPrefix(upstream.srv.URL, "http://"),
	})
	server := inst.cfg.issuer()
	issuer := server + "/realms/demo"

	// The resource server registers two of alice's resources, as it would
	// at Keycloak (keycloak-connect has no protection API client).
	pat, err := getPAT(issuer)
	if err != nil {
		t.Fatal(err)
	}
	u := &umaClient{t: t, issuer: issuer, pat: pat}
	for _, name := range []string{"shared-report", "private-diary"} {
		u.register(`{"name":"` + name + `","owner":"alice","type":"report","resource_scopes":["read","write"]}`)
	}

	// Bob's token from the demo IdP, once the AS has its keys (it fetches
	// them from its own site, which may not have been up at its start).
	bob := tokenOf(t, postForm(t, server+"/idp/id_token", url.Values{"sub": {"bob"}, "email": {"bob@example.org"}, "aud": {"demo-app"}}, "", ""), "id_token")
	waitForIssuerKeys(t, issuer, bob)

	// The keycloak-connect resource server, a process of its own.
	env := append(os.Environ(),
		"KC_SERVER_URL="+server,
		"KC_REALM=demo",
		"KC_RS_CLIENT_ID=rs-api",
		"KC_RS_SECRET=rs-api-secret",
		"KC_APP_CLIENT_ID=demo-app",
		fmt.Sprintf("KC_API_URL=http://127.0.0.1:%d", apiPort),
		"KC_USER_TOKEN="+bob,
		"KC_TOKEN_URL="+server+"/idp/id_token",
	)
	rsURL := startNodeResourceServer(t, node, dir, env)

	files, err := filepath.Glob(filepath.Join(dir, "*.test.js"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no *.test.js in %s (%v)", dir, err)
	}
	args := []string{"--test", "--test-reporter=spec", "--test-timeout=60000"}
	for _, f := range files {
		args = append(args, filepath.Base(f))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, args...)
	cmd.Dir = dir
	cmd.Env = append(env, "KC_RS_URL="+rsURL, "NO_COLOR=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("node %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	t.Logf("node %s:\n%s", strings.Join(args, " "), out)
	if upstream.count() == 0 {
		t.Error("no request reached the upstream behind uma_protect")
	}
}

// nodeTests returns node and the directory of the Node tests, skipping the
// test when node or their node_modules is missing (failing it under
// CI=true, where .ci/run installs them).
func nodeTests(t *testing.T) (node, dir string) {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("..", "..", "tests", "keycloak"))
	if err != nil {
		t.Fatal(err)
	}
	missing := func(what string) {
		t.Helper()
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s; CI installs it (.ci/run: apt-get install nodejs npm; npm ci in tests/keycloak)", what)
		}
		t.Skipf("%s (install node, then run npm ci in tests/keycloak): Keycloak's Node client tests skipped", what)
	}
	node, err = exec.LookPath("node")
	if err != nil {
		missing("node is not installed")
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "keycloak-connect")); err != nil {
		missing("tests/keycloak/node_modules is missing")
	}
	return node, dir
}

// waitForIssuerKeys waits until the AS accepts token as a claim token of
// demo-app (standard UMA: ticketless permission of a registered resource).
func waitForIssuerKeys(t *testing.T, issuer, token string) {
	t.Helper()
	form := url.Values{
		"grant_type": {"urn:ietf:params:oauth:grant-type:uma-ticket"}, "audience": {"rs-api"},
		"permission": {"shared-report#read"}, "response_mode": {"decision"},
		"claim_token": {token}, "claim_token_format": {"http://openid.net/specs/openid-connect-core-1_0.html#IDToken"},
	}
	var answer map[string]any
	for range 60 {
		answer = postForm(t, issuer+"/token", form, "demo-app", "demo-app-secret")
		if answer["result"] == true {
			return
		}
		if answer["error"] != "temporarily_unavailable" {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Fatalf("bob's token is not accepted for shared-report#read: %v", answer)
}

var listening = regexp.MustCompile(`^listening on (\d+)$`)

// startNodeResourceServer runs tests/keycloak/resource-server.js and
// returns its URL once it listens. It is stopped at the end of the test,
// and its output shown if the test failed.
func startNodeResourceServer(t *testing.T, node, dir string, env []string) string {
	t.Helper()
	cmd := exec.Command(node, "resource-server.js")
	cmd.Dir = dir
	cmd.Env = append(env, "PORT=0")
	log := new(syncBuffer)
	port := make(chan string, 1)
	cmd.Stdout = &lineWriter{out: log, line: func(line string) {
		if m := listening.FindStringSubmatch(line); m != nil {
			select {
			case port <- m[1]:
			default:
			}
		}
	}}
	cmd.Stderr = log
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting the resource server: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("output of the resource server (resource-server.js):\n%s", log)
		}
	})
	select {
	case p := <-port:
		return "http://127.0.0.1:" + p
	case err := <-exited:
		exited <- err
		t.Fatalf("the resource server exited: %v\n%s", err, log)
	case <-time.After(30 * time.Second):
		t.Fatalf("the resource server did not listen within 30s\n%s", log)
	}
	return ""
}

// lineWriter copies what is written to out, and calls line with each
// complete line. Writes come from one goroutine (os/exec's copy).
type lineWriter struct {
	out     *syncBuffer
	line    func(string)
	partial []byte
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.partial = append(w.partial, p...)
	for {
		i := bytes.IndexByte(w.partial, '\n')
		if i < 0 {
			break
		}
		w.line(strings.TrimRight(string(w.partial[:i]), "\r"))
		w.partial = w.partial[i+1:]
	}
	return w.out.Write(p)
}
