package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-uma/caddy-uma/store"
)

// The conditional writes (Swap, SwapResource) and the deletes of PutAll.

// swapStep is one Swap of a scripted test, and what it must return.
type swapStep struct {
	old, value []byte
	expiresIn  time.Duration // 0: never
	want       error
}

// testSwap checks Swap against every shape of old and value, on one key.
func testSwap(t *testing.T, newStore func(*testing.T) store.Store) {
	v := func(s string) []byte { return []byte(s) }
	tests := []struct {
		name string
		// put, if not nil, is the live value before the steps; putExpired
		// makes it an expired one.
		put        []byte
		putExpired bool
		steps      []swapStep
		// want is the live value after the steps; nil: none.
		want []byte
	}{
		{name: "insert where none is live", steps: []swapStep{{value: v("v1")}}, want: v("v1")},
		{name: "insert over a live record", put: v("v1"), steps: []swapStep{{value: v("v2"), want: store.ErrConflict}}, want: v("v1")},
		{name: "insert over an expired record", put: v("old"), putExpired: true, steps: []swapStep{{value: v("v2")}}, want: v("v2")},
		{name: "replace", put: v("v1"), steps: []swapStep{{old: v("v1"), value: v("v2")}}, want: v("v2")},
		{name: "replace twice from one value", put: v("v1"), steps: []swapStep{
			{old: v("v1"), value: v("v2")},
			{old: v("v1"), value: v("v3"), want: store.ErrConflict},
		}, want: v("v2")},
		{name: "replace in a chain", put: v("v1"), steps: []swapStep{
			{old: v("v1"), value: v("v2")},
			{old: v("v2"), value: v("v3")},
			{old: v("v3"), value: v("v1")},
		}, want: v("v1")},
		{name: "replace from another value", put: v("v1"), steps: []swapStep{{old: v("v2"), value: v("v3"), want: store.ErrConflict}}, want: v("v1")},
		{name: "replace from a prefix", put: v("value"), steps: []swapStep{{old: v("val"), value: v("x"), want: store.ErrConflict}}, want: v("value")},
		{name: "replace from a longer value", put: v("value"), steps: []swapStep{{old: v("value!"), value: v("x"), want: store.ErrConflict}}, want: v("value")},
		{name: "replace a missing record", steps: []swapStep{{old: v("v1"), value: v("v2"), want: store.ErrConflict}}},
		{name: "replace an expired record", put: v("v1"), putExpired: true, steps: []swapStep{{old: v("v1"), value: v("v2"), want: store.ErrConflict}}},
		{name: "replace with an empty value", put: v("v1"), steps: []swapStep{{old: v("v1"), value: []byte{}}}, want: []byte{}},
		{name: "replace an empty value", put: []byte{}, steps: []swapStep{{old: []byte{}, value: v("v2")}}, want: v("v2")},
		{name: "empty old is not none", put: v("v1"), steps: []swapStep{{old: []byte{}, value: v("v2"), want: store.ErrConflict}}, want: v("v1")},
		{name: "empty old against none", steps: []swapStep{{old: []byte{}, value: v("v2"), want: store.ErrConflict}}},
		{name: "binary values", put: []byte{0, 1, 255}, steps: []swapStep{
			{old: []byte{0, 1, 254}, value: v("x"), want: store.ErrConflict},
			{old: []byte{0, 1, 255}, value: []byte{0, 0}},
		}, want: []byte{0, 0}},
		{name: "delete", put: v("v1"), steps: []swapStep{{old: v("v1")}}},
		{name: "delete from another value", put: v("v1"), steps: []swapStep{{old: v("v2"), want: store.ErrConflict}}, want: v("v1")},
		{name: "delete twice", put: v("v1"), steps: []swapStep{{old: v("v1")}, {old: v("v1"), want: store.ErrConflict}}},
		{name: "delete then insert", put: v("v1"), steps: []swapStep{{old: v("v1")}, {value: v("v2")}}, want: v("v2")},
		{name: "check that none is live", steps: []swapStep{{}}},
		{name: "check that none is live over an expired record", put: v("v1"), putExpired: true, steps: []swapStep{{}}},
		{name: "check that none is live over a live record", put: v("v1"), steps: []swapStep{{want: store.ErrConflict}}, want: v("v1")},
		{name: "the new value expires", put: v("v1"), steps: []swapStep{{old: v("v1"), value: v("v2"), expiresIn: -time.Second}}},
		{name: "an expiring value is replaced", put: v("v1"), steps: []swapStep{
			{old: v("v1"), value: v("v2"), expiresIn: time.Hour},
			{old: v("v2"), value: v("v3")},
		}, want: v("v3")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t)
			ctx := t.Context()
			if tt.put != nil {
				var exp time.Time
				if tt.putExpired {
					exp = time.Now().Add(-time.Second)
				}
				must(t, "Put", s.Put(ctx, "n", "k", tt.put, exp))
			}
			must(t, "Put of a neighbour", s.Put(ctx, "n", "k2", []byte("neighbour"), time.Time{}))
			for i, st := range tt.steps {
				var exp time.Time
				if st.expiresIn != 0 {
					exp = time.Now().Add(st.expiresIn)
				}
				err := s.Swap(ctx, "n", "k", st.old, st.value, exp)
				wantErr(t, fmt.Sprintf("step %d: Swap(%q, %q)", i, st.old, st.value), err, st.want)
			}
			got, err := s.Get(ctx, "n", "k")
			if tt.want == nil {
				wantErr(t, "Get after the swaps", err, store.ErrNotFound)
			} else if err != nil || !bytes.Equal(got, tt.want) {
				t.Errorf("Get after the swaps = %q, %v; want %q", got, err, tt.want)
			}
			if got, err := s.Get(ctx, "n", "k2"); err != nil || string(got) != "neighbour" {
				t.Errorf("Get of the neighbour = %q, %v", got, err)
			}
		})
	}

	t.Run("expiry of the new value", func(t *testing.T) {
		s := newStore(t)
		ctx := t.Context()
		exp := time.Now().Add(time.Hour).Truncate(time.Millisecond)
		must(t, "Swap", s.Swap(ctx, "n", "k", nil, []byte("v"), exp))
		list, err := s.List(ctx, "n", "", 0)
		must(t, "List", err)
		if len(list) != 1 || !list[0].ExpiresAt.Equal(exp) {
			t.Errorf("List = %+v, want one record expiring at %v", list, exp)
		}
		must(t, "Swap", s.Swap(ctx, "n", "k", []byte("v"), []byte("w"), time.Time{}))
		list, err = s.List(ctx, "n", "", 0)
		must(t, "List", err)
		if len(list) != 1 || !list[0].ExpiresAt.IsZero() {
			t.Errorf("List = %+v, want one record that never expires", list)
		}
	})

	t.Run("a value read is the old value", func(t *testing.T) {
		// An empty value reads as an empty, non-nil slice, so that it can
		// be passed back as old; nil would mean "none".
		s := newStore(t)
		ctx := t.Context()
		must(t, "Put", s.Put(ctx, "n", "k", nil, time.Time{}))
		got, err := s.Get(ctx, "n", "k")
		must(t, "Get", err)
		if got == nil {
			t.Fatal("Get of an empty value returned nil")
		}
		list, err := s.List(ctx, "n", "", 0)
		must(t, "List", err)
		if len(list) != 1 || list[0].Value == nil {
			t.Fatalf("List of an empty value = %+v, want a non-nil value", list)
		}
		must(t, "Swap from the value read", s.Swap(ctx, "n", "k", got, []byte("next"), time.Time{}))
		must(t, "Put", s.Put(ctx, "n", "k", []byte{}, time.Time{}))
		taken, err := s.Take(ctx, "n", "k")
		if err != nil || taken == nil {
			t.Errorf("Take of an empty value = %v, %v; want a non-nil value", taken, err)
		}
	})

	t.Run("large values", func(t *testing.T) {
		s := newStore(t)
		ctx := t.Context()
		big := bytes.Repeat([]byte("0123456789abcdef"), 1<<15) // 512 KiB
		other := bytes.Clone(big)
		other[len(other)-1] = 'X'
		must(t, "Put", s.Put(ctx, "n", "k", big, time.Time{}))
		wantErr(t, "Swap from a value that differs in its last byte", s.Swap(ctx, "n", "k", other, []byte("x"), time.Time{}), store.ErrConflict)
		must(t, "Swap", s.Swap(ctx, "n", "k", big, other, time.Time{}))
		got, err := s.Get(ctx, "n", "k")
		if err != nil || !bytes.Equal(got, other) {
			t.Errorf("Get = %d bytes, %v; want the new value", len(got), err)
		}
	})

	t.Run("ValuesAreCopies", func(t *testing.T) {
		s := newStore(t)
		ctx := t.Context()
		value := []byte("original")
		must(t, "Swap", s.Swap(ctx, "n", "k", nil, value, time.Time{}))
		copy(value, "MUTATED!")
		got, err := s.Get(ctx, "n", "k")
		if err != nil || string(got) != "original" {
			t.Errorf("Get = %q, %v after the caller mutated the value it swapped in", got, err)
		}
	})
}

// testReservedNamespace checks that no record can be written into the
// namespace of the resources.
func testReservedNamespace(t *testing.T, s store.Store) {
	ctx := t.Context()
	for _, ns := range []string{store.ResourcesNamespace, "\x00other"} {
		for name, write := range map[string]func() error{
			"Put":    func() error { return s.Put(ctx, ns, "k", []byte("v"), time.Time{}) },
			"Insert": func() error { return s.Insert(ctx, ns, "k", []byte("v"), time.Time{}) },
			"Swap":   func() error { return s.Swap(ctx, ns, "k", nil, []byte("v"), time.Time{}) },
			"PutAll": func() error {
				return s.PutAll(ctx, []store.Write{{Namespace: "n", Key: "k", Value: []byte("v")}, {Namespace: ns, Key: "k", Value: []byte("v")}})
			},
		} {
			if err := write(); err == nil {
				t.Errorf("%s into namespace %q succeeded", name, ns)
			}
		}
	}
	// The PutAll that failed wrote nothing.
	_, err := s.Get(ctx, "n", "k")
	wantErr(t, "Get after the failed PutAll", err, store.ErrNotFound)
}

// testPutAllDeletes checks the deletes of PutAll: applied in order with the
// writes, a missing record no error, all or nothing.
func testPutAllDeletes(t *testing.T, s store.Store) {
	ctx := t.Context()
	for _, k := range []string{"gone", "kept", "rewritten", "deleted-then-put"} {
		must(t, "Put", s.Put(ctx, "a", k, []byte("old "+k), time.Time{}))
	}
	must(t, "Put", s.Put(ctx, "a", "expired", []byte("x"), time.Now().Add(-time.Second)))
	must(t, "Put", s.Put(ctx, "b", "gone", []byte("other namespace"), time.Time{}))
	must(t, "PutAll", s.PutAll(ctx, []store.Write{
		{Namespace: "a", Key: "gone", Delete: true},
		{Namespace: "a", Key: "missing", Delete: true},
		{Namespace: "a", Key: "expired", Delete: true},
		{Namespace: "a", Key: "new", Value: []byte("new")},
		{Namespace: "a", Key: "rewritten", Value: []byte("new rewritten")},
		{Namespace: "a", Key: "put-then-deleted", Value: []byte("x")},
		{Namespace: "a", Key: "put-then-deleted", Delete: true},
		{Namespace: "a", Key: "deleted-then-put", Delete: true},
		{Namespace: "a", Key: "deleted-then-put", Value: []byte("again")},
		// Value and ExpiresAt of a delete are ignored.
		{Namespace: "a", Key: "kept-value-ignored", Value: []byte("x"), ExpiresAt: time.Now().Add(time.Hour), Delete: true},
	}))
	list, err := s.List(ctx, "a", "", 0)
	must(t, "List", err)
	var got []string
	for _, r := range list {
		got = append(got, r.Key+"="+string(r.Value))
	}
	want := []string{"deleted-then-put=again", "kept=old kept", "new=new", "rewritten=new rewritten"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("List(a) = %q, want %q", got, want)
	}
	if got, err := s.Get(ctx, "b", "gone"); err != nil || string(got) != "other namespace" {
		t.Errorf("Get(b, gone) = %q, %v; the delete of a/gone reached another namespace", got, err)
	}

	// All or nothing: the deletes of a batch that fails do not happen.
	err = s.PutAll(ctx, []store.Write{
		{Namespace: "a", Key: "kept", Delete: true},
		{Namespace: "a", Key: strings.Repeat("k", 70000), Value: []byte("x")},
	})
	if err == nil {
		t.Fatal("PutAll with a 70000-byte key succeeded")
	}
	if got, err := s.Get(ctx, "a", "kept"); err != nil || string(got) != "old kept" {
		t.Errorf("Get(a, kept) after a failed PutAll = %q, %v; want it kept", got, err)
	}
	// A batch of deletes only.
	must(t, "PutAll of deletes", s.PutAll(ctx, []store.Write{
		{Namespace: "a", Key: "kept", Delete: true},
		{Namespace: "a", Key: "new", Delete: true},
	}))
	for _, k := range []string{"kept", "new"} {
		_, err := s.Get(ctx, "a", k)
		wantErr(t, "Get("+k+") after its delete", err, store.ErrNotFound)
	}
}

// testSwapResource checks SwapResource: the compare on UpdatedAt, the
// errors, the indexes.
func testSwapResource(t *testing.T, newStore func(*testing.T) store.Store) {
	t.Run("Script", func(t *testing.T) {
		s := newStore(t)
		ctx := t.Context()
		r := resource("r1", "rs1", "alice")
		wantErr(t, "SwapResource of a missing resource", s.SwapResource(ctx, r, r.UpdatedAt.Add(-time.Minute)), store.ErrNotFound)
		must(t, "CreateResource", s.CreateResource(ctx, r))

		// Moved to another owner and resource server.
		next := resource("r1", "rs2", "bob")
		next.Name = "swapped"
		next.UpdatedAt = r.UpdatedAt.Add(time.Second)
		must(t, "SwapResource", s.SwapResource(ctx, next, r.UpdatedAt))
		wantResource(t, s, next)
		all := map[string]store.Resource{"r1": next}
		wantList(t, s, store.ResourceQuery{Owner: "alice"}, all)
		wantList(t, s, store.ResourceQuery{ResourceServer: "rs1"}, all)
		wantList(t, s, store.ResourceQuery{ResourceServer: "rs2", Owner: "bob"}, all, "r1")

		// From the old version again: a conflict, and nothing written.
		stale := next
		stale.Name = "stale"
		stale.UpdatedAt = next.UpdatedAt.Add(time.Second)
		wantErr(t, "SwapResource from the old version", s.SwapResource(ctx, stale, r.UpdatedAt), store.ErrConflict)
		wantErr(t, "SwapResource from a later version", s.SwapResource(ctx, stale, next.UpdatedAt.Add(time.Millisecond)), store.ErrConflict)
		wantResource(t, s, next)

		// From the version read back.
		read, err := s.GetResource(ctx, "r1")
		must(t, "GetResource", err)
		third := next
		third.Name = "third"
		third.UpdatedAt = read.UpdatedAt.Add(time.Microsecond)
		must(t, "SwapResource from the version read", s.SwapResource(ctx, third, read.UpdatedAt))
		wantResource(t, s, third)

		// A new version that is not after the old one is refused.
		for name, at := range map[string]time.Time{
			"equal":   third.UpdatedAt,
			"earlier": third.UpdatedAt.Add(-time.Hour),
		} {
			bad := third
			bad.Name = "not after"
			bad.UpdatedAt = at
			err := s.SwapResource(ctx, bad, third.UpdatedAt)
			wantErr(t, "SwapResource to an "+name+" version", err, store.ErrUnchangedVersion)
			if errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrNotFound) {
				t.Errorf("SwapResource to an %s version: %v also matches ErrConflict or ErrNotFound", name, err)
			}
		}
		wantResource(t, s, third)

		// Deleted: not found.
		must(t, "DeleteResource", s.DeleteResource(ctx, "r1"))
		fourth := third
		fourth.UpdatedAt = third.UpdatedAt.Add(time.Second)
		wantErr(t, "SwapResource of a deleted resource", s.SwapResource(ctx, fourth, third.UpdatedAt), store.ErrNotFound)
		_, err = s.GetResource(ctx, "r1")
		wantErr(t, "GetResource after a failed SwapResource", err, store.ErrNotFound)
	})

	t.Run("ReadModifyWrite", func(t *testing.T) {
		// Writers that each add a scope with read, modify, SwapResource,
		// and read again on a conflict, lose none of them.
		s := newStore(t)
		ctx := t.Context()
		r := resource("r1", "rs", "o")
		r.Scopes = nil
		must(t, "CreateResource", s.CreateResource(ctx, r))
		const writers = 8
		errs := raceN(writers, func(i int) error {
			for {
				cur, err := s.GetResource(ctx, "r1")
				if err != nil {
					return err
				}
				next := cur
				next.Scopes = append(slices.Clone(cur.Scopes), fmt.Sprintf("scope-%d", i))
				next.UpdatedAt = cur.UpdatedAt.Add(time.Microsecond)
				err = s.SwapResource(ctx, next, cur.UpdatedAt)
				if !errors.Is(err, store.ErrConflict) {
					return err
				}
			}
		})
		for i, err := range errs {
			wantErr(t, fmt.Sprintf("writer %d", i), err, nil)
		}
		final, err := s.GetResource(ctx, "r1")
		must(t, "GetResource", err)
		if len(final.Scopes) != writers {
			t.Errorf("final scopes %q, want one of each of the %d writers", final.Scopes, writers)
		}
	})
}

// swapRacers is how many Swaps from one value race in the concurrency tests.
const swapRacers = 50

// testSwapRace checks that of concurrent Swaps (node(i) runs racer i) from
// one value exactly one wins, and that read-modify-write loops over Swap
// lose no update.
func testSwapRace(t *testing.T, nodes []store.Store) {
	node := func(i int) store.Store { return nodes[i%len(nodes)] }
	ctx := t.Context()
	t.Run("SwapSameValue", func(t *testing.T) {
		for round := range 3 {
			key := fmt.Sprintf("swapped-%d", round)
			must(t, "Put", nodes[0].Put(ctx, "swap", key, []byte("start"), time.Time{}))
			winner := wantOneWinner(t, raceN(swapRacers, func(i int) error {
				return node(i).Swap(ctx, "swap", key, []byte("start"), []byte(fmt.Sprint(i)), time.Time{})
			}), store.ErrConflict)
			for _, n := range nodes {
				got, err := n.Get(ctx, "swap", key)
				if err != nil || winner >= 0 && string(got) != fmt.Sprint(winner) {
					t.Errorf("Get = %q, %v; want the winner's %d", got, err, winner)
				}
			}
		}
	})
	t.Run("SwapFromNone", func(t *testing.T) {
		winner := wantOneWinner(t, raceN(swapRacers, func(i int) error {
			return node(i).Swap(ctx, "swap", "inserted", nil, []byte(fmt.Sprint(i)), time.Time{})
		}), store.ErrConflict)
		got, err := nodes[len(nodes)-1].Get(ctx, "swap", "inserted")
		if err != nil || winner >= 0 && string(got) != fmt.Sprint(winner) {
			t.Errorf("Get = %q, %v; want the winner's %d", got, err, winner)
		}
	})
	t.Run("SwapDelete", func(t *testing.T) {
		must(t, "Put", nodes[0].Put(ctx, "swap", "deleted", []byte("start"), time.Time{}))
		wantOneWinner(t, raceN(swapRacers, func(i int) error {
			return node(i).Swap(ctx, "swap", "deleted", []byte("start"), nil, time.Time{})
		}), store.ErrConflict)
		_, err := nodes[len(nodes)-1].Get(ctx, "swap", "deleted")
		wantErr(t, "Get after the delete", err, store.ErrNotFound)
	})
	t.Run("Counter", func(t *testing.T) {
		// Increments by read, Swap, and read again on a conflict.
		const writers, increments = 8, 10
		errs := raceN(writers, func(i int) error {
			s := node(i)
			for range increments {
				for {
					cur, err := s.Get(ctx, "swap", "counter")
					var n int
					switch {
					case errors.Is(err, store.ErrNotFound):
						cur = nil
					case err != nil:
						return err
					default:
						if n, err = atoi(cur); err != nil {
							return err
						}
					}
					err = s.Swap(ctx, "swap", "counter", cur, []byte(fmt.Sprint(n+1)), time.Time{})
					if err == nil {
						break
					}
					if !errors.Is(err, store.ErrConflict) {
						return err
					}
				}
			}
			return nil
		})
		for i, err := range errs {
			wantErr(t, fmt.Sprintf("writer %d", i), err, nil)
		}
		got, err := nodes[0].Get(ctx, "swap", "counter")
		if err != nil || string(got) != fmt.Sprint(writers*increments) {
			t.Errorf("counter = %q, %v; want %d", got, err, writers*increments)
		}
	})
	t.Run("SwapResourceSameVersion", func(t *testing.T) {
		r := resource("swapped", "rs", "start")
		must(t, "CreateResource", nodes[0].CreateResource(ctx, r))
		winner := wantOneWinner(t, raceN(swapRacers, func(i int) error {
			next := resource("swapped", "rs", fmt.Sprintf("owner-%02d", i))
			next.UpdatedAt = r.UpdatedAt.Add(time.Duration(i+1) * time.Second)
			return node(i).SwapResource(ctx, next, r.UpdatedAt)
		}), store.ErrConflict)
		for _, n := range nodes {
			got, err := n.GetResource(ctx, "swapped")
			if err != nil || winner >= 0 && got.Owner != fmt.Sprintf("owner-%02d", winner) {
				t.Errorf("GetResource = %+v, %v; want the winner's owner %02d", got, err, winner)
			}
			list, err := n.ListResources(ctx, store.ResourceQuery{Owner: "start"})
			if err != nil || len(list) != 0 {
				t.Errorf("ListResources of the old owner = %q, %v; want none", ids(list), err)
			}
		}
	})
}

func atoi(b []byte) (int, error) {
	var n int
	_, err := fmt.Sscan(string(b), &n)
	return n, err
}

// ---------------------------------------------------------------------------
// The change feed

// changeLog collects the changes of one Watch.
type changeLog struct {
	mu      sync.Mutex
	changes []store.Change
	arrived chan struct{} // capacity 1: something was appended
}

func newChangeLog() *changeLog {
	return &changeLog{arrived: make(chan struct{}, 1)}
}

func (l *changeLog) add(c store.Change) {
	l.mu.Lock()
	l.changes = append(l.changes, c)
	l.mu.Unlock()
	select {
	case l.arrived <- struct{}{}:
	default:
	}
}

// feedTimeout bounds the wait for a change that must come: far above the
// delay of any backend, so that a slow machine does not fail the suite.
const feedTimeout = 10 * time.Second

// next returns the next change, waiting for it up to timeout.
func (l *changeLog) next(timeout time.Duration) (store.Change, bool) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		l.mu.Lock()
		if len(l.changes) > 0 {
			c := l.changes[0]
			l.changes = l.changes[1:]
			l.mu.Unlock()
			return c, true
		}
		l.mu.Unlock()
		select {
		case <-l.arrived:
		case <-deadline.C:
			return store.Change{}, false
		}
	}
}

// watch starts a Watch of s that logs into a new changeLog, until the test
// ends.
func watch(t *testing.T, s store.Store, namespaces ...string) *changeLog {
	t.Helper()
	l := newChangeLog()
	must(t, "Watch", s.Watch(t.Context(), l.add, namespaces...))
	return l
}

// expect reads changes until it has seen want, in that order, failing on
// any change that is neither in want nor in maybe (changes a backend may
// report, such as the delete of a missing record) nor a Resync, which a
// backend may send at any time.
func (l *changeLog) expect(t *testing.T, want []store.Change, maybe ...store.Change) {
	t.Helper()
	for len(want) > 0 {
		c, ok := l.next(feedTimeout)
		if !ok {
			t.Fatalf("no change within %v, want %+v", feedTimeout, want[0])
		}
		switch {
		case c == want[0]:
			want = want[1:]
		case c.Resync || containsChange(maybe, c):
		default:
			t.Fatalf("change %+v, want %+v", c, want[0])
		}
	}
}

func containsChange(list []store.Change, c store.Change) bool {
	for _, x := range list {
		if x == c {
			return true
		}
	}
	return false
}

// barrier writes a record of ns through s and expects its change, and
// nothing else, on every log: what a log did not get before is not coming.
func barrier(t *testing.T, s store.Store, ns string, logs ...*changeLog) {
	t.Helper()
	key := fmt.Sprintf("barrier-%d", barriers.Add(1))
	must(t, "Put of a barrier", s.Put(t.Context(), ns, key, []byte("b"), time.Time{}))
	for _, l := range logs {
		l.expect(t, []store.Change{{Namespace: ns, Key: key}})
	}
}

// barriers numbers the barrier records.
var barriers atomic.Int64

func rec(ns, key string) store.Change { return store.Change{Namespace: ns, Key: key} }

func res(id string) store.Change {
	return store.Change{Namespace: store.ResourcesNamespace, Key: id}
}

// testWatch checks the change feed: through writer, watched on watcher (the
// same store, or two stores on one database). Namespaces: w1 and w2 and the
// resources are watched, other is not.
func testWatch(t *testing.T, writer, watcher store.Store) {
	ctx := t.Context()
	l := watch(t, watcher, "w1", "w2", store.ResourcesNamespace)
	w := writer
	v := []byte("v")

	t.Run("records", func(t *testing.T) {
		must(t, "Put", w.Put(ctx, "w1", "a", v, time.Time{}))
		must(t, "Put", w.Put(ctx, "other", "a", v, time.Time{}))
		must(t, "Put", w.Put(ctx, "w2", "a", v, time.Time{}))
		must(t, "Insert", w.Insert(ctx, "w1", "i", v, time.Time{}))
		must(t, "Swap", w.Swap(ctx, "w1", "a", v, []byte("v2"), time.Time{}))
		must(t, "Swap from none", w.Swap(ctx, "w1", "s", nil, v, time.Time{}))
		must(t, "Swap deleting", w.Swap(ctx, "w1", "s", v, nil, time.Time{}))
		_, err := w.Take(ctx, "w1", "i")
		must(t, "Take", err)
		must(t, "Delete", w.Delete(ctx, "w2", "a"))
		must(t, "Put of an expired record", w.Put(ctx, "w1", "expired", v, time.Now().Add(-time.Second)))
		l.expect(t, []store.Change{
			rec("w1", "a"), rec("w2", "a"), rec("w1", "i"), rec("w1", "a"), rec("w1", "s"), rec("w1", "s"),
			rec("w1", "i"), rec("w2", "a"), rec("w1", "expired"),
		})
		barrier(t, w, "w1", l)
	})

	t.Run("failed writes are no changes", func(t *testing.T) {
		must(t, "Put", w.Put(ctx, "w1", "live", v, time.Time{}))
		l.expect(t, []store.Change{rec("w1", "live")})
		wantErr(t, "Insert over a live record", w.Insert(ctx, "w1", "live", v, time.Time{}), store.ErrExists)
		wantErr(t, "Swap from another value", w.Swap(ctx, "w1", "live", []byte("other"), v, time.Time{}), store.ErrConflict)
		wantErr(t, "Swap from none", w.Swap(ctx, "w1", "live", nil, v, time.Time{}), store.ErrConflict)
		wantErr(t, "Swap check of none", w.Swap(ctx, "w1", "missing", nil, nil, time.Time{}), nil)
		_, err := w.Take(ctx, "w1", "missing")
		wantErr(t, "Take of a missing record", err, store.ErrNotFound)
		wantErr(t, "Delete of a missing record", w.Delete(ctx, "w1", "missing"), store.ErrNotFound)
		_, err = w.Take(ctx, "w1", "expired")
		wantErr(t, "Take of an expired record", err, store.ErrNotFound)
		barrier(t, w, "w1", l)
	})

	t.Run("PutAll", func(t *testing.T) {
		must(t, "PutAll", w.PutAll(ctx, []store.Write{
			{Namespace: "w1", Key: "p1", Value: v},
			{Namespace: "other", Key: "p", Value: v},
			{Namespace: "w2", Key: "p2", Value: v},
			// Reported or not, before the last that must be.
			{Namespace: "w1", Key: "never-written", Delete: true},
			{Namespace: "w1", Key: "live", Delete: true},
		}))
		l.expect(t, []store.Change{rec("w1", "p1"), rec("w2", "p2"), rec("w1", "live")}, rec("w1", "never-written"))
		barrier(t, w, "w2", l)
	})

	t.Run("resources", func(t *testing.T) {
		r := resource("watched", "rs", "o")
		must(t, "CreateResource", w.CreateResource(ctx, r))
		r.Name = "updated"
		must(t, "UpdateResource", w.UpdateResource(ctx, r))
		prev := r.UpdatedAt
		r.UpdatedAt = prev.Add(time.Second)
		must(t, "SwapResource", w.SwapResource(ctx, r, prev))
		must(t, "DeleteResource", w.DeleteResource(ctx, r.ID))
		l.expect(t, []store.Change{res("watched"), res("watched"), res("watched"), res("watched")})
		wantErr(t, "SwapResource of a missing resource", w.SwapResource(ctx, r, prev), store.ErrNotFound)
		second := resource("second", "rs", "o")
		must(t, "CreateResource", w.CreateResource(ctx, second))
		l.expect(t, []store.Change{res("second")})
		wantErr(t, "CreateResource of an existing id", w.CreateResource(ctx, second), store.ErrExists)
		next := second
		next.UpdatedAt = second.UpdatedAt.Add(time.Second)
		wantErr(t, "SwapResource from another version", w.SwapResource(ctx, next, second.UpdatedAt.Add(-time.Hour)), store.ErrConflict)
		wantErr(t, "DeleteResource of a missing id", w.DeleteResource(ctx, "missing"), store.ErrNotFound)
		barrier(t, w, "w1", l)
	})

	t.Run("a read in fn sees the change", func(t *testing.T) {
		// The watcher's fn reads through the store it watches: it sees the
		// value of the change (or a later one).
		seen := make(chan string, 16)
		must(t, "Watch", watcher.Watch(ctx, func(c store.Change) {
			if c.Key != "read" {
				return
			}
			got, err := watcher.Get(ctx, c.Namespace, c.Key)
			if err != nil {
				seen <- "error: " + err.Error()
				return
			}
			seen <- string(got)
		}, "w2"))
		for i := range 5 {
			want := fmt.Sprint("value-", i)
			must(t, "Put", w.Put(ctx, "w2", "read", []byte(want), time.Time{}))
			select {
			case got := <-seen:
				if got != want {
					t.Errorf("fn read %q, want %q", got, want)
				}
			case <-time.After(feedTimeout):
				t.Fatalf("no change within %v", feedTimeout)
			}
		}
		l.expect(t, []store.Change{rec("w2", "read"), rec("w2", "read"), rec("w2", "read"), rec("w2", "read"), rec("w2", "read")})
	})

	t.Run("several watchers", func(t *testing.T) {
		a := watch(t, watcher, "w1")
		b := watch(t, watcher, "w2")
		both := watch(t, watcher, "w1", "w2")
		must(t, "Put", w.Put(ctx, "w1", "x", v, time.Time{}))
		must(t, "Put", w.Put(ctx, "w2", "y", v, time.Time{}))
		a.expect(t, []store.Change{rec("w1", "x")})
		b.expect(t, []store.Change{rec("w2", "y")})
		both.expect(t, []store.Change{rec("w1", "x"), rec("w2", "y")})
		l.expect(t, []store.Change{rec("w1", "x"), rec("w2", "y")})
		barrier(t, w, "w1", a, both, l)
		barrier(t, w, "w2", b, both, l)
	})

	t.Run("ends with its context", func(t *testing.T) {
		wctx, cancel := context.WithCancel(ctx)
		ended := newChangeLog()
		must(t, "Watch", watcher.Watch(wctx, ended.add, "w1"))
		must(t, "Put", w.Put(ctx, "w1", "before", v, time.Time{}))
		ended.expect(t, []store.Change{rec("w1", "before")})
		l.expect(t, []store.Change{rec("w1", "before")})
		cancel()
		must(t, "Put", w.Put(ctx, "w1", "after", v, time.Time{}))
		l.expect(t, []store.Change{rec("w1", "after")})
		if c, ok := ended.next(100 * time.Millisecond); ok {
			t.Errorf("the Watch whose context ended got %+v", c)
		}
	})

	t.Run("no namespaces", func(t *testing.T) {
		if err := watcher.Watch(ctx, func(store.Change) {}); err == nil {
			t.Errorf("Watch of no namespace succeeded")
		}
	})

	t.Run("overflow", func(t *testing.T) {
		// A watcher that blocks does not block writers: its queue
		// overflows into a Resync, and it gets changes again after.
		release := make(chan struct{})
		slow := newChangeLog()
		var once sync.Once
		must(t, "Watch", watcher.Watch(ctx, func(c store.Change) {
			once.Do(func() { <-release })
			slow.add(c)
		}, "w1"))
		writes := make([]store.Write, store.FeedQueueSize+10)
		for i := range writes {
			writes[i] = store.Write{Namespace: "w1", Key: fmt.Sprintf("flood-%04d", i), Value: v}
		}
		done := make(chan error, 1)
		go func() {
			must(t, "Put", w.Put(ctx, "w1", "first", v, time.Time{}))
			done <- w.PutAll(ctx, writes)
		}()
		select {
		case err := <-done:
			must(t, "PutAll", err)
		case <-time.After(feedTimeout):
			close(release)
			t.Fatal("PutAll waits for a watcher that blocks")
		}
		// Everything is queued before the watcher is released: the last
		// change reached the unhurried watcher.
		for {
			c, ok := l.next(feedTimeout)
			if !ok {
				close(release)
				t.Fatal("the other watcher did not get the flood")
			}
			if c.Key == writes[len(writes)-1].Key || c.Resync {
				break
			}
		}
		close(release)
		resynced := false
		for !resynced {
			c, ok := slow.next(feedTimeout)
			if !ok {
				t.Fatal("the blocked watcher got no Resync")
			}
			resynced = c.Resync
		}
		// It works again: everything after the Resync comes.
		must(t, "Put", w.Put(ctx, "w1", "after-resync", v, time.Time{}))
		for {
			c, ok := slow.next(feedTimeout)
			if !ok {
				t.Fatal("no change after the Resync")
			}
			if c.Key == "after-resync" {
				break
			}
			if c.Namespace != "w1" || !strings.HasPrefix(c.Key, "flood-") {
				t.Fatalf("change %+v after the Resync", c)
			}
		}
		drain(l)
	})
}

// drain reads what a log holds and what arrives within a moment.
func drain(l *changeLog) {
	for {
		if _, ok := l.next(200 * time.Millisecond); !ok {
			return
		}
	}
}
