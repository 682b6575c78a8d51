//go:build unix

package integration

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/caddy-uma/caddy-uma/authz/claimtoken/claimtokentest"
)

// dashboardFile is the Grafana dashboard of the docs.
const dashboardFile = "../../docs/grafana-dashboard.json"

// mayBeEmpty are the panels whose queries find nothing while all is well
// (faults); their queries must still run.
var mayBeEmpty = map[string]bool{
	"Store faults": true,
	"Rules: evaluation and compilation faults": true,
}

// grafanaVariable is a variable of a Grafana query.
var grafanaVariable = regexp.MustCompile(`\$(__rate_interval|instance)`)

// promExpr is a Grafana query as Prometheus runs it here: every instance,
// rates over a minute.
func promExpr(expr string) string {
	return grafanaVariable.ReplaceAllStringFunc(expr, func(v string) string {
		if v == "$instance" {
			return ".*"
		}
		return "1m"
	})
}

// dashboardQuery is one query of a panel.
type dashboardQuery struct {
	panel, expr string
}

func dashboardQueries(t *testing.T) []dashboardQuery {
	t.Helper()
	raw, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatal(err)
	}
	var out []dashboardQuery
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			out = append(out, dashboardQuery{p.Title, tg.Expr})
		}
	}
	return out
}

// promQuery runs an instant query on Prometheus's HTTP API and returns its
// result series (value as text), or the API's error.
func promQuery(t *testing.T, prom, expr string) (map[string]string, error) {
	t.Helper()
	resp, err := httpClient.Get(prom + "/api/v1/query?" + url.Values{"query": {expr}}.Encode())
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var a struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []struct {
				Metric map[string]string `json:"metric"`
				Value  [2]any            `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&a); err != nil {
		return nil, err
	}
	if a.Status != "success" {
		return nil, fmt.Errorf("%s: %s", a.Status, a.Error)
	}
	out := map[string]string{}
	for _, r := range a.Data.Result {
		delete(r.Metric, "instance")
		delete(r.Metric, "job")
		out[fmt.Sprint(r.Metric)] = fmt.Sprint(r.Value[1])
	}
	return out, nil
}

// TestDashboardQueries runs every query of docs/grafana-dashboard.json on a
// real Prometheus (Debian's) that scrapes a Caddy under a short load of
// grants and protected requests: each query is valid PromQL and, but for
// the panels of faults, finds series. The p50 and p99 it finds are logged.
func TestDashboardQueries(t *testing.T) {
	skipShort(t)
	promBin, err := exec.LookPath("prometheus")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("prometheus is not installed (apt-get install prometheus; .ci/run installs it)")
		}
		t.Skip("prometheus is not installed")
	}
	idp := claimtokentest.NewProvider(t)
	up := newRecorder(t)
	oc := newObsConfig(t, idp, up)
	startObsCaddy(t, oc)
	as := fmt.Sprintf("http://127.0.0.1:%d", oc.ASPort)
	api := fmt.Sprintf("http://127.0.0.1:%d", oc.APIPort)

	dir := t.TempDir()
	promAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cfg := fmt.Sprintf("global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: caddy\n    static_configs:\n      - targets: [%q]\n", oc.AdminAddr)
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	prom := exec.Command(promBin, append([]string{"--config.file=" + filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path=" + filepath.Join(dir, "data"), "--web.listen-address=" + promAddr},
		consoleFlags(t, dir)...)...)
	var promLog syncBuffer
	prom.Stdout, prom.Stderr = &promLog, &promLog
	if err := prom.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = prom.Process.Kill()
		_ = prom.Wait()
		if t.Failed() {
			t.Logf("log of prometheus:\n%s", promLog.String())
		}
	})
	promURL := "http://" + promAddr

	// scrapes counts Prometheus's scrapes of Caddy in the last minute.
	scrapes := func() int {
		res, err := promQuery(t, promURL, `count_over_time(up{job="caddy"}[1m])`)
		if err != nil || len(res) != 1 {
			return 0
		}
		var n int
		for _, v := range res {
			fmt.Sscan(v, &n)
		}
		return n
	}
	deadline := time.Now().Add(60 * time.Second)
	for scrapes() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("Prometheus did not scrape Caddy within 60 s")
		}
		time.Sleep(100 * time.Millisecond)
	}

	// The load, over three scrapes at least: each round a PAT, a wrong
	// secret, need_info, a grant, five protected requests with the RPT,
	// one with garbage, one through the remote enforcement point, a
	// readiness probe; every ten rounds alice's rule file changes on disk,
	// and is compiled again.
	bob := bobsIDToken(t, idp)
	start, before := time.Now(), scrapes()
	rounds := 0
	for ; rounds < 500 && (rounds%10 != 0 || scrapes() < before+3); rounds++ {
		if rounds%10 == 0 {
			src := fmt.Sprintf("%s\n# round %d\n", aliceRules, rounds)
			if err := os.WriteFile(filepath.Join(oc.Policies, "alice", "share.rego"), []byte(src), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		postAs(t, as+"/token", "rs-api", "rs-api-secret", url.Values{"grant_type": {"client_credentials"}})
		postAs(t, as+"/token", "rs-api", "wrong", url.Values{"grant_type": {"client_credentials"}})
		record := fmt.Sprintf("/api/records/alice/%d", rounds)
		tk := challengeParams(t, send(t, "GET", api+record, "").header.Get("WWW-Authenticate"))["ticket"]
		_, body := tokenRequest(t, as, url.Values{"ticket": {tk}})
		next, _ := body["ticket"].(string)
		status, body := tokenRequest(t, as, url.Values{"ticket": {next}, "claim_token": {bob}, "claim_token_format": {idTokenFormat}})
		if status != http.StatusOK {
			t.Fatalf("round %d: grant %d %v", rounds, status, body)
		}
		rpt := body["access_token"].(string)
		for range 5 {
			send(t, "GET", api+record, rpt)
		}
		send(t, "GET", api+record, "not-an-rpt")
		send(t, "GET", api+fmt.Sprintf("/remote/records/alice/%d", rounds), "")
		probe(t, as+"/ready")
	}
	elapsed := time.Since(start)
	t.Logf("load: %d rounds (%d token requests, %d protected requests) in %s: %.0f grants/s with the rest",
		rounds, 4*rounds, 8*rounds, elapsed.Round(time.Millisecond), float64(rounds)/elapsed.Seconds())

	queries := dashboardQueries(t)
	deadline = time.Now().Add(60 * time.Second)
	pending := queries
	for len(pending) > 0 {
		var still []dashboardQuery
		for _, q := range pending {
			expr := promExpr(q.expr)
			res, err := promQuery(t, promURL, expr)
			switch {
			case err != nil && strings.Contains(err.Error(), "connection refused"):
				still = append(still, q) // Prometheus is starting
			case err != nil:
				t.Fatalf("panel %q: %s: %v", q.panel, expr, err)
			case !mayBeEmpty[q.panel] && !anyNumber(res):
				still = append(still, q) // not scraped twice yet
			}
		}
		pending = still
		if len(pending) > 0 && time.Now().After(deadline) {
			for _, q := range pending {
				t.Errorf("panel %q: %s finds no number", q.panel, q.expr)
			}
			return
		}
		if len(pending) > 0 {
			time.Sleep(250 * time.Millisecond)
		}
	}
	// The dashboard drawn by Prometheus's console graphs, over the load and
	// a few seconds after it: into docs/dashboard.png with
	// UMA_DASHBOARD_PNG=1, else into the test's directory.
	writeConsole(t, dir, fmt.Sprintf("dashboard, filled by TestDashboardQueries: %d rounds of the scripted load", rounds), start.Add(-5*time.Second), time.Now().Add(5*time.Second))
	png := shootDashboard(t, chromiumPath(t), promURL+"/consoles/uma.html")
	pngPath := filepath.Join(dir, "dashboard.png")
	if os.Getenv("UMA_DASHBOARD_PNG") == "1" {
		pngPath = filepath.Join("..", "..", "docs", "dashboard.png")
	}
	if err := os.WriteFile(pngPath, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("dashboard drawn by Prometheus: %s (%d bytes)", pngPath, len(png))

	// The figures of this run.
	for _, q := range queries {
		if !strings.Contains(q.panel, "latency") && q.panel != "RPT cache hit ratio" && q.panel != "Grant rate" {
			continue
		}
		expr := promExpr(q.expr)
		res, _ := promQuery(t, promURL, expr)
		keys := make([]string, 0, len(res))
		for k := range res {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			t.Logf("%s: %s %s = %s", q.panel, strings.SplitN(expr, "(", 2)[0], k, res[k])
		}
	}
}

// anyNumber says whether a query's result has a series with a number
// (histogram_quantile and ratios of nothing are NaN).
func anyNumber(res map[string]string) bool {
	for _, v := range res {
		if v != "NaN" && v != "+Inf" && v != "-Inf" {
			return true
		}
	}
	return false
}
