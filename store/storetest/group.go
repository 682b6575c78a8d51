package storetest

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/caddy-uma/caddy-uma/store"
)

// Conditional writes of PutAll, and group commit: writes of concurrent
// callers that a backend commits together must each keep the outcome they
// would have alone.

// testConditionalPutAll checks Write.Insert and Write.Old, one case per
// row: the outcome, and that a failed PutAll wrote none of its writes.
func testConditionalPutAll(t *testing.T, newStore func(*testing.T) store.Store) {
	past := time.Now().Add(-time.Second)
	hour := time.Now().Add(time.Hour)
	// Every case starts from these records, in a namespace of its own.
	seedRecords := func(t *testing.T, s store.Store, ns string) {
		must(t, "Put", s.Put(t.Context(), ns, "live", []byte("v"), time.Time{}))
		must(t, "Put", s.Put(t.Context(), ns, "empty", []byte{}, time.Time{}))
		must(t, "Put", s.Put(t.Context(), ns, "expired", []byte("v"), past))
	}
	// none, in after, is a key without a live record.
	const none = "\x00none"
	other := store.Write{Namespace: "c", Key: "other", Value: []byte("o")}
	cases := []struct {
		name   string
		writes []store.Write
		want   error
		// after: the values of keys after the call.
		after map[string]string
	}{
		{"InsertAbsent", []store.Write{{Namespace: "c", Key: "new", Value: []byte("n"), ExpiresAt: hour, Insert: true}, other},
			nil, map[string]string{"new": "n", "other": "o"}},
		{"InsertOverExpired", []store.Write{{Namespace: "c", Key: "expired", Value: []byte("n"), Insert: true}, other},
			nil, map[string]string{"expired": "n", "other": "o"}},
		{"InsertExisting", []store.Write{other, {Namespace: "c", Key: "live", Value: []byte("n"), Insert: true}},
			store.ErrExists, map[string]string{"live": "v", "other": none}},
		{"InsertEmptyValue", []store.Write{{Namespace: "c", Key: "empty", Value: []byte("n"), Insert: true}, other},
			store.ErrExists, map[string]string{"empty": "", "other": none}},
		{"OldEquals", []store.Write{{Namespace: "c", Key: "live", Value: []byte("n"), Old: []byte("v")}, other},
			nil, map[string]string{"live": "n", "other": "o"}},
		{"OldEmptyValue", []store.Write{{Namespace: "c", Key: "empty", Value: []byte("n"), Old: []byte{}}, other},
			nil, map[string]string{"empty": "n", "other": "o"}},
		{"OldDiffers", []store.Write{{Namespace: "c", Key: "live", Value: []byte("n"), Old: []byte("w")}, other},
			store.ErrConflict, map[string]string{"live": "v", "other": none}},
		{"OldMissing", []store.Write{{Namespace: "c", Key: "new", Value: []byte("n"), Old: []byte("v")}, other},
			store.ErrConflict, map[string]string{"new": none, "other": none}},
		{"OldExpired", []store.Write{{Namespace: "c", Key: "expired", Value: []byte("n"), Old: []byte("v")}, other},
			store.ErrConflict, map[string]string{"expired": none, "other": none}},
		{"OldDelete", []store.Write{{Namespace: "c", Key: "live", Delete: true, Old: []byte("v")}, other},
			nil, map[string]string{"live": none, "other": "o"}},
		{"OldDeleteDiffers", []store.Write{{Namespace: "c", Key: "live", Delete: true, Old: []byte("w")}, other},
			store.ErrConflict, map[string]string{"live": "v", "other": none}},
		{"TwoConditionsHold", []store.Write{
			{Namespace: "c", Key: "new", Value: []byte("n"), Insert: true},
			{Namespace: "c", Key: "live", Delete: true, Old: []byte("v")}, other},
			nil, map[string]string{"new": "n", "live": none, "other": "o"}},
		{"SecondConditionFails", []store.Write{
			{Namespace: "c", Key: "new", Value: []byte("n"), Insert: true},
			{Namespace: "c", Key: "live", Value: []byte("n"), Insert: true}, other},
			store.ErrExists, map[string]string{"new": none, "live": "v", "other": none}},
		{"OtherWritesDeleteAndRepeat", []store.Write{
			{Namespace: "c", Key: "other", Value: []byte("first")},
			{Namespace: "c", Key: "new", Value: []byte("n"), Insert: true},
			{Namespace: "c", Key: "empty", Delete: true},
			{Namespace: "c", Key: "other", Value: []byte("o")}},
			nil, map[string]string{"new": "n", "empty": none, "other": "o"}},
	}
	s := newStore(t)
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// Each case in a namespace of its own, so that cases share a
			// store and still start from the same records.
			ns := fmt.Sprintf("c%d", i)
			seedRecords(t, s, ns)
			writes := make([]store.Write, len(c.writes))
			for j, w := range c.writes {
				w.Namespace = ns
				writes[j] = w
			}
			wantErr(t, "PutAll", s.PutAll(t.Context(), writes), c.want)
			for key, want := range c.after {
				got, err := s.Get(t.Context(), ns, key)
				switch {
				case want == none:
					wantErr(t, "Get("+key+")", err, store.ErrNotFound)
				case err != nil || string(got) != want:
					t.Errorf("Get(%s) = %q, %v; want %q", key, got, err, want)
				}
			}
		})
	}

	t.Run("CallerMistakes", func(t *testing.T) {
		for _, writes := range [][]store.Write{
			{{Namespace: "m", Key: "k", Insert: true, Delete: true}},
			{{Namespace: "m", Key: "k", Value: []byte("x"), Insert: true, Old: []byte("v")}},
			{{Namespace: "m", Key: "k", Value: []byte("x"), Insert: true}, {Namespace: "m", Key: "k", Value: []byte("y")}},
		} {
			err := s.PutAll(t.Context(), writes)
			if err == nil || errors.Is(err, store.ErrExists) || errors.Is(err, store.ErrConflict) {
				t.Errorf("PutAll(%+v) = %v, want a caller's mistake", writes, err)
			}
			_, err = s.Get(t.Context(), "m", "k")
			wantErr(t, "Get after a refused PutAll", err, store.ErrNotFound)
		}
	})
}

// testConditionalPutAllRace checks that of concurrent PutAlls that insert
// one key, on the nodes given, exactly one commits, with all of its
// writes, and the others write nothing: a grant's ticket replay record
// with its tokens.
func testConditionalPutAllRace(t *testing.T, nodes []store.Store) {
	ctx := t.Context()
	for round := range 3 {
		ticket := fmt.Sprintf("ticket-%d", round)
		errs := race(func(i int) error {
			tok := fmt.Sprintf("%d-%d", round, i)
			return nodes[i%len(nodes)].PutAll(ctx, []store.Write{
				{Namespace: "replay", Key: ticket, Value: []byte(fmt.Sprint(i)), ExpiresAt: time.Now().Add(time.Hour), Insert: true},
				{Namespace: "rpt", Key: tok, Value: []byte("rpt")},
				{Namespace: "refresh", Key: tok, Value: []byte("refresh")},
			})
		})
		winner := wantOneWinner(t, errs, store.ErrExists)
		for i := range goroutines {
			tok := fmt.Sprintf("%d-%d", round, i)
			for _, ns := range []string{"rpt", "refresh"} {
				_, err := nodes[0].Get(ctx, ns, tok)
				if i == winner {
					wantErr(t, fmt.Sprintf("Get(%s) of the winner", ns), err, nil)
				} else {
					wantErr(t, fmt.Sprintf("Get(%s) of loser %d", ns, i), err, store.ErrNotFound)
				}
			}
		}
	}
}

// testGroupCommit runs rounds of calls of every write method at once, each
// with a known outcome, most of which concurrent calls share a commit
// with: each call must get its own outcome (a failed condition fails that
// call alone), and the store must hold exactly the writes that succeeded.
func testGroupCommit(t *testing.T, newStore func(*testing.T) store.Store) {
	s := newStore(t)
	ctx := t.Context()
	hour := time.Now().Add(time.Hour)
	// The calls of a round, by i%kinds: what the call does, on keys of
	// its own, and the error it must return.
	type call struct {
		name string
		do   func(key string) error
		want error
		// check checks the records of key after the round.
		check func(t *testing.T, key string)
	}
	gone := func(ns string) func(t *testing.T, key string) {
		return func(t *testing.T, key string) {
			_, err := s.Get(ctx, ns, key)
			wantErr(t, "Get("+ns+"/"+key+")", err, store.ErrNotFound)
		}
	}
	holds := func(ns, want string) func(t *testing.T, key string) {
		return func(t *testing.T, key string) {
			got, err := s.Get(ctx, ns, key)
			if err != nil || string(got) != want {
				t.Errorf("Get(%s/%s) = %q, %v; want %q", ns, key, got, err, want)
			}
		}
	}
	calls := []call{
		{"Put", func(k string) error { return s.Put(ctx, "g", k, []byte("put"), time.Time{}) }, nil, holds("g", "put")},
		{"InsertNew", func(k string) error { return s.Insert(ctx, "g", k, []byte("ins"), hour) }, nil, holds("g", "ins")},
		{"InsertExisting", func(k string) error { return s.Insert(ctx, "seeded", k, []byte("ins"), hour) }, store.ErrExists, holds("seeded", "seed")},
		{"TakeSeeded", func(k string) error {
			v, err := s.Take(ctx, "seeded2", k)
			if err == nil && string(v) != "seed" {
				return fmt.Errorf("took %q, want %q", v, "seed")
			}
			return err
		}, nil, gone("seeded2")},
		{"TakeMissing", func(k string) error { _, err := s.Take(ctx, "g", k); return err }, store.ErrNotFound, gone("g")},
		{"DeleteMissing", func(k string) error { return s.Delete(ctx, "g", k) }, store.ErrNotFound, gone("g")},
		{"SwapHolds", func(k string) error { return s.Swap(ctx, "seeded3", k, []byte("seed"), []byte("swapped"), time.Time{}) }, nil, holds("seeded3", "swapped")},
		{"SwapConflict", func(k string) error { return s.Swap(ctx, "seeded", k, []byte("other"), []byte("swapped"), time.Time{}) }, store.ErrConflict, holds("seeded", "seed")},
		{"PutAllInsertExisting", func(k string) error {
			return s.PutAll(ctx, []store.Write{{Namespace: "g", Key: k, Value: []byte("x")}, {Namespace: "seeded", Key: k, Value: []byte("x"), Insert: true}})
		}, store.ErrExists, gone("g")},
		{"PutAllInsertNew", func(k string) error {
			return s.PutAll(ctx, []store.Write{{Namespace: "g", Key: k, Value: []byte("all")}, {Namespace: "g2", Key: k, Value: []byte("all"), Insert: true}})
		}, nil, holds("g", "all")},
		{"PutAllTooLarge", func(k string) error {
			return s.PutAll(ctx, []store.Write{{Namespace: "g", Key: k, Value: []byte("x")}, {Namespace: "g", Key: k + strings.Repeat("k", 70000), Value: []byte("x")}})
		}, errAny, gone("g")},
	}
	const rounds, perKind = 4, 6
	for round := range rounds {
		key := func(i int) string { return fmt.Sprintf("%d-%03d", round, i) }
		n := len(calls) * perKind
		for i := range n {
			for _, ns := range []string{"seeded", "seeded2", "seeded3"} {
				must(t, "Put", s.Put(ctx, ns, key(i), []byte("seed"), time.Time{}))
			}
		}
		errs := raceN(n, func(i int) error { return calls[i%len(calls)].do(key(i)) })
		for i, err := range errs {
			c := calls[i%len(calls)]
			switch {
			case c.want == errAny && err == nil:
				t.Errorf("%s %s: succeeded, want an error", c.name, key(i))
			case c.want != errAny && !errors.Is(err, c.want):
				t.Errorf("%s %s: %v, want %v", c.name, key(i), err, c.want)
			}
			c.check(t, key(i))
		}
	}
}

// errAny is the outcome of a call that must fail, whatever its error.
var errAny = errors.New("any error")
