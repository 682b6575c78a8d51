//go:build unix

package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"text/template"
	"time"

	"github.com/chromedp/chromedp"
	"golang.org/x/crypto/bcrypt"
)

// The browser tests drive a real headless Chromium (Debian's chromium
// package) with chromedp against a real Caddy running the AS with local
// users: the owners' console, and claims gathering at the claims
// interaction endpoint. They skip when Chromium is not installed, except
// in CI (CI=true), where they fail. Screenshots of every page go to
// screenshots/ at the top of the repository (kept out of git).
//
// A second site puts uma_protect (co-hosted) in front of a recording
// upstream: bob's client reaches the upstream with its RPT, and no more
// once alice revokes the share.

var consoleCaddyfile = template.Must(template.New("Caddyfile").Parse(`{
	admin {{.AdminAddr}}
	persist_config off

	uma {
		issuer http://127.0.0.1:{{.Port}}
		storage badger {{.Storage}}
		request_interval 1s
		user alice {
			password_hash {{.AliceHash}}
			email alice@example.org
			name Alice Liddell
		}
		user bob {
			password_hash {{.BobHash}}
			email bob@example.org
			name Bob Builder
		}
		client rs-api {
			secret rs-api-secret
			resource_server
		}
		client bob-app {
			secret bob-app-secret
			claims_redirect_uri {{.Callback}}
		}
	}
}

http://127.0.0.1:{{.Port}} {
	bind 127.0.0.1
	uma_server
	respond "site" 200
}

http://127.0.0.1:{{.APIPort}} {
	bind 127.0.0.1
	uma_protect {
		as co-hosted
		resource_server rs-api
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

const (
	alicePassword = "correct horse battery staple"
	bobPassword   = "bob builds things"
)

// chromiumPath returns the Chromium binary, skipping the test when there is
// none (and failing it in CI).
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("Chromium is required in CI for the browser tests: apt-get install -y chromium")
	}
	t.Skip("Chromium is not installed (apt-get install -y chromium): browser tests skipped")
	return ""
}

// newBrowser starts a headless Chromium with a fresh profile.
func newBrowser(t *testing.T, path string) context.Context {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.WindowSize(1280, 900),
		chromedp.UserDataDir(t.TempDir()),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx)
	t.Cleanup(func() { cancelCtx(); cancelAlloc() })
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("starting Chromium: %v", err)
	}
	return ctx
}

// do runs browser steps with a timeout, failing the test on error.
func browse(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// text returns the text of the page's main element.
func text(t *testing.T, ctx context.Context) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("main")))
	if err != nil {
		t.Fatalf("reading the page: %v", err)
	}
	return s
}

func expectText(t *testing.T, ctx context.Context, parts ...string) {
	t.Helper()
	s := text(t, ctx)
	for _, p := range parts {
		if !strings.Contains(s, p) {
			t.Fatalf("the page does not say %q:\n%s", p, s)
		}
	}
}

// widths are the document's scroll width and the viewport's width.
type widths struct {
	Scroll   int `json:"scroll"`
	Viewport int `json:"viewport"`
}

// pageWidths measures the page the browser shows.
func pageWidths(t *testing.T, ctx context.Context) widths {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	w, err := chromedp.Run(ctx, chromedp.Evaluate[widths](`({scroll: document.documentElement.scrollWidth, viewport: window.innerWidth})`))
	if err != nil {
		t.Fatalf("measuring the page: %v", err)
	}
	return w
}

// screenshot saves a full-page PNG into screenshots/.
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	dir := filepath.Join("..", "..", "screenshots")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// login fills in the login form the browser is on.
func login(t *testing.T, ctx context.Context, name, password string) {
	t.Helper()
	browse(t, ctx, "logging in as "+name,
		chromedp.WaitVisible(chromedp.CSS("#username")),
		chromedp.SendKeys(chromedp.CSS("#username"), name),
		chromedp.SendKeys(chromedp.CSS("#password"), password),
		chromedp.Click(chromedp.CSS("button.primary")),
		chromedp.WaitNotPresent(chromedp.CSS("#password")),
	)
}

// clientApp is bob's client application: it receives the browser back at
// its claims redirect URI.
type clientApp struct {
	srv *httptest.Server
	got chan url.Values
}

func newClientApp(t *testing.T) *clientApp {
	c := &clientApp{got: make(chan url.Values, 4)}
	c.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.got <- r.URL.Query()
		fmt.Fprintln(w, "<!doctype html><title>Bob's app</title><main><p>Back at Bob's app.</p></main>")
	}))
	t.Cleanup(c.srv.Close)
	return c
}

// umaClient is the protocol side of the test: the resource server and bob's
// client, over HTTP.
type umaClient struct {
	t      *testing.T
	issuer string
	pat    string
}

func (u *umaClient) call(method, path, contentType, body string, auth [2]string, bearer string) (int, map[string]any) {
	u.t.Helper()
	req, err := http.NewRequest(method, u.issuer+path, strings.NewReader(body))
	if err != nil {
		u.t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if auth[0] != "" {
		req.SetBasicAuth(auth[0], auth[1])
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		u.t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&m)
	return resp.StatusCode, m
}

func (u *umaClient) register(body string) string {
	u.t.Helper()
	status, m := u.call("POST", "/resource_set", "application/json", body, [2]string{}, u.pat)
	if status != 201 {
		u.t.Fatalf("registering %s: %d %v", body, status, m)
	}
	return m["_id"].(string)
}

func (u *umaClient) ticket(resource string, scopes ...string) string {
	u.t.Helper()
	b, _ := json.Marshal(map[string]any{"resource_id": resource, "resource_scopes": scopes})
	status, m := u.call("POST", "/permission", "application/json", string(b), [2]string{}, u.pat)
	if status != 201 {
		u.t.Fatalf("ticket: %d %v", status, m)
	}
	return m["ticket"].(string)
}

// grant asks for an RPT as bob-app.
func (u *umaClient) grant(params url.Values) (int, map[string]any) {
	u.t.Helper()
	params.Set("grant_type", "urn:ietf:params:oauth:grant-type:uma-ticket")
	return u.call("POST", "/token", "application/x-www-form-urlencoded", params.Encode(), [2]string{"bob-app", "bob-app-secret"}, "")
}

// permissions introspects an RPT as the resource server.
func (u *umaClient) permissions(rpt string) map[string][]string {
	u.t.Helper()
	_, m := u.call("POST", "/introspect", "application/x-www-form-urlencoded", url.Values{"token": {rpt}}.Encode(), [2]string{}, u.pat)
	out := map[string][]string{}
	if m["active"] != true {
		return nil
	}
	perms, _ := m["permissions"].([]any)
	for _, p := range perms {
		pm := p.(map[string]any)
		var scopes []string
		for _, s := range pm["resource_scopes"].([]any) {
			scopes = append(scopes, s.(string))
		}
		out[pm["resource_id"].(string)] = scopes
	}
	return out
}

func hash(t *testing.T, pw string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

// startConsoleCaddy runs Caddy with the console configuration.
func startConsoleCaddy(t *testing.T, callback, upstream string, apiPort int) *instance {
	t.Helper()
	return startCaddyfile(t, consoleCaddyfile, map[string]any{
		"AliceHash": hash(t, alicePassword), "BobHash": hash(t, bobPassword), "Callback": callback,
		"APIPort": apiPort, "Upstream": upstream,
	})
}

// startCaddyfile runs Caddy with a Caddyfile template, executed with data
// and the new config's AdminAddr, Port and Storage, and waits until it
// answers.
func startCaddyfile(t *testing.T, tmpl *template.Template, data map[string]any) *instance {
	t.Helper()
	cfg := newConfig(t)
	dir := t.TempDir()
	data["AdminAddr"], data["Port"], data["Storage"] = cfg.AdminAddr, cfg.Port, cfg.Storage
	var buf bytes.Buffer
	if err := tmpl.Execute(&buf, data); err != nil {
		t.Fatal(err)
	}
	inst := &instance{t: t, dir: dir, caddyfile: filepath.Join(dir, "Caddyfile"), cfg: cfg, log: new(syncBuffer), exited: make(chan struct{})}
	if err := os.WriteFile(inst.caddyfile, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	inst.run(t, nil, "")
	if err := inst.waitReady(30 * time.Second); err != nil {
		t.Fatalf("caddy did not start: %v\n%s", err, inst.log)
	}
	return inst
}

func TestConsoleInBrowser(t *testing.T) {
	skipShort(t)
	chromium := chromiumPath(t)
	app := newClientApp(t)
	callback := app.srv.URL + "/callback?app=bob"
	upstream := newUpstream(t)
	apiPort := freePort(t)
	api := fmt.Sprintf("http://127.0.0.1:%d", apiPort)
	inst := startConsoleCaddy(t, callback, strings.TrimPrefix(upstream.srv.URL, "http://"), apiPort)
	issuer := inst.cfg.issuer()

	// The resource server registers alice's and bob's resources.
	pat, err := getPAT(issuer)
	if err != nil {
		t.Fatal(err)
	}
	u := &umaClient{t: t, issuer: issuer, pat: pat}
	u.register(`{"name":"tax-return-2025","type":"document","owner":"alice","resource_scopes":["read"]}`)
	// uma_protect registers alice's album on first sight, and answers the
	// client without a token with a ticket; nothing reaches the upstream.
	challenge := callAPI(t, api+"/albums/alice/holiday-photos", "")
	if challenge.StatusCode != 401 || upstream.count() != 0 {
		t.Fatalf("the API without a token: %d, %d requests upstream", challenge.StatusCode, upstream.count())
	}
	firstTicket := ticketOf(t, challenge, issuer)
	photos := u.resourceNamed("holiday-photos")
	u.register(`{"name":"bobs-notes","owner":"bob","resource_scopes":["read"]}`)

	alice := newBrowser(t, chromium)
	bob := newBrowser(t, chromium)

	// Alice logs in and sees her resources, and not bob's.
	browse(t, alice, "opening the console", chromedp.Navigate(issuer+"/console"), chromedp.WaitVisible(chromedp.CSS("#username")))
	screenshot(t, alice, "01-login")
	login(t, alice, "alice", alicePassword)
	browse(t, alice, "resources page", chromedp.WaitVisible(chromedp.CSS("ul.resources")))
	expectText(t, alice, "My resources", "holiday-photos", "tax-return-2025", "Not shared with anyone")
	if strings.Contains(text(t, alice), "bobs-notes") {
		t.Fatal("alice sees bob's resource")
	}
	screenshot(t, alice, "02-my-resources")

	// She shares holiday-photos (read) with bob by e-mail.
	browse(t, alice, "sharing",
		chromedp.Navigate(issuer+"/console/resources/"+photos),
		chromedp.WaitVisible(chromedp.CSS("#person")),
		chromedp.SendKeys(chromedp.CSS("#person"), "bob@example.org"),
		chromedp.Click(chromedp.CSS("#scope-read")),
		chromedp.Click(chromedp.CSS("form[action$='/console/shares'] button.primary")),
		chromedp.WaitVisible(chromedp.CSS("p.notice.ok")),
	)
	expectText(t, alice, "Shared.", "bob@example.org", "any application")
	screenshot(t, alice, "03-resource-shared")

	// Bob's client asks: need_info, with the claims interaction endpoint.
	status, resp := u.grant(url.Values{"ticket": {firstTicket}})
	if status != 403 || resp["error"] != "need_info" || resp["redirect_user"] != issuer+"/claims" {
		t.Fatalf("first grant: %d %v", status, resp)
	}
	// Bob goes through claims gathering in his browser.
	q := url.Values{"client_id": {"bob-app"}, "ticket": {resp["ticket"].(string)}, "claims_redirect_uri": {callback}, "state": {"bob-state-1"}}
	browse(t, bob, "claims interaction", chromedp.Navigate(resp["redirect_user"].(string)+"?"+q.Encode()))
	login(t, bob, "bob", bobPassword)
	browse(t, bob, "claims page", chromedp.WaitVisible(chromedp.CSS("#remember")))
	expectText(t, bob, "bob-app asks who you are", "holiday-photos", "bob@example.org")
	screenshot(t, bob, "04-claims-interaction")
	browse(t, bob, "consenting", chromedp.Click(chromedp.CSS("#remember")), chromedp.Click(chromedp.CSS("button[value=share]")))
	var back url.Values
	select {
	case back = <-app.got:
	case <-time.After(20 * time.Second):
		t.Fatal("the browser did not come back to the client")
	}
	if back.Get("state") != "bob-state-1" || back.Get("ticket") == "" || back.Get("app") != "bob" || len(back) != 3 {
		t.Fatalf("back at the client with %v", back)
	}
	status, resp = u.grant(url.Values{"ticket": {back.Get("ticket")}})
	if status != 200 || resp["pct"] == nil {
		t.Fatalf("grant after claims gathering: %d %v", status, resp)
	}
	rpt, pct, refresh := resp["access_token"].(string), resp["pct"].(string), resp["refresh_token"].(string)
	if perms := u.permissions(rpt); !slices.Equal(perms[photos], []string{"read"}) {
		t.Fatalf("bob's RPT: %v", perms)
	}
	// With it, bob's client reaches the upstream through uma_protect.
	if r := callAPI(t, api+"/albums/alice/holiday-photos", rpt); r.StatusCode != 200 || upstream.count() != 1 {
		t.Fatalf("the API with the RPT: %d, %d requests upstream", r.StatusCode, upstream.count())
	}

	// Bob sees what is shared with him.
	browse(t, bob, "shared with me", chromedp.Navigate(issuer+"/console/shared-with-me"), chromedp.WaitVisible(chromedp.CSS("table")))
	expectText(t, bob, "holiday-photos", "alice", "read")
	screenshot(t, bob, "05-shared-with-me")

	// Alice revokes: the RPT and its refresh token stop working at once.
	browse(t, alice, "revoking",
		chromedp.Navigate(issuer+"/console/resources/"+photos),
		chromedp.Click(chromedp.CSS("button.danger")),
		chromedp.WaitVisible(chromedp.CSS("p.notice.ok")),
	)
	expectText(t, alice, "revoked", "Not shared with anyone")
	if perms := u.permissions(rpt); perms != nil {
		t.Fatalf("bob's RPT after revocation: %v", perms)
	}
	// The next request through uma_protect is refused, and the upstream
	// sees nothing.
	if r := callAPI(t, api+"/albums/alice/holiday-photos", rpt); r.StatusCode != 401 || upstream.count() != 1 {
		t.Fatalf("the API after revocation: %d, %d requests upstream", r.StatusCode, upstream.count())
	}
	if status, resp := u.call("POST", "/token", "application/x-www-form-urlencoded",
		url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh}}.Encode(), [2]string{"bob-app", "bob-app-secret"}, ""); status != 400 {
		t.Fatalf("refresh after revocation: %d %v", status, resp)
	}
	// And the next request (with bob's PCT) is refused.
	if status, resp := u.grant(url.Values{"ticket": {u.ticket(photos, "read")}, "pct": {pct}}); status != 403 || resp["error"] != "request_denied" {
		t.Fatalf("grant after revocation: %d %v", status, resp)
	}

	// Rules: a syntax error is reported at its line.
	broken := "package uma.share\n\nimport data.uma.lib\n\nask_owner contains scope if {\n\tlib.is_email(\"bob@example.org\"\n\tsome scope in lib.requested\n}\n"
	browse(t, alice, "rules editor",
		chromedp.Navigate(issuer+"/console/rules?new=1&name="),
		chromedp.WaitVisible(chromedp.CSS("#source")),
		chromedp.SetValue(chromedp.CSS("#name"), "ask-me"),
		chromedp.SetValue(chromedp.CSS("#source"), broken),
		chromedp.Click(chromedp.CSS("button[value=save]")),
		chromedp.WaitVisible(chromedp.CSS("div.problems")),
	)
	expectText(t, alice, "do not compile", "ask-me, line 7")
	screenshot(t, alice, "06-rules-error")
	fixed := strings.Replace(broken, `"bob@example.org"`, `"bob@example.org")`, 1)
	browse(t, alice, "fixing the rule",
		chromedp.SetValue(chromedp.CSS("#source"), fixed),
		chromedp.Click(chromedp.CSS("button[value=save]")),
		chromedp.WaitVisible(chromedp.CSS("p.notice.ok")),
	)
	expectText(t, alice, "saved")

	// Try it: the rule asks alice about bob's write.
	browse(t, alice, "trying the rules",
		chromedp.SetValue(chromedp.CSS("#try-resource"), photos),
		chromedp.SendKeys(chromedp.CSS("#try-scopes"), "write"),
		chromedp.SendKeys(chromedp.CSS("#try-email"), "bob@example.org"),
		chromedp.SendKeys(chromedp.CSS("#try-sub"), "bob"),
		chromedp.Click(chromedp.CSS("form[action*='/rules/try'] button")),
		chromedp.WaitVisible(chromedp.CSS("div.result")),
	)
	expectText(t, alice, "Nothing is granted", "needs your approval")
	screenshot(t, alice, "07-rules-try")

	// Bob's client asks for write: the request goes to alice.
	status, resp = u.grant(url.Values{"ticket": {u.ticket(photos, "write")}, "pct": {pct}})
	if status != 403 || resp["error"] != "request_submitted" {
		t.Fatalf("asking for write: %d %v", status, resp)
	}
	polling := resp["ticket"].(string)
	browse(t, alice, "requests", chromedp.Navigate(issuer+"/console/requests"), chromedp.WaitVisible(chromedp.CSS("button[value=approve]")))
	expectText(t, alice, "Bob Builder", "holiday-photos", "write", "bob-app")
	screenshot(t, alice, "08-requests")
	browse(t, alice, "approving", chromedp.Click(chromedp.CSS("button[value=approve]")), chromedp.WaitVisible(chromedp.CSS("p.notice.ok")))
	expectText(t, alice, "Approved", "No request is waiting")
	time.Sleep(1100 * time.Millisecond) // the polling interval
	status, resp = u.grant(url.Values{"ticket": {polling}})
	if status != 200 {
		t.Fatalf("polling after approval: %d %v", status, resp)
	}
	if perms := u.permissions(resp["access_token"].(string)); !slices.Equal(perms[photos], []string{"write"}) {
		t.Fatalf("bob's RPT after approval: %v", perms)
	}

	// History tells who got what, and why.
	browse(t, alice, "history", chromedp.Navigate(issuer+"/console/history"), chromedp.WaitVisible(chromedp.CSS("table.history")))
	// The first step of bob's client, before bob said who he is, was a
	// question, not a refusal.
	expectText(t, alice, "Bob Builder", "bob-app", "granted", "your share with bob@example.org", "refused",
		"asked who is requesting", "they were asked who they are")
	screenshot(t, alice, "09-history")
	// On a narrow screen (a phone, 500 px), nothing is wider than the
	// viewport: the table scrolls in its own box.
	browse(t, alice, "narrow history", chromedp.EmulateViewport(500, 900),
		chromedp.Navigate(issuer+"/console/history"), chromedp.WaitVisible(chromedp.CSS("table.history")))
	if w := pageWidths(t, alice); w.Scroll > w.Viewport {
		t.Fatalf("the history page is %d px wide in a %d px viewport", w.Scroll, w.Viewport)
	}
	screenshot(t, alice, "09-history-narrow")
	browse(t, alice, "narrow resource page", chromedp.Navigate(issuer+"/console/resources/"+photos), chromedp.WaitVisible(chromedp.CSS("#person")))
	if w := pageWidths(t, alice); w.Scroll > w.Viewport {
		t.Fatalf("the resource page is %d px wide in a %d px viewport", w.Scroll, w.Viewport)
	}
	screenshot(t, alice, "09-resource-narrow")
	browse(t, alice, "wide again", chromedp.EmulateViewport(1280, 900))

	// The rules page and the resource page, for the record.
	browse(t, alice, "rules page", chromedp.Navigate(issuer+"/console/rules?name=ask-me"), chromedp.WaitVisible(chromedp.CSS("#source")))
	screenshot(t, alice, "10-rules")
	browse(t, alice, "resource page", chromedp.Navigate(issuer+"/console/resources/"+photos), chromedp.WaitVisible(chromedp.CSS("#person")))
	expectText(t, alice, "bob", "write", "bob-app only")
	screenshot(t, alice, "11-resource")
	inst.checkLog()
}

// upstream is the protected API: it counts what reaches it.
type upstream struct {
	srv *httptest.Server
	mu  sync.Mutex
	n   int
}

func newUpstream(t *testing.T) *upstream {
	u := &upstream{}
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.n++
		u.mu.Unlock()
		fmt.Fprintln(w, "the album")
	}))
	t.Cleanup(u.srv.Close)
	return u
}

func (u *upstream) count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.n
}

// callAPI GETs a URL of the protected API, with an RPT if given.
func callAPI(t *testing.T, url, rpt string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rpt != "" {
		req.Header.Set("Authorization", "Bearer "+rpt)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

var ticketParam = regexp.MustCompile(`ticket="([^"]+)"`)

// ticketOf reads the ticket of an UMA challenge from the AS issuer.
func ticketOf(t *testing.T, r *http.Response, issuer string) string {
	t.Helper()
	h := r.Header.Get("WWW-Authenticate")
	m := ticketParam.FindStringSubmatch(h)
	if !strings.HasPrefix(h, "UMA ") || m == nil || !strings.Contains(h, `as_uri="`+issuer+`"`) {
		t.Fatalf("UMA challenge: %q", h)
	}
	return m[1]
}

// resourceNamed returns the id of the resource server's resource name.
func (u *umaClient) resourceNamed(name string) string {
	u.t.Helper()
	req, err := http.NewRequest(http.MethodGet, u.issuer+"/resource_set?name="+url.QueryEscape(name), nil)
	if err != nil {
		u.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+u.pat)
	var ids []string
	if err := do(req, http.StatusOK, &ids); err != nil || len(ids) != 1 {
		u.t.Fatalf("resource %q: %v %v", name, ids, err)
	}
	return ids[0]
}
