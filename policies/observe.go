package policies

import "time"

// Observer receives what an Engine measures, for metrics: every
// compilation of a rule set and every evaluation, with how long it took
// and its error (nil on success). Its methods are called on the request
// path, from many goroutines at once: they must be cheap and safe for
// concurrent use. Errors match this package's sentinels (ErrCompile,
// ErrBusy, ErrCompileTimeout, ErrTimeout, ErrEvaluation, ErrBroken) or a
// context's error.
type Observer interface {
	// Compiled reports one compilation of a rule set (an owner's, the
	// system's, or a draft) and how long the compiler ran; rule sets
	// found compiled in the cache are not reported. A compilation that
	// could not start (ErrBusy, or the wait for a free one ended) is
	// reported with its error and the time spent waiting.
	Compiled(elapsed time.Duration, err error)
	// Evaluated reports one evaluation of an owner's rules (with the
	// system rules) on one resource.
	Evaluated(elapsed time.Duration, err error)
}

// nopObserver is the Observer of an Engine without one.
type nopObserver struct{}

func (nopObserver) Compiled(time.Duration, error)  {}
func (nopObserver) Evaluated(time.Duration, error) {}
