package pep

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestLRU(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	c := newLRU[string, int](2)
	c.put("a", 1, time.Time{})
	c.put("b", 2, now.Add(time.Minute))
	if v, ok := c.get("a", now); !ok || v != 1 {
		t.Fatalf("get a = %d, %v", v, ok)
	}
	// a was used last: adding c evicts b.
	c.put("c", 3, time.Time{})
	if _, ok := c.get("b", now); ok {
		t.Error("b should have been evicted")
	}
	if c.len() != 2 {
		t.Errorf("len = %d, want 2", c.len())
	}
	// Expiry: never served at or after the expiry.
	c.put("d", 4, now.Add(time.Second))
	if _, ok := c.get("d", now.Add(999*time.Millisecond)); !ok {
		t.Error("d should be live just before its expiry")
	}
	if _, ok := c.get("d", now.Add(time.Second)); ok {
		t.Error("d served at its expiry")
	}
	// Replacing keeps one entry.
	c.put("c", 30, time.Time{})
	if v, _ := c.get("c", now); v != 30 {
		t.Errorf("c = %d, want 30", v)
	}
	c.remove("c")
	if _, ok := c.get("c", now); ok {
		t.Error("c should be removed")
	}
}

func TestFlightGroupSharesOneCall(t *testing.T) {
	var g flightGroup[string]
	var calls atomic.Int32
	release := make(chan struct{})
	var wg sync.WaitGroup
	results := make([]string, 8)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], _ = g.do("k", func() (string, error) {
				calls.Add(1)
				<-release
				return "v", nil
			})
		}()
	}
	// Let the goroutines pile up on the call in progress.
	time.Sleep(50 * time.Millisecond)
	close(release)
	wg.Wait()
	if n := calls.Load(); n != 1 {
		// Late goroutines may start a second call after the first ended;
		// with 50ms they are all waiting.
		t.Errorf("%d calls, want 1", n)
	}
	for _, r := range results {
		if r != "v" {
			t.Errorf("result %q, want v", r)
		}
	}
	// Errors are shared too, and the next call runs again.
	_, err := g.do("k", func() (string, error) { return "", errors.New("boom") })
	if err == nil {
		t.Error("want the error")
	}
	v, _ := g.do("k", func() (string, error) { return "again", nil })
	if v != "again" {
		t.Errorf("v = %q", v)
	}
}
