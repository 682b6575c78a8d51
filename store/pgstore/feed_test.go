package pgstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/caddy-uma/caddy-uma/store"
	"github.com/caddy-uma/caddy-uma/store/pgstore/pgtest"
)

// changes collects the changes of one Watch.
type changes chan store.Change

func watchChanges(t *testing.T, s *Store, namespaces ...string) changes {
	t.Helper()
	c := make(changes, 4*store.FeedQueueSize)
	if err := s.Watch(t.Context(), func(ch store.Change) { c <- ch }, namespaces...); err != nil {
		t.Fatalf("Watch: %v", err)
	}
	return c
}

// next returns the next change within timeout.
func (c changes) next(t *testing.T, timeout time.Duration) store.Change {
	t.Helper()
	select {
	case ch := <-c:
		return ch
	case <-time.After(timeout):
		t.Fatalf("no change within %v", timeout)
		return store.Change{}
	}
}

// want fails unless the next changes are want, in order.
func (c changes) want(t *testing.T, want ...store.Change) {
	t.Helper()
	for _, w := range want {
		if got := c.next(t, 10*time.Second); got != w {
			t.Fatalf("change %+v, want %+v", got, w)
		}
	}
}

// none fails if a change comes within d.
func (c changes) none(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case ch := <-c:
		t.Fatalf("unexpected change %+v", ch)
	case <-time.After(d):
	}
}

func put(t *testing.T, s *Store, ns, key string) {
	t.Helper()
	if err := s.Put(t.Context(), ns, key, []byte("v"), time.Time{}); err != nil {
		t.Fatal(err)
	}
}

var (
	resync      = store.Change{Resync: true}
	interrupted = store.Change{Interrupted: true}
)

// watchedPair opens a watcher store on watcherDSN (with opts) and a writer
// store on writerDSN, both closed when t ends, and the changes of a Watch
// of namespace n on the watcher, checked with a first write.
func watchedPair(t *testing.T, watcherDSN, writerDSN string, opts Options) (watcher, writer *Store, c changes) {
	t.Helper()
	watcher = openDSN(t, watcherDSN, opts)
	t.Cleanup(func() { watcher.Close() })
	writer = openDSN(t, writerDSN, Options{})
	t.Cleanup(func() { writer.Close() })
	c = watchChanges(t, watcher, "n")
	put(t, writer, "n", "before")
	c.want(t, store.Change{Namespace: "n", Key: "before"})
	return watcher, writer, c
}

// TestFeedReconnects drops the listening connection on the server's side
// (pg_terminate_backend of its process): the watcher gets an Interrupted,
// then a Resync once the store listens on a new connection, then the
// changes again.
func TestFeedReconnects(t *testing.T) {
	dsn := pgtest.DSN(t)
	watcher, writer, c := watchedPair(t, dsn, dsn, Options{})

	for round := range 2 {
		pid := watcher.listener.listenerPID()
		if pid == 0 {
			t.Fatal("no listening connection")
		}
		var killed bool
		if err := writer.pool.QueryRow(t.Context(), "SELECT pg_terminate_backend($1)", pid).Scan(&killed); err != nil || !killed {
			t.Fatalf("pg_terminate_backend(%d) = %v, %v", pid, killed, err)
		}
		start := time.Now()
		c.want(t, interrupted, resync)
		t.Logf("round %d: listening again %v after the connection was terminated", round, time.Since(start))
		if got := watcher.listener.listenerPID(); got == pid || got == 0 {
			t.Errorf("listening on process %d, after %d was terminated", got, pid)
		}
		key := fmt.Sprint("after-", round)
		put(t, writer, "n", key)
		c.want(t, store.Change{Namespace: "n", Key: key})
	}
}

// TestFeedStalled stalls the network of the listening connection, as a
// partition would: nothing fails, but the ping after a silent check
// interval gets no answer, the watcher gets an Interrupted, and once the
// network is back a Resync and the changes again. The change made while it
// was stalled is not delivered: the Resync stands for it.
func TestFeedStalled(t *testing.T) {
	dsn := pgtest.DSN(t)
	p := newProxy(t, hostPortOf(t, dsn))
	const check = 250 * time.Millisecond
	_, writer, c := watchedPair(t, pgtest.WithParam(withHost(dsn, p.addr), "connect_timeout", "1"), dsn,
		Options{FeedCheckInterval: check, QueryTimeout: time.Second, PurgeInterval: -1})

	p.stall()
	start := time.Now()
	c.want(t, interrupted)
	noticed := time.Since(start)
	t.Logf("a stalled connection noticed after %v (check interval %v)", noticed, check)
	if noticed > 2*check+time.Second {
		t.Errorf("noticed after %v, want within about 2 × %v", noticed, check)
	}
	put(t, writer, "n", "while-stalled")
	time.Sleep(3 * check)
	p.unstall()
	c.want(t, resync)
	put(t, writer, "n", "after")
	c.want(t, store.Change{Namespace: "n", Key: "after"})
}

// TestFeedIdle checks that a connection that hears nothing for many check
// intervals stays up: no Interrupted, and changes still come.
func TestFeedIdle(t *testing.T) {
	const check = 250 * time.Millisecond // the ping must answer within it, also on a loaded machine
	s := openDSN(t, pgtest.DSN(t), Options{FeedCheckInterval: check})
	defer s.Close()
	c := watchChanges(t, s, "n")
	pid := s.listener.listenerPID()
	c.none(t, 5*check)
	put(t, s, "n", "k")
	c.want(t, store.Change{Namespace: "n", Key: "k"})
	if got := s.listener.listenerPID(); got != pid {
		t.Errorf("listening on process %d, was %d: the idle connection was replaced", got, pid)
	}
}

// TestFeedUnreachable checks that Watch fails within the query timeout
// when the database does not answer, and that a later Watch succeeds once
// it does.
func TestFeedUnreachable(t *testing.T) {
	dsn := pgtest.DSN(t)
	p := newProxy(t, hostPortOf(t, dsn))
	s := openDSN(t, pgtest.WithParam(withHost(dsn, p.addr), "connect_timeout", "1"),
		Options{QueryTimeout: 500 * time.Millisecond, PurgeInterval: -1})
	defer s.Close()
	p.stall()
	err := finishes(t, "Watch", func() error {
		return s.Watch(t.Context(), func(store.Change) { t.Error("fn called for a Watch that failed") }, "n")
	})
	if err == nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Watch = %v, want the query timeout", err)
	}
	p.unstall()
	c := watchChanges(t, s, "n")
	writer := openDSN(t, dsn, Options{})
	defer writer.Close()
	put(t, writer, "n", "k")
	c.want(t, store.Change{Namespace: "n", Key: "k"})
}

// TestFeedCloseWhileWaiting checks that Close ends a Watch that waits for
// an unreachable database.
func TestFeedCloseWhileWaiting(t *testing.T) {
	dsn := pgtest.DSN(t)
	p := newProxy(t, hostPortOf(t, dsn))
	s := openDSN(t, withHost(dsn, p.addr), Options{QueryTimeout: 5 * time.Second, PurgeInterval: -1})
	p.stall()
	watched := make(chan error, 1)
	go func() { watched <- s.Watch(t.Context(), func(store.Change) {}, "n") }()
	time.Sleep(100 * time.Millisecond)
	start := time.Now()
	go s.Close()
	select {
	case err := <-watched:
		if !errors.Is(err, store.ErrClosed) {
			t.Errorf("Watch = %v, want ErrClosed", err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("Watch returned %v after Close", d)
		}
	case <-time.After(time.Minute):
		t.Fatal("Watch hangs after Close")
	}
}

// TestFeedPurge checks that the purge of expired records is not a change.
func TestFeedPurge(t *testing.T) {
	clock := time.Now()
	s := openDSN(t, pgtest.DSN(t), Options{Now: func() time.Time { return clock }, PurgeInterval: -1})
	defer s.Close()
	c := watchChanges(t, s, "n")
	if err := s.Put(t.Context(), "n", "expiring", []byte("v"), clock.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	c.want(t, store.Change{Namespace: "n", Key: "expiring"})
	clock = clock.Add(time.Second + 2*purgeDelay)
	if n, err := s.purge(t.Context()); err != nil || n != 1 {
		t.Fatalf("purge = %d, %v; want 1", n, err)
	}
	put(t, s, "n", "barrier")
	c.want(t, store.Change{Namespace: "n", Key: "barrier"})
	// A delete outside the purge's transaction is a change again.
	if err := s.Delete(t.Context(), "n", "barrier"); err != nil {
		t.Fatal(err)
	}
	c.want(t, store.Change{Namespace: "n", Key: "barrier"})
}

// TestFeedTooLong writes a record whose notification would not fit into
// NOTIFY's 8000 bytes, bypassing the store's size checks: the write
// succeeds, and watchers get a Resync.
func TestFeedTooLong(t *testing.T) {
	s := openDSN(t, pgtest.DSN(t), Options{})
	defer s.Close()
	c := watchChanges(t, s, "n")
	// A repeated key compresses into the index.
	if _, err := s.pool.Exec(t.Context(), "INSERT INTO records (namespace, key, value) VALUES ('n', repeat('k', 9000), '')"); err != nil {
		t.Fatal(err)
	}
	c.want(t, resync)
	put(t, s, "n", "short")
	c.want(t, store.Change{Namespace: "n", Key: "short"})
}

// TestFeedClose checks that Close ends the listening connection.
func TestFeedClose(t *testing.T) {
	dsn := pgtest.DSN(t)
	s := openDSN(t, dsn, Options{})
	watchChanges(t, s, "n")
	pid := s.listener.listenerPID()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	other := openDSN(t, dsn, Options{})
	defer other.Close()
	var n int
	if err := other.pool.QueryRow(t.Context(), "SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("the listening connection (process %d) outlives Close", pid)
	}
	if err := s.Watch(t.Context(), func(store.Change) {}, "n"); !errors.Is(err, store.ErrClosed) {
		t.Errorf("Watch after Close = %v, want ErrClosed", err)
	}
}

// TestChannelOf checks that the channel the store listens on is the one
// the triggers notify.
func TestChannelOf(t *testing.T) {
	s := openDSN(t, pgtest.DSN(t), Options{})
	defer s.Close()
	for _, schema := range []string{"public", "uma", strings.Repeat("ü", 31), `odd "name"`} {
		var got string
		err := s.pool.QueryRow(t.Context(),
			`SELECT 'uma_changes_' || left(encode(sha256(convert_to($1, 'UTF8')), 'hex'), 32)`, schema).Scan(&got)
		if err != nil {
			t.Fatal(err)
		}
		if want := channelOf(schema); got != want {
			t.Errorf("channel of %q: the trigger's expression gives %q, channelOf %q", schema, got, want)
		}
		if len(got) > 63 {
			t.Errorf("channel %q is longer than an identifier", got)
		}
	}
}

func TestParsePayload(t *testing.T) {
	tests := []struct {
		payload string
		want    store.Change
		ok      bool
	}{
		{"k1:ab", store.Change{Namespace: "a", Key: "b"}, true},
		{"k2:ab", store.Change{Namespace: "ab", Key: ""}, true},
		{"k0:ab", store.Change{Namespace: "", Key: "ab"}, true},
		{"k3:a:b:c", store.Change{Namespace: "a:b", Key: ":c"}, true},
		{"k4:ünik", store.Change{Namespace: "üni", Key: "k"}, true},
		{"rr1", store.Change{Namespace: store.ResourcesNamespace, Key: "r1"}, true},
		{"r", store.Change{Namespace: store.ResourcesNamespace, Key: ""}, true},
		{"!", store.Change{}, false},
		{"k9:ab", store.Change{}, false},
		{"k-1:ab", store.Change{}, false},
		{"kx:ab", store.Change{}, false},
		{"k1", store.Change{}, false},
		{"", store.Change{}, false},
	}
	for _, tt := range tests {
		got, ok := parsePayload(tt.payload)
		if got != tt.want || ok != tt.ok {
			t.Errorf("parsePayload(%q) = %+v, %v; want %+v, %v", tt.payload, got, ok, tt.want, tt.ok)
		}
	}
}

// TestSwapResourcePrecision checks that SwapResource compares versions at
// the microsecond that PostgreSQL keeps.
func TestSwapResourcePrecision(t *testing.T) {
	s := openDSN(t, pgtest.DSN(t), Options{})
	defer s.Close()
	ctx := t.Context()
	at := time.Date(2025, 3, 4, 5, 6, 7, 123456789, time.UTC)
	r := store.Resource{ID: "r", ResourceServer: "rs", Owner: "o", Scopes: []string{}, CreatedAt: at, UpdatedAt: at}
	if err := s.CreateResource(ctx, r); err != nil {
		t.Fatal(err)
	}
	read, err := s.GetResource(ctx, "r")
	if err != nil {
		t.Fatal(err)
	}
	if !read.UpdatedAt.Equal(at.Truncate(time.Microsecond)) {
		t.Fatalf("stored %v, want %v", read.UpdatedAt, at.Truncate(time.Microsecond))
	}
	// The version written, with its nanoseconds, matches what is kept.
	r.UpdatedAt = at.Add(time.Second)
	if err := s.SwapResource(ctx, r, at); err != nil {
		t.Errorf("SwapResource from the version written: %v", err)
	}
	// Within the same microsecond is the same version.
	prev := r.UpdatedAt
	r.UpdatedAt = prev.Add(time.Second)
	if err := s.SwapResource(ctx, r, prev.Truncate(time.Microsecond).Add(999*time.Nanosecond)); err != nil {
		t.Errorf("SwapResource from another nanosecond of the version's microsecond: %v", err)
	}
	// A new version in the same microsecond is no new version.
	prev = r.UpdatedAt
	r.UpdatedAt = prev.Truncate(time.Microsecond).Add(999 * time.Nanosecond)
	if err := s.SwapResource(ctx, r, prev); !errors.Is(err, store.ErrUnchangedVersion) {
		t.Errorf("SwapResource to a version in the same microsecond: %v, want ErrUnchangedVersion", err)
	}
	// The microsecond before is another version.
	r.UpdatedAt = prev.Add(time.Second)
	if err := s.SwapResource(ctx, r, prev.Add(-time.Microsecond)); !errors.Is(err, store.ErrConflict) {
		t.Errorf("SwapResource from the microsecond before: %v, want ErrConflict", err)
	}
}

// TestFeedOnlyWatchedNamespaces listens on the schema's channel itself: a
// record is announced only once its namespace was watched, by any store,
// and a resource always.
func TestFeedOnlyWatchedNamespaces(t *testing.T) {
	dsn := pgtest.DSN(t)
	s := openDSN(t, dsn, Options{})
	defer s.Close()
	ctx := t.Context()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var schema string
	if err := conn.QueryRow(ctx, "SELECT current_schema()").Scan(&schema); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{channelOf(schema)}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	heard := func() string {
		ctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		defer cancel()
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return ""
		}
		return n.Payload
	}

	put(t, s, "unwatched", "k")
	if p := heard(); p != "" {
		t.Errorf("a write in a namespace nobody watches was announced: %q", p)
	}
	if err := s.CreateResource(ctx, store.Resource{ID: "r1", Scopes: []string{}}); err != nil {
		t.Fatal(err)
	}
	if p := heard(); p != "rr1" {
		t.Errorf("heard %q for a resource, want %q", p, "rr1")
	}
	watchChanges(t, s, "unwatched")
	put(t, s, "unwatched", "k")
	if p := heard(); p != "k9:unwatchedk" {
		t.Errorf("heard %q once watched, want %q", p, "k9:unwatchedk")
	}
	// Another store on the database announces it too.
	other := openDSN(t, dsn, Options{})
	defer other.Close()
	put(t, other, "unwatched", "k2")
	if p := heard(); p != "k9:unwatchedk2" {
		t.Errorf("heard %q from another store, want %q", p, "k9:unwatchedk2")
	}
	// An update that moves a record (the store's never do) announces the
	// new key and the old one.
	if _, err := s.pool.Exec(ctx, "UPDATE records SET key = 'moved' WHERE namespace = 'unwatched' AND key = 'k'"); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"k9:unwatchedmoved", "k9:unwatchedk"} {
		if p := heard(); p != want {
			t.Errorf("heard %q for a moved record, want %q", p, want)
		}
	}
}

// TestFeedRegistrationGrace checks the Resync that follows the first Watch
// of a namespace, once the writes that may have missed its registration
// are over, and that later Watches get none.
func TestFeedRegistrationGrace(t *testing.T) {
	s := openDSN(t, pgtest.DSN(t), Options{})
	defer s.Close()
	const grace = 300 * time.Millisecond
	s.registrationGrace = grace
	start := time.Now()
	c := watchChanges(t, s, "n", store.ResourcesNamespace)
	c.want(t, resync)
	if waited := time.Since(start); waited < grace-50*time.Millisecond {
		t.Errorf("Resync after %v, want it after the grace of %v", waited, grace)
	}
	later := watchChanges(t, s, "n")
	later.none(t, 2*grace)
	c.none(t, 0)
	put(t, s, "n", "k")
	c.want(t, store.Change{Namespace: "n", Key: "k"})
	later.want(t, store.Change{Namespace: "n", Key: "k"})
}
