package caddymodule

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/caddy-uma/caddy-uma/authz"
	"github.com/caddy-uma/caddy-uma/authz/audit"
	"github.com/caddy-uma/caddy-uma/authz/pep"
	"github.com/caddy-uma/caddy-uma/policies"
)

// Metrics, on Caddy's /metrics (the admin endpoint, or a metrics handler).
// Each config load gets a new registry from Caddy: the collectors are
// created once, here, and registered into the registry of every config
// that has the uma app or a uma_protect handler, so that counters go on
// across reloads. Labels take values from small fixed sets only: never an
// owner, a subject, a client, a resource or a token.
const metricsNamespace = "caddy_uma"

// latencyBuckets are the histogram buckets, in seconds: from 10 µs (an
// enforcement with a cached RPT) to 5 s (a store or an AS that does not
// answer).
var latencyBuckets = []float64{
	0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005,
	0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5,
}

func newCounter(name, help string, labels ...string) *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: metricsNamespace, Name: name, Help: help}, labels)
}

func newHistogram(name, help string, labels ...string) *prometheus.HistogramVec {
	return prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: metricsNamespace, Name: name, Help: help, Buckets: latencyBuckets}, labels)
}

// The collectors. Their names, labels and meanings are listed in the
// README ("Operating caddy-uma").
var metrics = struct {
	tokenRequests   *prometheus.CounterVec
	tokenDuration   *prometheus.HistogramVec
	decisions       *prometheus.CounterVec
	protectRequests *prometheus.CounterVec
	protectDuration *prometheus.HistogramVec
	policyEvals     *prometheus.CounterVec
	policyEvalTime  *prometheus.HistogramVec
	policyCompiles  *prometheus.CounterVec
	policyCompile   *prometheus.HistogramVec
	storeOps        *prometheus.CounterVec
	storeDuration   *prometheus.HistogramVec
	rptCache        *prometheus.CounterVec
	remoteCalls     *prometheus.CounterVec
	circuitOpen     *prometheus.GaugeVec
	keyFetches      *prometheus.CounterVec
}{
	tokenRequests: newCounter("token_requests_total",
		"Answers of the token endpoint, by grant type and by error code (ok when tokens were issued).", "grant_type", "code"),
	tokenDuration: newHistogram("token_request_duration_seconds",
		"How long the token endpoint took to answer, by grant type.", "grant_type"),
	decisions: newCounter("decisions_total",
		"Outcomes of UMA grant requests whose permissions were decided: granted, need_info, request_submitted, request_denied.", "outcome"),
	protectRequests: newCounter("protect_requests_total",
		"Requests decided by uma_protect, by reason (authorized, no_token, invalid_token, insufficient_scope, as_unavailable, ...).", "reason"),
	protectDuration: newHistogram("protect_duration_seconds",
		"How long uma_protect took to decide a request (AS calls included, the upstream not), by reason.", "reason"),
	policyEvals: newCounter("policy_evaluations_total",
		"Evaluations of owners' rules, by result (ok, timeout, failed, broken, canceled).", "result"),
	policyEvalTime: newHistogram("policy_evaluation_duration_seconds",
		"How long an evaluation of an owner's rules took."),
	policyCompiles: newCounter("policy_compilations_total",
		"Compilations of rule sets, by result (ok, invalid, busy, timeout, canceled, failed).", "result"),
	policyCompile: newHistogram("policy_compilation_duration_seconds",
		"How long a compilation of a rule set took."),
	storeOps: newCounter("store_operations_total",
		"Store calls, by backend, operation and result (ok, not_found, exists, conflict, no_space, closed, timeout, canceled, failed).", "backend", "operation", "result"),
	storeDuration: newHistogram("store_operation_duration_seconds",
		"How long a store call took, by backend and operation.", "backend", "operation"),
	rptCache: newCounter("rpt_cache_lookups_total",
		"Lookups of RPTs in uma_protect's cache of verified RPTs, by result (hit, miss).", "result"),
	remoteCalls: newCounter("remote_as_calls_total",
		"Calls of uma_protect to a remote authorization server, by result (answered, failed, refused by the open circuit breaker, abandoned).", "result"),
	circuitOpen: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: metricsNamespace, Name: "remote_as_circuit_open",
		Help: "1 while the circuit breaker in front of a remote authorization server is open (calls fail at once), 0 while closed, by issuer."}, []string{"issuer"}),
	keyFetches: newCounter("claim_token_key_fetches_total",
		"Requests for the discovery documents and keys of trusted claim token issuers, by result (ok, failed).", "result"),
}

// collectors lists every collector, for registration.
func collectors() []prometheus.Collector {
	m := &metrics
	return []prometheus.Collector{
		m.tokenRequests, m.tokenDuration, m.decisions, m.protectRequests, m.protectDuration,
		m.policyEvals, m.policyEvalTime, m.policyCompiles, m.policyCompile,
		m.storeOps, m.storeDuration, m.rptCache, m.remoteCalls, m.circuitOpen, m.keyFetches,
	}
}

// registerMetrics registers the collectors into a config's registry. The
// uma app and each uma_protect handler call it: a collector already in the
// registry is not an error.
func registerMetrics(reg *prometheus.Registry) error {
	if reg == nil {
		return nil
	}
	for _, c := range collectors() {
		if err := reg.Register(c); err != nil && !errors.As(err, new(prometheus.AlreadyRegisteredError)) {
			return err
		}
	}
	return nil
}

// result is a metric label for an error: ok for none, a name for what the
// callers match.
func result(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	}
	return "failed"
}

// asObserver reports the authorization server's measurements
// (authz.Observer).
type asObserver struct{}

// TokenAnswered counts an answer of the token endpoint and, for the UMA
// grant, its decision.
func (asObserver) TokenAnswered(a audit.TokenAnswer) {
	code := string(a.Code)
	if code == "" {
		code = "ok"
	}
	metrics.tokenRequests.WithLabelValues(a.GrantType, code).Inc()
	metrics.tokenDuration.WithLabelValues(a.GrantType).Observe(a.Elapsed.Seconds())
	if a.Decision != "" {
		metrics.decisions.WithLabelValues(string(a.Decision)).Inc()
	}
}

// Compiled counts a compilation of rules.
func (asObserver) Compiled(elapsed time.Duration, err error) {
	r := result(err)
	switch {
	case errors.Is(err, policies.ErrCompile):
		r = "invalid"
	case errors.Is(err, policies.ErrBusy):
		r = "busy"
	case errors.Is(err, policies.ErrCompileTimeout):
		r = "timeout"
	}
	metrics.policyCompiles.WithLabelValues(r).Inc()
	metrics.policyCompile.WithLabelValues().Observe(elapsed.Seconds())
}

// Evaluated counts an evaluation of rules.
func (asObserver) Evaluated(elapsed time.Duration, err error) {
	r := result(err)
	switch {
	case errors.Is(err, policies.ErrTimeout):
		r = "timeout"
	case errors.Is(err, policies.ErrBroken):
		r = "broken"
	}
	metrics.policyEvals.WithLabelValues(r).Inc()
	metrics.policyEvalTime.WithLabelValues().Observe(elapsed.Seconds())
}

// pepObserver reports an enforcement point's measurements (pep.Observer).
type pepObserver struct{}

// CachedRPT counts a lookup of the RPT cache.
func (pepObserver) CachedRPT(hit bool) {
	r := "miss"
	if hit {
		r = "hit"
	}
	metrics.rptCache.WithLabelValues(r).Inc()
}

// RemoteCall counts a call to a remote authorization server.
func (pepObserver) RemoteCall(r pep.CallResult) {
	metrics.remoteCalls.WithLabelValues(string(r)).Inc()
}

// Circuit sets the state of a remote authorization server's breaker.
func (pepObserver) Circuit(issuer string, open bool) {
	v := 0.0
	if open {
		v = 1
	}
	metrics.circuitOpen.WithLabelValues(issuer).Set(v)
}

// circuits counts the pooled remote connections of each issuer, so that
// its circuit gauge exists while one does and goes when the last one is
// gone.
var circuits = struct {
	sync.Mutex
	n map[string]int
}{n: map[string]int{}}

// remoteOpened shows the (closed) circuit of a new remote connection.
func remoteOpened(issuer string) {
	circuits.Lock()
	defer circuits.Unlock()
	if circuits.n[issuer] == 0 {
		metrics.circuitOpen.WithLabelValues(issuer).Set(0)
	}
	circuits.n[issuer]++
}

// remoteClosed drops the circuit gauge of an issuer whose last remote
// connection is gone.
func remoteClosed(issuer string) {
	circuits.Lock()
	defer circuits.Unlock()
	if circuits.n[issuer]--; circuits.n[issuer] <= 0 {
		delete(circuits.n, issuer)
		metrics.circuitOpen.DeleteLabelValues(issuer)
	}
}

// keyFetchTransport counts the requests for the documents and keys of
// trusted claim token issuers.
type keyFetchTransport struct{ next http.RoundTripper }

func (t keyFetchTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(req)
	r := "ok"
	if err != nil || resp.StatusCode >= 300 {
		r = "failed"
	}
	metrics.keyFetches.WithLabelValues(r).Inc()
	return resp, err
}

// Interface guards
var (
	_ authz.Observer    = asObserver{}
	_ pep.Observer      = pepObserver{}
	_ http.RoundTripper = keyFetchTransport{}
)
