package store

import (
	"context"
	"errors"
	"sync"
)

// FeedQueueSize is how many changes wait for one watcher's fn at most (see
// Changes.Watch): past it, they are dropped and replaced by one Resync.
const FeedQueueSize = 1024

// errNoNamespaces is returned by a Watch of no namespace.
var errNoNamespaces = errors.New("store: Watch needs at least one namespace")

// Feed gives a backend the delivery side of Changes: the watchers, each
// with its namespaces, its goroutine and its bounded queue. The backend
// calls Publish with the changes of every commit once it is visible to
// reads, and Broadcast with a Resync or an Interrupted meant for every
// watcher. Neither ever waits for a watcher. The zero value is ready;
// Close ends every watcher.
type Feed struct {
	mu       sync.Mutex
	watchers map[*watcher]struct{}
	closed   bool
}

// Add registers fn as a watcher of namespaces and starts its goroutine. It
// is delivered what Publish and Broadcast are given after Add returns,
// until ctx ends, remove is called or the feed is closed. Add fails with
// ctx's error, with ErrClosed after Close, and for no namespaces.
func (f *Feed) Add(ctx context.Context, fn func(Change), namespaces []string) (remove func(), err error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if len(namespaces) == 0 {
		return nil, errNoNamespaces
	}
	w := &watcher{
		ctx:        ctx,
		fn:         fn,
		namespaces: make(map[string]bool, len(namespaces)),
		wake:       make(chan struct{}, 1),
		done:       make(chan struct{}),
	}
	for _, ns := range namespaces {
		w.namespaces[ns] = true
	}
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return nil, ErrClosed
	}
	if f.watchers == nil {
		f.watchers = map[*watcher]struct{}{}
	}
	f.watchers[w] = struct{}{}
	f.mu.Unlock()

	remove = func() {
		f.mu.Lock()
		delete(f.watchers, w)
		f.mu.Unlock()
		w.stop()
	}
	w.mu.Lock()
	w.stopAfter = context.AfterFunc(ctx, remove)
	w.mu.Unlock()
	go w.run()
	return remove, nil
}

// Publish queues changes, in order, for the watchers of their namespaces.
func (f *Feed) Publish(changes ...Change) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for w := range f.watchers {
		for _, c := range changes {
			if w.namespaces[c.Namespace] {
				w.push(c)
			}
		}
	}
}

// Broadcast queues c for every watcher, whatever its namespaces: a Resync
// or an Interrupted.
func (f *Feed) Broadcast(c Change) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for w := range f.watchers {
		w.push(c)
	}
}

// Resync queues a Resync for every watcher of one of namespaces.
func (f *Feed) Resync(namespaces ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for w := range f.watchers {
		for _, ns := range namespaces {
			if w.namespaces[ns] {
				w.push(Change{Resync: true})
				break
			}
		}
	}
}

// Close ends every watcher (a call of fn in progress finishes); later Adds
// fail with ErrClosed.
func (f *Feed) Close() {
	f.mu.Lock()
	f.closed = true
	watchers := f.watchers
	f.watchers = nil
	f.mu.Unlock()
	for w := range watchers {
		w.stop()
	}
}

// watcher is one Watch: its goroutine calls fn with the queued changes.
type watcher struct {
	// ctx is the Watch's: fn is not called once it has ended.
	ctx        context.Context
	fn         func(Change)
	namespaces map[string]bool

	// mu guards queue and stopAfter.
	mu    sync.Mutex
	queue []Change
	// wake tells the goroutine that the queue has changes (capacity 1).
	wake chan struct{}
	// done is closed when the watcher ends.
	done      chan struct{}
	stopOnce  sync.Once
	stopAfter func() bool
}

// push queues c, or, when the queue is full, replaces the queue by one
// Resync (followed by c if c is an Interrupted, which a Resync does not
// cover: the feed is down until the next Resync).
func (w *watcher) push(c Change) {
	w.mu.Lock()
	if len(w.queue) < FeedQueueSize {
		w.queue = append(w.queue, c)
	} else {
		w.queue = []Change{{Resync: true}}
		if c.Interrupted {
			w.queue = append(w.queue, c)
		}
	}
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// pop takes the first queued change.
func (w *watcher) pop() (Change, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.queue) == 0 {
		w.queue = nil // let a long queue's array go
		return Change{}, false
	}
	c := w.queue[0]
	w.queue = w.queue[1:]
	return c, true
}

func (w *watcher) stop() {
	w.stopOnce.Do(func() {
		w.mu.Lock()
		stopAfter := w.stopAfter
		w.mu.Unlock()
		if stopAfter != nil {
			stopAfter() // nothing left to wait for on ctx
		}
		close(w.done)
	})
}

func (w *watcher) stopped() bool {
	select {
	case <-w.done:
		return true
	default:
		return w.ctx.Err() != nil
	}
}

// run calls fn with every queued change, one at a time, until the watcher
// ends.
func (w *watcher) run() {
	for {
		select {
		case <-w.done:
			return
		case <-w.wake:
		}
		for !w.stopped() {
			c, ok := w.pop()
			if !ok {
				break
			}
			w.fn(c)
		}
	}
}
