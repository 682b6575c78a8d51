package storetest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/caddy-uma/caddy-uma/store"
)

// RunNoSpace checks a store on a full disk: every call that would write
// returns an error matching store.ErrNoSpace and changes nothing, a call
// that would write nothing answers as usual, reads keep working, and once
// the disk has space again writes succeed without a reopen.
//
// open returns a new, empty store and setFull, which makes the store see a
// full disk (true) or one with space (false); the store's next call after
// setFull returns must see the change (a backend that caches its measure of
// the free space advances its clock). The suite closes the store.
func RunNoSpace(t *testing.T, open func(t *testing.T) (s store.Store, setFull func(full bool))) {
	s, setFull := open(t)
	// The suite ends on a full disk, where a backend may refuse to close:
	// space comes back first, so that Close releases the store.
	t.Cleanup(func() {
		setFull(false)
		_ = s.Close()
	})
	ctx := t.Context()

	seed(t, s)
	must(t, "Put", s.Put(ctx, "n", "k2", []byte("v2"), time.Time{}))
	setFull(true)

	for _, c := range fullDiskCalls {
		t.Run("full/"+c.name, func(t *testing.T) {
			err := c.call(ctx, s)
			wantErr(t, c.name+" on a full disk", err, c.want)
			if c.want == store.ErrNoSpace {
				for _, other := range []error{store.ErrNotFound, store.ErrExists, store.ErrClosed} {
					if errors.Is(err, other) {
						t.Errorf("%s on a full disk: error %v also matches %v", c.name, err, other)
					}
				}
			}
		})
	}

	// Concurrent writers, whose writes a backend commits together: each
	// one fails.
	t.Run("full/concurrent", func(t *testing.T) {
		errs := race(func(i int) error {
			key := fmt.Sprintf("c%d", i)
			switch i % 3 {
			case 0:
				return s.Put(ctx, "n", key, []byte("x"), time.Time{})
			case 1:
				return s.Insert(ctx, "n", key, []byte("x"), time.Time{})
			}
			return s.PutAll(ctx, []store.Write{{Namespace: "n", Key: key, Value: []byte("x"), Insert: true}})
		})
		for i, err := range errs {
			wantErr(t, fmt.Sprintf("concurrent write %d on a full disk", i), err, store.ErrNoSpace)
		}
	})

	// Nothing was written or removed.
	checkUnchanged := func(t *testing.T) {
		t.Helper()
		wantResource(t, s, resource("r1", "rs", "o"))
		_, err := s.GetResource(ctx, "new")
		wantErr(t, "GetResource(new)", err, store.ErrNotFound)
		list, err := s.ListResources(ctx, store.ResourceQuery{ResourceServer: "rs", Owner: "o"})
		if err != nil || len(list) != 1 || list[0].ID != "r1" {
			t.Errorf("ListResources(rs, o) = %v, %v; want r1", ids(list), err)
		}
		records, err := s.List(ctx, "n", "", 0)
		must(t, "List", err)
		var got []string
		for _, r := range records {
			got = append(got, r.Key+"="+string(r.Value))
		}
		if want := "[k=v k2=v2]"; fmt.Sprint(got) != want {
			t.Errorf("List(n) = %v, want %s", got, want)
		}
	}
	t.Run("full/unchanged", checkUnchanged)

	// Space comes back: every write works again, on the same store.
	setFull(false)
	t.Run("space again", func(t *testing.T) {
		must(t, "Put", s.Put(ctx, "n", "k", []byte("new"), time.Time{}))
		must(t, "Insert", s.Insert(ctx, "n", "new", []byte("x"), time.Time{}))
		must(t, "PutAll", s.PutAll(ctx, []store.Write{{Namespace: "n", Key: "all", Value: []byte("x")}}))
		got, err := s.Take(ctx, "n", "k")
		if err != nil || string(got) != "new" {
			t.Errorf("Take = %q, %v; want %q", got, err, "new")
		}
		must(t, "Delete", s.Delete(ctx, "n", "k2"))
		must(t, "CreateResource", s.CreateResource(ctx, resource("new", "rs", "o")))
		must(t, "UpdateResource", s.UpdateResource(ctx, resource("r1", "rs2", "o2")))
		must(t, "DeleteResource", s.DeleteResource(ctx, "new"))
		wantResource(t, s, resource("r1", "rs2", "o2"))
	})

	// Full again: refused again (the store does not stay in "space").
	setFull(true)
	wantErr(t, "Put on a disk full again", s.Put(ctx, "n", "again", []byte("x"), time.Time{}), store.ErrNoSpace)
}

// fullDiskCalls are the calls of RunNoSpace on a full disk, on the data of
// seed plus the record n/k2, with the error each must return.
var fullDiskCalls = []struct {
	name string
	want error
	call func(ctx context.Context, s store.Store) error
}{
	// Writes.
	{"Put", store.ErrNoSpace, func(ctx context.Context, s store.Store) error {
		return s.Put(ctx, "n", "k", []byte("new"), time.Time{})
	}},
	{"Put of a new key", store.ErrNoSpace, func(ctx context.Context, s store.Store) error {
		return s.Put(ctx, "n", "new", []byte("new"), time.Time{})
	}},
	{"Insert", store.ErrNoSpace, func(ctx context.Context, s store.Store) error {
		return s.Insert(ctx, "n", "new", []byte("new"), time.Time{})
	}},
	{"PutAll", store.ErrNoSpace, func(ctx context.Context, s store.Store) error {
		return s.PutAll(ctx, []store.Write{{Namespace: "n", Key: "new", Value: []byte("x")}, {Namespace: "n", Key: "k", Value: []byte("x")}})
	}},
	{"Take", store.ErrNoSpace, func(ctx context.Context, s store.Store) error {
		_, err := s.Take(ctx, "n", "k")
		return err
	}},
	{"Delete", store.ErrNoSpace, func(ctx context.Context, s store.Store) error {
		return s.Delete(ctx, "n", "k2")
	}},
	{"CreateResource", store.ErrNoSpace, func(ctx context.Context, s store.Store) error {
		return s.CreateResource(ctx, resource("new", "rs", "o"))
	}},
	{"UpdateResource", store.ErrNoSpace, func(ctx context.Context, s store.Store) error {
		r := resource("r1", "rs", "o")
		r.Name = "renamed"
		return s.UpdateResource(ctx, r)
	}},
	{"UpdateResource moving it", store.ErrNoSpace, func(ctx context.Context, s store.Store) error {
		return s.UpdateResource(ctx, resource("r1", "rs2", "o2"))
	}},
	{"DeleteResource", store.ErrNoSpace, func(ctx context.Context, s store.Store) error {
		return s.DeleteResource(ctx, "r1")
	}},
	{"PutAll deleting", store.ErrNoSpace, func(ctx context.Context, s store.Store) error {
		return s.PutAll(ctx, []store.Write{{Namespace: "n", Key: "k", Delete: true}})
	}},
	{"Swap", store.ErrNoSpace, func(ctx context.Context, s store.Store) error {
		return s.Swap(ctx, "n", "k", []byte("v"), []byte("new"), time.Time{})
	}},
	{"Swap from none", store.ErrNoSpace, func(ctx context.Context, s store.Store) error {
		return s.Swap(ctx, "n", "new", nil, []byte("new"), time.Time{})
	}},
	{"Swap deleting", store.ErrNoSpace, func(ctx context.Context, s store.Store) error {
		return s.Swap(ctx, "n", "k2", []byte("v2"), nil, time.Time{})
	}},
	{"SwapResource", store.ErrNoSpace, func(ctx context.Context, s store.Store) error {
		r := resource("r1", "rs2", "o2")
		r.UpdatedAt = r.UpdatedAt.Add(time.Minute)
		return s.SwapResource(ctx, r, resource("r1", "rs", "o").UpdatedAt)
	}},
	// Calls that would write nothing answer as usual.
	{"PutAll of nothing", nil, func(ctx context.Context, s store.Store) error {
		return s.PutAll(ctx, nil)
	}},
	{"Insert over a live record", store.ErrExists, func(ctx context.Context, s store.Store) error {
		return s.Insert(ctx, "n", "k", []byte("new"), time.Time{})
	}},
	{"Take of a missing key", store.ErrNotFound, func(ctx context.Context, s store.Store) error {
		_, err := s.Take(ctx, "n", "missing")
		return err
	}},
	{"Delete of a missing key", store.ErrNotFound, func(ctx context.Context, s store.Store) error {
		return s.Delete(ctx, "n", "missing")
	}},
	{"CreateResource of an existing id", store.ErrExists, func(ctx context.Context, s store.Store) error {
		return s.CreateResource(ctx, resource("r1", "rs", "o"))
	}},
	{"UpdateResource of a missing id", store.ErrNotFound, func(ctx context.Context, s store.Store) error {
		return s.UpdateResource(ctx, resource("missing", "rs", "o"))
	}},
	{"DeleteResource of a missing id", store.ErrNotFound, func(ctx context.Context, s store.Store) error {
		return s.DeleteResource(ctx, "missing")
	}},
	{"Swap from another value", store.ErrConflict, func(ctx context.Context, s store.Store) error {
		return s.Swap(ctx, "n", "k", []byte("other"), []byte("new"), time.Time{})
	}},
	{"Swap checking that none is live", nil, func(ctx context.Context, s store.Store) error {
		return s.Swap(ctx, "n", "missing", nil, nil, time.Time{})
	}},
	{"SwapResource from another version", store.ErrConflict, func(ctx context.Context, s store.Store) error {
		r := resource("r1", "rs2", "o2")
		r.UpdatedAt = r.UpdatedAt.Add(time.Minute)
		return s.SwapResource(ctx, r, r.UpdatedAt.Add(-time.Hour))
	}},
	{"SwapResource of a missing id", store.ErrNotFound, func(ctx context.Context, s store.Store) error {
		r := resource("missing", "rs", "o")
		r.UpdatedAt = r.UpdatedAt.Add(time.Minute)
		return s.SwapResource(ctx, r, resource("missing", "rs", "o").UpdatedAt)
	}},
	// Reads work.
	{"Get", nil, func(ctx context.Context, s store.Store) error {
		v, err := s.Get(ctx, "n", "k")
		if err == nil && string(v) != "v" {
			return errors.New("Get returned " + string(v))
		}
		return err
	}},
	{"Get of a missing key", store.ErrNotFound, func(ctx context.Context, s store.Store) error {
		_, err := s.Get(ctx, "n", "missing")
		return err
	}},
	{"List", nil, func(ctx context.Context, s store.Store) error {
		_, err := s.List(ctx, "n", "", 0)
		return err
	}},
	{"GetResource", nil, func(ctx context.Context, s store.Store) error {
		_, err := s.GetResource(ctx, "r1")
		return err
	}},
	{"ListResources", nil, func(ctx context.Context, s store.Store) error {
		_, err := s.ListResources(ctx, store.ResourceQuery{Owner: "o"})
		return err
	}},
	{"Watch", nil, func(ctx context.Context, s store.Store) error {
		return s.Watch(ctx, func(store.Change) {}, "n")
	}},
	{"Scan", nil, func(ctx context.Context, s store.Store) error {
		n := 0
		err := s.Scan(ctx, func(store.Resource) error { n++; return nil }, func(string, store.Record) error { n++; return nil })
		if err == nil && n != 3 {
			return fmt.Errorf("Scan saw %d items, want 3", n)
		}
		return err
	}},
}
