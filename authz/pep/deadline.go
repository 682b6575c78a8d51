package pep

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// lazyDeadline is context.WithDeadline(parent, deadline) whose timer (and
// registration with the parent) is set up only when something waits on
// Done: a decision that needs nothing but memory, such as a cached RPT,
// then costs no timer, while one that goes out (to the authorization
// server, the store, a JWKS) is bounded as with context.WithDeadline. Err
// says DeadlineExceeded once the deadline passed, waited on or not.
type lazyDeadline struct {
	parent   context.Context
	deadline time.Time

	started atomic.Bool // inner is set
	mu      sync.Mutex
	inner   context.Context
	cancel  context.CancelFunc
	done    bool // cancelled: an inner started afterwards is cancelled at once
}

// withLazyDeadline returns a lazyDeadline of parent for timeout, and the
// function that releases it, as context.WithTimeout does.
func withLazyDeadline(parent context.Context, timeout time.Duration) (context.Context, context.CancelFunc) {
	d := time.Now().Add(timeout)
	if pd, ok := parent.Deadline(); ok && pd.Before(d) {
		d = pd
	}
	c := &lazyDeadline{parent: parent, deadline: d}
	return c, c.release
}

func (c *lazyDeadline) Deadline() (time.Time, bool) { return c.deadline, true }

func (c *lazyDeadline) Value(key any) any { return c.parent.Value(key) }

func (c *lazyDeadline) Done() <-chan struct{} { return c.start().Done() }

func (c *lazyDeadline) Err() error {
	if c.started.Load() {
		return c.inner.Err()
	}
	if err := c.parent.Err(); err != nil {
		return err
	}
	if !time.Now().Before(c.deadline) {
		return context.DeadlineExceeded
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done {
		return context.Canceled
	}
	return nil
}

// start sets up the timer, once.
func (c *lazyDeadline) start() context.Context {
	if c.started.Load() {
		return c.inner
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.inner == nil {
		c.inner, c.cancel = context.WithDeadline(c.parent, c.deadline)
		if c.done {
			c.cancel()
		}
		c.started.Store(true)
	}
	return c.inner
}

func (c *lazyDeadline) release() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.done = true
	if c.cancel != nil {
		c.cancel()
	}
}
