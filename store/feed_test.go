package store

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

// received collects what a watcher's fn is called with.
type received chan Change

func (r received) fn(c Change) { r <- c }

func (r received) want(t *testing.T, want ...Change) {
	t.Helper()
	for _, w := range want {
		select {
		case got := <-r:
			if got != w {
				t.Fatalf("got %+v, want %+v", got, w)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("nothing within 5s, want %+v", w)
		}
	}
}

func (r received) none(t *testing.T) {
	t.Helper()
	select {
	case got := <-r:
		t.Fatalf("got %+v, want nothing", got)
	case <-time.After(50 * time.Millisecond):
	}
}

func add(t *testing.T, f *Feed, namespaces ...string) received {
	t.Helper()
	r := make(received, 2*FeedQueueSize+10)
	if _, err := f.Add(t.Context(), r.fn, namespaces); err != nil {
		t.Fatal(err)
	}
	return r
}

func TestFeedDelivers(t *testing.T) {
	var f Feed
	defer f.Close()
	a := add(t, &f, "a")
	ab := add(t, &f, "a", "b")
	f.Publish(Change{Namespace: "a", Key: "1"}, Change{Namespace: "b", Key: "2"}, Change{Namespace: "c", Key: "3"})
	f.Publish(Change{Namespace: "a", Key: "4"})
	a.want(t, Change{Namespace: "a", Key: "1"}, Change{Namespace: "a", Key: "4"})
	ab.want(t, Change{Namespace: "a", Key: "1"}, Change{Namespace: "b", Key: "2"}, Change{Namespace: "a", Key: "4"})
	a.none(t)
	ab.none(t)

	f.Broadcast(Change{Interrupted: true})
	a.want(t, Change{Interrupted: true})
	ab.want(t, Change{Interrupted: true})
	f.Resync("b")
	ab.want(t, Change{Resync: true})
	a.none(t)
}

func TestFeedOverflow(t *testing.T) {
	tests := []struct {
		name string
		// last is pushed into the full queue.
		last Change
		want []Change
	}{
		{"a change", Change{Namespace: "a", Key: "last"}, []Change{{Resync: true}}},
		{"a Resync", Change{Resync: true}, []Change{{Resync: true}}},
		// A Resync does not cover an Interrupted: the feed stays down
		// until the next Resync.
		{"an Interrupted", Change{Interrupted: true}, []Change{{Resync: true}, {Interrupted: true}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var f Feed
			defer f.Close()
			release := make(chan struct{})
			r := make(received, 2*FeedQueueSize+10)
			first := true
			if _, err := f.Add(t.Context(), func(c Change) {
				if first {
					first = false
					<-release
				}
				r <- c
			}, []string{"a"}); err != nil {
				t.Fatal(err)
			}
			f.Publish(Change{Namespace: "a", Key: "blocking"})
			waitEmpty(t, onlyWatcher(&f))

			done := make(chan struct{})
			go func() {
				defer close(done)
				for i := range FeedQueueSize {
					f.Publish(Change{Namespace: "a", Key: fmt.Sprint(i)})
				}
				if tt.last.Namespace != "" {
					f.Publish(tt.last)
				} else {
					f.Broadcast(tt.last)
				}
				f.Publish(Change{Namespace: "a", Key: "after"})
			}()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("Publish waits for a watcher that blocks")
			}
			close(release)
			r.want(t, Change{Namespace: "a", Key: "blocking"})
			r.want(t, tt.want...)
			r.want(t, Change{Namespace: "a", Key: "after"})
			r.none(t)
		})
	}
}

// waitEmpty waits until w's goroutine has taken everything queued.
func waitEmpty(t *testing.T, w *watcher) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		w.mu.Lock()
		n := len(w.queue)
		w.mu.Unlock()
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the watcher does not take its queue")
		}
		time.Sleep(time.Millisecond)
	}
}

func onlyWatcher(f *Feed) *watcher {
	f.mu.Lock()
	defer f.mu.Unlock()
	for w := range f.watchers {
		return w
	}
	return nil
}

func TestFeedEnds(t *testing.T) {
	var f Feed
	ctx, cancel := context.WithCancel(t.Context())
	r := make(received, 10)
	if _, err := f.Add(ctx, r.fn, []string{"a"}); err != nil {
		t.Fatal(err)
	}
	removed := make(received, 10)
	remove, err := f.Add(t.Context(), removed.fn, []string{"a"})
	if err != nil {
		t.Fatal(err)
	}
	closed := add(t, &f, "a")
	f.Publish(Change{Namespace: "a", Key: "1"})
	r.want(t, Change{Namespace: "a", Key: "1"})
	removed.want(t, Change{Namespace: "a", Key: "1"})
	closed.want(t, Change{Namespace: "a", Key: "1"})

	cancel()
	remove()
	f.Publish(Change{Namespace: "a", Key: "2"})
	r.none(t)
	removed.none(t)
	closed.want(t, Change{Namespace: "a", Key: "2"})

	f.Close()
	f.Publish(Change{Namespace: "a", Key: "3"})
	closed.none(t)
	if _, err := f.Add(t.Context(), r.fn, []string{"a"}); !errors.Is(err, ErrClosed) {
		t.Errorf("Add after Close = %v, want ErrClosed", err)
	}
}

func TestFeedAddErrors(t *testing.T) {
	var f Feed
	defer f.Close()
	if _, err := f.Add(t.Context(), func(Change) {}, nil); err == nil {
		t.Error("Add of no namespace succeeded")
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := f.Add(ctx, func(Change) {}, []string{"a"}); !errors.Is(err, context.Canceled) {
		t.Errorf("Add with a canceled context = %v, want context.Canceled", err)
	}
}
