package pep

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// The cost of an authorized request at the enforcement point, with the
// RPT in the cache, against the real AS (co-hosted: one store read per
// request for the revocation check; remote: none until revocation_check).

func benchmarkCached(b *testing.B, remote bool) {
	as := newRealAS(b, nil)
	e, _ := enforcerFor(b, as, "rs-api", remote, nil)
	rpt := as.rptFor(e.Decide(request("GET", "/api/records/alice/1", "")).Challenge)
	r := request("GET", "/api/records/alice/1", rpt)
	if d := e.Decide(r); !d.Allow {
		b.Fatal(d)
	}
	benchAuthorized(b, e, r)
}

// benchAuthorized measures e's handler answering r, which it authorizes.
func benchAuthorized(b *testing.B, e *Enforcer, r *http.Request) {
	h := e.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != http.StatusOK {
			b.Fatal(w.Code)
		}
	}
}

func BenchmarkCachedRPTCoHosted(b *testing.B) { benchmarkCached(b, false) }
func BenchmarkCachedRPTRemote(b *testing.B)   { benchmarkCached(b, true) }

// BenchmarkNoToken is the unauthenticated request: a ticket each time.
func BenchmarkNoTokenCoHosted(b *testing.B) {
	as := newRealAS(b, nil)
	e, _ := enforcerFor(b, as, "rs-api", false, nil)
	r := request("GET", "/api/records/alice/1", "")
	b.ReportAllocs()
	for b.Loop() {
		if d := e.Decide(r); d.Status != http.StatusUnauthorized {
			b.Fatal(d)
		}
	}
}

// BenchmarkRefusedASFrozen is a request while the remote AS is frozen and
// the breaker open: a 403 with the Warning, without waiting for the AS
// (before the breaker opens, each such request waits the whole timeout).
func BenchmarkRefusedASFrozen(b *testing.B) {
	as := newRealAS(b, nil)
	e, _ := enforcerFor(b, as, "rs-api", true, func(c *RemoteConfig) {
		c.HTTPClient = &http.Client{Timeout: 50 * time.Millisecond}
	})
	r := request("GET", "/api/records/alice/1", "")
	if d := e.Decide(r); d.Status != http.StatusUnauthorized {
		b.Fatal(d)
	}
	as.freeze()
	for range DefaultBreakerThreshold {
		e.Decide(r) // each waits the timeout; then the breaker opens
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if d := e.Decide(r); d.Status != http.StatusForbidden || d.Warning == "" {
			b.Fatal(d)
		}
	}
}
