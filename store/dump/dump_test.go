package dump

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/caddy-uma/caddy-uma/store"
	"github.com/caddy-uma/caddy-uma/store/badgerstore"
	"github.com/caddy-uma/caddy-uma/store/pgstore"
	"github.com/caddy-uma/caddy-uma/store/pgstore/pgtest"
)

// TestMain fails the package's tests when a goroutine outlives them.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(pgtest.Tests{M: m})
}

// backends opens a new, empty store of each backend.
var backends = []struct {
	name string
	open func(t testing.TB) store.Store
}{
	{"badger", func(t testing.TB) store.Store {
		s, err := badgerstore.Open(badgerstore.Options{Dir: t.TempDir(), MinFreeSpace: 1 << 20})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	}},
	{"postgres", func(t testing.TB) store.Store {
		s, err := pgstore.Open(t.Context(), pgstore.Options{DSN: pgtest.DSN(t)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	}},
}

func openMemory(t testing.TB) store.Store {
	t.Helper()
	s, err := badgerstore.Open(badgerstore.Options{InMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// populate writes resources and records of every shape into s: odd
// identifiers, empty and binary values, expiries with nanoseconds, a
// record that has expired and one deleted.
func populate(t *testing.T, s store.Store) {
	t.Helper()
	ctx := t.Context()
	at := time.Date(2026, 3, 4, 5, 6, 7, 890123456, time.FixedZone("CET", 3600))
	for i, id := range []string{"r1", "Z", "a/b", "ünï 🔑", "r2"} {
		r := store.Resource{
			ID: id, ResourceServer: fmt.Sprintf("rs%d", i%2), Owner: fmt.Sprintf("owner%d", i%3),
			Name: "name <&> " + id, Scopes: []string{"read", "https://example.com/scopes/write"},
			CreatedAt: at, UpdatedAt: at.Add(time.Duration(i) * time.Hour),
		}
		switch i {
		case 1:
			r.Scopes = nil
		case 2:
			r.Type, r.Description, r.IconURI = "https://example.com/t", "a description", "https://example.com/i.png"
			r.URIs = []string{"/photos/*", "/photos/{id}"}
		}
		if err := s.CreateResource(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	soon := time.Now().Add(time.Hour)
	soon = soon.Truncate(time.Second).Add(123456789) // nanoseconds
	writes := []store.Write{
		{Namespace: "signing_key", Key: "k1", Value: []byte(`{"private":"secret"}`)},
		{Namespace: "secret", Key: "ticket", Value: []byte{0, 1, 2, 0xfe, 0xff, '\n', '"'}},
		{Namespace: "token", Key: "t1", Value: []byte("rpt"), ExpiresAt: soon},
		{Namespace: "token", Key: "t2", Value: []byte{}, ExpiresAt: soon.Add(time.Hour)},
		{Namespace: "b", Key: "x", Value: []byte("1")},
		{Namespace: "aa", Key: "x", Value: []byte("2")},
		{Namespace: "odd", Key: "a b\t\"c\"\n<>&", Value: []byte("3")},
		{Namespace: "decision", Key: "alice\x00000f\x01\x00abc", Value: []byte("NUL-separated, as the AS's keys")},
		{Namespace: "gone", Key: "expired", Value: []byte("x"), ExpiresAt: time.Now().Add(-time.Second)},
		{Namespace: "gone", Key: "deleted", Value: []byte("x")},
	}
	for i := range 30 {
		writes = append(writes, store.Write{Namespace: "many", Key: fmt.Sprintf("k%03d", i), Value: []byte(strings.Repeat("v", i))})
	}
	if err := s.PutAll(ctx, writes); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, "gone", "deleted"); err != nil {
		t.Fatal(err)
	}
}

// populatedCounts are the items of populate that a dump holds.
var populatedCounts = Counts{Resources: 5, Records: 38}

// export returns the dump of s.
func export(t *testing.T, s store.Store, source string) []byte {
	t.Helper()
	var buf bytes.Buffer
	n, err := Export(t.Context(), &buf, s, source)
	if err != nil {
		t.Fatalf("Export: %v", err)
	}
	if got := countLines(buf.Bytes()); got != n.Resources+n.Records+2 {
		t.Fatalf("Export counted %+v but wrote %d lines", n, got)
	}
	return buf.Bytes()
}

func countLines(b []byte) int { return bytes.Count(b, []byte("\n")) }

// body is a dump without its header line.
func body(t *testing.T, b []byte) string {
	t.Helper()
	_, rest, ok := bytes.Cut(b, []byte("\n"))
	if !ok {
		t.Fatalf("no header line in %q", b)
	}
	return string(rest)
}

func importInto(t *testing.T, s store.Store, dump []byte, opts Options) Result {
	t.Helper()
	res, err := Import(t.Context(), bytes.NewReader(dump), s, opts)
	if err != nil {
		t.Fatalf("Import: %v", err)
	}
	return res
}

// TestRoundTrip copies a populated store between every pair of backends
// and back: each dump of a copy is the dump it was made from, line for
// line (but the header), and the copy answers reads as the original does.
func TestRoundTrip(t *testing.T) {
	for _, from := range backends {
		for _, to := range backends {
			t.Run(from.name+" to "+to.name, func(t *testing.T) {
				src := from.open(t)
				populate(t, src)
				first := export(t, src, "test source")
				if h, n, err := Check(bytes.NewReader(first)); err != nil || n != populatedCounts || h.Source != "test source" || h.Version != Version {
					t.Fatalf("Check = %+v, %+v, %v; want %+v", h, n, err, populatedCounts)
				}

				dst := to.open(t)
				res := importInto(t, dst, first, Options{})
				if res.Written != populatedCounts || res.Expired != 0 || res.Header.Source != "test source" {
					t.Errorf("Import = %+v, want %+v written", res, populatedCounts)
				}
				second := export(t, dst, "copy")
				if body(t, second) != body(t, first) {
					t.Errorf("the dump of the copy differs:\n%s\nwant\n%s", second, first)
				}
				sameContent(t, src, dst)

				// And back, into a new store of the first backend.
				back := from.open(t)
				importInto(t, back, second, Options{})
				if third := export(t, back, "back"); body(t, third) != body(t, first) {
					t.Errorf("the dump after the way back differs:\n%s\nwant\n%s", third, first)
				}
			})
		}
	}
}

// sameContent checks that a and b answer Get, List and GetResource alike
// for what populate wrote.
func sameContent(t *testing.T, a, b store.Store) {
	t.Helper()
	ctx := t.Context()
	ra, err := a.ListResources(ctx, store.ResourceQuery{Owner: "owner0"})
	if err != nil {
		t.Fatal(err)
	}
	rb, err := b.ListResources(ctx, store.ResourceQuery{Owner: "owner0"})
	if err != nil {
		t.Fatal(err)
	}
	if len(ra) != 2 || len(rb) != len(ra) {
		t.Fatalf("ListResources(owner0): %d and %d resources, want 2", len(ra), len(rb))
	}
	for i := range ra {
		x, y := ra[i], rb[i]
		if x.ID != y.ID || x.Name != y.Name || !slices.Equal(x.Scopes, y.Scopes) || !slices.Equal(x.URIs, y.URIs) ||
			!x.CreatedAt.Truncate(time.Microsecond).Equal(y.CreatedAt) || !x.UpdatedAt.Truncate(time.Microsecond).Equal(y.UpdatedAt) {
			t.Errorf("resource %+v, copied as %+v", x, y)
		}
	}
	for _, k := range [][2]string{{"secret", "ticket"}, {"token", "t1"}, {"token", "t2"}, {"odd", "a b\t\"c\"\n<>&"}, {"decision", "alice\x00000f\x01\x00abc"}} {
		va, errA := a.Get(ctx, k[0], k[1])
		vb, errB := b.Get(ctx, k[0], k[1])
		if errA != nil || errB != nil || !bytes.Equal(va, vb) {
			t.Errorf("Get(%q, %q) = %q, %v and %q, %v", k[0], k[1], va, errA, vb, errB)
		}
	}
	la, _ := a.List(ctx, "token", "", 0)
	lb, _ := b.List(ctx, "token", "", 0)
	if len(la) != 2 || len(lb) != 2 {
		t.Fatalf("List(token): %d and %d records, want 2", len(la), len(lb))
	}
	for i := range la {
		// Rounded up to the microsecond, never down.
		if d := lb[i].ExpiresAt.Sub(la[i].ExpiresAt); d < 0 || d >= time.Microsecond {
			t.Errorf("expiry %v copied as %v", la[i].ExpiresAt, lb[i].ExpiresAt)
		}
	}
	if _, err := b.Get(ctx, "gone", "expired"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the expired record was copied: %v", err)
	}
}

// TestFormat pins the format: the header, a resource, records with and
// without expiry, base64 values, times in UTC to the microsecond (expiry
// rounded up, resource times truncated), the end line.
func TestFormat(t *testing.T) {
	defer func(f func() time.Time) { now = f }(now)
	now = func() time.Time { return time.Date(2026, 12, 1, 10, 0, 0, 123456789, time.UTC) }
	s := openMemory(t)
	ctx := t.Context()
	at := time.Date(2026, 11, 30, 9, 8, 7, 654321999, time.FixedZone("X", -7200))
	must(t, s.CreateResource(ctx, store.Resource{ID: "r1", ResourceServer: "rs-api", Owner: "alice", Name: "photos", CreatedAt: at, UpdatedAt: at}))
	exp := time.Date(2099, 1, 2, 3, 4, 5, 600000001, time.UTC)
	must(t, s.Put(ctx, "token", "t", []byte("hi"), exp))
	must(t, s.Put(ctx, "signing_key", "k", []byte{0xff, 0}, time.Time{}))
	got := string(export(t, s, "uma.storage.badger /data/uma"))
	want := `{"caddy-uma-dump":1,"created_at":"2026-12-01T10:00:00.123456Z","source":"uma.storage.badger /data/uma"}
{"resource":{"id":"r1","resource_server":"rs-api","owner":"alice","name":"photos","scopes":[],"created_at":"2026-11-30T11:08:07.654321Z","updated_at":"2026-11-30T11:08:07.654321Z"}}
{"record":{"namespace":"signing_key","key":"k","value":"/wA="}}
{"record":{"namespace":"token","key":"t","value":"aGk=","expires_at":"2099-01-02T03:04:05.600001Z"}}
{"end":{"resources":1,"records":2}}
`
	if got != want {
		t.Errorf("dump =\n%s\nwant\n%s", got, want)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

const (
	header = `{"caddy-uma-dump":1,"created_at":"2026-12-01T10:00:00Z"}` + "\n"
	res1   = `{"resource":{"id":"r1","resource_server":"rs","owner":"o","scopes":[],"created_at":"2026-12-01T10:00:00Z","updated_at":"2026-12-01T10:00:00Z"}}` + "\n"
	rec1   = `{"record":{"namespace":"n","key":"k","value":"dg=="}}` + "\n"
	end11  = `{"end":{"resources":1,"records":1}}` + "\n"
)

// TestBrokenDumps checks that Check and Import refuse what is not a whole
// dump of this format, naming the line, and that Check writes nothing.
func TestBrokenDumps(t *testing.T) {
	for _, c := range []struct {
		name, dump string
		want       error
		// written is how much Import wrote before it found out.
		written Counts
	}{
		{"empty", "", ErrFormat, Counts{}},
		{"not JSON", "PK\x03\x04 a zip file\n", ErrFormat, Counts{}},
		{"another JSON file", `{"apps":{}}` + "\n", ErrFormat, Counts{}},
		{"a newer version", `{"caddy-uma-dump":2,"created_at":"2027-01-01T00:00:00Z","compression":"zstd"}` + "\n" + end11, ErrFormat, Counts{}},
		{"unknown header field", `{"caddy-uma-dump":1,"created_at":"2026-12-01T10:00:00Z","extra":1}` + "\n" + end11, ErrFormat, Counts{}},
		{"no end line", header + res1 + rec1, ErrTruncated, Counts{1, 0}},
		{"cut in a line", header + res1 + rec1[:20], ErrFormat, Counts{1, 0}},
		{"end counts differ", header + res1 + `{"end":{"resources":1,"records":2}}` + "\n", ErrTruncated, Counts{1, 0}},
		{"after the end", header + res1 + rec1 + end11 + rec1, ErrFormat, Counts{1, 0}},
		{"empty line", header + res1 + "\n" + rec1 + end11, ErrFormat, Counts{1, 0}},
		{"two kinds in a line", header + `{"resource":{"id":"r1"},"record":{"namespace":"n","key":"k","value":""}}` + "\n", ErrFormat, Counts{}},
		{"no kind", header + `{}` + "\n", ErrFormat, Counts{}},
		{"unknown field", header + `{"record":{"namespace":"n","key":"k","value":"dg==","ttl":5}}` + "\n", ErrFormat, Counts{}},
		{"bad base64", header + `{"record":{"namespace":"n","key":"k","value":"%%%"}}` + "\n", ErrFormat, Counts{}},
		{"no value", header + `{"record":{"namespace":"n","key":"k"}}` + "\n", ErrFormat, Counts{}},
		{"reserved namespace", header + `{"record":{"namespace":"\u0000resources","key":"k","value":""}}` + "\n", ErrFormat, Counts{}},
		{"resource without id", header + `{"resource":{"owner":"o"}}` + "\n", ErrFormat, Counts{}},
		{"bad time", header + `{"record":{"namespace":"n","key":"k","value":"","expires_at":"tomorrow"}}` + "\n", ErrFormat, Counts{}},
		{"two values in a line", header + `{"end":{"resources":0,"records":0}} {}` + "\n", ErrFormat, Counts{}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if _, _, err := Check(strings.NewReader(c.dump)); !errors.Is(err, c.want) {
				t.Errorf("Check = %v, want %v", err, c.want)
			}
			s := openMemory(t)
			res, err := Import(t.Context(), strings.NewReader(c.dump), s, Options{})
			if !errors.Is(err, c.want) {
				t.Errorf("Import = %v, want %v", err, c.want)
			}
			if res.Written != c.written {
				t.Errorf("Import wrote %+v before it failed, want %+v", res.Written, c.written)
			}
			if err != nil && !strings.Contains(err.Error(), "line") && c.dump != "" {
				t.Errorf("the error does not name the line: %v", err)
			}
		})
	}
	t.Run("valid", func(t *testing.T) {
		for _, d := range []string{header + res1 + rec1 + end11, strings.TrimSuffix(header+res1+rec1+end11, "\n"),
			strings.ReplaceAll(header+res1+rec1+end11, "\n", "\r\n")} {
			if _, n, err := Check(strings.NewReader(d)); err != nil || n != (Counts{1, 1}) {
				t.Errorf("Check(%q) = %+v, %v", d, n, err)
			}
		}
	})
}

// TestNotEmpty checks that Import refuses a store that holds anything, and
// writes nothing into it; with Force it replaces what the dump holds and
// keeps the rest.
func TestNotEmpty(t *testing.T) {
	ctx := t.Context()
	src := openMemory(t)
	must(t, src.CreateResource(ctx, store.Resource{ID: "r1", Owner: "dump's", Scopes: []string{"read"}}))
	must(t, src.Put(ctx, "signing_key", "k1", []byte("dump's key"), time.Time{}))
	dump := export(t, src, "")

	for _, c := range []struct {
		name  string
		seed  func(s store.Store)
		found string
	}{
		{"a resource", func(s store.Store) {
			must(t, s.CreateResource(ctx, store.Resource{ID: "r1", Owner: "target's"}))
		}, `resource "r1"`},
		{"a record", func(s store.Store) {
			must(t, s.Put(ctx, "signing_key", "k0", []byte("target's key"), time.Time{}))
		}, `namespace "signing_key"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			dst := openMemory(t)
			c.seed(dst)
			before := export(t, dst, "")
			_, err := Import(ctx, bytes.NewReader(dump), dst, Options{})
			if !errors.Is(err, ErrNotEmpty) || !strings.Contains(err.Error(), c.found) {
				t.Fatalf("Import into a store with %s = %v, want ErrNotEmpty naming it", c.name, err)
			}
			if after := export(t, dst, ""); body(t, after) != body(t, before) {
				t.Errorf("a refused import changed the store:\n%s", after)
			}

			res := importInto(t, dst, dump, Options{Force: true})
			if res.Written != (Counts{1, 1}) {
				t.Errorf("Import with Force wrote %+v", res.Written)
			}
			r, err := dst.GetResource(ctx, "r1")
			if err != nil || r.Owner != "dump's" {
				t.Errorf("resource r1 after Import with Force = %+v, %v; want the dump's", r, err)
			}
			if v, err := dst.Get(ctx, "signing_key", "k1"); err != nil || string(v) != "dump's key" {
				t.Errorf("the dump's key = %q, %v", v, err)
			}
		})
	}
	t.Run("kept beside the dump's", func(t *testing.T) {
		dst := openMemory(t)
		must(t, dst.Put(ctx, "signing_key", "k0", []byte("target's key"), time.Time{}))
		importInto(t, dst, dump, Options{Force: true})
		if v, err := dst.Get(ctx, "signing_key", "k0"); err != nil || string(v) != "target's key" {
			t.Errorf("the target's own key after Import with Force = %q, %v; want it kept", v, err)
		}
	})
}

// TestExpiredAtImport checks that records that expired between export and
// import are not written, and counted.
func TestExpiredAtImport(t *testing.T) {
	defer func(f func() time.Time) { now = f }(now)
	src := openMemory(t)
	ctx := t.Context()
	base := time.Now()
	must(t, src.Put(ctx, "n", "short", []byte("x"), base.Add(time.Minute)))
	must(t, src.Put(ctx, "n", "long", []byte("x"), base.Add(time.Hour)))
	must(t, src.Put(ctx, "n", "forever", []byte("x"), time.Time{}))
	dump := export(t, src, "")

	now = func() time.Time { return base.Add(2 * time.Minute) }
	dst := openMemory(t)
	res := importInto(t, dst, dump, Options{})
	if res.Written != (Counts{0, 2}) || res.Expired != 1 {
		t.Errorf("Import = %+v, want 2 records written and 1 expired", res)
	}
	if _, err := dst.Get(ctx, "n", "short"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the expired record: %v, want not found", err)
	}
}

// lossy drops the last write of every PutAll, as a broken backend would.
type lossy struct {
	store.Store
	putAlls int
}

func (l *lossy) PutAll(ctx context.Context, writes []store.Write) error {
	l.putAlls++
	if len(writes) > 1 {
		writes = writes[:len(writes)-1]
	}
	return l.Store.PutAll(ctx, writes)
}

// counting counts the PutAll calls and their sizes.
type counting struct {
	store.Store
	sizes []int
}

func (c *counting) PutAll(ctx context.Context, writes []store.Write) error {
	c.sizes = append(c.sizes, len(writes))
	return c.Store.PutAll(ctx, writes)
}

// TestVerify checks that Import reads the store back and fails when it
// does not hold what was written.
func TestVerify(t *testing.T) {
	src := openMemory(t)
	populate(t, src)
	dump := export(t, src, "")
	_, err := Import(t.Context(), bytes.NewReader(dump), &lossy{Store: openMemory(t)}, Options{})
	if !errors.Is(err, ErrMismatch) || !strings.Contains(err.Error(), `namespace "token"`) {
		t.Errorf("Import into a store that loses writes = %v, want ErrMismatch naming the namespace", err)
	}
}

// TestBatches checks that records are written in batches of at most
// batchRecords writes, or as soon as they reach batchBytes: the last 500
// small records and two of 3 MiB, then the third.
func TestBatches(t *testing.T) {
	src := backends[0].open(t)
	writes := make([]store.Write, 0, 2500)
	for i := range 2500 {
		writes = append(writes, store.Write{Namespace: "n", Key: fmt.Sprintf("%05d", i), Value: []byte("v")})
	}
	must(t, src.PutAll(t.Context(), writes))
	big := bytes.Repeat([]byte("x"), 3<<20)
	must(t, src.Put(t.Context(), "o", "big1", big, time.Time{}))
	must(t, src.Put(t.Context(), "o", "big2", big, time.Time{}))
	must(t, src.Put(t.Context(), "o", "big3", big, time.Time{}))
	dst := &counting{Store: backends[0].open(t)}
	importInto(t, dst, export(t, src, ""), Options{})
	if want := []int{1000, 1000, 502, 1}; !slices.Equal(dst.sizes, want) {
		t.Errorf("PutAll sizes = %v, want %v", dst.sizes, want)
	}
}

// TestCompleteWithForce checks the advice of Import's errors: a dump cut
// short leaves a partial store, which an import of the whole dump with
// Force completes.
func TestCompleteWithForce(t *testing.T) {
	src := openMemory(t)
	populate(t, src)
	whole := export(t, src, "")
	lines := bytes.SplitAfter(whole, []byte("\n"))
	cut := bytes.Join(lines[:len(lines)/2], nil)
	dst := openMemory(t)
	res, err := Import(t.Context(), bytes.NewReader(cut), dst, Options{})
	if !errors.Is(err, ErrTruncated) || res.Written.Resources+res.Written.Records == 0 {
		t.Fatalf("Import of half a dump = %+v, %v; want a partial import and ErrTruncated", res, err)
	}
	importInto(t, dst, whole, Options{Force: true})
	if got := export(t, dst, ""); body(t, got) != body(t, whole) {
		t.Errorf("after completing with Force:\n%s\nwant\n%s", got, whole)
	}
}

// TestExportRefusesInvalidKeys checks that a record whose key JSON cannot
// keep (invalid UTF-8, which Badger allows) fails the export instead of
// being changed.
func TestExportRefusesInvalidKeys(t *testing.T) {
	s := openMemory(t)
	must(t, s.Put(t.Context(), "n", "bad\xffkey", []byte("v"), time.Time{}))
	_, err := Export(t.Context(), new(bytes.Buffer), s, "")
	if err == nil || !strings.Contains(err.Error(), "UTF-8") {
		t.Errorf("Export of an invalid UTF-8 key = %v, want an error", err)
	}
}

// TestExportCanceled checks that Export ends with its context.
func TestExportCanceled(t *testing.T) {
	s := openMemory(t)
	populate(t, s)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := Export(ctx, new(bytes.Buffer), s, ""); !errors.Is(err, context.Canceled) {
		t.Errorf("Export with a canceled context = %v", err)
	}
}
