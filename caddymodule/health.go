package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-uma/caddy-uma/authz/oauth"
	"github.com/caddy-uma/caddy-uma/store"
	"github.com/caddy-uma/caddy-uma/store/badgerstore"
)

// Probes of the uma_health handler.
const (
	probeLive  = "live"
	probeReady = "ready"
)

// Health is the uma_health handler: the liveness or the readiness probe of
// the uma app, as JSON, for load balancers and Kubernetes (httpGet probes).
// It answers GET and HEAD on the paths its matcher gives it; other methods
// get 405.
//
// The liveness probe ("live") answers 200 {"status":"live"} whenever the
// process answers at all: restart Caddy when it does not.
//
// The readiness probe ("ready") answers 200 with "status": "ready" when the
// authorization server can serve, and otherwise 503 with "status":
// "unready" (or "starting" before the uma app has started), the OAuth
// error temporarily_unavailable, an error_description naming what failed,
// and Retry-After. Each answer lists its checks, each with "ok":
//
//   - store: the database answers a read within 750 ms (a bounded ping);
//   - disk: the store's disk has the free space it needs to write
//     (storage badger: the free space, measured at most 100 ms ago,
//     is above min_free_space, and writes are not refused; other
//     backends: no write was refused for want of space in the last 30 s
//     without one succeeding since);
//   - signing_keys: a signing key is loaded (its kid is shown);
//   - policies: how many owners' rule sets in the policies directory,
//     and whether the system rules, have files that do not compile
//     (the log names them). This check never makes the probe fail:
//     every node reads the same directory, and taking them all out of the
//     load balancer would refuse more than the broken file does.
//
// The probe turns ready again by itself when the store answers and space
// is back. It never shows a token, a secret, an owner or a DSN; the cause
// of a failed ping is logged, at most once every 10 seconds.
type Health struct {
	// Probe is "live" or "ready" (required).
	Probe string `json:"probe,omitempty"`

	app    *App
	logger *zap.Logger
	// lastLog is the Unix nanoseconds of the last failed ping logged.
	lastLog *atomic.Int64
}

// Readiness bounds and intervals.
const (
	// pingTimeout bounds the store's read; below the 1 s default timeout
	// of Kubernetes probes.
	pingTimeout = 750 * time.Millisecond
	// noSpaceWindow is how long a write refused for want of disk space
	// makes a store without a free-space measure unready.
	noSpaceWindow = 30 * time.Second
	// unreadyRetryAfter is the Retry-After of an unready answer, in
	// seconds.
	unreadyRetryAfter = 5
	// healthLogEvery bounds the log lines of failed pings.
	healthLogEvery = 10 * time.Second
)

// healthNamespace is the Records namespace the ping reads: nothing is ever
// written there.
const healthNamespace = "health"

// CaddyModule returns the Caddy module information.
func (Health) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.uma_health",
		New: func() caddy.Module { return new(Health) },
	}
}

// Provision looks up the uma app for the readiness probe.
func (h *Health) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	h.lastLog = new(atomic.Int64)
	if h.Probe != probeReady {
		return nil
	}
	app, err := umaApp(ctx, "uma_health ready")
	if err != nil {
		return err
	}
	h.app = app
	return nil
}

// Validate checks the probe's name.
func (h *Health) Validate() error {
	switch h.Probe {
	case probeLive, probeReady:
		return nil
	case "":
		return errors.New("uma_health: the probe is missing: write uma_health live or uma_health ready")
	}
	return fmt.Errorf("uma_health %q: unknown probe; write uma_health live or uma_health ready", h.Probe)
}

// ServeHTTP answers the probe.
func (h *Health) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		oauth.WriteError(w, oauth.ErrMethodNotAllowed(http.MethodGet, http.MethodHead))
		return nil
	}
	if h.Probe == probeLive {
		oauth.WriteJSON(w, http.StatusOK, map[string]string{"status": probeLive})
		return nil
	}
	rd := h.ready(r.Context())
	if rd.Error != nil {
		w.Header().Set("Retry-After", strconv.Itoa(unreadyRetryAfter))
		oauth.WriteJSON(w, http.StatusServiceUnavailable, rd)
		return nil
	}
	oauth.WriteJSON(w, http.StatusOK, rd)
	return nil
}

// readiness is the body of a readiness answer. When the server is not
// ready, it carries the OAuth error temporarily_unavailable.
type readiness struct {
	*oauth.Error
	Status string           `json:"status"`
	Checks *readinessChecks `json:"checks,omitempty"`
}

type readinessChecks struct {
	Store       check `json:"store"`
	Disk        check `json:"disk"`
	SigningKeys check `json:"signing_keys"`
	Policies    check `json:"policies"`
}

// check is one check of the readiness probe.
type check struct {
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
	// Store.
	Backend   string   `json:"backend,omitempty"`
	LatencyMS *float64 `json:"latency_ms,omitempty"`
	// Disk.
	FreeBytes    *uint64 `json:"free_bytes,omitempty"`
	MinFreeBytes *uint64 `json:"min_free_bytes,omitempty"`
	// Signing keys.
	KeyID string `json:"key_id,omitempty"`
	// Policies.
	OwnersWithErrors *int  `json:"owners_with_errors,omitempty"`
	SystemRuleErrors *bool `json:"system_rules_with_errors,omitempty"`
}

// ready runs the checks.
func (h *Health) ready(ctx context.Context) readiness {
	srv := h.app.running()
	if srv == nil {
		return readiness{Error: oauth.ErrUnavailable("the authorization server has not started", unreadyRetryAfter, nil), Status: "starting"}
	}
	st := h.app.state
	c := &readinessChecks{
		Store: h.pingStore(ctx, st.store),
		Disk:  diskCheck(st.store, st.measured),
	}
	c.Store.Backend = st.measured.backend
	rs := srv.Readiness()
	c.SigningKeys = check{OK: rs.SigningKeyID != "", KeyID: rs.SigningKeyID}
	if !c.SigningKeys.OK {
		c.SigningKeys.Error = "no signing key is loaded"
	}
	system := rs.SystemRuleErrors
	c.Policies = check{OK: rs.OwnersWithRuleErrors == 0 && !system, OwnersWithErrors: &rs.OwnersWithRuleErrors, SystemRuleErrors: &system}
	if !c.Policies.OK {
		c.Policies.Error = "rule files do not compile; the log names them"
	}

	var failed []string
	for _, f := range []struct {
		name string
		c    check
	}{{"store", c.Store}, {"disk", c.Disk}, {"signing_keys", c.SigningKeys}} {
		if !f.c.OK {
			failed = append(failed, f.name+": "+f.c.Error)
		}
	}
	if len(failed) > 0 {
		return readiness{
			Error:  oauth.ErrUnavailable("not ready: "+strings.Join(failed, "; "), unreadyRetryAfter, nil),
			Status: "unready", Checks: c,
		}
	}
	return readiness{Status: "ready", Checks: c}
}

// pingStore reads a record that does not exist, within pingTimeout.
func (h *Health) pingStore(ctx context.Context, st store.Store) check {
	ctx, cancel := context.WithTimeout(ctx, pingTimeout)
	defer cancel()
	start := time.Now()
	_, err := st.Get(ctx, healthNamespace, "ping")
	ms := float64(time.Since(start).Microseconds()) / 1000
	if err == nil || errors.Is(err, store.ErrNotFound) {
		return check{OK: true, LatencyMS: &ms}
	}
	h.logPingFailure(err)
	if errors.Is(err, context.DeadlineExceeded) {
		return check{Error: "the store did not answer within " + pingTimeout.String()}
	}
	return check{Error: "the store cannot be reached"}
}

// logPingFailure logs why the store did not answer, at most once every
// healthLogEvery.
func (h *Health) logPingFailure(err error) {
	now := time.Now().UnixNano()
	last := h.lastLog.Load()
	if now-last < int64(healthLogEvery) || !h.lastLog.CompareAndSwap(last, now) {
		return
	}
	h.logger.Warn("readiness: the store does not answer", zap.Error(err))
}

// spaceReporter is a store that measures its free disk space (storage
// badger).
type spaceReporter interface {
	Space() badgerstore.Space
}

// diskCheck reports whether the store has the disk space it needs.
func diskCheck(raw store.Store, measured *measuredStore) check {
	if sr, ok := raw.(spaceReporter); ok {
		sp := sr.Space()
		if !sp.Known {
			return check{OK: true}
		}
		c := check{OK: !sp.Low && sp.Free >= sp.Min, FreeBytes: &sp.Free, MinFreeBytes: &sp.Min}
		if !c.OK {
			c.Error = "the free disk space is below min_free_space: writes are refused"
		}
		return c
	}
	if at := measured.noSpaceSince(); !at.IsZero() && time.Since(at) < noSpaceWindow {
		return check{Error: "writes were refused for want of disk space " + time.Since(at).Round(time.Second).String() + " ago"}
	}
	return check{OK: true}
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Health)(nil)
	_ caddy.Validator             = (*Health)(nil)
	_ caddyhttp.MiddlewareHandler = (*Health)(nil)
)
