package storetest

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddy-uma/caddy-uma/store"
)

// scanned is what one Scan saw.
type scanned struct {
	resources []store.Resource
	// records are in the order seen.
	records []scannedRecord
	expiry  map[scannedRecord]time.Time
	values  map[scannedRecord][]byte
}

// scannedRecord is a record seen by Scan; as a map key, its value is
// empty.
type scannedRecord struct{ ns, key, value string }

func (r scannedRecord) String() string { return fmt.Sprintf("%q/%q=%q", r.ns, r.key, r.value) }

// at is the record's map key.
func at(ns, key string) scannedRecord { return scannedRecord{ns: ns, key: key} }

// scanAll scans s with both callbacks.
func scanAll(t *testing.T, s store.Store) scanned {
	t.Helper()
	got := scanned{expiry: map[scannedRecord]time.Time{}, values: map[scannedRecord][]byte{}}
	err := s.Scan(t.Context(), func(r store.Resource) error {
		got.resources = append(got.resources, r)
		return nil
	}, func(ns string, r store.Record) error {
		got.records = append(got.records, scannedRecord{ns, r.Key, string(r.Value)})
		got.expiry[at(ns, r.Key)] = r.ExpiresAt
		got.values[at(ns, r.Key)] = r.Value
		return nil
	})
	must(t, "Scan", err)
	return got
}

// byNamespaceAndKey orders records as Scan must: by namespace, then key,
// in byte order.
func byNamespaceAndKey(a, b scannedRecord) int {
	if c := strings.Compare(a.ns, b.ns); c != 0 {
		return c
	}
	return strings.Compare(a.key, b.key)
}

func testScan(t *testing.T, newStore func(*testing.T) store.Store) {
	t.Run("Empty", func(t *testing.T) {
		s := newStore(t)
		got := scanAll(t, s)
		if len(got.resources) != 0 || len(got.records) != 0 {
			t.Errorf("Scan of an empty store: %d resources, %v", len(got.resources), got.records)
		}
	})

	t.Run("Everything", func(t *testing.T) {
		s := newStore(t)
		ctx := t.Context()
		all := map[string]store.Resource{}
		var wantIDs []string
		for i, id := range []string{"zeta", "alpha", "Alpha", "a/b", "ünï", "m"} {
			r := resource(id, fmt.Sprintf("rs%d", i%2), fmt.Sprintf("o%d", i%3))
			must(t, "CreateResource", s.CreateResource(ctx, r))
			all[id] = r
			wantIDs = append(wantIDs, id)
		}
		slices.Sort(wantIDs)

		later := time.Now().Add(time.Hour).Truncate(time.Microsecond)
		var want []scannedRecord
		put := func(ns, key, value string, exp time.Time) {
			t.Helper()
			must(t, "Put", s.Put(ctx, ns, key, []byte(value), exp))
			want = append(want, scannedRecord{ns, key, value})
		}
		// Namespaces of different lengths in an order their lengths do
		// not give ("b" before "aa" by length, after it by bytes), keys
		// that are prefixes of one another, odd characters.
		put("b", "k", "1", time.Time{})
		put("aa", "k", "2", time.Time{})
		put("a", "k2", "3", time.Time{})
		put("a", "k", "4", later)
		put("a", "k1", "", time.Time{})
		for i, odd := range oddStrings {
			put(odd, odd, fmt.Sprint(i), time.Time{})
			put("odd", odd, fmt.Sprint(i), time.Time{})
		}
		// Not live: expired, deleted, taken. Replaced values show the last.
		must(t, "Put", s.Put(ctx, "a", "expired", []byte("x"), time.Now().Add(-time.Second)))
		must(t, "Put", s.Put(ctx, "a", "deleted", []byte("x"), time.Time{}))
		must(t, "Delete", s.Delete(ctx, "a", "deleted"))
		must(t, "Put", s.Put(ctx, "gone", "taken", []byte("x"), time.Time{}))
		if _, err := s.Take(ctx, "gone", "taken"); err != nil {
			t.Fatal(err)
		}
		must(t, "Put", s.Put(ctx, "b", "k", []byte("1"), time.Time{}))
		slices.SortFunc(want, byNamespaceAndKey)

		got := scanAll(t, s)
		if !slices.Equal(ids(got.resources), wantIDs) {
			t.Errorf("Scan resources = %q, want %q", ids(got.resources), wantIDs)
		}
		for _, r := range got.resources {
			if !sameResource(r, all[r.ID]) {
				t.Errorf("Scan: resource %+v, want %+v", r, all[r.ID])
			}
		}
		if !slices.Equal(got.records, want) {
			t.Errorf("Scan records =\n%v\nwant\n%v", got.records, want)
		}
		if exp := got.expiry[at("a", "k")]; !exp.Equal(later) {
			t.Errorf("Scan: expiry of a/k = %v, want %v", exp, later)
		}
		if exp := got.expiry[at("b", "k")]; !exp.IsZero() {
			t.Errorf("Scan: expiry of b/k = %v, want none", exp)
		}
		if v := got.values[at("a", "k1")]; v == nil || len(v) != 0 {
			t.Errorf("Scan: empty value = %#v, want an empty, non-nil slice", v)
		}
	})

	t.Run("OneKind", func(t *testing.T) {
		s := newStore(t)
		ctx := t.Context()
		must(t, "CreateResource", s.CreateResource(ctx, resource("r1", "rs", "o")))
		must(t, "Put", s.Put(ctx, "n", "k", []byte("v"), time.Time{}))
		var resources, records int
		must(t, "Scan of resources", s.Scan(ctx, func(store.Resource) error { resources++; return nil }, nil))
		must(t, "Scan of records", s.Scan(ctx, nil, func(string, store.Record) error { records++; return nil }))
		must(t, "Scan of nothing", s.Scan(ctx, nil, nil))
		if resources != 1 || records != 1 {
			t.Errorf("Scans saw %d resources and %d records, want 1 and 1", resources, records)
		}
	})

	t.Run("CallbackError", func(t *testing.T) {
		s := newStore(t)
		ctx := t.Context()
		for _, id := range []string{"r1", "r2"} {
			must(t, "CreateResource", s.CreateResource(ctx, resource(id, "rs", "o")))
		}
		for _, k := range []string{"k1", "k2", "k3"} {
			must(t, "Put", s.Put(ctx, "n", k, []byte("v"), time.Time{}))
		}
		stop := errors.New("stop here")
		calls := 0
		err := s.Scan(ctx, func(store.Resource) error {
			calls++
			return stop
		}, func(string, store.Record) error {
			t.Error("record called after resource failed")
			return nil
		})
		wantErr(t, "Scan with a failing resource callback", err, stop)
		calls2 := 0
		err = s.Scan(ctx, nil, func(string, store.Record) error {
			calls2++
			if calls2 == 2 {
				return stop
			}
			return nil
		})
		wantErr(t, "Scan with a failing record callback", err, stop)
		if calls != 1 || calls2 != 2 {
			t.Errorf("callbacks called %d and %d times after their errors, want 1 and 2", calls, calls2)
		}
		// The store still works.
		if _, err := s.Get(ctx, "n", "k1"); err != nil {
			t.Errorf("Get after a failed Scan: %v", err)
		}
	})

	t.Run("Snapshot", func(t *testing.T) {
		s := newStore(t)
		ctx := t.Context()
		must(t, "CreateResource", s.CreateResource(ctx, resource("r1", "rs", "o")))
		must(t, "CreateResource", s.CreateResource(ctx, resource("r2", "rs", "o")))
		must(t, "Put", s.Put(ctx, "n", "kept", []byte("before"), time.Time{}))
		must(t, "Put", s.Put(ctx, "n", "deleted", []byte("before"), time.Time{}))
		var got scanned
		wrote := false
		err := s.Scan(ctx, func(r store.Resource) error {
			got.resources = append(got.resources, r)
			if wrote {
				return nil
			}
			wrote = true
			// Writes made during the scan, through the same store: the
			// scan does not see them.
			must(t, "CreateResource during Scan", s.CreateResource(ctx, resource("r3", "rs", "o")))
			must(t, "DeleteResource during Scan", s.DeleteResource(ctx, "r2"))
			must(t, "PutAll during Scan", s.PutAll(ctx, []store.Write{
				{Namespace: "n", Key: "kept", Value: []byte("after")},
				{Namespace: "n", Key: "deleted", Delete: true},
				{Namespace: "n", Key: "new", Value: []byte("after")},
				{Namespace: "m", Key: "new", Value: []byte("after")},
			}))
			// The store itself answers with the new state.
			if v, err := s.Get(ctx, "n", "kept"); err != nil || string(v) != "after" {
				t.Errorf("Get during Scan = %q, %v; want the new value", v, err)
			}
			return nil
		}, func(ns string, r store.Record) error {
			got.records = append(got.records, scannedRecord{ns, r.Key, string(r.Value)})
			return nil
		})
		must(t, "Scan", err)
		if want := []string{"r1", "r2"}; !slices.Equal(ids(got.resources), want) {
			t.Errorf("Scan resources = %q, want the snapshot's %q", ids(got.resources), want)
		}
		if want := []scannedRecord{{"n", "deleted", "before"}, {"n", "kept", "before"}}; !slices.Equal(got.records, want) {
			t.Errorf("Scan records = %v, want the snapshot's %v", got.records, want)
		}
		after := scanAll(t, s)
		if want := []string{"r1", "r3"}; !slices.Equal(ids(after.resources), want) {
			t.Errorf("next Scan resources = %q, want %q", ids(after.resources), want)
		}
		if want := []scannedRecord{{"m", "new", "after"}, {"n", "kept", "after"}, {"n", "new", "after"}}; !slices.Equal(after.records, want) {
			t.Errorf("next Scan records = %v, want %v", after.records, want)
		}
	})

	t.Run("ValuesAreCopies", func(t *testing.T) {
		s := newStore(t)
		ctx := t.Context()
		must(t, "Put", s.Put(ctx, "n", "k", []byte("value"), time.Time{}))
		var kept []byte
		must(t, "Scan", s.Scan(ctx, nil, func(_ string, r store.Record) error {
			kept = r.Value
			copy(r.Value, "XXXXX")
			return nil
		}))
		if v, err := s.Get(ctx, "n", "k"); err != nil || string(v) != "value" {
			t.Errorf("Get after changing the scanned value = %q, %v; want %q", v, err, "value")
		}
		if !bytes.Equal(kept, []byte("XXXXX")) {
			t.Errorf("the kept value = %q, want the caller's copy", kept)
		}
	})

	t.Run("Many", func(t *testing.T) {
		s := newStore(t)
		ctx := t.Context()
		const n = 2500
		writes := make([]store.Write, 0, n)
		for i := range n {
			writes = append(writes, store.Write{Namespace: fmt.Sprintf("ns%d", i%7), Key: fmt.Sprintf("k%05d", i), Value: []byte{byte(i)}})
		}
		must(t, "PutAll", s.PutAll(ctx, writes))
		got := scanAll(t, s)
		if len(got.records) != n {
			t.Fatalf("Scan saw %d records, want %d", len(got.records), n)
		}
		if !slices.IsSortedFunc(got.records, byNamespaceAndKey) {
			t.Error("Scan records are not sorted by namespace and key")
		}
	})
}
