package authz

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/caddy-uma/caddy-uma/store"
	"github.com/caddy-uma/caddy-uma/store/badgerstore"
)

// countingStore counts the resource reads that reach the store.
type countingStore struct {
	store.Store
	reads int
}

func (c *countingStore) GetResource(ctx context.Context, id string) (store.Resource, error) {
	c.reads++
	return c.Store.GetResource(ctx, id)
}

func TestResourceCache(t *testing.T) {
	ctx := t.Context()
	st, err := badgerstore.Open(badgerstore.Options{InMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	counting := &countingStore{Store: st}
	fresh := true
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	c := newResourceCache(counting, func() bool { return fresh }, func() time.Time { return now })
	for i := range maxCachedResources + 100 {
		r := store.Resource{ID: fmt.Sprint("r", i), ResourceServer: "rs", Owner: "alice", Scopes: []string{"read"}}
		if err := c.CreateResource(ctx, r); err != nil {
			t.Fatal(err)
		}
	}

	tests := []struct {
		name      string
		fresh     bool
		later     time.Duration
		wantReads int
	}{
		{"first read goes to the store", true, 0, 1},
		{"then from memory", true, 0, 0},
		{"feed stale: from the store", false, 0, 1},
		{"fresh again: from memory", true, 0, 0},
		{"kept for almost maxResourceAge: from memory", true, maxResourceAge - time.Second, 0},
		{"kept for maxResourceAge: from the store", true, time.Second, 1},
		{"read again: from memory", true, 0, 0},
	}
	for _, tt := range tests {
		fresh = tt.fresh
		now = now.Add(tt.later)
		counting.reads = 0
		res, err := c.GetResource(ctx, "r0")
		if err != nil || res.Owner != "alice" {
			t.Fatalf("%s: %+v %v", tt.name, res, err)
		}
		if counting.reads != tt.wantReads {
			t.Errorf("%s: %d reads of the store, want %d", tt.name, counting.reads, tt.wantReads)
		}
		res.Scopes[0] = "changed by a caller"
	}
	if res, _ := c.GetResource(ctx, "r0"); res.Scopes[0] != "read" {
		t.Errorf("a caller changed the resource kept: %v", res.Scopes)
	}

	if _, err := c.GetResource(ctx, "missing"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("missing: %v", err)
	}
	if _, kept, _ := c.kept.get("missing"); kept {
		t.Error("a resource not found was kept")
	}

	for i := range maxCachedResources + 100 {
		if _, err := c.GetResource(ctx, fmt.Sprint("r", i)); err != nil {
			t.Fatal(err)
		}
	}
	c.kept.mu.Lock()
	n := c.kept.known.Len()
	c.kept.mu.Unlock()
	if n != maxCachedResources {
		t.Errorf("%d resources kept, want the bound %d", n, maxCachedResources)
	}
}
