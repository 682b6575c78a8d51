package policies

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// compileGate bounds the compilations running at once, in all and per
// owner. Evaluations never pass through it. Compilations in the background
// (enterBackground) take a slot only when one is free, and never make
// another one refused: it waits for them instead.
type compileGate struct {
	slots    chan struct{} // one token per running compilation
	maxOwner int
	// backgroundPatience bounds how long a compilation that would be
	// refused waits for the background compilations holding slots.
	backgroundPatience time.Duration

	mu     sync.Mutex
	owners map[string]int // running compilations per owner

	background atomic.Int32 // slots held by compilations in the background
}

func newCompileGate(total, perOwner int, backgroundPatience time.Duration) *compileGate {
	return &compileGate{slots: make(chan struct{}, total), maxOwner: perOwner,
		backgroundPatience: backgroundPatience, owners: map[string]int{}}
}

// backgroundRetry is how often a compilation in the background looks for
// a free slot.
const backgroundRetry = 5 * time.Millisecond

// enterBackground admits a compilation in the background, once a slot is
// free, and returns the function that ends it; it waits until ctx ends.
func (g *compileGate) enterBackground(ctx context.Context) (func(), error) {
	for {
		select {
		case g.slots <- struct{}{}:
			g.background.Add(1)
			return func() {
				<-g.slots
				g.background.Add(-1)
			}, nil
		default:
		}
		select {
		case <-ctx.Done():
			return nil, compileStopped(ctx)
		case <-time.After(backgroundRetry):
		}
	}
}

// enter admits one compilation for owner ("" for the system rules) and
// returns the function that ends it. Without wait, it refuses with ErrBusy
// when the owner has a compilation running already, or when every slot is
// taken by compilations not in the background (it waits for those, at
// most backgroundPatience). With wait, it waits for a slot, at most patience and until ctx
// ends; the owner's count does not refuse it (its caller serializes the
// owner's updates).
func (g *compileGate) enter(ctx context.Context, owner string, wait bool, patience time.Duration) (func(), error) {
	g.mu.Lock()
	if !wait && owner != "" && g.owners[owner] >= g.maxOwner {
		g.mu.Unlock()
		return nil, fmt.Errorf("%w: the rules of this owner are being compiled already", ErrBusy)
	}
	g.owners[owner]++
	g.mu.Unlock()
	leave := func() {
		g.mu.Lock()
		if g.owners[owner]--; g.owners[owner] <= 0 {
			delete(g.owners, owner)
		}
		g.mu.Unlock()
	}

	select {
	case g.slots <- struct{}{}:
	default:
		if !wait && g.background.Load() == 0 {
			select {
			case g.slots <- struct{}{}: // a compilation in the background just ended
				return func() {
					<-g.slots
					leave()
				}, nil
			default:
			}
			leave()
			return nil, fmt.Errorf("%w: %d compilations are running", ErrBusy, cap(g.slots))
		}
		if !wait { // the background gives way: wait for it
			patience = g.backgroundPatience
		}
		timer := time.NewTimer(patience)
		defer timer.Stop()
		select {
		case g.slots <- struct{}{}:
		case <-timer.C:
			leave()
			return nil, fmt.Errorf("%w: no compilation could start within %v", ErrBusy, patience)
		case <-ctx.Done():
			leave()
			return nil, compileStopped(ctx)
		}
	}
	return func() {
		<-g.slots
		leave()
	}, nil
}
