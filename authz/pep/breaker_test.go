package pep

import (
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// TestRemoteBreaker: an AS that stops answering (frozen, not dead) costs
// the timeout only until the breaker opens; then requests are refused at
// once (403 with the Warning) without calling the AS, one request probes
// after the cool-down, and the first answer closes the breaker again. The
// outage is logged once, not once per refused request.
func TestRemoteBreaker(t *testing.T) {
	as := newRealAS(t, nil)
	core, logs := observer.New(zapcore.InfoLevel)
	log := zap.New(core)
	obs := &testObserver{}
	rem, err := NewRemote(RemoteConfig{
		Issuer: as.issuer, ClientID: "rs-api", ClientSecret: "rs-api-secret", Now: as.clock.Now,
		HTTPClient: &http.Client{Timeout: 100 * time.Millisecond}, Logger: log, Observer: obs,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rem.Close() })
	e, err := New(Config{AS: rem, Templates: []Template{recordsTemplate}, Now: as.clock.Now, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	// Discovery, the PAT and the resource, while the AS answers.
	if d := e.Decide(request("GET", "/api/records/alice/1", "")); d.Status != http.StatusUnauthorized {
		t.Fatalf("before the freeze: %+v", d)
	}

	as.freeze()
	refused := func(n int) {
		t.Helper()
		for i := range n {
			d := e.Decide(request("GET", "/api/records/alice/1", ""))
			if d.Status != http.StatusForbidden || d.Warning != WarningUnreachable || d.Reason != ReasonUnavailable {
				t.Fatalf("request %d with the AS frozen: %+v", i, d)
			}
		}
	}
	answered := obs.callCount(CallAnswered)
	if answered == 0 || obs.callCount(CallFailed)+obs.callCount(CallRefused) != 0 {
		t.Fatalf("before the freeze, observed calls %v, want only answered ones", obs.calls)
	}
	refused(20)
	if n := as.frozenCalls.Load(); n != DefaultBreakerThreshold {
		t.Fatalf("the frozen AS got %d calls for 20 requests, want %d (then the breaker fails fast)", n, DefaultBreakerThreshold)
	}
	// Each refused request would have made one call (its ticket).
	if failed, refusedCalls := obs.callCount(CallFailed), obs.callCount(CallRefused); failed != DefaultBreakerThreshold || refusedCalls != 20-DefaultBreakerThreshold {
		t.Errorf("observed %d failed and %d refused calls, want %d and %d", failed, refusedCalls, DefaultBreakerThreshold, 20-DefaultBreakerThreshold)
	}
	if c := obs.circuitChanges(); !slices.Equal(c, []bool{true}) {
		t.Errorf("observed circuit changes %v, want one opening", c)
	}
	// After the cool-down, one request probes; the others still fail fast.
	as.clock.Advance(DefaultBreakerCoolDown)
	refused(5)
	if n := as.frozenCalls.Load(); n != DefaultBreakerThreshold+1 {
		t.Fatalf("after the cool-down the frozen AS got %d calls, want one probe more (%d)", n, DefaultBreakerThreshold+1)
	}
	// The AS answers again: the next probe closes the breaker.
	as.thaw()
	as.clock.Advance(DefaultBreakerCoolDown)
	for i := range 3 {
		if d := e.Decide(request("GET", "/api/records/alice/1", "")); d.Status != http.StatusUnauthorized {
			t.Fatalf("request %d after the AS came back: %+v", i, d)
		}
	}
	if c := obs.circuitChanges(); !slices.Equal(c, []bool{true, false}) {
		t.Errorf("observed circuit changes %v, want an opening and a closing", c)
	}
	if n := obs.callCount(CallAnswered); n <= answered {
		t.Errorf("observed %d answered calls after the AS came back, want more than %d", n, answered)
	}
	opened := logs.FilterMessageSnippet("not answering").Len()
	closed := logs.FilterMessageSnippet("answers again").Len()
	decisions := logs.FilterMessage("uma decision").FilterField(zap.String("reason", string(ReasonUnavailable))).Len()
	if opened != 1 || closed != 1 || decisions > 1 {
		for _, l := range logs.All() {
			t.Log(l.Level, l.Message, fmt.Sprint(l.ContextMap()))
		}
		t.Errorf("log: %d breaker openings (want 1), %d closings (want 1), %d as_unavailable decision lines for 25 refusals (want at most 1)",
			opened, closed, decisions)
	}
}
