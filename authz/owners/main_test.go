package owners

import (
	"sync"
	"testing"
	"time"

	"github.com/caddy-uma/caddy-uma/store"
	"github.com/caddy-uma/caddy-uma/store/badgerstore"
)

// clock is a settable clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

func (c *clock) advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// newTestStore returns an in-memory store holding one resource of alice's
// ("photos", scopes view and edit), with options on it.
func newTestStore(t *testing.T) (store.Store, Options, *clock) {
	t.Helper()
	c := &clock{t: time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)}
	st, err := badgerstore.Open(badgerstore.Options{InMemory: true, Now: c.now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := st.CreateResource(t.Context(), store.Resource{ID: "photos", Owner: "alice", ResourceServer: "rs", Name: "Photos",
		Scopes: []string{"view", "edit"}, CreatedAt: c.now(), UpdatedAt: c.now()}); err != nil {
		t.Fatal(err)
	}
	valid := func(s string) bool { return s != "" && len(s) <= 256 }
	return st, Options{Store: st, Now: c.now, ValidName: valid}, c
}
