//go:build unix

package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"text/template"
	"time"

	"github.com/chromedp/chromedp"
)

// Keycloak's Node client libraries against caddy-uma, unchanged: the
// scripts of tests/keycloak (keycloak-connect in a resource server of
// their own, keycloak-js's authorization client) run with `node --test`
// against a real Caddy serving the AS in Keycloak compatibility mode and
// uma_protect in front of an upstream. CI installs tests/keycloak's
// node_modules (npm ci in .ci/run).

// keycloakGlobalOptions are the global options of the Keycloak interop
// tests' Caddyfiles: the AS under /realms/demo in Keycloak compatibility
// mode (RS256), the demo identity provider trusted for demo-app's tokens,
// alice (owner) and bob (requesting party), the resource server rs-api in
// Keycloak's RPT layout and the client demo-app. Optional: Policies (the
// operator directory), PushClaims (rs-api's enforcer pushes claims), Debug.
const keycloakGlobalOptions = `{
{{- if .Debug}}
	debug
{{- end}}
	admin {{.AdminAddr}}
	persist_config off

	uma {
		issuer http://127.0.0.1:{{.Port}}/realms/demo
		keycloak_compat
		signing_alg RS256
		storage badger {{.Storage}}
{{- if .Policies}}
		policies {{.Policies}}
{{- end}}
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
{{- if .PushClaims}}
			push_claims
{{- end}}
		}
		client demo-app {
			secret demo-app-secret
		}
	}
}
`

// keycloakCaddyfile is the Keycloak interop fixture (keycloakGlobalOptions,
// rs-api pushing claims) with CORS for the browser application, and an API
// behind uma_protect.
var keycloakCaddyfile = template.Must(template.New("Caddyfile").Parse(keycloakGlobalOptions + `
http://127.0.0.1:{{.Port}} {
	bind 127.0.0.1
	# CORS for the browser application of {{.AppOrigin}} (Keycloak's "Web
	# origins" of a client): keycloak-js fetches discovery and posts to the
	# token endpoint with an Authorization header, which a browser preflights.
	route {
		header Access-Control-Allow-Origin {{.AppOrigin}}
		header Vary Origin
		@preflight method OPTIONS
		header @preflight Access-Control-Allow-Methods "GET, POST"
		header @preflight Access-Control-Allow-Headers "Authorization, Content-Type"
		header @preflight Access-Control-Max-Age 600
		respond @preflight 204
		uma_demo_idp /idp/* http://127.0.0.1:{{.Port}}/idp
		uma_server
		respond "not an AS endpoint" 404
	}
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
	// The browser application's origin: tests/keycloak, served as files.
	app := httptest.NewServer(http.FileServer(http.Dir(dir)))
	t.Cleanup(app.Close)
	inst := startCaddyfile(t, keycloakCaddyfile, map[string]any{
		"AliceHash": hash(t, alicePassword), "BobHash": hash(t, bobPassword), "Policies": rules, "PushClaims": true, "Debug": true,
		"APIPort": apiPort, "Upstream": strings.TrimPrefix(upstream.srv.URL, "http://"), "AppOrigin": app.URL,
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
	ids := map[string]string{}
	for _, name := range []string{"shared-report", "private-diary"} {
		ids[name] = u.register(`{"name":"` + name + `","owner":"alice","type":"report","resource_scopes":["read","write"]}`)
	}
	resources, err := json.Marshal(ids)
	if err != nil {
		t.Fatal(err)
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
		"KC_RESOURCES="+string(resources),
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
		t.Errorf("node %s: %v\n%s", strings.Join(args, " "), err, out)
	} else {
		t.Logf("node %s:\n%s", strings.Join(args, " "), out)
	}
	if upstream.count() == 0 {
		t.Error("no request reached the upstream behind uma_protect")
	}

	t.Run("keycloak-js in Chromium", func(t *testing.T) {
		keycloakJSInBrowser(t, app.URL, server, fmt.Sprintf("http://127.0.0.1:%d", apiPort), bob)
	})
}

// keycloakJSInBrowser runs keycloak-js's authorization client in headless
// Chromium, in the page tests/keycloak/browser.html of an application on
// its own origin (app): the browser's own fetch and XMLHttpRequest, CORS
// included, where authz.test.js runs the library in Node.
func keycloakJSInBrowser(t *testing.T, app, server, api, token string) {
	chromium := chromiumPath(t)
	challenge := send(t, http.MethodGet, api+"/albums/alice/holiday-photos", "")
	if challenge.status != http.StatusUnauthorized {
		t.Fatalf("the API without a token: %d %s", challenge.status, challenge.body)
	}
	ticket := challengeParams(t, challenge.header.Get("WWW-Authenticate"))["ticket"]
	q := url.Values{
		"url": {server}, "realm": {"demo"}, "client": {"demo-app"}, "token": {token},
		"audience": {"rs-api"}, "granted": {"shared-report"}, "denied": {"private-diary"}, "ticket": {ticket},
	}
	browser := newBrowser(t, chromium)
	browse(t, browser, "running keycloak-js", chromedp.Navigate(app+"/browser.html?"+q.Encode()), chromedp.WaitVisible(chromedp.CSS("#done")))
	ctx, cancel := context.WithTimeout(browser, 10*time.Second)
	defer cancel()
	raw, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#result")))
	if err != nil {
		t.Fatal(err)
	}
	var result struct {
		Entitlement, Refused, Authorize struct {
			Granted string
			Denied  bool
			Error   string
		}
		Exception string
	}
	if err := json.Unmarshal([]byte(raw), &result); err != nil {
		t.Fatalf("the page's result %q: %v", raw, err)
	}
	if result.Exception != "" {
		t.Fatalf("keycloak-js threw: %s", result.Exception)
	}
	if result.Entitlement.Granted == "" {
		t.Errorf("entitlement(rs-api, shared-report#read) was not granted: %+v", result.Entitlement)
	}
	if !result.Refused.Denied {
		t.Errorf("entitlement(rs-api, private-diary#read) was not denied: %+v", result.Refused)
	}
	if result.Authorize.Granted == "" {
		t.Fatalf("authorize({ticket}) was not granted: %+v", result.Authorize)
	}
	if r := send(t, http.MethodGet, api+"/albums/alice/holiday-photos", result.Authorize.Granted); r.status != http.StatusOK {
		t.Errorf("the API with the browser's RPT: %d %s", r.status, r.body)
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
