package caddymodule

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/caddy-uma/caddy-uma/authz"
	"github.com/caddy-uma/caddy-uma/authz/audit"
	"github.com/caddy-uma/caddy-uma/authz/oauth"
	"github.com/caddy-uma/caddy-uma/store"
	"github.com/caddy-uma/caddy-uma/store/badgerstore"
)

// TestRegisterMetrics registers the collectors as reloads do: twice into
// one config's registry (the uma app and a uma_protect handler), then into
// the registry of the next config, where the counters go on. A collector of
// another module under one of our names is an error.
func TestRegisterMetrics(t *testing.T) {
	first := prometheus.NewPedanticRegistry()
	for range 2 {
		if err := registerMetrics(first); err != nil {
			t.Fatalf("registering into a registry that has them: %v", err)
		}
	}
	if err := registerMetrics(nil); err != nil {
		t.Fatalf("no registry: %v", err)
	}
	c := metrics.tokenRequests.WithLabelValues(authz.GrantTypeClientCredentials, "ok")
	before := testutil.ToFloat64(c)
	asObserver{}.TokenAnswered(audit.TokenAnswer{GrantType: authz.GrantTypeClientCredentials, Elapsed: time.Millisecond})

	next := prometheus.NewPedanticRegistry()
	if err := registerMetrics(next); err != nil {
		t.Fatal(err)
	}
	asObserver{}.TokenAnswered(audit.TokenAnswer{GrantType: authz.GrantTypeClientCredentials, Elapsed: time.Millisecond})
	for name, reg := range map[string]*prometheus.Registry{"first": first, "next": next} {
		n, err := testutil.GatherAndCount(reg, "caddy_uma_token_requests_total")
		if err != nil || n == 0 {
			t.Errorf("%s registry: %d series of caddy_uma_token_requests_total, %v", name, n, err)
		}
		if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) != 0 {
			t.Errorf("%s registry: lint %v %v", name, problems, err)
		}
	}
	if got := testutil.ToFloat64(c) - before; got != 2 {
		t.Errorf("counter went up by %v across registries, want 2", got)
	}

	clash := prometheus.NewRegistry()
	clash.MustRegister(prometheus.NewCounter(prometheus.CounterOpts{Name: "caddy_uma_decisions_total", Help: "another module's"}))
	if err := registerMetrics(clash); err == nil || !strings.Contains(err.Error(), "caddy_uma_decisions_total") {
		t.Errorf("registering beside a clashing collector: %v, want an error naming it", err)
	}
}

// TestTokenMetrics checks the labels of the token endpoint's answers.
func TestTokenMetrics(t *testing.T) {
	tests := []struct {
		name     string
		answer   audit.TokenAnswer
		code     string
		decision string // "" when none is counted
	}{
		{"a PAT", audit.TokenAnswer{GrantType: authz.GrantTypeClientCredentials}, "ok", ""},
		{"a bad client", audit.TokenAnswer{GrantType: authz.GrantTypeClientCredentials, Code: oauth.InvalidClient}, "invalid_client", ""},
		{"an RPT", audit.TokenAnswer{GrantType: authz.GrantTypeUMATicket, Decision: audit.GrantGranted}, "ok", "granted"},
		{"need_info", audit.TokenAnswer{GrantType: authz.GrantTypeUMATicket, Code: oauth.NeedInfo, Decision: audit.GrantNeedInfo}, "need_info", "need_info"},
		{"a bad ticket", audit.TokenAnswer{GrantType: authz.GrantTypeUMATicket, Code: oauth.InvalidGrant}, "invalid_grant", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := metrics.tokenRequests.WithLabelValues(tt.answer.GrantType, tt.code)
			before, sum := testutil.ToFloat64(c), decisionSum()
			var d prometheus.Counter
			var dBefore float64
			if tt.decision != "" {
				d = metrics.decisions.WithLabelValues(tt.decision)
				dBefore = testutil.ToFloat64(d)
			}
			asObserver{}.TokenAnswered(tt.answer)
			if got := testutil.ToFloat64(c) - before; got != 1 {
				t.Errorf("token_requests_total{%s,%s} went up by %v, want 1", tt.answer.GrantType, tt.code, got)
			}
			if tt.decision == "" {
				if decisionSum() != sum {
					t.Error("a decision was counted for an answer that is none")
				}
				return
			}
			if got := testutil.ToFloat64(d) - dBefore; got != 1 {
				t.Errorf("decisions_total{%s} went up by %v, want 1", tt.decision, got)
			}
		})
	}
}

func decisionSum() float64 {
	var sum float64
	for _, o := range []audit.GrantDecision{audit.GrantGranted, audit.GrantNeedInfo, audit.GrantRequestSubmitted, audit.GrantRequestDenied} {
		sum += testutil.ToFloat64(metrics.decisions.WithLabelValues(string(o)))
	}
	return sum
}

// failingStore fails every call with err.
type failingStore struct {
	store.Store
	err error
}

func (s failingStore) Get(_ context.Context, _, _ string) ([]byte, error) { return nil, s.err }

// TestStoreMetrics checks the operation and result labels of the store's
// calls.
func TestStoreMetrics(t *testing.T) {
	b, err := badgerstore.Open(badgerstore.Options{InMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx := t.Context()
	tests := []struct {
		name   string
		st     store.Store
		op     string
		call   func(s store.Store) error
		result string
	}{
		{"a write", b, "put", func(s store.Store) error { return s.Put(ctx, "ns", "k", []byte("v"), time.Time{}) }, "ok"},
		{"a read", b, "get", func(s store.Store) error { _, err := s.Get(ctx, "ns", "k"); return err }, "ok"},
		{"a read of nothing", b, "get", func(s store.Store) error { _, err := s.Get(ctx, "ns", "none"); return err }, "not_found"},
		{"an insert of a taken key", b, "insert", func(s store.Store) error { return s.Insert(ctx, "ns", "k", []byte("v"), time.Time{}) }, "exists"},
		{"a stale swap", b, "swap", func(s store.Store) error { return s.Swap(ctx, "ns", "k", []byte("old"), []byte("new"), time.Time{}) }, "conflict"},
		{"a take", b, "take", func(s store.Store) error { _, err := s.Take(ctx, "ns", "k"); return err }, "ok"},
		{"a full disk", failingStore{b, store.ErrNoSpace}, "get", func(s store.Store) error { _, err := s.Get(ctx, "ns", "k"); return err }, "no_space"},
		{"a closed store", failingStore{b, store.ErrClosed}, "get", func(s store.Store) error { _, err := s.Get(ctx, "ns", "k"); return err }, "closed"},
		{"a timeout", failingStore{b, context.DeadlineExceeded}, "get", func(s store.Store) error { _, err := s.Get(ctx, "ns", "k"); return err }, "timeout"},
		{"another fault", failingStore{b, errors.New("connection reset")}, "get", func(s store.Store) error { _, err := s.Get(ctx, "ns", "k"); return err }, "failed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newMeasuredStore(tt.st, "test")
			c := metrics.storeOps.WithLabelValues("test", tt.op, tt.result)
			before := testutil.ToFloat64(c)
			_ = tt.call(m)
			if got := testutil.ToFloat64(c) - before; got != 1 {
				t.Errorf("store_operations_total{test,%s,%s} went up by %v, want 1", tt.op, tt.result, got)
			}
		})
	}
	if n := testutil.CollectAndCount(metrics.storeDuration, "caddy_uma_store_operation_duration_seconds"); n == 0 {
		t.Error("no store latency observed")
	}
}

// TestKeyFetchMetrics counts the requests for a claim token issuer's
// documents and keys: answered, refused, not answered.
func TestKeyFetchMetrics(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/jwks" {
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close()
	client := &http.Client{Transport: keyFetchTransport{http.DefaultTransport}}
	tests := []struct {
		url    string
		result string
	}{
		{srv.URL + "/jwks", "ok"},
		{srv.URL + "/missing", "failed"},
		{dead.URL + "/jwks", "failed"},
	}
	for _, tt := range tests {
		c := metrics.keyFetches.WithLabelValues(tt.result)
		before := testutil.ToFloat64(c)
		if resp, err := client.Get(tt.url); err == nil {
			resp.Body.Close()
		}
		if got := testutil.ToFloat64(c) - before; got != 1 {
			t.Errorf("GET %s: claim_token_key_fetches_total{%s} went up by %v, want 1", tt.url, tt.result, got)
		}
	}
}

// TestCircuitGauge: an issuer's gauge exists while one pooled connection
// to it does, shows the breaker's state, and goes with the last one.
func TestCircuitGauge(t *testing.T) {
	const issuer = "https://as.example.test"
	g := func() float64 { return testutil.ToFloat64(metrics.circuitOpen.WithLabelValues(issuer)) }
	series := func() int { return testutil.CollectAndCount(metrics.circuitOpen) }
	base := series()
	remoteOpened(issuer)
	remoteOpened(issuer)
	if series() != base+1 || g() != 0 {
		t.Fatalf("after two connections: %d series, value %v; want one more, 0", series(), g())
	}
	pepObserver{}.Circuit(issuer, true)
	if g() != 1 {
		t.Errorf("open breaker: %v, want 1", g())
	}
	remoteClosed(issuer)
	if series() != base+1 {
		t.Errorf("one connection left: %d series, want %d", series(), base+1)
	}
	remoteClosed(issuer)
	if series() != base {
		t.Errorf("no connection left: %d series, want %d", series(), base)
	}
}

// dashboardPath is the Grafana dashboard of the docs.
const dashboardPath = "../docs/grafana-dashboard.json"

// dashboardMetric is a metric name in a query, with the suffix of a
// histogram's series.
var dashboardMetric = regexp.MustCompile(`caddy_uma_[a-z_]+`)

// TestDashboardNamesOurMetrics checks docs/grafana-dashboard.json against
// the collectors: every metric it names exists, and every metric is on the
// dashboard. (The integration test TestDashboardQueries runs its queries on
// a real Prometheus.)
func TestDashboardNamesOurMetrics(t *testing.T) {
	raw, err := os.ReadFile(dashboardPath)
	if err != nil {
		t.Fatal(err)
	}
	if !json.Valid(raw) {
		t.Fatal("the dashboard is not JSON")
	}
	ours := map[string]bool{}
	for _, c := range collectors() {
		ch := make(chan *prometheus.Desc, 1)
		c.Describe(ch)
		d := (<-ch).String()
		name := d[strings.Index(d, `fqName: "`)+len(`fqName: "`):]
		ours[name[:strings.IndexByte(name, '"')]] = false
	}
	for _, n := range dashboardMetric.FindAllString(string(raw), -1) {
		base := n
		for _, suffix := range []string{"_bucket", "_count", "_sum"} {
			if trimmed, ok := strings.CutSuffix(n, suffix); ok {
				if _, known := ours[trimmed]; known {
					base = trimmed
				}
			}
		}
		if _, known := ours[base]; !known {
			t.Errorf("the dashboard names %s, which is no metric of ours", n)
			continue
		}
		ours[base] = true
	}
	for name, shown := range ours {
		if !shown {
			t.Errorf("%s is on no panel of the dashboard", name)
		}
	}
}
