package store

import (
	"context"
	"sync"
)

// Gate gives a backend the Close semantics every backend shares: Close
// waits for the calls in flight, and every later call fails with
// ErrClosed. Each method call is bracketed by Enter and Leave. The zero
// value is open.
type Gate struct {
	// mu is held for reading by every call and for writing by Close.
	mu     sync.RWMutex
	closed bool
}

// Enter starts a call: it fails with ctx's error if ctx is done, with
// ErrClosed if the gate is closed, and otherwise holds the gate open until
// Leave.
func (g *Gate) Enter(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	g.mu.RLock()
	if g.closed {
		g.mu.RUnlock()
		return ErrClosed
	}
	return nil
}

// Leave ends a call that Enter started.
func (g *Gate) Leave() {
	g.mu.RUnlock()
}

// Close waits for the calls in flight and closes the gate.
func (g *Gate) Close() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
}
