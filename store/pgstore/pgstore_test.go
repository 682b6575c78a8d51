package pgstore

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/caddy-uma/caddy-uma/store"
	"github.com/caddy-uma/caddy-uma/store/pgstore/pgtest"
	"github.com/caddy-uma/caddy-uma/store/storetest"
)

// The tests run on the PostgreSQL server of pgtest (UMA_PG_DSN, or the
// server of .ci/postgres), each in a schema of its own; without a server
// they skip, except under CI=true.

func openDSN(t testing.TB, dsn string, opts Options) *Store {
	t.Helper()
	opts.DSN = dsn
	s, err := Open(t.Context(), opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}

func TestSuite(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		return openDSN(t, pgtest.DSN(t), Options{})
	})
}

func TestDurability(t *testing.T) {
	storetest.RunDurability(t, func(t *testing.T, dir string) store.Store {
		return openDSN(t, pgtest.NamedDSN(t, dir), Options{})
	})
}

// TestKillDuringWrites kills a child process that writes to the same
// database; while it writes, this process reads what it acknowledged.
func TestKillDuringWrites(t *testing.T) {
	open := func(t *testing.T, dir string) store.Store {
		return openDSN(t, pgtest.NamedDSN(t, dir), Options{})
	}
	storetest.RunCrash(t, open, func(t *testing.T, dir string) {
		s := open(t, dir)
		defer s.Close()
		if _, err := s.GetResource(t.Context(), "r-000000"); err != nil {
			t.Errorf("the child's first acknowledged write, read here while it runs: %v", err)
		}
	})
}

// TestNodes runs the single-use races across two stores on one schema,
// each with its own connection pool: two nodes.
func TestNodes(t *testing.T) {
	storetest.RunNodes(t, func(t *testing.T, dir string) store.Store {
		return openDSN(t, pgtest.NamedDSN(t, dir), Options{})
	})
}

// TestClock checks that expiry is decided by Options.Now, not by the
// database server's clock, to the microsecond.
func TestClock(t *testing.T) {
	storetest.RunClock(t, func(t *testing.T, now func() time.Time) store.Store {
		return openDSN(t, pgtest.DSN(t), Options{Now: now, PurgeInterval: -1})
	})
}

// rowCount counts the rows of a table in s's schema.
func rowCount(t *testing.T, s *Store, table string) int {
	t.Helper()
	var n int
	if err := s.pool.QueryRow(t.Context(), "SELECT count(*) FROM "+table).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestPurge checks that expired rows are deleted once they are purgeDelay
// past their expiry, in batches, and that live ones stay.
func TestPurge(t *testing.T) {
	var mu sync.Mutex
	clock := time.Now()
	now := func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return clock
	}
	s := openDSN(t, pgtest.DSN(t), Options{Now: now, PurgeInterval: -1, PurgeBatch: 3})
	defer s.Close()
	ctx := t.Context()
	start := now()
	var writes []store.Write
	for i := range 10 {
		writes = append(writes, store.Write{Namespace: "n", Key: fmt.Sprint("soon-", i), Value: []byte("v"), ExpiresAt: start.Add(time.Second)})
	}
	writes = append(writes,
		store.Write{Namespace: "n", Key: "later", Value: []byte("v"), ExpiresAt: start.Add(time.Hour)},
		store.Write{Namespace: "n", Key: "never", Value: []byte("v")},
	)
	if err := s.PutAll(ctx, writes); err != nil {
		t.Fatal(err)
	}

	// Expired, but not purgeDelay ago: invisible, and kept.
	mu.Lock()
	clock = start.Add(time.Second + purgeDelay - time.Millisecond)
	mu.Unlock()
	if n, err := s.purge(ctx); err != nil || n != 0 {
		t.Fatalf("purge within the delay = %d, %v; want 0", n, err)
	}
	if list, _ := s.List(ctx, "n", "", 0); len(list) != 2 {
		t.Errorf("List = %d records, want the 2 live ones", len(list))
	}

	mu.Lock()
	clock = start.Add(time.Second + purgeDelay + time.Millisecond)
	mu.Unlock()
	if n, err := s.purge(ctx); err != nil || n != 10 {
		t.Fatalf("purge = %d, %v; want the 10 expired records (in batches of 3)", n, err)
	}
	if n := rowCount(t, s, "records"); n != 2 {
		t.Errorf("%d rows left, want the 2 live ones", n)
	}
}

// TestPurgeLoop runs the background purge on a short interval and checks
// that Close stops it.
func TestPurgeLoop(t *testing.T) {
	s := openDSN(t, pgtest.DSN(t), Options{
		Now:           func() time.Time { return time.Now().Add(2 * purgeDelay) },
		PurgeInterval: time.Millisecond,
	})
	ctx := t.Context()
	if err := s.Put(ctx, "n", "k", []byte("v"), time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	for rowCount(t, s, "records") != 0 {
		select {
		case <-ctx.Done():
			t.Fatal("the expired record was never purged")
		case <-time.After(5 * time.Millisecond):
		}
	}
	if err := finishes(t, "Close", s.Close); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// TestMigrations opens one schema from several stores at once (nodes
// starting together), then refuses a schema newer than this code.
func TestMigrations(t *testing.T) {
	dsn := pgtest.DSN(t)
	const nodes = 8
	errs := make([]error, nodes)
	stores := make([]*Store, nodes)
	var wg sync.WaitGroup
	for i := range nodes {
		wg.Go(func() {
			stores[i], errs[i] = Open(t.Context(), Options{DSN: dsn})
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("Open %d: %v", i, err)
		}
		defer stores[i].Close()
	}
	migrations, err := loadMigrations(migrationFiles)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := stores[0].pool.Query(t.Context(), "SELECT version FROM schema_migrations ORDER BY version")
	if err != nil {
		t.Fatal(err)
	}
	versions, err := pgx.CollectRows(rows, pgx.RowTo[int])
	if err != nil {
		t.Fatal(err)
	}
	if len(versions) != len(migrations) || versions[len(versions)-1] != len(migrations) {
		t.Errorf("schema_migrations = %v, want 1..%d once each", versions, len(migrations))
	}
	// Every store works on the one schema.
	if err := stores[1].Put(t.Context(), "n", "k", []byte("v"), time.Time{}); err != nil {
		t.Fatal(err)
	}
	if got, err := stores[nodes-1].Get(t.Context(), "n", "k"); err != nil || string(got) != "v" {
		t.Errorf("Get on another node = %q, %v", got, err)
	}

	// A schema migrated by a newer version is refused.
	if _, err := stores[0].pool.Exec(t.Context(), "INSERT INTO schema_migrations (version, name) VALUES ($1, 'future')", len(migrations)+1); err != nil {
		t.Fatal(err)
	}
	openFails(t, dsn, "newer than this caddy-uma knows")
}

// openFails checks that Open of dsn fails with an error that says want.
func openFails(t *testing.T, dsn, want string) {
	t.Helper()
	s, err := Open(t.Context(), Options{DSN: dsn})
	if err == nil {
		s.Close()
		t.Fatalf("Open succeeded, want an error with %q", want)
	}
	if !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not say %q", err, want)
	}
}

func TestLoadMigrations(t *testing.T) {
	list, err := loadMigrations(migrationFiles)
	if err != nil || len(list) == 0 || list[0].version != 1 || list[0].name != "initial" {
		t.Fatalf("loadMigrations = %+v, %v", list, err)
	}
}

func TestOpenWithoutSchema(t *testing.T) {
	pgtest.Require(t)
	dsn := pgtest.WithParam(pgtest.BaseDSN(), "search_path", "uma_test_no_such_schema")
	openFails(t, dsn, "no existing schema")
}

// proxy forwards TCP connections to target until it is stalled: then it
// forwards nothing more, as a network partition would.
type proxy struct {
	addr    string
	mu      sync.Mutex
	stalled bool
	conns   []net.Conn
}

func newProxy(t *testing.T, target string) *proxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{addr: l.Addr().String()}
	copyUnlessStalled := func(dst, src net.Conn) {
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			if err != nil {
				return
			}
			p.mu.Lock()
			stalled := p.stalled
			p.mu.Unlock()
			if stalled {
				continue // dropped
			}
			if _, err := dst.Write(buf[:n]); err != nil {
				return
			}
		}
	}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, up)
			p.mu.Unlock()
			go copyUnlessStalled(up, c)
			go copyUnlessStalled(c, up)
		}
	}()
	t.Cleanup(func() {
		l.Close()
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, c := range p.conns {
			c.Close()
		}
	})
	return p
}

// stallingServer returns the address of a stalled proxy to the test
// server: it accepts connections and never answers, like a database that is
// unreachable behind a connection that was accepted.
func stallingServer(t *testing.T, dsn string) string {
	t.Helper()
	p := newProxy(t, hostPortOf(t, dsn))
	p.stall()
	return p.addr
}

func (p *proxy) stall() {
	p.mu.Lock()
	p.stalled = true
	p.mu.Unlock()
}

// unstall forwards again, on new connections; the streams of the
// connections that lost data while stalled are broken.
func (p *proxy) unstall() {
	p.mu.Lock()
	p.stalled = false
	p.mu.Unlock()
}

// hostPortOf returns the host:port of the test server, or skips if it is
// not on TCP.
func hostPortOf(t *testing.T, dsn string) string {
	t.Helper()
	cfg, err := poolConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	cc := cfg.ConnConfig
	if strings.HasPrefix(cc.Host, "/") {
		t.Skip("the test server is on a Unix socket")
	}
	return hostPort(cc.Host, cc.Port)
}

// withHost returns dsn with host and port replaced by addr.
func withHost(dsn, addr string) string {
	host, port, _ := net.SplitHostPort(addr)
	return pgtest.WithParam(pgtest.WithParam(dsn, "host", host), "port", port)
}

// finishes fails the test if fn does not return within a minute: it must
// end on its own deadline, far below that.
func finishes(t *testing.T, what string, fn func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- fn() }()
	select {
	case err := <-done:
		return err
	case <-time.After(time.Minute):
		t.Fatalf("%s hangs", what)
		return nil
	}
}

// TestUnreachable checks that a database that does not answer makes calls
// fail with their deadline, never hang: at Open, and on an open store whose
// network stalls.
func TestUnreachable(t *testing.T) {
	dsn := pgtest.DSN(t)
	t.Run("open", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
		defer cancel()
		err := finishes(t, "Open", func() error {
			s, err := Open(ctx, Options{DSN: withHost(dsn, stallingServer(t, dsn))})
			if err == nil {
				s.Close()
			}
			return err
		})
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Open = %v, want the deadline", err)
		}
	})
	t.Run("connect timeout", func(t *testing.T) {
		// No deadline but the DSN's connect_timeout.
		err := finishes(t, "Open", func() error {
			s, err := Open(context.Background(), Options{DSN: pgtest.WithParam(withHost(dsn, stallingServer(t, dsn)), "connect_timeout", "1")})
			if err == nil {
				s.Close()
			}
			return err
		})
		if err == nil || !strings.Contains(err.Error(), "timeout") {
			t.Errorf("Open = %v, want a timeout", err)
		}
	})
	t.Run("stalled network", func(t *testing.T) {
		p := newProxy(t, hostPortOf(t, dsn))
		s := openDSN(t, withHost(dsn, p.addr), Options{QueryTimeout: 300 * time.Millisecond, PurgeInterval: -1})
		defer s.Close()
		if err := s.Put(t.Context(), "n", "k", []byte("v"), time.Time{}); err != nil {
			t.Fatal(err)
		}
		p.stall()
		ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
		defer cancel()
		err := finishes(t, "Get", func() error {
			_, err := s.Get(ctx, "n", "k")
			return err
		})
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Get with a deadline = %v, want the deadline", err)
		}
		// Without a deadline of its own, the query timeout ends it.
		err = finishes(t, "Put", func() error {
			return s.Put(context.Background(), "n", "k2", []byte("v"), time.Time{})
		})
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Put without a deadline = %v, want the query timeout", err)
		}
		if err := finishes(t, "Close", s.Close); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
}

func TestParseDSN(t *testing.T) {
	tests := map[string]struct {
		dsn     string
		want    string // Location.String()
		wantErr string
	}{
		"url": {
			dsn:  "postgres://uma:s3cret@db.example:5433/umadb?sslmode=disable",
			want: "postgres://uma@db.example:5433/umadb",
		},
		"keywords": {
			dsn:  "host=db.example port=5433 dbname=umadb user=uma password=s3cret search_path=uma",
			want: "postgres://uma@db.example:5433/umadb?search_path=uma",
		},
		"fallback hosts": {
			dsn:  "postgres://uma:s3cret@db1:5432,db2:5433/umadb?sslmode=disable",
			want: "postgres://uma@db1:5432,db2:5433/umadb",
		},
		"socket": {
			dsn:  "host=/run/postgresql dbname=umadb user=uma",
			want: "postgres://uma@/run/postgresql:5432/umadb",
		},
		"pool settings": {
			dsn:  "postgres://uma:s3cret@db/umadb?sslmode=disable&pool_max_conns=20&pool_min_conns=2&pool_health_check_period=30s",
			want: "postgres://uma@db:5432/umadb",
		},
		"empty":               {dsn: " ", wantErr: "the DSN is empty"},
		"bad pool setting":    {dsn: "postgres://uma:s3cret@db/umadb?pool_max_conns=many", wantErr: "pool_max_conns"},
		"bad connect timeout": {dsn: "host=db user=uma password=s3cret connect_timeout=soon", wantErr: "connect_timeout"},
		"bad url":             {dsn: "postgres://uma:s3cret@db:notaport/umadb", wantErr: "invalid DSN"},
		"bad keywords":        {dsn: "host=db password='s3cret", wantErr: "invalid DSN"},
		"not durable":         {dsn: "postgres://uma:s3cret@db/umadb?synchronous_commit=off", wantErr: "synchronous_commit=off"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			loc, err := ParseDSN(tt.dsn)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseDSN = %v, want an error with %q", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "s3cret") {
					t.Errorf("error %q holds the password", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := loc.String(); got != tt.want {
				t.Errorf("Location = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestPoolDefaults(t *testing.T) {
	cfg, err := poolConfig("postgres://uma@db/umadb?pool_max_conns=7")
	if err != nil {
		t.Fatal(err)
	}
	cc := cfg.ConnConfig
	if cfg.MaxConns != 7 || cc.ConnectTimeout != DefaultConnectTimeout ||
		cc.RuntimeParams["synchronous_commit"] != "on" || cc.RuntimeParams["application_name"] != applicationName ||
		cc.RuntimeParams["plan_cache_mode"] != "force_custom_plan" {
		t.Errorf("max conns %d, connect timeout %v, params %v", cfg.MaxConns, cc.ConnectTimeout, cc.RuntimeParams)
	}
	cfg, err = poolConfig("postgres://uma@db/umadb?connect_timeout=2&synchronous_commit=remote_apply&application_name=node1&plan_cache_mode=auto")
	if err != nil {
		t.Fatal(err)
	}
	cc = cfg.ConnConfig
	if cc.ConnectTimeout != 2*time.Second || cc.RuntimeParams["synchronous_commit"] != "remote_apply" || cc.RuntimeParams["application_name"] != "node1" ||
		cc.RuntimeParams["plan_cache_mode"] != "auto" {
		t.Errorf("connect timeout %v, params %v: the DSN's own values must win", cc.ConnectTimeout, cc.RuntimeParams)
	}
}

// TestPlansFollowTheTable checks that a lookup first run while its table
// was nearly empty uses the primary key once the table has grown. After
// five executions of a prepared statement PostgreSQL may switch to a
// generic plan, planned for the table as it was then (a sequential scan of
// a few rows) and kept until the next ANALYZE of the table: a new
// deployment read every ticket and token by scanning the whole table.
func TestPlansFollowTheTable(t *testing.T) {
	// One connection: the statements prepared are those examined below.
	s := openDSN(t, pgtest.WithParam(pgtest.DSN(t), "pool_max_conns", "1"), Options{})
	defer s.Close()
	ctx := t.Context()
	// A young deployment: a few records, analyzed as autovacuum does; and
	// no ANALYZE after that, which would plan the statement again.
	if err := s.PutAll(ctx, []store.Write{{Namespace: "plans", Key: "first", Value: []byte("v")}}); err != nil {
		t.Fatal(err)
	}
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_, err = conn.Exec(ctx, `ANALYZE records`)
	if err == nil {
		_, err = conn.Exec(ctx, `ALTER TABLE records SET (autovacuum_enabled = off)`)
	}
	conn.Release()
	if err != nil {
		t.Fatal(err)
	}

	for range 10 {
		if _, err := s.Get(ctx, "plans", "k00001"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("Get from the nearly empty table: %v", err)
		}
	}
	for i := 0; i < 5000; i += 500 {
		var writes []store.Write
		for j := i; j < i+500; j++ {
			writes = append(writes, store.Write{Namespace: "plans", Key: fmt.Sprintf("k%05d", j), Value: []byte("v")})
		}
		if err := s.PutAll(ctx, writes); err != nil {
			t.Fatal(err)
		}
	}
	for range 10 {
		if _, err := s.Get(ctx, "plans", "k00001"); err != nil {
			t.Fatalf("Get: %v", err)
		}
	}

	conn, err = s.pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	var name string
	err = conn.QueryRow(ctx, `SELECT name FROM pg_prepared_statements
		WHERE statement LIKE 'SELECT value FROM records WHERE namespace = $1 AND key = $2 AND %'`).Scan(&name)
	if err != nil {
		t.Fatalf("the statement of Get is not among the connection's prepared statements: %v", err)
	}
	rows, err := conn.Query(ctx, `EXPLAIN EXECUTE `+pgx.Identifier{name}.Sanitize()+`('plans', 'k00001', now())`)
	if err != nil {
		t.Fatal(err)
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	plan := strings.Join(lines, "\n")
	if !strings.Contains(plan, "records_pkey") {
		t.Errorf("Get on 5,000 records does not use the primary key:\n%s", plan)
	}
}

// TestLimits checks what PostgreSQL cannot store: refused before it is
// sent, without quoting it.
func TestLimits(t *testing.T) {
	s := openDSN(t, pgtest.DSN(t), Options{})
	defer s.Close()
	ctx := t.Context()
	secret := strings.Repeat("secret", 500) // 3000 bytes
	tests := []struct {
		name string
		call func() error
		want error
	}{
		{"long key", func() error { return s.Put(ctx, "n", secret, nil, time.Time{}) }, errTooLarge},
		{"long namespace", func() error { return s.Insert(ctx, secret, "k", nil, time.Time{}) }, errTooLarge},
		{"long owner", func() error {
			return s.CreateResource(ctx, store.Resource{ID: "r", Owner: secret})
		}, errTooLarge},
		// Keys may hold NUL (they are escaped); namespaces may not.
		{"NUL in namespace", func() error { _, err := s.Get(ctx, "n\x00secret", "k"); return err }, errInvalidText},
		{"invalid UTF-8 in id", func() error { _, err := s.GetResource(ctx, "secret\xff"); return err }, errInvalidText},
		{"NUL in a scope", func() error {
			return s.CreateResource(ctx, store.Resource{ID: "r", Scopes: []string{"secret\x00"}})
		}, errInvalidText},
		{"empty id", func() error { return s.CreateResource(ctx, store.Resource{}) }, errEmptyID},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			if !errors.Is(err, tt.want) {
				t.Fatalf("error %v, want %v", err, tt.want)
			}
			if strings.Contains(err.Error(), "secret") {
				t.Errorf("error leaks the data: %.300s", err)
			}
		})
	}
	// Just below the limit works.
	key := strings.Repeat("k", maxIndexedSize-1)
	if err := s.Put(ctx, "n", key, []byte("v"), time.Time{}); err != nil {
		t.Errorf("Put of a %d-byte key: %v", len(key), err)
	}
}

func TestPrefixSuccessor(t *testing.T) {
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"", "", false},
		{"a", "b", true},
		{"tok/", "tok0", true},
		{"a\x7f", "a\u0080", true},
		{"\u00ff", "\u0100", true},
		{"x\ud7ff", "x\ue000", true},
		{"x\U0010ffff", "y", true},
		{"\U0010ffff\U0010ffff", "", false},
	}
	for _, tt := range tests {
		got, ok := prefixSuccessor(tt.in)
		if got != tt.want || ok != tt.ok {
			t.Errorf("prefixSuccessor(%q) = %q, %v; want %q, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

// TestMapError checks the PostgreSQL errors of writes that are store
// errors; a full disk cannot be had on the test server.
func TestMapError(t *testing.T) {
	tests := []struct {
		code string
		want error
	}{
		{codeUniqueViolation, store.ErrExists},
		{codeDiskFull, store.ErrNoSpace},
	}
	for _, tt := range tests {
		pgErr := &pgconn.PgError{Code: tt.code, Message: "from the server"}
		err := mapError(fmt.Errorf("wrapped: %w", pgErr))
		if !errors.Is(err, tt.want) || !errors.Is(err, pgErr) {
			t.Errorf("mapError(%s) = %v, want %v with the server's error", tt.code, err, tt.want)
		}
	}
	other := &pgconn.PgError{Code: "42P01"}
	if err := mapError(other); err != other {
		t.Errorf("mapError(42P01) = %v, want it unchanged", err)
	}
}

// TestScanTimeout checks the bounds of Scan: the time spent in its
// callbacks does not count against the query timeout, and a database that
// stops answering in the middle of a Scan makes it fail with the deadline
// soon after the query timeout.
func TestScanTimeout(t *testing.T) {
	dsn := pgtest.DSN(t)
	p := newProxy(t, hostPortOf(t, dsn))
	const timeout = 300 * time.Millisecond
	s := openDSN(t, withHost(dsn, p.addr), Options{QueryTimeout: timeout, PurgeInterval: -1})
	defer s.Close()
	ctx := t.Context()
	if err := s.CreateResource(ctx, store.Resource{ID: "r1", ResourceServer: "rs", Owner: "o"}); err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		if err := s.Put(ctx, "n", fmt.Sprint(i), []byte("v"), time.Time{}); err != nil {
			t.Fatal(err)
		}
	}

	start := time.Now()
	n := 0
	err := s.Scan(ctx, nil, func(string, store.Record) error {
		n++
		time.Sleep(timeout / 2)
		return nil
	})
	if err != nil || n != 4 {
		t.Fatalf("a Scan slower than the query timeout in its callbacks: %d records, %v", n, err)
	}
	if took := time.Since(start); took < 2*timeout {
		t.Fatalf("the Scan took %s: the callbacks did not outlast the query timeout", took)
	}

	start = time.Now()
	err = finishes(t, "Scan", func() error {
		return s.Scan(ctx, func(store.Resource) error {
			p.stall()
			return nil
		}, func(string, store.Record) error {
			t.Error("a record arrived through a stalled network")
			return nil
		})
	})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Scan on a stalled network = %v, want the deadline", err)
	}
	if took := time.Since(start); took > 10*timeout {
		t.Errorf("Scan on a stalled network took %s, query timeout %s", took, timeout)
	}
}

// Keys may hold any byte, NUL and 0x01 included, on PostgreSQL too: the AS
// separates the parts of its keys with NUL. Get, List and Scan give them
// back as written.
func TestKeysWithControlBytes(t *testing.T) {
	st := openDSN(t, pgtest.DSN(t), Options{})
	defer st.Close()
	ctx := t.Context()
	keys := []string{"a\x00b", "a\x00b\x00c", "a\x01", "a\x01\x01", "a", "a\x00", "b\x00\x01x"}
	for _, k := range keys {
		if err := st.Put(ctx, "n", k, []byte(k), time.Time{}); err != nil {
			t.Fatalf("Put %q: %v", k, err)
		}
	}
	for _, k := range keys {
		if v, err := st.Get(ctx, "n", k); err != nil || string(v) != k {
			t.Fatalf("Get %q: %q %v", k, v, err)
		}
	}
	list, err := st.List(ctx, "n", "a\x00", 0)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range list {
		got = append(got, r.Key)
	}
	if want := []string{"a\x00", "a\x00b", "a\x00b\x00c"}; !slices.Equal(got, want) {
		t.Fatalf("List(a\\x00) = %q, want %q", got, want)
	}
	all, _ := st.List(ctx, "n", "", 0)
	var order []string
	for _, r := range all {
		order = append(order, r.Key)
	}
	sorted := slices.Clone(keys)
	slices.Sort(sorted)
	if !slices.Equal(order, sorted) {
		t.Fatalf("byte order: %q, want %q", order, sorted)
	}
	// Scan gives the keys back as they were written, in the same order.
	var scanned []string
	err = st.Scan(ctx, nil, func(_ string, r store.Record) error {
		if string(r.Value) != r.Key {
			t.Errorf("Scan: key %q holds %q", r.Key, r.Value)
		}
		scanned = append(scanned, r.Key)
		return nil
	})
	if err != nil || !slices.Equal(scanned, sorted) {
		t.Fatalf("Scan keys = %q, %v; want %q", scanned, err, sorted)
	}
	if err := st.PutAll(ctx, []store.Write{{Namespace: "n", Key: "a\x00b", Delete: true}}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Take(ctx, "n", "a\x01"); err != nil {
		t.Fatal(err)
	}
	if err := st.Swap(ctx, "n", "b\x00\x01x", []byte("b\x00\x01x"), []byte("y"), time.Time{}); err != nil {
		t.Fatal(err)
	}
}

// TestListResourcesUsesIndexes checks that every query of ListResources
// with a resource server or an owner reads an index, not the whole table,
// at a size where PostgreSQL would otherwise choose either.
func TestListResourcesUsesIndexes(t *testing.T) {
	s := openDSN(t, pgtest.DSN(t), Options{})
	defer s.Close()
	ctx := t.Context()
	_, err := s.pool.Exec(ctx, `INSERT INTO resources (`+resourceColumns+`)
		SELECT 'r' || lpad(i::text, 6, '0'), 'rs' || (i % 4), 'owner-' || (i % 1000), 'name ' || (i % 5000),
			'', '', '', '{read}', '{}', now(), now()
		FROM generate_series(1, 20000) AS i`)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.pool.Exec(ctx, "ANALYZE resources"); err != nil {
		t.Fatal(err)
	}
	tests := map[string]struct {
		q     store.ResourceQuery
		index string // the index read, or "" for any
	}{
		"by resource server and name":      {store.ResourceQuery{ResourceServer: "rs1", Name: "name 1", Limit: 101}, "resources_by_name"},
		"by resource server, owner, name":  {store.ResourceQuery{ResourceServer: "rs1", Owner: "owner-1", Name: "name 1", Limit: 1}, "resources_by_owner_name"},
		"by resource server and owner":     {store.ResourceQuery{ResourceServer: "rs1", Owner: "owner-1"}, "resources_by_both"},
		"by owner":                         {store.ResourceQuery{Owner: "owner-1"}, "resources_by_owner"},
		"a page of a resource server":      {store.ResourceQuery{ResourceServer: "rs1", After: "r010000", Limit: 50}, ""},
		"a page of a name after the first": {store.ResourceQuery{ResourceServer: "rs1", Name: "name 1", After: "r000001", Limit: 10}, "resources_by_name"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			query, args := listQuery(tt.q)
			var plan string
			if err := s.pool.QueryRow(ctx, "EXPLAIN (FORMAT JSON) "+query, args...).Scan(&plan); err != nil {
				t.Fatal(err)
			}
			want := `"Index Name": "` + tt.index
			if tt.index != "" {
				want += `"`
			}
			if !strings.Contains(plan, want) {
				t.Errorf("plan of %s does not use %s:\n%s", query, tt.index, plan)
			}
			if strings.Contains(plan, `"Seq Scan"`) {
				t.Errorf("plan of %s reads the whole table:\n%s", query, plan)
			}
			if _, err := s.ListResources(ctx, tt.q); err != nil {
				t.Errorf("ListResources(%+v): %v", tt.q, err)
			}
		})
	}
}
