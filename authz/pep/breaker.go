package pep

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"go.uber.org/zap"
)

// Circuit breaker defaults of Remote.
const (
	// DefaultBreakerThreshold is how many calls to the AS in a row must
	// fail (time out, not connect, or answer 502, 503 or 504) before the
	// breaker opens.
	DefaultBreakerThreshold = 3
	// DefaultBreakerCoolDown is how long an open breaker fails every call
	// at once before it lets one call through as a probe.
	DefaultBreakerCoolDown = 5 * time.Second
)

// errBreakerOpen is what calls get while the breaker is open.
var errBreakerOpen = errors.New("the authorization server did not answer the last calls; not calling it for now")

// breaker is the http.RoundTripper of every call a Remote makes (discovery,
// PATs, the protection API, introspection, the JWKS). A frozen AS, one
// that accepts connections and never answers, would otherwise cost every
// request the whole timeout. After threshold failures in a row the breaker
// opens: calls fail at once, and the enforcement point answers 403 with
// the Warning as for any unreachable AS. After coolDown one call goes
// through as a probe, the others still failing at once; the first call
// that gets an answer closes the breaker, a failed probe opens it for
// another coolDown. Opening and closing are logged, once each per outage.
type breaker struct {
	next      http.RoundTripper
	threshold int
	coolDown  time.Duration
	now       func() time.Time
	log       *zap.Logger
	// observer hears of every call and of each opening and closing, as
	// the breaker of issuer.
	observer Observer
	issuer   string

	mu         sync.Mutex
	failures   int       // in a row
	open       bool      // failing fast
	openedAt   time.Time // when the outage began
	retryAt    time.Time // when the next probe may go
	probing    bool      // a probe is under way
	probeUntil time.Time // when a probe that never reported frees its place
	refused    int       // calls failed fast during this outage
}

// outcome is what a call says about the AS.
type outcome int

const (
	answered outcome = iota // it answered
	failed                  // it did not, or answered 502, 503 or 504
	neutral                 // the caller gave up first: says nothing
)

// RoundTrip sends req unless the breaker is open.
func (b *breaker) RoundTrip(req *http.Request) (*http.Response, error) {
	probe, err := b.admit()
	if err != nil {
		b.observer.RemoteCall(CallRefused)
		return nil, err
	}
	resp, err := b.next.RoundTrip(req)
	if err != nil {
		o := classify(req.Context(), err)
		result := CallFailed
		if o == neutral {
			result = CallAbandoned
		}
		b.observer.RemoteCall(result)
		b.report(probe, o)
		return nil, err
	}
	switch resp.StatusCode {
	case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		b.observer.RemoteCall(CallFailed)
		b.report(probe, failed)
		return resp, nil
	}
	b.observer.RemoteCall(CallAnswered)
	// An answer counts once its body has been read: an AS that sends
	// headers and then freezes is not answering.
	resp.Body = &reportingBody{ReadCloser: resp.Body, ctx: req.Context(), report: func(o outcome) { b.report(probe, o) }}
	return resp, nil
}

// classify tells a failure of the AS from a caller that gave up.
func classify(ctx context.Context, err error) outcome {
	if errors.Is(ctx.Err(), context.Canceled) {
		return neutral
	}
	return failed
}

// admit lets a call through, as a probe when the breaker is open and its
// cool-down has passed, or refuses it.
func (b *breaker) admit() (probe bool, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.open {
		return false, nil
	}
	now := b.now()
	if now.Before(b.retryAt) || (b.probing && now.Before(b.probeUntil)) {
		b.refused++
		return false, fmt.Errorf("%w (until %s)", errBreakerOpen, b.retryAt.UTC().Format(time.RFC3339))
	}
	b.probing, b.probeUntil = true, now.Add(b.coolDown)
	return true, nil
}

// isOpen reports whether calls fail at once for now.
func (b *breaker) isOpen() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.open
}

// report records the outcome of a call.
func (b *breaker) report(probe bool, o outcome) {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	if probe {
		b.probing = false
	}
	switch o {
	case answered:
		b.failures = 0
		if b.open {
			b.open = false
			b.observer.Circuit(b.issuer, false)
			b.log.Info("the authorization server answers again",
				zap.Duration("down_for", now.Sub(b.openedAt)), zap.Int("calls_refused", b.refused))
		}
	case failed:
		b.failures++
		switch {
		case b.open && probe:
			b.retryAt = now.Add(b.coolDown)
			b.log.Debug("the probe of the authorization server failed", zap.Duration("retry_in", b.coolDown))
		case !b.open && b.failures >= b.threshold:
			b.open, b.openedAt, b.retryAt, b.refused = true, now, now.Add(b.coolDown), 0
			b.observer.Circuit(b.issuer, true)
			b.log.Warn("the authorization server is not answering: calls to it fail at once, one probe every cool-down, until it answers",
				zap.Int("failed_calls", b.failures), zap.Duration("cool_down", b.coolDown))
		}
	}
}

// reportingBody reports the outcome of a call when its body has been read
// to the end or closed (answered), or fails to read (failed).
type reportingBody struct {
	io.ReadCloser
	ctx    context.Context
	once   sync.Once
	report func(outcome)
}

func (rb *reportingBody) Read(p []byte) (int, error) {
	n, err := rb.ReadCloser.Read(p)
	switch {
	case errors.Is(err, io.EOF):
		rb.once.Do(func() { rb.report(answered) })
	case err != nil:
		rb.once.Do(func() { rb.report(classify(rb.ctx, err)) })
	}
	return n, err
}

func (rb *reportingBody) Close() error {
	rb.once.Do(func() { rb.report(answered) })
	return rb.ReadCloser.Close()
}
