package pep

import (
	"net/http"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// TestRefusalsAreLoggedAtWarnRateLimited: refusals that mean a
// configuration mistake (no owner, no resource, an unmapped method) are
// logged at warn, at most one line per reason every 10 seconds, the next
// one counting those left out.
func TestRefusalsAreLoggedAtWarnRateLimited(t *testing.T) {
	core, logs := observer.New(zapcore.InfoLevel)
	clock := &testClock{t: time.Unix(1_700_000_000, 0)}
	e := newEnforcer(t, newFakeAS(), clock, func(c *Config) {
		c.Logger = zap.New(core)
		c.Templates = append(c.Templates, Template{Path: "/shared/{id}", Owner: "{header.X-Owner}"})
	})
	requests := map[Reason]func() *http.Request{
		ReasonNoOwner:         func() *http.Request { return request("GET", "/shared/1", "") },
		ReasonUnmatched:       func() *http.Request { return request("GET", "/elsewhere", "") },
		ReasonMethodNotMapped: func() *http.Request { return request("OPTIONS", "/api/records/alice/1", "") },
	}
	for reason, r := range requests {
		t.Run(string(reason), func(t *testing.T) {
			lines := func() []observer.LoggedEntry {
				return logs.FilterField(zap.String("reason", string(reason))).All()
			}
			for range 30 {
				if d := e.Decide(r()); d.Reason != reason || d.Status != http.StatusForbidden {
					t.Fatalf("decision %+v, want %s", d, reason)
				}
				clock.Advance(100 * time.Millisecond)
			}
			got := lines()
			if len(got) != 1 || got[0].Level != zapcore.WarnLevel {
				t.Fatalf("30 refusals in 3s: %d lines (%v), want one at warn", len(got), got)
			}
			clock.Advance(10 * time.Second)
			e.Decide(r())
			got = lines()
			if len(got) != 2 || got[1].Level != zapcore.WarnLevel || got[1].ContextMap()["suppressed"] != int64(29) {
				t.Fatalf("after 10s: %d lines, last %v; want a second warn line with suppressed=29", len(got), got[len(got)-1].ContextMap())
			}
		})
	}
}
