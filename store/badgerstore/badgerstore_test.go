package badgerstore

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/caddy-uma/caddy-uma/store"
	"github.com/caddy-uma/caddy-uma/store/storetest"
)

func openDir(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	return s
}

func TestSuite(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		return openDir(t, t.TempDir())
	})
}

func TestSuiteInMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("the on-disk suite covers the same code")
	}
	storetest.Run(t, func(t *testing.T) store.Store {
		s, err := Open(Options{InMemory: true})
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		return s
	})
}

func TestDurability(t *testing.T) {
	storetest.RunDurability(t, func(t *testing.T, dir string) store.Store {
		return openDir(t, dir)
	})
}

// TestClock checks that expiry is decided by Options.Now, to the
// nanosecond, even when it runs long behind the real clock by which Badger
// drops entries.
func TestClock(t *testing.T) {
	storetest.RunClock(t, func(t *testing.T, now func() time.Time) store.Store {
		s, err := Open(Options{Dir: t.TempDir(), Now: now})
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		return s
	})
}

func TestOpenOptions(t *testing.T) {
	tests := []struct {
		name string
		opts Options
	}{
		{"no dir", Options{}},
		{"dir with in-memory", Options{Dir: t.TempDir(), InMemory: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Open(tt.opts)
			if err == nil {
				s.Close()
				t.Fatalf("Open(%+v) succeeded", tt.opts)
			}
			if !strings.HasPrefix(err.Error(), "badgerstore: ") {
				t.Errorf("error %q lacks the package prefix", err)
			}
		})
	}
}

func TestLocked(t *testing.T) {
	dir := t.TempDir()
	s := openDir(t, dir)
	_, err := Open(Options{Dir: dir})
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open: error %v, want ErrLocked", err)
	}
	if !strings.Contains(err.Error(), "lock") || !strings.Contains(err.Error(), dir) {
		t.Errorf("error %q does not mention the lock and the directory", err)
	}
	// The first store is unaffected, and the directory opens again once
	// it is closed.
	if err := s.Put(t.Context(), "n", "k", []byte("v"), time.Time{}); err != nil {
		t.Fatalf("Put on the first store: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	s = openDir(t, dir)
	defer s.Close()
	if got, err := s.Get(t.Context(), "n", "k"); err != nil || string(got) != "v" {
		t.Errorf("Get after reopen = %q, %v", got, err)
	}
}

func TestFormatVersion(t *testing.T) {
	dir := t.TempDir()
	openDir(t, dir).Close()
	db, err := badger.Open(badger.DefaultOptions(dir).WithLogger(nil))
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(txn *badger.Txn) error { return txn.Set(versionKey, []byte("99")) })
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(Options{Dir: dir})
	if err == nil {
		s.Close()
		t.Fatal("Open of a database in format 99 succeeded")
	}
	if !strings.Contains(err.Error(), "unsupported format version") {
		t.Errorf("error %q does not name the format version", err)
	}
	// The failed Open released the directory.
	db, err = badger.Open(badger.DefaultOptions(dir).WithLogger(nil))
	if err != nil {
		t.Fatalf("directory still locked after a failed Open: %v", err)
	}
	db.Close()
}

// TestExpiryWithinRoundingSecond checks that a record is invisible as soon
// as its ExpiresAt passes, although Badger's TTL, rounded up to the next
// whole second, keeps it until then.
func TestExpiryWithinRoundingSecond(t *testing.T) {
	s := openDir(t, t.TempDir())
	defer s.Close()
	ctx := t.Context()
	// Expire 100 ms after a whole second, so that Badger's TTL runs 900 ms
	// longer than ExpiresAt.
	exp := time.Now().Truncate(time.Second).Add(time.Second + 100*time.Millisecond)
	if time.Until(exp) < 300*time.Millisecond {
		exp = exp.Add(time.Second)
	}
	for _, k := range []string{"get", "list", "take", "delete", "insert"} {
		if err := s.Put(ctx, "n", k, []byte("v"), exp); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Get(ctx, "n", "get"); err != nil {
		t.Fatalf("Get before expiry: %v", err)
	}
	time.Sleep(time.Until(exp) + 50*time.Millisecond)
	if time.Now().After(exp.Truncate(time.Second).Add(time.Second)) {
		t.Skip("too slow: Badger's TTL has passed too")
	}
	if _, err := s.Get(ctx, "n", "get"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Get: %v, want ErrNotFound", err)
	}
	if list, err := s.List(ctx, "n", "", 0); err != nil || len(list) != 0 {
		t.Errorf("List = %d records, %v; want none", len(list), err)
	}
	if _, err := s.Take(ctx, "n", "take"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Take: %v, want ErrNotFound", err)
	}
	if err := s.Delete(ctx, "n", "delete"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Delete: %v, want ErrNotFound", err)
	}
	if err := s.Insert(ctx, "n", "insert", []byte("new"), time.Time{}); err != nil {
		t.Errorf("Insert over the expired record: %v", err)
	}
}

func TestSizeLimits(t *testing.T) {
	ctx := t.Context()
	t.Run("large value on disk", func(t *testing.T) {
		// Above Badger's value threshold: the value goes to the value log.
		dir := t.TempDir()
		s := openDir(t, dir)
		big := bytes.Repeat([]byte("0123456789abcdef"), 1<<18) // 4 MiB
		if err := s.Put(ctx, "n", "big", big, time.Time{}); err != nil {
			t.Fatalf("Put: %v", err)
		}
		s.Close()
		s = openDir(t, dir)
		defer s.Close()
		got, err := s.Get(ctx, "n", "big")
		if err != nil || !bytes.Equal(got, big) {
			t.Errorf("Get after reopen = %d bytes, %v; want %d", len(got), err, len(big))
		}
	})
	t.Run("too large", func(t *testing.T) {
		s, err := Open(Options{InMemory: true})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		secret := strings.Repeat("secret", 200000) // 1.2 MB
		tests := []struct {
			name string
			call func() error
		}{
			{"value in memory", func() error { return s.Put(ctx, "n", "k", []byte(secret), time.Time{}) }},
			{"key", func() error { return s.Insert(ctx, "n", secret, nil, time.Time{}) }},
			{"resource id", func() error {
				return s.CreateResource(ctx, store.Resource{ID: "r", Owner: secret[:70000]})
			}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				err := tt.call()
				if !errors.Is(err, errTooLarge) {
					t.Fatalf("error %v, want errTooLarge", err)
				}
				if strings.Contains(err.Error(), "secret") || len(err.Error()) > 200 {
					t.Errorf("error leaks the data: %.300s", err)
				}
			})
		}
	})
}

func TestBadgerExpiry(t *testing.T) {
	base := time.Unix(1_700_000_000, 0)
	tests := []struct {
		name string
		in   time.Time
		want uint64
	}{
		{"zero is never", time.Time{}, 0},
		{"whole second", base, 1_700_000_000},
		{"rounded up", base.Add(time.Nanosecond), 1_700_000_001},
		{"rounded up from just below", base.Add(999 * time.Millisecond), 1_700_000_001},
		{"epoch is long past, not never", time.Unix(0, 0), 1},
		{"before the epoch", time.Date(1960, 1, 1, 0, 0, 0, 0, time.UTC), 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := badgerExpiry(tt.in); got != tt.want {
				t.Errorf("badgerExpiry(%v) = %d, want %d", tt.in, got, tt.want)
			}
		})
	}
}

func TestRecordEncoding(t *testing.T) {
	exp := time.Date(2030, 1, 2, 3, 4, 5, 6, time.UTC)
	for _, e := range []time.Time{{}, exp, time.Unix(0, 0), time.Date(1900, 1, 1, 0, 0, 0, 1, time.UTC)} {
		for _, v := range [][]byte{nil, {}, {0}, []byte("value")} {
			gotExp, gotV, err := decodeRecord(encodeRecord(v, e))
			if err != nil || !gotExp.Equal(e) || !bytes.Equal(gotV, v) {
				t.Errorf("round trip of (%q, %v) = (%q, %v), %v", v, e, gotV, gotExp, err)
			}
		}
	}
	for _, bad := range [][]byte{nil, {headerExpires, 1, 2}, {7, 'v'}} {
		if _, _, err := decodeRecord(bad); err == nil {
			t.Errorf("decodeRecord(%q) succeeded", bad)
		}
	}
}

// TestKeysDoNotCollide checks that the key encoding is injective over
// strings that break naive encodings.
func TestKeysDoNotCollide(t *testing.T) {
	parts := []string{"", "a", "b", "ab", "a/b", "b/c", "a/", "/b", ":", "a:b", "\x01", "\x02a", "ü", "日本"}
	seen := map[string]string{}
	add := func(k []byte, what string) {
		if prev, ok := seen[string(k)]; ok {
			t.Errorf("%s and %s share key %q", prev, what, k)
		}
		seen[string(k)] = what
	}
	for _, x := range parts {
		add(resourceKey(x), fmt.Sprintf("resource %q", x))
		for _, y := range parts {
			add(recordKey(x, y), fmt.Sprintf("record %q %q", x, y))
			add(append(serverIndexPrefix(x), y...), fmt.Sprintf("server index %q %q", x, y))
			add(append(ownerIndexPrefix(x), y...), fmt.Sprintf("owner index %q %q", x, y))
			add(append(nameIndexPrefix(x, y), "id"...), fmt.Sprintf("name index %q %q", x, y))
			for _, z := range parts {
				add(append(bothIndexPrefix(x, y), z...), fmt.Sprintf("both index %q %q %q", x, y, z))
				add(append(ownerNameIndexPrefix(x, y, z), "id"...), fmt.Sprintf("owner name index %q %q %q", x, y, z))
			}
		}
	}
	add(versionKey, "version")
}

// TestUpgradeFormat1 opens a database of format 1, which has no name
// indexes: Open adds them to every resource, in several transactions, and
// lookups by name find them.
func TestUpgradeFormat1(t *testing.T) {
	dir := t.TempDir()
	s := openDir(t, dir)
	n := upgradeBatch*2 + 7
	for i := range n {
		r := store.Resource{ID: fmt.Sprintf("r%05d", i), ResourceServer: "rs", Owner: fmt.Sprintf("o%d", i%10),
			Name: fmt.Sprintf("name %d", i%100), Scopes: []string{"read"}}
		if err := s.CreateResource(t.Context(), r); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Make it format 1: no name index entries, version 1.
	db, err := badger.Open(badger.DefaultOptions(dir).WithLogger(nil))
	if err != nil {
		t.Fatal(err)
	}
	for _, kind := range []byte{kindByName, kindByOwnerName} {
		if err := db.DropPrefix([]byte{kind}); err != nil {
			t.Fatal(err)
		}
	}
	err = db.Update(func(txn *badger.Txn) error { return txn.Set(versionKey, []byte(formatVersion1)) })
	db.Close()
	if err != nil {
		t.Fatal(err)
	}

	s = openDir(t, dir)
	defer s.Close()
	byName, err := s.ListResources(t.Context(), store.ResourceQuery{ResourceServer: "rs", Name: fmt.Sprintf("name %d", (n-1)%100)})
	if err != nil || len(byName) != n/100+1 {
		t.Fatalf("ListResources by name after the upgrade = %d resources, %v; want %d", len(byName), err, n/100+1)
	}
	last := fmt.Sprintf("r%05d", n-1) // indexed by the last batch
	both, err := s.ListResources(t.Context(), store.ResourceQuery{ResourceServer: "rs", Owner: fmt.Sprintf("o%d", (n-1)%10), Name: fmt.Sprintf("name %d", (n-1)%100)})
	if err != nil || len(both) == 0 || both[len(both)-1].ID != last {
		t.Errorf("ListResources by owner and name after the upgrade = %v, %v; want it to end with %s", ids(both), err, last)
	}
	err = s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(versionKey)
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) error {
			if string(v) != formatVersion {
				t.Errorf("format version after the upgrade = %q, want %q", v, formatVersion)
			}
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
}

func ids(list []store.Resource) []string {
	out := make([]string, len(list))
	for i, r := range list {
		out[i] = r.ID
	}
	return out
}

func TestLogger(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	l := badgerLogger{zap.New(core).Sugar()}
	l.Debugf("debug %d", 1)
	l.Infof("info %d\n", 2)
	l.Warningf("warning %d\n", 3)
	l.Errorf("error %d", 4)
	var got []string
	for _, e := range logs.All() {
		got = append(got, e.Level.String()+": "+e.Message)
	}
	if want := []string{"warn: warning 3", "error: error 4"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("logged %q, want %q", got, want)
	}

	// A whole open, write and close logs nothing at info level or below.
	core, logs = observer.New(zapcore.DebugLevel)
	s, err := Open(Options{Dir: t.TempDir(), Logger: zap.New(core)})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		if err := s.Put(t.Context(), "n", fmt.Sprint(i), []byte("v"), time.Time{}); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	for _, e := range logs.All() {
		if e.Level < zapcore.WarnLevel {
			t.Errorf("logged below warning: %s %s", e.Level, e.Message)
		}
	}
}

func TestGCLoop(t *testing.T) {
	s, err := Open(Options{Dir: t.TempDir(), GCInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	value := bytes.Repeat([]byte("x"), 4096)
	for i := range 200 {
		if err := s.Put(t.Context(), "n", fmt.Sprint(i%10), value, time.Time{}); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(20 * time.Millisecond)
	done := make(chan error)
	go func() { done <- s.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Close: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not stop the garbage collection")
	}
}

// TestKillDuringWrites kills a writing child process with SIGKILL; while
// it runs, the directory is locked across processes too.
func TestKillDuringWrites(t *testing.T) {
	open := func(t *testing.T, dir string) store.Store { return openDir(t, dir) }
	storetest.RunCrash(t, open, func(t *testing.T, dir string) {
		if _, err := Open(Options{Dir: dir}); !errors.Is(err, ErrLocked) {
			t.Errorf("Open while the child holds the directory: %v, want ErrLocked", err)
		}
	})
}

// TestTablesWrittenCompressedStayReadable checks the upgrade from a version
// that wrote Badger's tables with Snappy and read them through a block
// cache: a store whose newest versions of each record sit in Snappy tables
// opens with today's options (uncompressed, no block cache) and reads them.
func TestTablesWrittenCompressedStayReadable(t *testing.T) {
	dir := t.TempDir()
	ctx := t.Context()
	value := func(i int) []byte {
		return []byte(fmt.Sprintf(`{"i":%d,"note":%q}`, i, strings.Repeat("compressible ", 40)))
	}
	const n = 2000
	openDir(t, dir).Close()

	// Badger's defaults, as earlier versions wrote (Snappy, a block
	// cache): the records are in the table Close flushes, compressed.
	old, err := badger.Open(badger.DefaultOptions(dir).WithLogger(nil))
	if err != nil {
		t.Fatal(err)
	}
	err = old.Update(func(txn *badger.Txn) error {
		for i := range n {
			if err := txn.Set(recordKey("tokens", fmt.Sprintf("k%04d", i)), encodeRecord(value(i), time.Time{})); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}
	check, err := badger.Open(badger.DefaultOptions(dir).WithLogger(nil).WithReadOnly(true))
	if err != nil {
		t.Fatal(err)
	}
	var compressed bool
	for _, ti := range check.Tables() {
		compressed = compressed || uint64(ti.OnDiskSize) < uint64(ti.UncompressedSize)/2
	}
	check.Close()
	if !compressed {
		t.Fatal("no table was written compressed: the test does not test the upgrade")
	}

	s := openDir(t, dir)
	defer s.Close()
	for i := range n {
		got, err := s.Get(ctx, "tokens", fmt.Sprintf("k%04d", i))
		if err != nil || !bytes.Equal(got, value(i)) {
			t.Fatalf("record %d after the upgrade: %.40q, %v", i, got, err)
		}
	}
}
