//go:build unix

package integration

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"text/template"
	"time"
)

// TestLogsHoldNoSecrets runs a real Caddy at DEBUG level, with the access
// log filter of the README, through a flow that handles every kind of
// token, secret and password: client secrets, a person's password, the
// session cookie and CSRF token, an authorization code and its PKCE
// verifier, PATs, permission tickets, an ID token pushed as claim token,
// RPTs, refresh tokens and PCTs. Then none of them is in Caddy's output.
func TestLogsHoldNoSecrets(t *testing.T) {
	skipShort(t)
	cfg := newConfig(t)
	apiPort := freePort(t)
	up := newUpstream(t)
	dir := t.TempDir()
	secrets := map[string]string{
		"rs-api secret": "rs-api-" + randomSecret(t),
		"app secret":    "app-" + randomSecret(t),
		"password":      "alice-" + randomSecret(t),
	}
	rules := filepath.Join(dir, "policies")
	if err := os.MkdirAll(filepath.Join(rules, "alice"), 0o700); err != nil {
		t.Fatal(err)
	}
	rule := "package uma.share\n\nimport data.uma.lib\n\nallow contains \"read\" if lib.is_email(\"bob@example.org\")\n"
	if err := os.WriteFile(filepath.Join(rules, "alice", "main.rego"), []byte(rule), 0o600); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	err := logScanCaddyfile.Execute(&buf, map[string]any{
		"AdminAddr": cfg.AdminAddr, "Port": cfg.Port, "APIPort": apiPort, "Storage": cfg.Storage,
		"AliceHash": hash(t, secrets["password"]), "Upstream": up.srv.URL, "Policies": rules,
	})
	if err != nil {
		t.Fatal(err)
	}
	inst := &instance{t: t, dir: dir, caddyfile: filepath.Join(dir, "Caddyfile"), cfg: cfg, log: new(syncBuffer), exited: make(chan struct{})}
	if err := os.WriteFile(inst.caddyfile, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	inst.run(t, []string{"RS_API_SECRET=" + secrets["rs-api secret"], "APP_SECRET=" + secrets["app secret"]}, "")
	if err := inst.waitReady(30 * time.Second); err != nil {
		t.Fatalf("caddy did not start: %v\n%s", err, inst.log)
	}
	as := cfg.issuer()
	api := fmt.Sprintf("http://127.0.0.1:%d", apiPort)
	keep := func(name, value string) string {
		t.Helper()
		if value == "" {
			t.Fatalf("no %s", name)
		}
		secrets[name] = value
		return value
	}

	// A PAT, and a resource the enforcement point registers on first sight.
	pat := keep("PAT", tokenOf(t, postForm(t, as+"/token", url.Values{"grant_type": {"client_credentials"}}, "rs-api", secrets["rs-api secret"]), "access_token"))
	r := callAPI(t, api+"/albums/alice/summer", "")
	keep("ticket from uma_protect", ticketOf(t, r, as))

	// An ID token from the demo provider, pushed with a ticket: RPT,
	// refresh token and PCT.
	idToken := keep("ID token", tokenOf(t, postForm(t, as+"/idp/id_token", url.Values{"sub": {"bob"}, "aud": {"app"}, "email": {"bob@example.org"}}, "", ""), "id_token"))
	// The AS fetches the provider's keys from its own site, which may not
	// have been up when it first tried: ask again while they are unavailable.
	var grant map[string]any
	for attempt := 0; attempt < 60; attempt++ {
		ticket := keep(fmt.Sprintf("ticket %d", attempt), ticketOf(t, callAPI(t, api+"/albums/alice/summer", ""), as))
		grant = postForm(t, as+"/token", url.Values{
			"grant_type": {"urn:ietf:params:oauth:grant-type:uma-ticket"}, "ticket": {ticket},
			"claim_token": {idToken}, "claim_token_format": {"http://openid.net/specs/openid-connect-core-1_0.html#IDToken"},
		}, "app", secrets["app secret"])
		if desc, _ := grant["error_description"].(string); !strings.Contains(desc, "unavailable") && grant["error"] != "temporarily_unavailable" {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	rpt := keep("RPT", tokenOf(t, grant, "access_token"))
	refresh := keep("refresh token", tokenOf(t, grant, "refresh_token"))
	keep("PCT", tokenOf(t, grant, "pct"))
	if r := callAPI(t, api+"/albums/alice/summer", rpt); r.StatusCode != 200 {
		t.Fatalf("with the RPT: %d", r.StatusCode)
	}
	refreshed := postForm(t, as+"/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh}}, "app", secrets["app secret"])
	keep("refreshed RPT", tokenOf(t, refreshed, "access_token"))
	postFormAuth(t, as+"/introspect", url.Values{"token": {rpt}}, "Bearer "+pat)
	postForm(t, as+"/revoke", url.Values{"token": {tokenOf(t, refreshed, "refresh_token")}}, "app", secrets["app secret"])

	// alice logs in and consents to a PAT for rs-api: the session cookie,
	// the CSRF token, the code and the PKCE verifier.
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar, Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	page := get(t, browser, as+"/login")
	csrf := keep("CSRF token", csrfIn(page))
	post(t, browser, as+"/login", url.Values{"csrf": {csrf}, "username": {"alice"}, "password": {secrets["password"]}})
	for _, c := range jar.Cookies(mustURL(t, as+"/")) {
		keep("cookie "+c.Name, c.Value)
	}
	verifier := keep("PKCE verifier", randomSecret(t)+randomSecret(t))
	sum := sha256.Sum256([]byte(verifier))
	q := url.Values{"client_id": {"rs-api"}, "response_type": {"code"}, "redirect_uri": {"http://127.0.0.1:9/cb"},
		"code_challenge": {base64.RawURLEncoding.EncodeToString(sum[:])}, "code_challenge_method": {"S256"}, "state": {"st"}}
	consent := get(t, browser, as+"/authorize?"+q.Encode())
	form := url.Values{"csrf": {csrfIn(consent)}, "decision": {"allow"}}
	for k, v := range q {
		form[k] = v
	}
	loc := postResp(t, browser, as+"/authorize", form).Header.Get("Location")
	u, err := url.Parse(loc)
	if err != nil {
		t.Fatal(err)
	}
	code := keep("authorization code", u.Query().Get("code"))
	keep("consented PAT", tokenOf(t, postForm(t, as+"/token", url.Values{
		"grant_type": {"authorization_code"}, "code": {code}, "code_verifier": {verifier}, "redirect_uri": {"http://127.0.0.1:9/cb"},
	}, "rs-api", secrets["rs-api secret"]), "access_token"))
	get(t, browser, as+"/console/resources")

	inst.stop()
	log := inst.log.String()
	if !strings.Contains(log, `"level":"debug"`) || !strings.Contains(log, "http.log.access") {
		t.Fatalf("the log is not at DEBUG level with access logs:\n%s", log)
	}
	// The scan covers the audit trail: its lines are in this log.
	for _, msg := range []string{`"msg":"token request"`, `"msg":"protected request"`} {
		if n := strings.Count(log, `"logger":"uma.audit",`+msg); n == 0 {
			t.Errorf("no audit line %s in the log", msg)
		}
	}
	for name, value := range secrets {
		if strings.Contains(log, value) {
			t.Errorf("the log holds the %s", name)
		}
	}
}

var logScanCaddyfile = template.Must(template.New("Caddyfile").Parse(`{
	debug
	admin {{.AdminAddr}}
	persist_config off

	uma {
		issuer http://127.0.0.1:{{.Port}}
		storage badger {{.Storage}}
		policies {{.Policies}}
		trust_issuer http://127.0.0.1:{{.Port}}/idp {
			audience app
		}
		user alice {
			password_hash {{.AliceHash}}
			email alice@example.org
		}
		client rs-api {
			secret {env.RS_API_SECRET}
			resource_server
			redirect_uri http://127.0.0.1:9/cb
		}
		client app {
			secret {env.APP_SECRET}
		}
	}
}

(masked) {
	log {
		output stderr
		format filter {
			request>headers>Authorization delete
			request>headers>Cookie delete
			request>uri query {
				replace ticket REDACTED
				replace code REDACTED
				replace state REDACTED
			}
			resp_headers>Www-Authenticate regexp ` + "`" + `ticket="[^"]*"` + "`" + ` ` + "`" + `ticket="REDACTED"` + "`" + `
			resp_headers>Location regexp ` + "`" + `([?&](code|ticket|state)=)[^&]*` + "`" + ` ` + "`" + `${1}REDACTED` + "`" + `
			resp_headers>Set-Cookie delete
		}
	}
}

http://127.0.0.1:{{.Port}} {
	bind 127.0.0.1
	import masked
	uma_demo_idp /idp/* http://127.0.0.1:{{.Port}}/idp
	uma_server
	respond "site" 200
}

http://127.0.0.1:{{.APIPort}} {
	bind 127.0.0.1
	import masked
	uma_protect {
		as co-hosted
		resource_server rs-api
		resource /albums/{owner}/{album} {
			owner  {owner}
			name   {album}
			scopes read
			method GET read
		}
	}
	reverse_proxy {{.Upstream}}
}
`))

func randomSecret(t *testing.T) string {
	t.Helper()
	b := make([]byte, 18)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func mustURL(t *testing.T, raw string) *url.URL {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// postForm posts a form with HTTP Basic client authentication (none when
// id is empty) and decodes the JSON answer.
func postForm(t *testing.T, target string, form url.Values, id, secret string) map[string]any {
	t.Helper()
	auth := ""
	if id != "" {
		auth = "Basic " + base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(id)+":"+url.QueryEscape(secret)))
	}
	return postFormAuth(t, target, form, auth)
}

func postFormAuth(t *testing.T, target string, form url.Values, auth string) map[string]any {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, target, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&m)
	return m
}

func tokenOf(t *testing.T, m map[string]any, name string) string {
	t.Helper()
	s, _ := m[name].(string)
	if s == "" {
		t.Fatalf("no %s in %v", name, m)
	}
	return s
}

func get(t *testing.T, c *http.Client, target string) string {
	t.Helper()
	resp, err := c.Get(target)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func post(t *testing.T, c *http.Client, target string, form url.Values) string {
	t.Helper()
	resp := postResp(t, c, target, form)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func postResp(t *testing.T, c *http.Client, target string, form url.Values) *http.Response {
	t.Helper()
	resp, err := c.PostForm(target, form)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func csrfIn(page string) string {
	m := csrfField.FindStringSubmatch(page)
	if m == nil {
		return ""
	}
	return m[1]
}
