package policies

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// compileGate bounds the compilations running at once, in all and per
// owner. Evaluations never pass through it.
type compileGate struct {
	slots    chan struct{} // one token per running compilation
	maxOwner int

	mu     sync.Mutex
	owners map[string]int // running compilations per owner
}

func newCompileGate(total, perOwner int) *compileGate {
	return &compileGate{slots: make(chan struct{}, total), maxOwner: perOwner, owners: map[string]int{}}
}

// enter admits one compilation for owner ("" for the system rules) and
// returns the function that ends it. Without wait, it refuses with ErrBusy
// when the owner has a compilation running already, or when every slot is
// taken. With wait, it waits for a slot, at most patience and until ctx
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
		if !wait {
			leave()
			return nil, fmt.Errorf("%w: %d compilations are running", ErrBusy, cap(g.slots))
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
