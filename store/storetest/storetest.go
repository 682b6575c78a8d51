// Package storetest is the backend-independent test suite of store.Store.
// Every backend runs it from its own tests:
//
//	func TestSuite(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) store.Store { ... a new, empty store ... })
//	}
//	func TestDurability(t *testing.T) {
//		storetest.RunDurability(t, func(t *testing.T, dir string) store.Store { ... })
//	}
//	func TestKillDuringWrites(t *testing.T) {
//		storetest.RunCrash(t, func(t *testing.T, dir string) store.Store { ... }, nil)
//	}
//	func BenchmarkStore(b *testing.B) {
//		storetest.Bench(b, func(b *testing.B) store.Store { ... })
//	}
//	func TestNoSpace(t *testing.T) {
//		storetest.RunNoSpace(t, func(t *testing.T) (store.Store, func(full bool)) { ... })
//	}
//
// The suite checks the documented contract of package store: every method,
// every documented error, expiry, the single-winner guarantees of Insert
// and Take under concurrency, Close, persistence across a restart, no loss
// of an acknowledged write when the writing process is killed (RunCrash),
// and (RunNoSpace) writes refused with store.ErrNoSpace on a full disk.
// Tmpfs mounts a small real disk for a backend's own full-disk test.
// Orders are byte orders (Go string comparison); a SQL backend needs a
// binary collation ("C") to pass. Keys, ids and namespaces used are valid
// UTF-8 without NUL bytes.
//
// Times are given at microsecond precision, which every backend keeps.
// Expiry is checked against the contract's allowance that a backend may
// round an expiry up to the next whole second, so the suite waits past that
// second before it expects a record to be gone (Run and RunDurability each
// wait about 2 s).
//
// Two expectations go beyond the comments of package store: after Close
// every method returns an error matching store.ErrClosed, and a call with a
// canceled context returns an error matching context.Canceled and changes
// nothing.
package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-uma/caddy-uma/store"
)

// Run runs the suite. open is called once per subtest and must return a
// new, empty store; the suite closes it.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	newStore := func(t *testing.T) store.Store {
		t.Helper()
		s := open(t)
		t.Cleanup(func() { _ = s.Close() })
		return s
	}
	t.Run("Resources", func(t *testing.T) { testResources(t, newStore) })
	t.Run("Records", func(t *testing.T) { testRecords(t, newStore) })
	t.Run("PutAll", func(t *testing.T) { testPutAll(t, newStore(t)) })
	t.Run("Expiry", func(t *testing.T) { testExpiry(t, newStore(t)) })
	t.Run("Concurrency", func(t *testing.T) { testConcurrency(t, newStore) })
	t.Run("Swap", func(t *testing.T) { testSwap(t, newStore) })
	t.Run("ReservedNamespace", func(t *testing.T) { testReservedNamespace(t, newStore(t)) })
	t.Run("PutAllDeletes", func(t *testing.T) { testPutAllDeletes(t, newStore(t)) })
	t.Run("SwapResource", func(t *testing.T) { testSwapResource(t, newStore) })
	t.Run("SwapRace", func(t *testing.T) { testSwapRace(t, []store.Store{newStore(t)}) })
	t.Run("ConditionalPutAll", func(t *testing.T) { testConditionalPutAll(t, newStore) })
	t.Run("ConditionalPutAllRace", func(t *testing.T) { testConditionalPutAllRace(t, []store.Store{newStore(t)}) })
	t.Run("GroupCommit", func(t *testing.T) { testGroupCommit(t, newStore) })
	t.Run("Watch", func(t *testing.T) {
		s := newStore(t)
		testWatch(t, s, s)
	})
	t.Run("Scan", func(t *testing.T) { testScan(t, newStore) })
	t.Run("Closed", func(t *testing.T) { testClosed(t, newStore(t)) })
	t.Run("CanceledContext", func(t *testing.T) { testCanceled(t, newStore(t)) })
}

// wantErr fails unless err matches want (errors.Is), or is nil if want is.
func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	switch {
	case want == nil && err != nil:
		t.Errorf("%s: unexpected error %v", what, err)
	case want != nil && !errors.Is(err, want):
		t.Errorf("%s: error %v, want %v", what, err, want)
	}
}

// must fails the test now if err is not nil.
func must(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// oddStrings are identifiers that break naive key encodings: separators,
// prefixes of one another, unicode, spaces and control characters
// (everything but NUL).
var oddStrings = []string{
	"a",
	"a/b",
	"a/b/c",
	"a:b",
	"a::b",
	"/",
	"//",
	":",
	"a\x01b",
	"a\x7fb",
	"a b",
	"a\tb\nc",
	"%2F",
	"..",
	"../x",
	"\\",
	"ünïcødé",
	"🔑🗝️",
	"日本語/キー",
	"A",
	"ab",
	"abc",
	strings.Repeat("x", 1000),
}

// ---------------------------------------------------------------------------
// Resources

func resource(id, rs, owner string) store.Resource {
	at := time.Date(2025, 3, 4, 5, 6, 7, 890123000, time.UTC)
	return store.Resource{
		ID:             id,
		ResourceServer: rs,
		Owner:          owner,
		Name:           "name of " + id,
		Type:           "https://example.com/rsrcs/photo",
		Description:    "description of " + id,
		IconURI:        "https://example.com/icons/" + id,
		Scopes:         []string{"view", "edit", "https://example.com/scopes/print"},
		URIs:           []string{"/photos/" + id, "/photos/" + id + "/*"},
		CreatedAt:      at,
		UpdatedAt:      at.Add(time.Hour),
	}
}

// sameResource compares resources, with time.Time.Equal for times and nil
// slices equal to empty ones.
func sameResource(a, b store.Resource) bool {
	return a.ID == b.ID && a.ResourceServer == b.ResourceServer && a.Owner == b.Owner &&
		a.Name == b.Name && a.Type == b.Type && a.Description == b.Description &&
		a.IconURI == b.IconURI && slices.Equal(a.Scopes, b.Scopes) && slices.Equal(a.URIs, b.URIs) &&
		a.CreatedAt.Equal(b.CreatedAt) && a.UpdatedAt.Equal(b.UpdatedAt)
}

func wantResource(t *testing.T, s store.Store, want store.Resource) {
	t.Helper()
	got, err := s.GetResource(t.Context(), want.ID)
	if err != nil {
		t.Errorf("GetResource(%q): %v", want.ID, err)
		return
	}
	if !sameResource(got, want) {
		t.Errorf("GetResource(%q) = %+v, want %+v", want.ID, got, want)
	}
}

func ids(list []store.Resource) []string {
	out := make([]string, len(list))
	for i, r := range list {
		out[i] = r.ID
	}
	return out
}

// wantList checks that q selects exactly the resources with wantIDs, in
// that order, and that each is complete.
func wantList(t *testing.T, s store.Store, q store.ResourceQuery, all map[string]store.Resource, wantIDs ...string) {
	t.Helper()
	got, err := s.ListResources(t.Context(), q)
	if err != nil {
		t.Errorf("ListResources(%+v): %v", q, err)
		return
	}
	if !slices.Equal(ids(got), wantIDs) {
		t.Errorf("ListResources(%+v) = %q, want %q", q, ids(got), wantIDs)
		return
	}
	for _, r := range got {
		if want, ok := all[r.ID]; ok && !sameResource(r, want) {
			t.Errorf("ListResources(%+v): %+v, want %+v", q, r, want)
		}
	}
}

func testResources(t *testing.T, newStore func(*testing.T) store.Store) {
	t.Run("CRUD", func(t *testing.T) {
		s := newStore(t)
		ctx := t.Context()
		r := resource("r1", "rs1", "alice")
		must(t, "CreateResource", s.CreateResource(ctx, r))
		wantResource(t, s, r)

		r.Name = "renamed"
		r.Scopes = []string{"view"}
		r.URIs = nil
		r.Description = ""
		r.UpdatedAt = r.UpdatedAt.Add(time.Minute)
		must(t, "UpdateResource", s.UpdateResource(ctx, r))
		wantResource(t, s, r)

		must(t, "DeleteResource", s.DeleteResource(ctx, r.ID))
		_, err := s.GetResource(ctx, r.ID)
		wantErr(t, "GetResource after delete", err, store.ErrNotFound)
		wantList(t, s, store.ResourceQuery{}, nil)
		wantList(t, s, store.ResourceQuery{ResourceServer: "rs1"}, nil)
		wantList(t, s, store.ResourceQuery{Owner: "alice"}, nil)
		wantList(t, s, store.ResourceQuery{ResourceServer: "rs1", Owner: "alice"}, nil)

		// The id is free again.
		must(t, "CreateResource after delete", s.CreateResource(ctx, r))
		wantResource(t, s, r)
	})

	t.Run("MinimalResource", func(t *testing.T) {
		s := newStore(t)
		r := store.Resource{ID: "min", ResourceServer: "rs", Owner: "o", Scopes: []string{}}
		must(t, "CreateResource", s.CreateResource(t.Context(), r))
		wantResource(t, s, r)
	})

	t.Run("Errors", func(t *testing.T) {
		existing := resource("r1", "rs1", "alice")
		tests := []struct {
			name string
			op   func(ctx context.Context, s store.Store) error
			want error
			// after, if set, checks the state after the failed call.
			after func(t *testing.T, s store.Store)
		}{
			{
				name: "create duplicate",
				op: func(ctx context.Context, s store.Store) error {
					return s.CreateResource(ctx, resource("r1", "rs2", "bob"))
				},
				want: store.ErrExists,
				after: func(t *testing.T, s store.Store) {
					wantResource(t, s, existing)
					wantList(t, s, store.ResourceQuery{Owner: "bob"}, nil)
					wantList(t, s, store.ResourceQuery{ResourceServer: "rs2"}, nil)
				},
			},
			{
				name: "get missing",
				op: func(ctx context.Context, s store.Store) error {
					_, err := s.GetResource(ctx, "missing")
					return err
				},
				want: store.ErrNotFound,
			},
			{
				name: "get id that is a prefix of an existing id",
				op: func(ctx context.Context, s store.Store) error {
					_, err := s.GetResource(ctx, "r")
					return err
				},
				want: store.ErrNotFound,
			},
			{
				name: "update missing",
				op: func(ctx context.Context, s store.Store) error {
					return s.UpdateResource(ctx, resource("missing", "rs1", "alice"))
				},
				want: store.ErrNotFound,
				after: func(t *testing.T, s store.Store) {
					_, err := s.GetResource(t.Context(), "missing")
					wantErr(t, "GetResource after failed update", err, store.ErrNotFound)
					wantList(t, s, store.ResourceQuery{Owner: "alice"}, nil, "r1")
				},
			},
			{
				name: "delete missing",
				op: func(ctx context.Context, s store.Store) error {
					return s.DeleteResource(ctx, "missing")
				},
				want: store.ErrNotFound,
				after: func(t *testing.T, s store.Store) {
					wantResource(t, s, existing)
				},
			},
			{
				name: "delete twice",
				op: func(ctx context.Context, s store.Store) error {
					if err := s.DeleteResource(ctx, "r1"); err != nil {
						return fmt.Errorf("first delete: %w", err)
					}
					return s.DeleteResource(ctx, "r1")
				},
				want: store.ErrNotFound,
			},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				s := newStore(t)
				must(t, "CreateResource", s.CreateResource(t.Context(), existing))
				wantErr(t, tt.name, tt.op(t.Context(), s), tt.want)
				if tt.after != nil {
					tt.after(t, s)
				}
			})
		}
	})

	t.Run("List", func(t *testing.T) {
		s := newStore(t)
		all := map[string]store.Resource{}
		// Created out of order; "rs" and "rs1", "al" and "alice" are
		// prefixes of each other.
		named := func(r store.Resource, name string) store.Resource {
			r.Name = name
			return r
		}
		for _, r := range []store.Resource{
			named(resource("r5", "rs2", "bob"), "photos"),
			named(resource("r1", "rs1", "alice"), "photos"),
			named(resource("r3", "rs1", "bob"), "photos"),
			named(resource("r2", "rs2", "alice"), "photo"),
			named(resource("r4", "rs1", "alice"), "photos"),
			named(resource("r10", "rs", "al"), "photos"),
			named(resource("r0", "rs1x", "alicex"), ""),
			named(resource("r6", "rs1", "alice"), "Photos"),
			named(resource("r7", "rs1", "alice"), "photos "),
		} {
			must(t, "CreateResource "+r.ID, s.CreateResource(t.Context(), r))
			all[r.ID] = r
		}
		tests := []struct {
			name string
			q    store.ResourceQuery
			want []string
		}{
			{"all", store.ResourceQuery{}, []string{"r0", "r1", "r10", "r2", "r3", "r4", "r5", "r6", "r7"}},
			{"by resource server", store.ResourceQuery{ResourceServer: "rs1"}, []string{"r1", "r3", "r4", "r6", "r7"}},
			{"by other resource server", store.ResourceQuery{ResourceServer: "rs2"}, []string{"r2", "r5"}},
			{"by resource server that prefixes others", store.ResourceQuery{ResourceServer: "rs"}, []string{"r10"}},
			{"by owner", store.ResourceQuery{Owner: "alice"}, []string{"r1", "r2", "r4", "r6", "r7"}},
			{"by owner that prefixes others", store.ResourceQuery{Owner: "al"}, []string{"r10"}},
			{"by both", store.ResourceQuery{ResourceServer: "rs1", Owner: "alice"}, []string{"r1", "r4", "r6", "r7"}},
			{"by both, other owner", store.ResourceQuery{ResourceServer: "rs1", Owner: "bob"}, []string{"r3"}},
			{"by both, no match", store.ResourceQuery{ResourceServer: "rs2", Owner: "al"}, nil},
			{"by both, prefixes", store.ResourceQuery{ResourceServer: "rs", Owner: "alice"}, nil},
			{"unknown resource server", store.ResourceQuery{ResourceServer: "nobody"}, nil},
			{"unknown owner", store.ResourceQuery{Owner: "nobody"}, nil},
			{"by name", store.ResourceQuery{ResourceServer: "rs1", Name: "photos"}, []string{"r1", "r3", "r4"}},
			{"by name, exact case and spaces", store.ResourceQuery{ResourceServer: "rs1", Name: "Photos"}, []string{"r6"}},
			{"by name, other resource server", store.ResourceQuery{ResourceServer: "rs2", Name: "photos"}, []string{"r5"}},
			{"by name that prefixes another", store.ResourceQuery{ResourceServer: "rs2", Name: "photo"}, []string{"r2"}},
			{"by name, no match", store.ResourceQuery{ResourceServer: "rs1", Name: "photo"}, nil},
			{"by name and owner", store.ResourceQuery{ResourceServer: "rs1", Owner: "alice", Name: "photos"}, []string{"r1", "r4"}},
			{"by name and other owner", store.ResourceQuery{ResourceServer: "rs1", Owner: "bob", Name: "photos"}, []string{"r3"}},
			{"by name and owner, no match", store.ResourceQuery{ResourceServer: "rs2", Owner: "bob", Name: "photo"}, nil},
			{"by owner and name, any resource server", store.ResourceQuery{Owner: "alice", Name: "photos"}, []string{"r1", "r4"}},
			{"by name alone", store.ResourceQuery{Name: "photos"}, []string{"r1", "r10", "r3", "r4", "r5"}},
			{"limit", store.ResourceQuery{ResourceServer: "rs1", Limit: 2}, []string{"r1", "r3"}},
			{"after", store.ResourceQuery{ResourceServer: "rs1", After: "r3"}, []string{"r4", "r6", "r7"}},
			{"after an id that is not stored", store.ResourceQuery{ResourceServer: "rs1", After: "r35"}, []string{"r4", "r6", "r7"}},
			{"after and limit", store.ResourceQuery{Owner: "alice", After: "r1", Limit: 2}, []string{"r2", "r4"}},
			{"after the last", store.ResourceQuery{ResourceServer: "rs2", After: "r5"}, nil},
			{"after, all", store.ResourceQuery{After: "r2", Limit: 3}, []string{"r3", "r4", "r5"}},
			{"after, by name", store.ResourceQuery{ResourceServer: "rs1", Name: "photos", After: "r1", Limit: 1}, []string{"r3"}},
			{"after, by name and owner", store.ResourceQuery{ResourceServer: "rs1", Owner: "alice", Name: "photos", After: "r1"}, []string{"r4"}},
			{"negative limit is none", store.ResourceQuery{ResourceServer: "rs2", Limit: -1}, []string{"r2", "r5"}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				wantList(t, s, tt.q, all, tt.want...)
			})
		}
	})

	t.Run("UpdateMovesIndexes", func(t *testing.T) {
		tests := []struct {
			name          string
			rs, owner     string
			rename        string // the new name: "" is "moved", "-" none
			gone, present []store.ResourceQuery
		}{
			{
				name: "new owner",
				rs:   "rs1", owner: "bob",
				gone:    []store.ResourceQuery{{Owner: "alice"}, {ResourceServer: "rs1", Owner: "alice"}},
				present: []store.ResourceQuery{{Owner: "bob"}, {ResourceServer: "rs1"}, {ResourceServer: "rs1", Owner: "bob"}, {}},
			},
			{
				name: "new resource server",
				rs:   "rs2", owner: "alice",
				gone:    []store.ResourceQuery{{ResourceServer: "rs1"}, {ResourceServer: "rs1", Owner: "alice"}},
				present: []store.ResourceQuery{{ResourceServer: "rs2"}, {Owner: "alice"}, {ResourceServer: "rs2", Owner: "alice"}, {}},
			},
			{
				name: "both new",
				rs:   "rs2", owner: "bob",
				gone: []store.ResourceQuery{
					{ResourceServer: "rs1"}, {Owner: "alice"}, {ResourceServer: "rs1", Owner: "alice"},
					{ResourceServer: "rs2", Owner: "alice"}, {ResourceServer: "rs1", Owner: "bob"},
				},
				present: []store.ResourceQuery{{ResourceServer: "rs2"}, {Owner: "bob"}, {ResourceServer: "rs2", Owner: "bob"}, {}},
			},
			{
				name: "unchanged",
				rs:   "rs1", owner: "alice",
				present: []store.ResourceQuery{{ResourceServer: "rs1"}, {Owner: "alice"}, {ResourceServer: "rs1", Owner: "alice"}, {}},
			},
			{
				name: "new name only",
				rs:   "rs1", owner: "alice", rename: "renamed",
				gone: []store.ResourceQuery{{ResourceServer: "rs1", Name: "name of r1"}, {ResourceServer: "rs1", Owner: "alice", Name: "name of r1"}},
				present: []store.ResourceQuery{
					{ResourceServer: "rs1", Name: "renamed"}, {ResourceServer: "rs1", Owner: "alice", Name: "renamed"},
					{ResourceServer: "rs1", Owner: "alice"}, {},
				},
			},
			{
				name: "name removed",
				rs:   "rs1", owner: "alice", rename: "-",
				gone:    []store.ResourceQuery{{ResourceServer: "rs1", Name: "name of r1"}, {ResourceServer: "rs1", Owner: "alice", Name: "name of r1"}},
				present: []store.ResourceQuery{{ResourceServer: "rs1"}, {ResourceServer: "rs1", Owner: "alice"}},
			},
			{
				name: "new owner, name kept",
				rs:   "rs1", owner: "bob", rename: "name of r1",
				gone:    []store.ResourceQuery{{ResourceServer: "rs1", Owner: "alice", Name: "name of r1"}},
				present: []store.ResourceQuery{{ResourceServer: "rs1", Name: "name of r1"}, {ResourceServer: "rs1", Owner: "bob", Name: "name of r1"}},
			},
			{
				name: "new resource server, name kept",
				rs:   "rs2", owner: "alice", rename: "name of r1",
				gone:    []store.ResourceQuery{{ResourceServer: "rs1", Name: "name of r1"}, {ResourceServer: "rs1", Owner: "alice", Name: "name of r1"}},
				present: []store.ResourceQuery{{ResourceServer: "rs2", Name: "name of r1"}, {ResourceServer: "rs2", Owner: "alice", Name: "name of r1"}},
			},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				s := newStore(t)
				ctx := t.Context()
				must(t, "CreateResource", s.CreateResource(ctx, resource("r1", "rs1", "alice")))
				updated := resource("r1", tt.rs, tt.owner)
				switch tt.rename {
				case "":
					updated.Name = "moved"
				case "-":
					updated.Name = ""
				default:
					updated.Name = tt.rename
				}
				must(t, "UpdateResource", s.UpdateResource(ctx, updated))
				all := map[string]store.Resource{"r1": updated}
				for _, q := range tt.gone {
					wantList(t, s, q, all)
				}
				for _, q := range tt.present {
					wantList(t, s, q, all, "r1")
				}
				// Deleting removes it from the new indexes.
				must(t, "DeleteResource", s.DeleteResource(ctx, "r1"))
				for _, q := range append(tt.gone, tt.present...) {
					wantList(t, s, q, all)
				}
			})
		}
	})

	t.Run("OddIdentifiers", func(t *testing.T) {
		s := newStore(t)
		ctx := t.Context()
		// Every odd string is used as id, resource server and owner, in
		// combinations that collide under naive concatenation: owner "a"
		// with id "b/c" against owner "a/b" with id "c".
		all := map[string]store.Resource{}
		byServer := map[string][]string{}
		byOwner := map[string][]string{}
		byBoth := map[[2]string][]string{}
		for i, id := range oddStrings {
			rs := oddStrings[(i+1)%len(oddStrings)]
			owner := oddStrings[(i+2)%len(oddStrings)]
			for _, r := range []store.Resource{
				resource(id, rs, owner),
				resource(owner+"/"+id, rs, owner),
				resource(rs+":"+id, owner, rs+":"),
			} {
				if _, dup := all[r.ID]; dup {
					continue
				}
				must(t, fmt.Sprintf("CreateResource(%q)", r.ID), s.CreateResource(ctx, r))
				all[r.ID] = r
				byServer[r.ResourceServer] = append(byServer[r.ResourceServer], r.ID)
				byOwner[r.Owner] = append(byOwner[r.Owner], r.ID)
				byBoth[[2]string{r.ResourceServer, r.Owner}] = append(byBoth[[2]string{r.ResourceServer, r.Owner}], r.ID)
			}
		}
		for _, r := range all {
			wantResource(t, s, r)
		}
		sortedIDs := func(m map[string]store.Resource) []string {
			out := make([]string, 0, len(m))
			for id := range m {
				out = append(out, id)
			}
			slices.Sort(out)
			return out
		}
		wantList(t, s, store.ResourceQuery{}, all, sortedIDs(all)...)
		for rs, want := range byServer {
			wantList(t, s, store.ResourceQuery{ResourceServer: rs}, all, slices.Sorted(slices.Values(want))...)
		}
		for owner, want := range byOwner {
			wantList(t, s, store.ResourceQuery{Owner: owner}, all, slices.Sorted(slices.Values(want))...)
		}
		for k, want := range byBoth {
			wantList(t, s, store.ResourceQuery{ResourceServer: k[0], Owner: k[1]}, all, slices.Sorted(slices.Values(want))...)
		}
		// Odd strings as names: each resource's name is its owner's id, so
		// that names are shared and collide under naive concatenation.
		byName := map[[3]string][]string{}
		for id, r := range all {
			r.Name = r.Owner + "/" + r.ResourceServer
			must(t, fmt.Sprintf("UpdateResource(%q)", id), s.UpdateResource(ctx, r))
			all[id] = r
			for _, k := range [][3]string{{r.ResourceServer, "", r.Name}, {r.ResourceServer, r.Owner, r.Name}} {
				byName[k] = append(byName[k], id)
			}
		}
		for k, want := range byName {
			wantList(t, s, store.ResourceQuery{ResourceServer: k[0], Owner: k[1], Name: k[2]}, all, slices.Sorted(slices.Values(want))...)
		}
		for _, q := range []store.ResourceQuery{{ResourceServer: "a", Name: "a"}, {ResourceServer: "a", Name: "a/"}, {ResourceServer: "a/b", Name: "/a"}} {
			if _, ok := byName[[3]string{q.ResourceServer, "", q.Name}]; !ok {
				wantList(t, s, q, all)
			}
		}
		// Strings that are none of the owners find nothing, even when
		// they are concatenations of owners and ids.
		for _, q := range []store.ResourceQuery{{Owner: "a/b/c/d"}, {Owner: "b"}, {ResourceServer: "a/"}, {Owner: "a:"}} {
			if _, ok := byOwner[q.Owner]; ok {
				continue
			}
			if _, ok := byServer[q.ResourceServer]; ok {
				continue
			}
			wantList(t, s, q, all)
		}
	})

	t.Run("SortedByID", func(t *testing.T) {
		s := newStore(t)
		want := []string{"B", "a", "a/b", "a0", "aa", "b", "é", "日本", "🔑"}
		for _, i := range []int{5, 2, 8, 0, 7, 3, 1, 6, 4} {
			must(t, "CreateResource", s.CreateResource(t.Context(), resource(want[i], "rs", "o")))
		}
		for _, q := range []store.ResourceQuery{{}, {ResourceServer: "rs"}, {Owner: "o"}, {ResourceServer: "rs", Owner: "o"}} {
			wantList(t, s, q, nil, want...)
		}
	})

	t.Run("ReturnedValuesAreCopies", func(t *testing.T) {
		s := newStore(t)
		ctx := t.Context()
		r := resource("r1", "rs", "o")
		must(t, "CreateResource", s.CreateResource(ctx, r))
		r.Scopes[0] = "mutated after create"
		got, err := s.GetResource(ctx, "r1")
		must(t, "GetResource", err)
		if got.Scopes[0] == "mutated after create" {
			t.Errorf("the store kept the caller's Scopes slice")
		}
		got.Scopes[0] = "mutated after get"
		list, err := s.ListResources(ctx, store.ResourceQuery{})
		must(t, "ListResources", err)
		if len(list) != 1 || list[0].Scopes[0] != "view" {
			t.Errorf("ListResources = %+v after the caller mutated a returned resource", list)
		}
	})

	t.Run("Many", func(t *testing.T) {
		s := newStore(t)
		var want []string
		for i := range 300 {
			id := fmt.Sprintf("res-%04d", i)
			want = append(want, id)
			must(t, "CreateResource", s.CreateResource(t.Context(), resource(id, "rs", fmt.Sprintf("owner-%d", i%3))))
		}
		wantList(t, s, store.ResourceQuery{ResourceServer: "rs"}, nil, want...)
		var owner1 []string
		for i := 1; i < 300; i += 3 {
			owner1 = append(owner1, want[i])
		}
		wantList(t, s, store.ResourceQuery{Owner: "owner-1"}, nil, owner1...)
	})

	t.Run("Pages", func(t *testing.T) {
		// Walking every query page by page, with resources created
		// between pages, returns each resource that lives throughout
		// exactly once, in order.
		s := newStore(t)
		ctx := t.Context()
		var stable []string
		for i := range 50 {
			id := fmt.Sprintf("p-%03d", i*2)
			stable = append(stable, id)
			r := resource(id, "rs", "owner")
			r.Name = "same"
			must(t, "CreateResource", s.CreateResource(ctx, r))
		}
		for _, q := range []store.ResourceQuery{
			{}, {ResourceServer: "rs"}, {Owner: "owner"}, {ResourceServer: "rs", Owner: "owner"},
			{ResourceServer: "rs", Name: "same"}, {ResourceServer: "rs", Owner: "owner", Name: "same"},
		} {
			var got []string
			q.Limit = 7
			for page := 0; ; page++ {
				list, err := s.ListResources(ctx, q)
				must(t, "ListResources", err)
				if len(list) > q.Limit {
					t.Fatalf("ListResources(%+v) = %d resources, more than the limit", q, len(list))
				}
				if len(list) == 0 {
					break
				}
				for _, r := range list {
					got = append(got, r.ID)
				}
				q.After = list[len(list)-1].ID
				// Between pages: one created before the page boundary, one
				// after it.
				for _, n := range []int{page*14 + 1, page*14 + 17} {
					r := resource(fmt.Sprintf("p-%03d", n), "rs", "owner")
					r.Name = "same"
					if err := s.CreateResource(ctx, r); err != nil && !errors.Is(err, store.ErrExists) {
						t.Fatal(err)
					}
				}
			}
			var kept []string
			for _, id := range got {
				if slices.Contains(stable, id) {
					kept = append(kept, id)
				}
			}
			if !slices.Equal(kept, stable) || !slices.IsSorted(got) {
				t.Errorf("pages of %+v = %q, want every one of %q once, in order", q, got, stable)
			}
		}
	})
}

// ---------------------------------------------------------------------------
// Records

// step is one call in a scripted records test.
type step struct {
	op        string // put, insert, get, take, delete
	ns, key   string
	value     string // for put and insert
	want      string // for get and take
	wantErr   error
	expiresIn time.Duration // for put and insert: expiresAt = now + this; 0 = never
}

func (st step) run(t *testing.T, s store.Store) {
	t.Helper()
	ctx := t.Context()
	var exp time.Time
	if st.expiresIn != 0 {
		exp = time.Now().Add(st.expiresIn)
	}
	what := fmt.Sprintf("%s(%q, %q)", st.op, st.ns, st.key)
	var got []byte
	var err error
	switch st.op {
	case "put":
		err = s.Put(ctx, st.ns, st.key, []byte(st.value), exp)
	case "insert":
		err = s.Insert(ctx, st.ns, st.key, []byte(st.value), exp)
	case "get":
		got, err = s.Get(ctx, st.ns, st.key)
	case "take":
		got, err = s.Take(ctx, st.ns, st.key)
	case "delete":
		err = s.Delete(ctx, st.ns, st.key)
	default:
		t.Fatalf("unknown op %q", st.op)
	}
	wantErr(t, what, err, st.wantErr)
	if (st.op == "get" || st.op == "take") && st.wantErr == nil && err == nil && string(got) != st.want {
		t.Errorf("%s = %q, want %q", what, got, st.want)
	}
}

func testRecords(t *testing.T, newStore func(*testing.T) store.Store) {
	t.Run("Scripts", func(t *testing.T) {
		tests := []struct {
			name  string
			steps []step
		}{
			{"get missing", []step{
				{op: "get", ns: "n", key: "k", wantErr: store.ErrNotFound},
			}},
			{"put then get", []step{
				{op: "put", ns: "n", key: "k", value: "v"},
				{op: "get", ns: "n", key: "k", want: "v"},
			}},
			{"put replaces", []step{
				{op: "put", ns: "n", key: "k", value: "v1"},
				{op: "put", ns: "n", key: "k", value: "v2"},
				{op: "get", ns: "n", key: "k", want: "v2"},
			}},
			{"put replaces an expiring record with a lasting one", []step{
				{op: "put", ns: "n", key: "k", value: "v1", expiresIn: time.Hour},
				{op: "put", ns: "n", key: "k", value: "v2"},
				{op: "get", ns: "n", key: "k", want: "v2"},
			}},
			{"insert new", []step{
				{op: "insert", ns: "n", key: "k", value: "v"},
				{op: "get", ns: "n", key: "k", want: "v"},
			}},
			{"insert existing", []step{
				{op: "put", ns: "n", key: "k", value: "v1"},
				{op: "insert", ns: "n", key: "k", value: "v2", wantErr: store.ErrExists},
				{op: "get", ns: "n", key: "k", want: "v1"},
			}},
			{"insert twice", []step{
				{op: "insert", ns: "n", key: "k", value: "v1"},
				{op: "insert", ns: "n", key: "k", value: "v2", wantErr: store.ErrExists},
				{op: "get", ns: "n", key: "k", want: "v1"},
			}},
			{"insert after delete", []step{
				{op: "insert", ns: "n", key: "k", value: "v1"},
				{op: "delete", ns: "n", key: "k"},
				{op: "insert", ns: "n", key: "k", value: "v2"},
				{op: "get", ns: "n", key: "k", want: "v2"},
			}},
			{"take", []step{
				{op: "put", ns: "n", key: "k", value: "v"},
				{op: "take", ns: "n", key: "k", want: "v"},
				{op: "get", ns: "n", key: "k", wantErr: store.ErrNotFound},
				{op: "take", ns: "n", key: "k", wantErr: store.ErrNotFound},
			}},
			{"take missing", []step{
				{op: "take", ns: "n", key: "k", wantErr: store.ErrNotFound},
			}},
			{"insert after take", []step{
				{op: "insert", ns: "n", key: "k", value: "v1"},
				{op: "take", ns: "n", key: "k", want: "v1"},
				{op: "insert", ns: "n", key: "k", value: "v2"},
				{op: "take", ns: "n", key: "k", want: "v2"},
			}},
			{"delete", []step{
				{op: "put", ns: "n", key: "k", value: "v"},
				{op: "delete", ns: "n", key: "k"},
				{op: "get", ns: "n", key: "k", wantErr: store.ErrNotFound},
				{op: "delete", ns: "n", key: "k", wantErr: store.ErrNotFound},
			}},
			{"delete missing", []step{
				{op: "delete", ns: "n", key: "k", wantErr: store.ErrNotFound},
			}},
			{"namespaces are isolated", []step{
				{op: "put", ns: "n1", key: "k", value: "v1"},
				{op: "put", ns: "n2", key: "k", value: "v2"},
				{op: "insert", ns: "n3", key: "k", value: "v3"},
				{op: "get", ns: "n1", key: "k", want: "v1"},
				{op: "get", ns: "n2", key: "k", want: "v2"},
				{op: "take", ns: "n3", key: "k", want: "v3"},
				{op: "delete", ns: "n1", key: "k"},
				{op: "get", ns: "n2", key: "k", want: "v2"},
				{op: "get", ns: "n1", key: "k", wantErr: store.ErrNotFound},
				{op: "get", ns: "n4", key: "k", wantErr: store.ErrNotFound},
			}},
			{"namespace and key do not run into each other", []step{
				{op: "put", ns: "a", key: "bc", value: "a|bc"},
				{op: "put", ns: "ab", key: "c", value: "ab|c"},
				{op: "put", ns: "a/b", key: "c", value: "a/b|c"},
				{op: "put", ns: "a", key: "b/c", value: "a|b/c"},
				{op: "put", ns: "a:", key: ":b", value: "a:|:b"},
				{op: "put", ns: "a::", key: "b", value: "a::|b"},
				{op: "get", ns: "a", key: "bc", want: "a|bc"},
				{op: "get", ns: "ab", key: "c", want: "ab|c"},
				{op: "get", ns: "a/b", key: "c", want: "a/b|c"},
				{op: "get", ns: "a", key: "b/c", want: "a|b/c"},
				{op: "get", ns: "a:", key: ":b", want: "a:|:b"},
				{op: "get", ns: "a::", key: "b", want: "a::|b"},
				{op: "get", ns: "a", key: "b", wantErr: store.ErrNotFound},
				{op: "get", ns: "a/", key: "b/c", wantErr: store.ErrNotFound},
				{op: "insert", ns: "a", key: "c", value: "a|c"},
				{op: "take", ns: "ab", key: "c", want: "ab|c"},
				{op: "get", ns: "a", key: "c", want: "a|c"},
			}},
			{"keys are exact, not prefixes", []step{
				{op: "put", ns: "n", key: "key", value: "v"},
				{op: "get", ns: "n", key: "ke", wantErr: store.ErrNotFound},
				{op: "get", ns: "n", key: "key2", wantErr: store.ErrNotFound},
				{op: "take", ns: "n", key: "k", wantErr: store.ErrNotFound},
				{op: "delete", ns: "n", key: "keyy", wantErr: store.ErrNotFound},
				{op: "get", ns: "n", key: "Key", wantErr: store.ErrNotFound},
				{op: "get", ns: "n", key: "key", want: "v"},
			}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				s := newStore(t)
				for _, st := range tt.steps {
					st.run(t, s)
				}
			})
		}
	})

	t.Run("OddKeysAndNamespaces", func(t *testing.T) {
		s := newStore(t)
		ctx := t.Context()
		value := func(ns, key string) []byte { return []byte(fmt.Sprintf("%q|%q", ns, key)) }
		for _, ns := range oddStrings {
			for _, key := range oddStrings {
				must(t, "Put", s.Put(ctx, ns, key, value(ns, key), time.Time{}))
			}
		}
		for _, ns := range oddStrings {
			for _, key := range oddStrings {
				got, err := s.Get(ctx, ns, key)
				if err != nil || !bytes.Equal(got, value(ns, key)) {
					t.Errorf("Get(%q, %q) = %q, %v; want %q", ns, key, got, err, value(ns, key))
				}
			}
			list, err := s.List(ctx, ns, "", 0)
			must(t, "List", err)
			keys := make([]string, len(list))
			for i, r := range list {
				keys[i] = r.Key
				if !bytes.Equal(r.Value, value(ns, r.Key)) {
					t.Errorf("List(%q): %q = %q, want %q", ns, r.Key, r.Value, value(ns, r.Key))
				}
			}
			if want := slices.Sorted(slices.Values(oddStrings)); !slices.Equal(keys, want) {
				t.Errorf("List(%q) keys = %q, want %q", ns, keys, want)
			}
		}
	})

	t.Run("Values", func(t *testing.T) {
		big := bytes.Repeat([]byte("0123456789abcdef"), 1<<15) // 512 KiB
		tests := []struct {
			name  string
			value []byte
		}{
			{"nil", nil},
			{"empty", []byte{}},
			{"binary with NULs", []byte{0, 1, 2, 0, 255, 254, 0}},
			{"512 KiB", big},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				s := newStore(t)
				ctx := t.Context()
				must(t, "Put", s.Put(ctx, "n", "k", tt.value, time.Time{}))
				got, err := s.Get(ctx, "n", "k")
				must(t, "Get", err)
				if !bytes.Equal(got, tt.value) {
					t.Errorf("Get = %d bytes, want %d", len(got), len(tt.value))
				}
				list, err := s.List(ctx, "n", "", 0)
				must(t, "List", err)
				if len(list) != 1 || !bytes.Equal(list[0].Value, tt.value) {
					t.Errorf("List = %d records, want 1 with the value", len(list))
				}
				must(t, "Insert", s.Insert(ctx, "n", "k2", tt.value, time.Time{}))
				got, err = s.Take(ctx, "n", "k2")
				must(t, "Take", err)
				if !bytes.Equal(got, tt.value) {
					t.Errorf("Take = %d bytes, want %d", len(got), len(tt.value))
				}
			})
		}
	})

	t.Run("ValuesAreCopies", func(t *testing.T) {
		s := newStore(t)
		ctx := t.Context()
		v := []byte("original")
		must(t, "Put", s.Put(ctx, "n", "k", v, time.Time{}))
		copy(v, "MUTATED!")
		got, err := s.Get(ctx, "n", "k")
		must(t, "Get", err)
		if string(got) != "original" {
			t.Fatalf("Get = %q after the caller mutated the value it put", got)
		}
		copy(got, "MUTATED!")
		got2, err := s.Get(ctx, "n", "k")
		must(t, "Get", err)
		list, err := s.List(ctx, "n", "", 0)
		must(t, "List", err)
		copy(list[0].Value, "MUTATED!")
		got3, err := s.Get(ctx, "n", "k")
		must(t, "Get", err)
		if string(got2) != "original" || string(got3) != "original" {
			t.Errorf("Get = %q, %q after the caller mutated returned values", got2, got3)
		}
	})

	t.Run("List", func(t *testing.T) {
		s := newStore(t)
		ctx := t.Context()
		exp := time.Now().Add(time.Hour).Truncate(time.Millisecond)
		put := func(ns, key string, exp time.Time) {
			must(t, "Put", s.Put(ctx, ns, key, []byte(ns+"|"+key), exp))
		}
		// Put out of order, in neighbouring namespaces.
		for _, k := range []string{"tok/3", "tok/1", "tok", "tok/2", "ticket/1", "t", "u", "tok/10", "to"} {
			put("n", k, time.Time{})
		}
		put("n", "tok/exp", exp)
		put("ab", "c", time.Time{})
		put("a", "bc", time.Time{})
		put("n2", "tok/1", time.Time{})
		put("", "n", time.Time{})
		put("m", "x", time.Time{})
		put("o", "x", time.Time{})
		tests := []struct {
			name      string
			ns        string
			prefix    string
			limit     int
			want      []string
			wantEmpty bool
		}{
			{name: "whole namespace", ns: "n", want: []string{"t", "ticket/1", "to", "tok", "tok/1", "tok/10", "tok/2", "tok/3", "tok/exp", "u"}},
			{name: "prefix", ns: "n", prefix: "tok/", want: []string{"tok/1", "tok/10", "tok/2", "tok/3", "tok/exp"}},
			{name: "prefix equal to a key", ns: "n", prefix: "tok", want: []string{"tok", "tok/1", "tok/10", "tok/2", "tok/3", "tok/exp"}},
			{name: "prefix and limit", ns: "n", prefix: "tok/", limit: 2, want: []string{"tok/1", "tok/10"}},
			{name: "limit", ns: "n", limit: 3, want: []string{"t", "ticket/1", "to"}},
			{name: "limit 1", ns: "n", prefix: "tok/1", limit: 1, want: []string{"tok/1"}},
			{name: "limit above count", ns: "n", prefix: "tok/", limit: 100, want: []string{"tok/1", "tok/10", "tok/2", "tok/3", "tok/exp"}},
			{name: "negative limit is all", ns: "n", prefix: "t", limit: -1, want: []string{"t", "ticket/1", "to", "tok", "tok/1", "tok/10", "tok/2", "tok/3", "tok/exp"}},
			{name: "prefix matching nothing", ns: "n", prefix: "zzz", wantEmpty: true},
			{name: "prefix longer than every key", ns: "n", prefix: "tok/10/", wantEmpty: true},
			{name: "namespace without records", ns: "nothing", wantEmpty: true},
			{name: "namespace prefix of another: a", ns: "a", want: []string{"bc"}},
			{name: "namespace prefix of another: a, prefix b", ns: "a", prefix: "b", want: []string{"bc"}},
			{name: "namespace prefix of another: ab", ns: "ab", want: []string{"c"}},
			{name: "namespace prefix does not leak", ns: "a", prefix: "c", wantEmpty: true},
			{name: "other namespace, same keys", ns: "n2", want: []string{"tok/1"}},
			{name: "namespace n is not a prefix scan", ns: "", want: []string{"n"}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				list, err := s.List(ctx, tt.ns, tt.prefix, tt.limit)
				must(t, "List", err)
				keys := make([]string, len(list))
				for i, r := range list {
					keys[i] = r.Key
					if string(r.Value) != tt.ns+"|"+r.Key {
						t.Errorf("record %q has value %q, want %q", r.Key, r.Value, tt.ns+"|"+r.Key)
					}
					wantExp := time.Time{}
					if tt.ns == "n" && r.Key == "tok/exp" {
						wantExp = exp
					}
					if !r.ExpiresAt.Equal(wantExp) {
						t.Errorf("record %q has ExpiresAt %v, want %v", r.Key, r.ExpiresAt, wantExp)
					}
				}
				if tt.wantEmpty {
					if len(keys) != 0 {
						t.Errorf("List(%q, %q, %d) = %q, want none", tt.ns, tt.prefix, tt.limit, keys)
					}
					return
				}
				if !slices.Equal(keys, tt.want) {
					t.Errorf("List(%q, %q, %d) = %q, want %q", tt.ns, tt.prefix, tt.limit, keys, tt.want)
				}
			})
		}
	})
}

// ---------------------------------------------------------------------------
// Expiry

// probe is one way of observing whether a record is live.
type probe struct {
	name string
	// check observes (ns, key), which holds value if live, and reports
	// a failure if what it sees is not consistent with live.
	check func(t *testing.T, s store.Store, ns, key, value string, exp time.Time, live bool)
}

var probes = []probe{
	{"Get", func(t *testing.T, s store.Store, ns, key, value string, _ time.Time, live bool) {
		got, err := s.Get(t.Context(), ns, key)
		if live {
			if err != nil || string(got) != value {
				t.Errorf("Get(%q) = %q, %v; want %q", key, got, err, value)
			}
		} else {
			wantErr(t, fmt.Sprintf("Get(%q)", key), err, store.ErrNotFound)
		}
	}},
	{"List", func(t *testing.T, s store.Store, ns, key, value string, exp time.Time, live bool) {
		list, err := s.List(t.Context(), ns, key, 0)
		must(t, "List", err)
		var found *store.Record
		for i := range list {
			if list[i].Key == key {
				found = &list[i]
			}
		}
		switch {
		case live && found == nil:
			t.Errorf("List(%q) misses the live record", key)
		case live && (string(found.Value) != value || !found.ExpiresAt.Equal(exp)):
			t.Errorf("List(%q) = {%q, %v}, want {%q, %v}", key, found.Value, found.ExpiresAt, value, exp)
		case !live && found != nil:
			t.Errorf("List(%q) returns the expired record", key)
		}
	}},
	{"Take", func(t *testing.T, s store.Store, ns, key, value string, _ time.Time, live bool) {
		got, err := s.Take(t.Context(), ns, key)
		if live {
			if err != nil || string(got) != value {
				t.Errorf("Take(%q) = %q, %v; want %q", key, got, err, value)
			}
		} else {
			wantErr(t, fmt.Sprintf("Take(%q)", key), err, store.ErrNotFound)
		}
		_, err = s.Get(t.Context(), ns, key)
		wantErr(t, fmt.Sprintf("Get(%q) after Take", key), err, store.ErrNotFound)
	}},
	{"Delete", func(t *testing.T, s store.Store, ns, key, _ string, _ time.Time, live bool) {
		err := s.Delete(t.Context(), ns, key)
		if live {
			wantErr(t, fmt.Sprintf("Delete(%q)", key), err, nil)
		} else {
			wantErr(t, fmt.Sprintf("Delete(%q)", key), err, store.ErrNotFound)
		}
		_, err = s.Get(t.Context(), ns, key)
		wantErr(t, fmt.Sprintf("Get(%q) after Delete", key), err, store.ErrNotFound)
	}},
	{"Insert", func(t *testing.T, s store.Store, ns, key, value string, _ time.Time, live bool) {
		err := s.Insert(t.Context(), ns, key, []byte("inserted"), time.Time{})
		want := "inserted"
		if live {
			wantErr(t, fmt.Sprintf("Insert(%q) over a live record", key), err, store.ErrExists)
			want = value
		} else {
			wantErr(t, fmt.Sprintf("Insert(%q) over an expired record", key), err, nil)
		}
		got, err := s.Get(t.Context(), ns, key)
		if err != nil || string(got) != want {
			t.Errorf("Get(%q) after Insert = %q, %v; want %q", key, got, err, want)
		}
	}},
}

// expiryCase is a record expiry and whether the record is live before and
// after the wait.
type expiryCase struct {
	name                  string
	expiresAt             time.Time
	liveBefore, liveAfter bool
}

// expiryCases returns the cases of the expiry tests; the "soon" case
// expires at soon.
func expiryCases(now, soon time.Time) []expiryCase {
	return []expiryCase{
		{"never", time.Time{}, true, true},
		{"past", now.Add(-2 * time.Second), false, false},
		{"long past", time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC), false, false},
		{"soon", soon, true, false},
		{"far future", now.Add(24 * time.Hour), true, true},
	}
}

// waitPast sleeps until t, rounded up to the next whole second as the
// contract allows, has passed.
func waitPast(t time.Time) {
	deadline := t
	if t.Truncate(time.Second) != t {
		deadline = t.Truncate(time.Second).Add(time.Second)
	}
	time.Sleep(time.Until(deadline) + 100*time.Millisecond)
}

func testExpiry(t *testing.T, s store.Store) {
	ctx := t.Context()
	now := time.Now().Truncate(time.Microsecond)
	soon := now.Add(1500 * time.Millisecond)
	cases := expiryCases(now, soon)
	key := func(c expiryCase, phase string, p probe) string {
		return c.name + "/" + phase + "/" + p.name
	}
	for _, c := range cases {
		for _, phase := range []string{"before", "after"} {
			for _, p := range probes {
				k := key(c, phase, p)
				must(t, "Put", s.Put(ctx, "exp", k, []byte("value of "+k), c.expiresAt))
			}
		}
	}
	for _, c := range cases {
		for _, p := range probes {
			t.Run("before/"+c.name+"/"+p.name, func(t *testing.T) {
				if c.liveBefore && !c.expiresAt.IsZero() && time.Until(c.expiresAt) < 200*time.Millisecond {
					t.Skip("too slow: the record is about to expire")
				}
				k := key(c, "before", p)
				p.check(t, s, "exp", k, "value of "+k, c.expiresAt, c.liveBefore)
			})
		}
	}
	// Insert with an expiry: it expires too.
	must(t, "Insert", s.Insert(ctx, "exp", "inserted-soon", []byte("v"), soon))
	waitPast(soon)
	for _, c := range cases {
		for _, p := range probes {
			t.Run("after/"+c.name+"/"+p.name, func(t *testing.T) {
				k := key(c, "after", p)
				p.check(t, s, "exp", k, "value of "+k, c.expiresAt, c.liveAfter)
			})
		}
	}
	t.Run("after/inserted soon", func(t *testing.T) {
		_, err := s.Get(ctx, "exp", "inserted-soon")
		wantErr(t, "Get", err, store.ErrNotFound)
		wantErr(t, "Insert over it", s.Insert(ctx, "exp", "inserted-soon", []byte("v2"), time.Time{}), nil)
	})
}

// ---------------------------------------------------------------------------
// Concurrency

const goroutines = 32

// race runs fn on goroutines goroutines started together and returns their
// errors by goroutine.
func race(fn func(i int) error) []error {
	return raceN(goroutines, fn)
}

// raceN runs fn on n goroutines started together and returns their errors
// by goroutine.
func raceN(n int, fn func(i int) error) []error {
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			errs[i] = fn(i)
		}()
	}
	close(start)
	wg.Wait()
	return errs
}

// wantOneWinner checks that exactly one error is nil and all others match
// loser, and returns the winner.
func wantOneWinner(t *testing.T, errs []error, loser error) int {
	t.Helper()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil && winner >= 0:
			t.Errorf("goroutines %d and %d both won", winner, i)
		case err == nil:
			winner = i
		case !errors.Is(err, loser):
			t.Errorf("goroutine %d: error %v, want %v", i, err, loser)
		}
	}
	if winner < 0 {
		t.Errorf("no goroutine won")
	}
	return winner
}

func testConcurrency(t *testing.T, newStore func(*testing.T) store.Store) {
	t.Run("InsertSameKey", func(t *testing.T) {
		s := newStore(t)
		ctx := t.Context()
		for round := range 3 {
			key := fmt.Sprintf("ticket-%d", round)
			errs := race(func(i int) error {
				return s.Insert(ctx, "single-use", key, []byte(fmt.Sprint(i)), time.Now().Add(time.Hour))
			})
			winner := wantOneWinner(t, errs, store.ErrExists)
			got, err := s.Get(ctx, "single-use", key)
			must(t, "Get", err)
			if winner >= 0 && string(got) != fmt.Sprint(winner) {
				t.Errorf("stored value %q, want the winner's %d", got, winner)
			}
		}
	})

	t.Run("TakeSameKey", func(t *testing.T) {
		s := newStore(t)
		ctx := t.Context()
		for round := range 3 {
			key := fmt.Sprintf("code-%d", round)
			must(t, "Put", s.Put(ctx, "single-use", key, []byte("secret"), time.Time{}))
			values := make([][]byte, goroutines)
			errs := race(func(i int) error {
				var err error
				values[i], err = s.Take(ctx, "single-use", key)
				return err
			})
			winner := wantOneWinner(t, errs, store.ErrNotFound)
			if winner >= 0 && string(values[winner]) != "secret" {
				t.Errorf("winner got %q, want %q", values[winner], "secret")
			}
			_, err := s.Get(ctx, "single-use", key)
			wantErr(t, "Get after Take", err, store.ErrNotFound)
		}
	})

	t.Run("CreateSameResource", func(t *testing.T) {
		s := newStore(t)
		ctx := t.Context()
		errs := race(func(i int) error {
			return s.CreateResource(ctx, resource("r1", "rs", fmt.Sprintf("owner-%02d", i)))
		})
		winner := wantOneWinner(t, errs, store.ErrExists)
		all, err := s.ListResources(ctx, store.ResourceQuery{})
		must(t, "ListResources", err)
		if len(all) != 1 {
			t.Fatalf("%d resources, want 1", len(all))
		}
		if winner >= 0 && all[0].Owner != fmt.Sprintf("owner-%02d", winner) {
			t.Errorf("stored owner %q, want the winner's", all[0].Owner)
		}
		for i := range goroutines {
			q := store.ResourceQuery{Owner: fmt.Sprintf("owner-%02d", i)}
			wantN := 0
			if i == winner {
				wantN = 1
			}
			list, err := s.ListResources(ctx, q)
			must(t, "ListResources", err)
			if len(list) != wantN {
				t.Errorf("ListResources(%+v) = %d resources, want %d", q, len(list), wantN)
			}
		}
	})

	t.Run("UpdateSameResource", func(t *testing.T) {
		s := newStore(t)
		ctx := t.Context()
		must(t, "CreateResource", s.CreateResource(ctx, resource("r1", "rs", "start")))
		errs := race(func(i int) error {
			return s.UpdateResource(ctx, resource("r1", fmt.Sprintf("rs-%02d", i%4), fmt.Sprintf("owner-%02d", i)))
		})
		for i, err := range errs {
			wantErr(t, fmt.Sprintf("UpdateResource %d", i), err, nil)
		}
		final, err := s.GetResource(ctx, "r1")
		must(t, "GetResource", err)
		// The indexes agree with the final resource: it is listed under
		// its owner and resource server and under no other.
		found := 0
		for i := range goroutines {
			for _, q := range []store.ResourceQuery{
				{Owner: fmt.Sprintf("owner-%02d", i)},
				{ResourceServer: fmt.Sprintf("rs-%02d", i%4), Owner: fmt.Sprintf("owner-%02d", i)},
			} {
				list, err := s.ListResources(ctx, q)
				must(t, "ListResources", err)
				want := q.Owner == final.Owner
				if (len(list) == 1) != want || len(list) > 1 {
					t.Errorf("ListResources(%+v) = %q, final resource %+v", q, ids(list), final)
				}
				found += len(list)
			}
		}
		if found != 2 {
			t.Errorf("final resource found %d times in the owner indexes, want 2", found)
		}
		for i := range 4 {
			q := store.ResourceQuery{ResourceServer: fmt.Sprintf("rs-%02d", i)}
			list, err := s.ListResources(ctx, q)
			must(t, "ListResources", err)
			if want := q.ResourceServer == final.ResourceServer; (len(list) == 1) != want || len(list) > 1 {
				t.Errorf("ListResources(%+v) = %q, final resource %+v", q, ids(list), final)
			}
		}
		wantList(t, s, store.ResourceQuery{Owner: "start"}, nil)
	})

	t.Run("PutDistinctKeys", func(t *testing.T) {
		s := newStore(t)
		ctx := t.Context()
		const perGoroutine = 8
		errs := race(func(i int) error {
			for j := range perGoroutine {
				k := fmt.Sprintf("k-%02d-%d", i, j)
				if err := s.Put(ctx, "n", k, []byte(k), time.Time{}); err != nil {
					return err
				}
			}
			return nil
		})
		for i, err := range errs {
			wantErr(t, fmt.Sprintf("goroutine %d", i), err, nil)
		}
		list, err := s.List(ctx, "n", "", 0)
		must(t, "List", err)
		if len(list) != goroutines*perGoroutine {
			t.Errorf("List = %d records, want %d", len(list), goroutines*perGoroutine)
		}
		for _, r := range list {
			if string(r.Value) != r.Key {
				t.Errorf("record %q = %q", r.Key, r.Value)
			}
		}
	})

	t.Run("CreateDistinctResources", func(t *testing.T) {
		s := newStore(t)
		ctx := t.Context()
		errs := race(func(i int) error {
			return s.CreateResource(ctx, resource(fmt.Sprintf("r%02d", i), "rs", fmt.Sprintf("owner-%d", i%2)))
		})
		for i, err := range errs {
			wantErr(t, fmt.Sprintf("goroutine %d", i), err, nil)
		}
		for _, q := range []store.ResourceQuery{{}, {ResourceServer: "rs"}} {
			list, err := s.ListResources(ctx, q)
			must(t, "ListResources", err)
			if len(list) != goroutines {
				t.Errorf("ListResources(%+v) = %d, want %d", q, len(list), goroutines)
			}
		}
		list, err := s.ListResources(ctx, store.ResourceQuery{ResourceServer: "rs", Owner: "owner-1"})
		must(t, "ListResources", err)
		if len(list) != goroutines/2 {
			t.Errorf("ListResources by both = %d, want %d", len(list), goroutines/2)
		}
	})
}

// ---------------------------------------------------------------------------
// Close and context

// calls are one call of every method, for the Closed and CanceledContext
// tests.
var calls = []struct {
	name string
	call func(ctx context.Context, s store.Store) error
}{
	{"PutAll", func(ctx context.Context, s store.Store) error {
		return s.PutAll(ctx, []store.Write{{Namespace: "n", Key: "new", Value: []byte("x")}})
	}},
	{"CreateResource", func(ctx context.Context, s store.Store) error {
		return s.CreateResource(ctx, resource("new", "rs", "o"))
	}},
	{"GetResource", func(ctx context.Context, s store.Store) error {
		_, err := s.GetResource(ctx, "r1")
		return err
	}},
	{"UpdateResource", func(ctx context.Context, s store.Store) error {
		return s.UpdateResource(ctx, resource("r1", "rs2", "o2"))
	}},
	{"DeleteResource", func(ctx context.Context, s store.Store) error {
		return s.DeleteResource(ctx, "r1")
	}},
	{"ListResources", func(ctx context.Context, s store.Store) error {
		_, err := s.ListResources(ctx, store.ResourceQuery{})
		return err
	}},
	{"Put", func(ctx context.Context, s store.Store) error {
		return s.Put(ctx, "n", "k", []byte("new"), time.Time{})
	}},
	{"Insert", func(ctx context.Context, s store.Store) error {
		return s.Insert(ctx, "n", "new", []byte("new"), time.Time{})
	}},
	{"Get", func(ctx context.Context, s store.Store) error {
		_, err := s.Get(ctx, "n", "k")
		return err
	}},
	{"Take", func(ctx context.Context, s store.Store) error {
		_, err := s.Take(ctx, "n", "k")
		return err
	}},
	{"Delete", func(ctx context.Context, s store.Store) error {
		return s.Delete(ctx, "n", "k")
	}},
	{"List", func(ctx context.Context, s store.Store) error {
		_, err := s.List(ctx, "n", "", 0)
		return err
	}},
	{"Swap", func(ctx context.Context, s store.Store) error {
		return s.Swap(ctx, "n", "k", []byte("v"), []byte("new"), time.Time{})
	}},
	{"SwapResource", func(ctx context.Context, s store.Store) error {
		r := resource("r1", "rs2", "o2")
		r.UpdatedAt = r.UpdatedAt.Add(time.Minute)
		return s.SwapResource(ctx, r, resource("r1", "rs", "o").UpdatedAt)
	}},
	{"Watch", func(ctx context.Context, s store.Store) error {
		return s.Watch(ctx, func(store.Change) {}, "n")
	}},
	{"Scan", func(ctx context.Context, s store.Store) error {
		return s.Scan(ctx, func(store.Resource) error { return nil }, func(string, store.Record) error { return nil })
	}},
}

// seed writes the data the calls above act on.
func seed(t *testing.T, s store.Store) {
	t.Helper()
	must(t, "CreateResource", s.CreateResource(t.Context(), resource("r1", "rs", "o")))
	must(t, "Put", s.Put(t.Context(), "n", "k", []byte("v"), time.Time{}))
}

func testPutAll(t *testing.T, s store.Store) {
	ctx := t.Context()
	wantErr(t, "PutAll(nil)", s.PutAll(ctx, nil), nil)
	if err := s.Put(ctx, "a", "old", []byte("old"), time.Time{}); err != nil {
		t.Fatal(err)
	}
	err := s.PutAll(ctx, []store.Write{
		{Namespace: "a", Key: "old", Value: []byte("replaced")},
		{Namespace: "a", Key: "k1", Value: []byte("v1")},
		{Namespace: "b", Key: "k1", Value: []byte("other namespace")},
		{Namespace: "a", Key: "gone", Value: []byte("x"), ExpiresAt: time.Now().Add(-time.Second)},
		{Namespace: "a", Key: "later", Value: []byte("v2"), ExpiresAt: time.Now().Add(time.Hour)},
	})
	wantErr(t, "PutAll", err, nil)
	for _, c := range []struct{ ns, key, want string }{{"a", "old", "replaced"}, {"a", "k1", "v1"}, {"b", "k1", "other namespace"}, {"a", "later", "v2"}} {
		got, err := s.Get(ctx, c.ns, c.key)
		if err != nil || string(got) != c.want {
			t.Errorf("Get(%s, %s) = %q, %v; want %q", c.ns, c.key, got, err, c.want)
		}
	}
	_, err = s.Get(ctx, "a", "gone")
	wantErr(t, "Get(expired)", err, store.ErrNotFound)
	// All or nothing: a batch with one record too large to store writes none.
	err = s.PutAll(ctx, []store.Write{
		{Namespace: "a", Key: "atomic", Value: []byte("x")},
		{Namespace: "a", Key: strings.Repeat("k", 70000), Value: []byte("x")},
	})
	if err == nil {
		t.Fatal("PutAll with a 70000-byte key succeeded")
	}
	_, err = s.Get(ctx, "a", "atomic")
	wantErr(t, "Get(atomic) after a failed PutAll", err, store.ErrNotFound)
}

func testClosed(t *testing.T, s store.Store) {
	seed(t, s)
	wantErr(t, "Close", s.Close(), nil)
	wantErr(t, "second Close", s.Close(), nil)
	for _, c := range calls {
		t.Run(c.name, func(t *testing.T) {
			wantErr(t, c.name+" after Close", c.call(t.Context(), s), store.ErrClosed)
		})
	}
}

func testCanceled(t *testing.T, s store.Store) {
	seed(t, s)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	for _, c := range calls {
		t.Run(c.name, func(t *testing.T) {
			wantErr(t, c.name+" with a canceled context", c.call(ctx, s), context.Canceled)
		})
	}
	// Nothing was written or removed.
	wantResource(t, s, resource("r1", "rs", "o"))
	_, err := s.GetResource(t.Context(), "new")
	wantErr(t, "GetResource(new)", err, store.ErrNotFound)
	got, err := s.Get(t.Context(), "n", "k")
	if err != nil || string(got) != "v" {
		t.Errorf("Get = %q, %v; want %q", got, err, "v")
	}
	_, err = s.Get(t.Context(), "n", "new")
	wantErr(t, "Get(new)", err, store.ErrNotFound)
}

// ---------------------------------------------------------------------------
// Durability

// RunDurability checks that data survives closing and reopening a store.
// open opens the persistent store named by dir, a fresh directory per
// subtest (a backend that does not keep files can map it to a database or
// schema name); opening the same dir again must open the same data. The
// suite closes every store it opens.
func RunDurability(t *testing.T, open func(t *testing.T, dir string) store.Store) {
	t.Run("Restart", func(t *testing.T) { testRestart(t, open) })
}

func testRestart(t *testing.T, open func(t *testing.T, dir string) store.Store) {
	dir := t.TempDir()
	reopen := func() store.Store {
		t.Helper()
		s := open(t, dir)
		t.Cleanup(func() { _ = s.Close() })
		return s
	}
	ctx := t.Context()

	// Resources: kept, moved between indexes, deleted.
	kept := resource("kept", "rs1", "alice")
	moved := resource("moved", "rs1", "alice")
	deleted := resource("deleted", "rs1", "alice")
	odd := resource("a/b:ü 🔑", "rs/1", "owner:/ü")
	// Records: every expiry case, plus removed ones.
	now := time.Now().Truncate(time.Microsecond)
	soon := now.Add(1500 * time.Millisecond)
	cases := expiryCases(now, soon)

	s := reopen()
	for _, r := range []store.Resource{kept, moved, deleted, odd} {
		must(t, "CreateResource", s.CreateResource(ctx, r))
	}
	moved.Owner, moved.ResourceServer, moved.Name = "bob", "rs2", "moved"
	must(t, "UpdateResource", s.UpdateResource(ctx, moved))
	must(t, "DeleteResource", s.DeleteResource(ctx, deleted.ID))
	for _, c := range cases {
		for _, p := range probes {
			must(t, "Put", s.Put(ctx, "exp", c.name+"/"+p.name, []byte("v"), c.expiresAt))
		}
	}
	must(t, "Insert", s.Insert(ctx, "n", "inserted", []byte("i"), time.Time{}))
	must(t, "Put", s.Put(ctx, "n", "taken", []byte("t"), time.Time{}))
	must(t, "Put", s.Put(ctx, "n", "deleted", []byte("d"), time.Time{}))
	must(t, "Put", s.Put(ctx, "n", "replaced", []byte("old"), time.Time{}))
	must(t, "Put", s.Put(ctx, "n", "replaced", []byte("new"), time.Time{}))
	_, err := s.Take(ctx, "n", "taken")
	must(t, "Take", err)
	must(t, "Delete", s.Delete(ctx, "n", "deleted"))
	must(t, "Close", s.Close())

	all := map[string]store.Resource{kept.ID: kept, moved.ID: moved, odd.ID: odd}
	checkResources := func(t *testing.T, s store.Store) {
		t.Helper()
		for _, r := range all {
			wantResource(t, s, r)
		}
		_, err := s.GetResource(ctx, deleted.ID)
		wantErr(t, "GetResource(deleted)", err, store.ErrNotFound)
		wantList(t, s, store.ResourceQuery{}, all, odd.ID, kept.ID, moved.ID)
		wantList(t, s, store.ResourceQuery{Owner: "alice"}, all, kept.ID)
		wantList(t, s, store.ResourceQuery{ResourceServer: "rs1"}, all, kept.ID)
		wantList(t, s, store.ResourceQuery{ResourceServer: "rs2", Owner: "bob"}, all, moved.ID)
		wantList(t, s, store.ResourceQuery{ResourceServer: "rs/1", Owner: "owner:/ü"}, all, odd.ID)
	}
	checkRecords := func(t *testing.T, s store.Store) {
		t.Helper()
		list, err := s.List(ctx, "n", "", 0)
		must(t, "List", err)
		var got []string
		for _, r := range list {
			got = append(got, r.Key+"="+string(r.Value))
		}
		if want := []string{"inserted=i", "replaced=new"}; !slices.Equal(got, want) {
			t.Errorf("List(n) = %q, want %q", got, want)
		}
	}

	s = reopen()
	t.Run("after restart", func(t *testing.T) {
		checkResources(t, s)
		checkRecords(t, s)
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				if c.liveBefore && !c.expiresAt.IsZero() && time.Until(c.expiresAt) < 200*time.Millisecond {
					t.Skip("too slow: the record is about to expire")
				}
				// Only Get and List here: the other probes change the
				// record, which the next phase needs.
				probes[0].check(t, s, "exp", c.name+"/Get", "v", c.expiresAt, c.liveBefore)
				probes[1].check(t, s, "exp", c.name+"/List", "v", c.expiresAt, c.liveBefore)
			})
		}
	})
	must(t, "Close", s.Close())

	waitPast(soon)
	s = reopen()
	t.Run("after expiry and restart", func(t *testing.T) {
		checkResources(t, s)
		checkRecords(t, s)
		for _, c := range cases {
			for _, p := range probes {
				t.Run(c.name+"/"+p.name, func(t *testing.T) {
					p.check(t, s, "exp", c.name+"/"+p.name, "v", c.expiresAt, c.liveAfter)
				})
			}
		}
	})
	must(t, "Close", s.Close())

	// What the probes changed (inserts over expired records, takes,
	// deletes) is durable too.
	s = reopen()
	t.Run("after probes and restart", func(t *testing.T) {
		for _, c := range cases {
			got, err := s.Get(ctx, "exp", c.name+"/Insert")
			want := "inserted"
			if c.liveAfter {
				want = "v"
			}
			if err != nil || string(got) != want {
				t.Errorf("Get(%s/Insert) = %q, %v; want %q", c.name, got, err, want)
			}
			for _, p := range []string{"Take", "Delete"} {
				_, err := s.Get(ctx, "exp", c.name+"/"+p)
				wantErr(t, fmt.Sprintf("Get(%s/%s)", c.name, p), err, store.ErrNotFound)
			}
		}
	})
}
