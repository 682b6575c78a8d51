package storetest

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/caddy-uma/caddy-uma/store"
)

// RunClock checks that expiry is decided by the clock the store was given
// (the caller's), not by the database's or the real one, to the
// microsecond: open returns a new, empty store whose clock is now. The
// clock starts in 2001, long before the real one, and only moves when the
// suite sets it. The suite closes the store.
func RunClock(t *testing.T, open func(t *testing.T, now func() time.Time) store.Store) {
	var mu sync.Mutex
	clock := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC) // long before the server's now()
	now := func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return clock
	}
	set := func(t time.Time) {
		mu.Lock()
		clock = t
		mu.Unlock()
	}
	s := open(t, now)
	defer s.Close()
	ctx := t.Context()
	start := now()
	exp := start.Add(time.Second)
	for _, k := range []string{"get", "list", "take", "delete", "insert", "swap-none", "swap-old"} {
		if err := s.Put(ctx, "n", k, []byte("v"), exp); err != nil {
			t.Fatal(err)
		}
	}
	// Live a microsecond before its expiry, in 2001.
	set(exp.Add(-time.Microsecond))
	if _, err := s.Get(ctx, "n", "get"); err != nil {
		t.Fatalf("Get a microsecond before expiry: %v", err)
	}
	if err := s.Insert(ctx, "n", "insert", []byte("new"), time.Time{}); !errors.Is(err, store.ErrExists) {
		t.Errorf("Insert over the live record: %v, want ErrExists", err)
	}
	if err := s.Swap(ctx, "n", "swap-none", nil, []byte("new"), time.Time{}); !errors.Is(err, store.ErrConflict) {
		t.Errorf("Swap from none over the live record: %v, want ErrConflict", err)
	}
	// Dead at its expiry.
	set(exp)
	if _, err := s.Get(ctx, "n", "get"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Get at expiry: %v, want ErrNotFound", err)
	}
	if list, err := s.List(ctx, "n", "", 0); err != nil || len(list) != 0 {
		t.Errorf("List at expiry = %d records, %v; want none", len(list), err)
	}
	if _, err := s.Take(ctx, "n", "take"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Take at expiry: %v, want ErrNotFound", err)
	}
	if err := s.Delete(ctx, "n", "delete"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Delete at expiry: %v, want ErrNotFound", err)
	}
	if err := s.Insert(ctx, "n", "insert", []byte("new"), time.Time{}); err != nil {
		t.Errorf("Insert over the expired record: %v", err)
	}
	if err := s.Swap(ctx, "n", "swap-old", []byte("v"), []byte("new"), time.Time{}); !errors.Is(err, store.ErrConflict) {
		t.Errorf("Swap from the expired record's value: %v, want ErrConflict", err)
	}
	if err := s.Swap(ctx, "n", "swap-none", nil, []byte("new"), time.Time{}); err != nil {
		t.Errorf("Swap from none over the expired record: %v", err)
	}

	// An expiry between two microseconds is rounded up, never down.
	sub := start.Add(time.Hour + 500*time.Nanosecond)
	if err := s.Put(ctx, "n", "sub", []byte("v"), sub); err != nil {
		t.Fatal(err)
	}
	set(sub.Add(-time.Nanosecond))
	if _, err := s.Get(ctx, "n", "sub"); err != nil {
		t.Errorf("Get 1 ns before a sub-microsecond expiry: %v", err)
	}
	set(sub.Truncate(time.Microsecond).Add(time.Microsecond))
	if _, err := s.Get(ctx, "n", "sub"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Get at the rounded expiry: %v, want ErrNotFound", err)
	}
}
