//go:build unix

package integration

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"text/template"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/caddy-uma/caddy-uma/authz/claimtoken/claimtokentest"
	"github.com/caddy-uma/caddy-uma/authz/pep/peptest"
)

// What operators see: the metrics on Caddy's /metrics, the audit trail
// routed to a file of its own with Caddy's log directive, and the health
// probes of uma_health.

// obsConfig is what the Caddyfile of these tests varies.
type obsConfig struct {
	AdminAddr string
	ASPort    int
	APIPort   int
	Storage   string // Badger directory
	// MinFreeSpace is the Badger storage's min_free_space; empty: the
	// default.
	MinFreeSpace string
	Postgres     string // DSN of a storage postgres line, in place of Badger
	Policies     string
	IdP          string
	Upstream     string
	AuditFile    string
	// FrozenAS is the issuer of an AS that answers as Keycloak does
	// (and that the test freezes), for the /kc/ site; empty: none.
	FrozenAS string
	RPTTTL   string
}

var obsTemplate = template.Must(template.New("Caddyfile").Parse(`{
	admin {{.AdminAddr}}
	persist_config off
	log uma_audit {
		output file {{.AuditFile}} {
			roll_keep_for 2160h
		}
		format json
		include uma.audit
	}
	log default {
		exclude uma.audit
	}

	uma {
		issuer http://127.0.0.1:{{.ASPort}}
{{- if .Postgres}}
		storage postgres {{.Postgres}}
{{- else}}
		storage badger {{.Storage}}
{{- if .MinFreeSpace}} {
			min_free_space {{.MinFreeSpace}}
		}
{{- end}}
{{- end}}
		policies {{.Policies}}
		rpt_ttl {{.RPTTTL}}
		trust_issuer {{.IdP}} {
			audience demo-app
		}
		client rs-api {
			secret rs-api-secret
			resource_server
		}
		client rs-remote {
			secret rs-remote-secret
			resource_server
		}
		client demo-app {
			secret demo-app-secret
		}
	}
}

http://127.0.0.1:{{.ASPort}} {
	bind 127.0.0.1
	uma_health /live live
	uma_health /ready ready
	uma_server
	respond "not an AS endpoint" 404
}

http://127.0.0.1:{{.APIPort}} {
	bind 127.0.0.1
	handle /api/* {
		uma_protect {
			as co-hosted
			resource_server rs-api
			realm records
			resource /api/records/{owner}/{id} {
				owner {owner}
				context via {http.request.header.X-Via}
			}
		}
		reverse_proxy {{.Upstream}}
	}
	handle /remote/* {
		uma_protect {
			as http://127.0.0.1:{{.ASPort}}
			client_id rs-remote
			client_secret rs-remote-secret
			resource /remote/records/{owner}/{id} {
				owner {owner}
			}
		}
		reverse_proxy {{.Upstream}}
	}
{{- if .FrozenAS}}
	handle /kc/* {
		uma_protect {
			as {{.FrozenAS}}
			client_id rs-kc
			client_secret kc-secret
			timeout 1s
			resource /kc/records/{owner}/{id} {
				owner {owner}
			}
		}
		reverse_proxy {{.Upstream}}
	}
{{- end}}
	respond "public" 200
}
`))

// obsCaddy is a running caddy of obsTemplate.
type obsCaddy struct {
	*instance
	oc obsConfig
}

// newObsConfig returns a config on free ports with alice's rules and
// Badger in a new directory.
func newObsConfig(t *testing.T, idp *claimtokentest.Provider, up *recorder) obsConfig {
	t.Helper()
	return obsConfig{
		AdminAddr: fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		ASPort:    freePort(t),
		APIPort:   freePort(t),
		Storage:   filepath.Join(t.TempDir(), "uma"),
		Policies:  writeRules(t),
		IdP:       idp.Issuer(),
		Upstream:  up.Listener.Addr().String(),
		AuditFile: filepath.Join(t.TempDir(), "audit.log"),
		RPTTTL:    "1m",
	}
}

// startObsCaddy runs caddy with oc and waits until the AS answers.
func startObsCaddy(t *testing.T, oc obsConfig, env ...string) *obsCaddy {
	t.Helper()
	dir := t.TempDir()
	inst := &instance{
		t: t, dir: dir, caddyfile: filepath.Join(dir, "Caddyfile"),
		cfg: config{AdminAddr: oc.AdminAddr, Port: oc.ASPort},
		log: new(syncBuffer), exited: make(chan struct{}),
	}
	c := &obsCaddy{instance: inst, oc: oc}
	c.write(oc)
	inst.run(t, env, "")
	if err := inst.waitReady(30 * time.Second); err != nil {
		t.Fatalf("caddy did not start: %v\n%s", err, inst.log)
	}
	return c
}

func (c *obsCaddy) write(oc obsConfig) {
	c.t.Helper()
	var buf strings.Builder
	if err := obsTemplate.Execute(&buf, oc); err != nil {
		c.t.Fatal(err)
	}
	if err := os.WriteFile(c.caddyfile, []byte(buf.String()), 0o600); err != nil {
		c.t.Fatal(err)
	}
}

// reload rewrites the Caddyfile with oc and runs caddy reload.
func (c *obsCaddy) reload(oc obsConfig) {
	c.t.Helper()
	c.write(oc)
	out, err := c.caddyCommand("reload", "--config", c.caddyfile, "--adapter", "caddyfile", "--address", c.oc.AdminAddr)
	if err != nil {
		c.t.Fatalf("caddy reload: %v\n%s", err, out)
	}
	c.oc = oc
}

// scrape is one read of /metrics.
type scrape map[string]*dto.MetricFamily

// scrapeMetrics reads Caddy's /metrics on the admin endpoint.
func scrapeMetrics(t *testing.T, adminAddr string) scrape {
	t.Helper()
	resp, err := httpClient.Get("http://" + adminAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %d", resp.StatusCode)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parsing /metrics: %v", err)
	}
	return fams
}

// value sums the series of name whose labels include labels: a counter's
// or a gauge's value, a histogram's count.
func (s scrape) value(name string, labels ...string) float64 {
	f := s[name]
	if f == nil {
		return 0
	}
	var sum float64
next:
	for _, m := range f.Metric {
		for i := 0; i+1 < len(labels); i += 2 {
			found := false
			for _, l := range m.Label {
				found = found || (l.GetName() == labels[i] && l.GetValue() == labels[i+1])
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			sum += m.Counter.GetValue()
		case m.Gauge != nil:
			sum += m.Gauge.GetValue()
		case m.Histogram != nil:
			sum += float64(m.Histogram.GetSampleCount())
		}
	}
	return sum
}

// labelNames lists the label names that the series of name use.
func (s scrape) labelNames(name string) []string {
	var out []string
	if f := s[name]; f != nil {
		for _, m := range f.Metric {
			for _, l := range m.Label {
				if !slices.Contains(out, l.GetName()) {
					out = append(out, l.GetName())
				}
			}
		}
	}
	slices.Sort(out)
	return out
}

// metricWant is a series whose value should have gone up by delta between
// two scrapes.
type metricWant struct {
	name   string
	labels []string
	delta  float64
}

func checkDeltas(t *testing.T, what string, before, after scrape, wants []metricWant) {
	t.Helper()
	for _, w := range wants {
		if got := after.value(w.name, w.labels...) - before.value(w.name, w.labels...); got != w.delta {
			t.Errorf("%s: %s%v went up by %v, want %v", what, w.name, w.labels, got, w.delta)
		}
	}
}

// auditLines reads the audit file: one JSON object per line.
func auditLines(t *testing.T, path string) []map[string]any {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []map[string]any
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("audit line not JSON: %v: %s", err, sc.Text())
		}
		out = append(out, m)
	}
	return out
}

// TestMetricsAndAudit runs a scripted flow (PATs, a registration, tickets,
// grants answered granted, need_info and request_denied, protected requests
// allowed and refused, a remote AS that answers and one that does not),
// then scrapes /metrics and finds each metric with the counts the flow
// makes, and reads the audit trail, routed to a file of its own: one line
// per token answer and per enforcement, with the fields an auditor needs
// and no token, ticket or secret. Then Caddy reloads a changed config, and
// the metrics go on.
func TestMetricsAndAudit(t *testing.T) {
	skipShort(t)
	idp := claimtokentest.NewProvider(t)
	up := newRecorder(t)
	oc := newObsConfig(t, idp, up)
	kc := peptest.NewKeycloak(t, "rs-kc", "kc-secret")
	oc.FrozenAS = kc.Issuer()
	c := startObsCaddy(t, oc)
	as := fmt.Sprintf("http://127.0.0.1:%d", oc.ASPort)
	api := fmt.Sprintf("http://127.0.0.1:%d", oc.APIPort)
	const record = "/api/records/alice/1"
	secrets := []string{"rs-api-secret", "rs-remote-secret", "demo-app-secret"}
	keep := func(tok string) string { secrets = append(secrets, tok); return tok }

	start := scrapeMetrics(t, oc.AdminAddr)
	if start.value("caddy_uma_policy_compilations_total", "result", "ok") == 0 {
		t.Error("no compilation of alice's rules counted at start")
	}
	if start.value("caddy_uma_policy_compilation_duration_seconds") == 0 {
		t.Error("no compilation time observed at start")
	}

	// A PAT, a wrong secret, a registration and a ticket of the
	// protection API.
	status, body := postAs(t, as+"/token", "rs-api", "rs-api-secret", url.Values{"grant_type": {"client_credentials"}})
	if status != http.StatusOK {
		t.Fatalf("PAT: %d %v", status, body)
	}
	pat := keep(body["access_token"].(string))
	if status, _ := postAs(t, as+"/token", "rs-api", "wrong-secret", url.Values{"grant_type": {"client_credentials"}}); status != http.StatusUnauthorized {
		t.Fatalf("wrong secret: %d", status)
	}
	id, err := registerResource(as, pat)
	if err != nil {
		t.Fatal(err)
	}
	keep(permissionTicket(t, as, pat, id, "read"))

	// The UMA grant: need_info, then granted with bob's ID token.
	resp := send(t, "GET", api+record, "")
	params := challengeParams(t, resp.header.Get("WWW-Authenticate"))
	status, body = tokenRequest(t, as, url.Values{"ticket": {keep(params["ticket"])}})
	if status != http.StatusForbidden || body["error"] != "need_info" {
		t.Fatalf("without claims: %d %v, want need_info", status, body)
	}
	bob := keep(bobsIDToken(t, idp))
	status, body = tokenRequest(t, as, url.Values{"ticket": {keep(body["ticket"].(string))}, "claim_token": {bob}, "claim_token_format": {idTokenFormat}})
	if status != http.StatusOK {
		t.Fatalf("with bob's claims: %d %v", status, body)
	}
	rpt := keep(body["access_token"].(string))
	if rt, _ := body["refresh_token"].(string); rt != "" {
		keep(rt)
	}
	// Refused by alice's rules: request_denied.
	resp = send(t, "GET", api+"/api/records/alice/3", "", "X-Via", "banned")
	banned := keep(challengeParams(t, resp.header.Get("WWW-Authenticate"))["ticket"])
	status, body = tokenRequest(t, as, url.Values{"ticket": {banned}, "claim_token": {bob}, "claim_token_format": {idTokenFormat}})
	if status != http.StatusForbidden || body["error"] != "request_denied" {
		t.Fatalf("via=banned: %d %v, want request_denied", status, body)
	}

	// Protected requests: allowed with the RPT; refused with garbage, for
	// a scope the RPT lacks, and on a path that maps to no resource.
	if r := send(t, "GET", api+record, rpt); r.status != http.StatusOK {
		t.Fatalf("with the RPT: %d %q", r.status, r.body)
	}
	if r := send(t, "GET", api+record, "not-an-rpt"); r.status != http.StatusUnauthorized {
		t.Errorf("garbage token: %d", r.status)
	}
	if r := send(t, "DELETE", api+record, rpt); r.status != http.StatusUnauthorized {
		t.Errorf("DELETE with a read RPT: %d", r.status)
	}
	if r := send(t, "GET", api+"/api/elsewhere", ""); r.status != http.StatusForbidden {
		t.Errorf("unmatched: %d", r.status)
	}

	flow := scrapeMetrics(t, oc.AdminAddr)
	const uma = "urn:ietf:params:oauth:grant-type:uma-ticket"
	checkDeltas(t, "after the flow", start, flow, []metricWant{
		{"caddy_uma_token_requests_total", []string{"grant_type", "client_credentials", "code", "ok"}, 1},
		{"caddy_uma_token_requests_total", []string{"grant_type", "client_credentials", "code", "invalid_client"}, 1},
		{"caddy_uma_token_requests_total", []string{"grant_type", uma, "code", "need_info"}, 1},
		{"caddy_uma_token_requests_total", []string{"grant_type", uma, "code", "ok"}, 1},
		{"caddy_uma_token_requests_total", []string{"grant_type", uma, "code", "request_denied"}, 1},
		{"caddy_uma_token_requests_total", nil, 5},
		{"caddy_uma_token_request_duration_seconds", []string{"grant_type", uma}, 3},
		{"caddy_uma_decisions_total", []string{"outcome", "granted"}, 1},
		{"caddy_uma_decisions_total", []string{"outcome", "need_info"}, 1},
		{"caddy_uma_decisions_total", []string{"outcome", "request_denied"}, 1},
		{"caddy_uma_decisions_total", []string{"outcome", "request_submitted"}, 0},
		{"caddy_uma_protect_requests_total", []string{"reason", "no_token"}, 2},
		{"caddy_uma_protect_requests_total", []string{"reason", "authorized"}, 1},
		{"caddy_uma_protect_requests_total", []string{"reason", "invalid_token"}, 1},
		{"caddy_uma_protect_requests_total", []string{"reason", "insufficient_scope"}, 1},
		{"caddy_uma_protect_requests_total", []string{"reason", "unmatched"}, 1},
		{"caddy_uma_protect_duration_seconds", nil, 6},
		{"caddy_uma_rpt_cache_lookups_total", []string{"result", "miss"}, 2},
		{"caddy_uma_rpt_cache_lookups_total", []string{"result", "hit"}, 1},
		{"caddy_uma_policy_evaluations_total", []string{"result", "ok"}, 3},
		{"caddy_uma_policy_evaluation_duration_seconds", nil, 3},
		{"caddy_uma_remote_as_calls_total", nil, 0},
	})
	for _, w := range []struct {
		name   string
		labels []string
	}{
		{"caddy_uma_store_operations_total", []string{"backend", "badger", "operation", "put_all", "result", "ok"}},
		{"caddy_uma_store_operations_total", []string{"backend", "badger", "operation", "get", "result", "not_found"}},
		{"caddy_uma_store_operation_duration_seconds", []string{"backend", "badger", "operation", "create_resource"}},
		{"caddy_uma_claim_token_key_fetches_total", []string{"result", "ok"}},
	} {
		if flow.value(w.name, w.labels...) == 0 {
			t.Errorf("after the flow: no %s%v", w.name, w.labels)
		}
	}
	// Low-cardinality labels only.
	for name, want := range map[string][]string{
		"caddy_uma_token_requests_total":   {"code", "grant_type"},
		"caddy_uma_protect_requests_total": {"reason"},
		"caddy_uma_store_operations_total": {"backend", "operation", "result"},
		"caddy_uma_decisions_total":        {"outcome"},
	} {
		if got := flow.labelNames(name); !slices.Equal(got, want) {
			t.Errorf("%s has labels %v, want %v", name, got, want)
		}
	}
	for name, f := range flow {
		if strings.HasPrefix(name, "caddy_uma_") && f.GetHelp() == "" {
			t.Errorf("%s has no HELP", name)
		}
	}

	// The audit trail: in its own file, not in the default log.
	lines := auditLines(t, oc.AuditFile)
	byMsg := map[string][]map[string]any{}
	for _, l := range lines {
		if l["logger"] != "uma.audit" {
			t.Errorf("a line of logger %v in the audit file", l["logger"])
		}
		if _, ok := l["ts"]; !ok {
			t.Errorf("audit line without a time: %v", l)
		}
		byMsg[l["msg"].(string)] = append(byMsg[l["msg"].(string)], l)
	}
	if n := len(byMsg["token request"]); n != 5 {
		t.Errorf("%d token request lines, want 5", n)
	}
	if n := len(byMsg["protected request"]); n != 6 {
		t.Errorf("%d protected request lines, want 6", n)
	}
	if n := c.countLog(`"logger":"uma.audit"`); n != 0 {
		t.Errorf("%d audit lines in the default log, which excludes uma.audit", n)
	}
	var granted, authorized map[string]any
	for _, l := range byMsg["token request"] {
		if l["outcome"] == "granted" {
			granted = l
		}
	}
	for _, l := range byMsg["protected request"] {
		if l["reason"] == "authorized" {
			authorized = l
		}
	}
	if granted == nil || authorized == nil {
		t.Fatalf("no granted token request or authorized protected request in the audit trail:\n%v", lines)
	}
	for k, want := range map[string]any{"grant_type": uma, "client_id": "demo-app", "requesting_party": "bob", "status": 200.0} {
		if granted[k] != want {
			t.Errorf("granted token request: %s = %v, want %v (%v)", k, granted[k], want, granted)
		}
	}
	ds, _ := granted["decisions"].([]any)
	if len(ds) != 1 {
		t.Fatalf("granted token request: decisions %v, want one", granted["decisions"])
	}
	d := ds[0].(map[string]any)
	if d["owner"] != "alice" || d["resource_id"] == "" || d["outcome"] != "granted" ||
		fmt.Sprint(d["requested"]) != "[read]" || fmt.Sprint(d["granted"]) != "[read]" ||
		fmt.Sprint(d["granted_by"]) != "map[read:[rules]]" {
		t.Errorf("granted decision %v, want alice's resource, read asked and granted by her rules", d)
	}
	for k, want := range map[string]any{"allowed": true, "method": "GET", "path": record, "owner": "alice",
		"resource_id": d["resource_id"], "requesting_party": "bob", "client_id": "demo-app"} {
		if authorized[k] != want {
			t.Errorf("authorized request: %s = %v, want %v (%v)", k, authorized[k], want, authorized)
		}
	}
	if fmt.Sprint(authorized["requested"]) != "[read]" || fmt.Sprint(authorized["granted"]) != "[read]" {
		t.Errorf("authorized request: requested %v, granted %v; want [read] and [read]", authorized["requested"], authorized["granted"])
	}
	raw, _ := os.ReadFile(oc.AuditFile)
	for _, s := range secrets {
		if strings.Contains(string(raw), s) {
			t.Errorf("the audit trail holds a token, ticket or secret: %.12s...", s)
		}
	}

	// Remote: two ASes that answer (this one, as a remote AS, and one
	// that answers as Keycloak does), then Keycloak freezes: three calls
	// time out, and the circuit breaker opens.
	if r := send(t, "GET", api+"/remote/records/alice/7", ""); r.status != http.StatusUnauthorized {
		t.Errorf("remote AS: %d %q", r.status, r.body)
	}
	if r := send(t, "GET", api+"/kc/records/alice/1", ""); r.status != http.StatusUnauthorized {
		t.Errorf("Keycloak: %d %q", r.status, r.body)
	}
	answered := scrapeMetrics(t, oc.AdminAddr)
	if answered.value("caddy_uma_remote_as_calls_total", "result", "answered") == 0 {
		t.Error("no answered call to a remote AS counted")
	}
	for _, issuer := range []string{as, kc.Issuer()} {
		if got := answered.value("caddy_uma_remote_as_circuit_open", "issuer", issuer); got != 0 || answered.value("caddy_uma_remote_as_circuit_open") != 0 {
			t.Errorf("circuit of %s: %v, want closed", issuer, got)
		}
	}
	if n := len(answered["caddy_uma_remote_as_circuit_open"].GetMetric()); n != 2 {
		t.Errorf("%d circuit gauges, want one per remote AS (2)", n)
	}
	kc.Freeze()
	for range 5 {
		if r := send(t, "GET", api+"/kc/records/alice/1", ""); r.status != http.StatusForbidden {
			t.Errorf("frozen AS: %d", r.status)
		}
	}
	kc.Thaw()
	remote := scrapeMetrics(t, oc.AdminAddr)
	checkDeltas(t, "with Keycloak frozen", answered, remote, []metricWant{
		{"caddy_uma_remote_as_calls_total", []string{"result", "failed"}, 3},
		{"caddy_uma_remote_as_calls_total", []string{"result", "refused"}, 2},
		{"caddy_uma_remote_as_calls_total", []string{"result", "answered"}, 0},
		{"caddy_uma_protect_requests_total", []string{"reason", "as_unavailable"}, 5},
	})
	if got := remote.value("caddy_uma_remote_as_circuit_open", "issuer", kc.Issuer()); got != 1 {
		t.Errorf("circuit of the frozen AS: %v, want 1 (open)", got)
	}
	if got := remote.value("caddy_uma_remote_as_circuit_open", "issuer", as); got != 0 {
		t.Errorf("circuit of the answering AS: %v, want 0 (closed)", got)
	}
	// The remote enforcement point's PAT is a token request too.
	checkDeltas(t, "after the remote calls", flow, answered, []metricWant{
		{"caddy_uma_token_requests_total", []string{"grant_type", "client_credentials", "code", "ok"}, 1},
	})

	// A reload with a changed config: the scrape works, nothing is counted
	// twice or lost, and the counters go on.
	oc.RPTTTL = "2m"
	c.reload(oc)
	again := scrapeMetrics(t, oc.AdminAddr)
	checkDeltas(t, "across the reload", remote, again, []metricWant{
		{"caddy_uma_token_requests_total", nil, 0},
		{"caddy_uma_decisions_total", nil, 0},
		{"caddy_uma_protect_requests_total", nil, 0},
	})
	if _, err := getPAT(as); err != nil {
		t.Fatal(err)
	}
	if r := send(t, "GET", api+record, rpt); r.status != http.StatusOK {
		t.Errorf("the RPT after the reload: %d", r.status)
	}
	after := scrapeMetrics(t, oc.AdminAddr)
	checkDeltas(t, "after the reload", again, after, []metricWant{
		{"caddy_uma_token_requests_total", []string{"grant_type", "client_credentials", "code", "ok"}, 1},
		{"caddy_uma_protect_requests_total", []string{"reason", "authorized"}, 1},
	})
	if n := c.countLog("registering metrics"); n != 0 {
		t.Errorf("%d log lines about registering metrics", n)
	}
	if n := c.countLog("duplicate metrics collector"); n != 0 {
		t.Errorf("%d log lines about duplicate collectors", n)
	}
	c.checkLog()
}
