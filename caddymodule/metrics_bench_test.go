package caddymodule

import (
	"io"
	"net/http/httptest"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/caddy-uma/caddy-uma/authz"
	"github.com/caddy-uma/caddy-uma/authz/audit"
	"github.com/caddy-uma/caddy-uma/authz/oauth"
	"github.com/caddy-uma/caddy-uma/authz/pep"
	"github.com/caddy-uma/caddy-uma/store/badgerstore"
)

// BenchmarkObservers measures what the metrics add on the request path: one
// token answer (two counters and a histogram), one enforcement (a counter
// and a histogram, as ServeHTTP does), one RPT cache lookup, and a store
// read with and without its measuring wrapper; and the audit line of an
// enforcement, encoded as JSON.
func BenchmarkObservers(b *testing.B) {
	b.Run("token answer", func(b *testing.B) {
		a := audit.TokenAnswer{GrantType: authz.GrantTypeUMATicket, Code: oauth.NeedInfo, Decision: audit.GrantNeedInfo, Elapsed: time.Millisecond}
		for b.Loop() {
			asObserver{}.TokenAnswered(a)
		}
	})
	b.Run("enforcement", func(b *testing.B) {
		for b.Loop() {
			metrics.protectRequests.WithLabelValues(string(pep.ReasonAuthorized)).Inc()
			metrics.protectDuration.WithLabelValues(string(pep.ReasonAuthorized)).Observe(0.00005)
		}
	})
	b.Run("RPT cache lookup", func(b *testing.B) {
		for b.Loop() {
			pepObserver{}.CachedRPT(true)
		}
	})
	b.Run("audit line of an enforcement", func(b *testing.B) {
		log := zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(io.Discard), zapcore.InfoLevel))
		r := httptest.NewRequest("GET", "/api/records/alice/1", nil)
		d := pep.Decision{Allow: true, Reason: pep.ReasonAuthorized, Authorized: true, Subject: "bob", ClientID: "app",
			ResourceID: "0Cqg1FT4MnKD1ir5Og4Zdg", Owner: "alice", Needed: []string{"read"}, Scopes: []string{"read"}}
		for b.Loop() {
			auditEnforcement(log, r, d)
		}
	})
	st, err := badgerstore.Open(badgerstore.Options{InMemory: true})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	if err := st.Put(b.Context(), "ns", "k", []byte("v"), time.Time{}); err != nil {
		b.Fatal(err)
	}
	b.Run("store read", func(b *testing.B) {
		for b.Loop() {
			_, _ = st.Get(b.Context(), "ns", "k")
		}
	})
	m := newMeasuredStore(st, "badger")
	b.Run("store read, measured", func(b *testing.B) {
		for b.Loop() {
			_, _ = m.Get(b.Context(), "ns", "k")
		}
	})
}
