package pep

import (
	"slices"
	"sync"
)

// testObserver is an Observer that counts what it is told.
type testObserver struct {
	mu           sync.Mutex
	hits, misses int
	calls        map[CallResult]int
	circuit      []bool // each opening (true) and closing (false)
}

func (o *testObserver) CachedRPT(hit bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if hit {
		o.hits++
	} else {
		o.misses++
	}
}

func (o *testObserver) RemoteCall(r CallResult) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.calls == nil {
		o.calls = map[CallResult]int{}
	}
	o.calls[r]++
}

func (o *testObserver) Circuit(_ string, open bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.circuit = append(o.circuit, open)
}

func (o *testObserver) cache() (hits, misses int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.hits, o.misses
}

func (o *testObserver) callCount(r CallResult) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.calls[r]
}

func (o *testObserver) circuitChanges() []bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.circuit)
}
