// Package pgstore implements store.Store on PostgreSQL, so that several
// Caddy nodes can share one authorization server's state.
//
// Semantics are those of the Badger backend, across nodes:
//
//   - Durable writes: every write is a committed transaction with
//     synchronous_commit on (or the stronger value the DSN names; "off" is
//     refused), so an acknowledged write survives a crash of the node and of
//     the database server.
//   - Single use: Insert is one INSERT ... ON CONFLICT statement that
//     replaces only an expired row, and Take one DELETE ... RETURNING, so of
//     concurrent calls on any number of nodes exactly one wins.
//   - Expiry is compared with the clock of the node (Options.Now), never
//     with the database server's, and is exact to the microsecond: an
//     expiry is rounded up to the next microsecond, never down. Expired
//     rows are invisible at once and purged in the background a minute
//     after their expiry (purgeDelay), in bounded batches, by every node.
//   - PutAll is one transaction. Swap and SwapResource are one statement
//     each, whose WHERE compares the value or the version: of concurrent
//     calls from one value, on any nodes, the first to commit wins.
//   - Group commit: the writes of records of concurrent callers share one
//     transaction (one round trip, one flush of the log), and each caller
//     returns once it has committed; a call whose condition fails fails
//     alone (see commit.go).
//   - Orders are byte orders: keys, ids and namespaces are stored with the
//     "C" collation.
//   - The change feed (Watch) hears every node: triggers NOTIFY each change
//     in the transaction of its write, and each store LISTENs on one
//     connection of its own, outside the pool, opened at its first Watch
//     (see feed.go).
//
// PostgreSQL text holds no NUL bytes and only valid UTF-8, so ids, keys,
// namespaces and the text of resources must be valid UTF-8 without NUL; a
// key and its namespace, and a resource's id, resource server and owner,
// may hold at most maxIndexedSize bytes together (the limit of a B-tree
// index entry). Times are kept to the microsecond.
//
// The schema lives in the first schema of the connection's search_path
// (public by default; a DSN can name another with search_path=...). Open
// applies the embedded migrations (migrations/*.sql) under a PostgreSQL
// advisory lock, so nodes that start together wait for each other, and
// records them in the table schema_migrations.
//
// Every call is bounded by its context and by Options.QueryTimeout, and a
// connection attempt by the DSN's connect_timeout (DefaultConnectTimeout
// when it names none): an unreachable database makes calls fail, never
// hang. See ParseDSN for the pool settings.
package pgstore

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap"

	"github.com/caddy-uma/caddy-uma/store"
)

// Defaults of Options.
const (
	// DefaultQueryTimeout bounds every call whose context allows longer.
	DefaultQueryTimeout = 10 * time.Second
	// DefaultPurgeInterval is how often expired records are purged.
	DefaultPurgeInterval = time.Minute
	// DefaultPurgeBatch is how many expired records one purge statement
	// deletes at most.
	DefaultPurgeBatch = 1000
)

// purgeDelay is how long after its expiry a record is purged. Visibility is
// decided by each node's clock on every read; the delay keeps a node whose
// clock runs ahead from deleting what other nodes still see live.
const purgeDelay = time.Minute

// Options configures Open.
type Options struct {
	// DSN is the libpq connection string, as a URL
	// (postgres://user:password@host:port/dbname?param=value) or as
	// keyword=value pairs, with the pool settings of ParseDSN. Required.
	DSN string
	// Now is the clock that expiry is compared with: the authorization
	// server's. Nil means time.Now.
	Now func() time.Time
	// QueryTimeout bounds every call (a call whose context has an earlier
	// deadline ends then). Zero means DefaultQueryTimeout.
	QueryTimeout time.Duration
	// PurgeInterval is how often expired records are deleted. Zero means
	// DefaultPurgeInterval; a negative value disables the purge.
	PurgeInterval time.Duration
	// PurgeBatch bounds the rows one purge statement deletes; a purge
	// repeats statements until it finds fewer. Zero means
	// DefaultPurgeBatch.
	PurgeBatch int
	// FeedCheckInterval is how long the change feed's connection may stay
	// silent before it is checked with a ping, which must answer within the
	// same time: a lost connection is noticed within twice this, then
	// watchers get a store.Change with Interrupted. Zero means
	// DefaultFeedCheckInterval.
	FeedCheckInterval time.Duration
	// Logger receives the warnings of the background purge and of the
	// change feed. Nil means silent.
	Logger *zap.Logger
}

// Store is a store.Store on PostgreSQL. Its methods are safe for concurrent
// use, and any number of Stores, in any number of processes, may share one
// database.
type Store struct {
	pool         *pgxpool.Pool
	now          func() time.Time
	queryTimeout time.Duration
	purgeBatch   int
	logger       *zap.Logger

	// feed delivers the changes that listener hears to the watchers.
	feed     store.Feed
	listener listener
	// registrationGrace is feedRegistrationGrace (tests shorten it).
	registrationGrace time.Duration

	// commits groups the writes of records into shared transactions
	// (commit.go).
	commits *store.CommitQueue[*recordOp]

	// gate makes Close wait for the calls in flight and later calls fail.
	gate store.Gate

	closeOnce sync.Once
	purgeCtx  context.Context
	stopPurge context.CancelFunc
	purgeDone chan struct{}
}

// Open connects to the database of opts.DSN, applies the migrations it
// lacks and starts the background purge. ctx bounds the connection and the
// wait for the migration lock that another starting node may hold.
func Open(ctx context.Context, opts Options) (*Store, error) {
	cfg, err := poolConfig(opts.DSN)
	if err != nil {
		return nil, err
	}
	s := &Store{
		now:          opts.Now,
		queryTimeout: opts.QueryTimeout,
		purgeBatch:   opts.PurgeBatch,
		logger:       opts.Logger,
		purgeDone:    make(chan struct{}),

		registrationGrace: feedRegistrationGrace,
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.queryTimeout <= 0 {
		s.queryTimeout = DefaultQueryTimeout
	}
	if s.purgeBatch <= 0 {
		s.purgeBatch = DefaultPurgeBatch
	}
	if s.logger == nil {
		s.logger = zap.NewNop()
	}
	s.commits = store.NewCommitQueue(s.commitRecords)
	s.listener.init(s, cfg.ConnConfig, opts.FeedCheckInterval)

	s.pool, err = pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, wrap("connecting", err)
	}
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		s.pool.Close()
		return nil, wrap("connecting", err)
	}
	err = migrate(ctx, conn)
	conn.Release()
	if err != nil {
		s.pool.Close()
		return nil, wrap("migrating the schema", err)
	}

	s.purgeCtx, s.stopPurge = context.WithCancel(context.Background())
	interval := opts.PurgeInterval
	if interval == 0 {
		interval = DefaultPurgeInterval
	}
	if interval > 0 {
		go s.runPurge(interval)
	} else {
		close(s.purgeDone)
	}
	return s, nil
}

// Close stops the purge, waits for the calls in flight, ends the watchers
// and closes the connections, waiting for that at most the query timeout.
// Later calls of any method return store.ErrClosed; later calls of Close
// return nil.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.stopPurge()
		<-s.purgeDone
		// A Watch waiting for the listening connection ends now.
		s.listener.stop()
		s.gate.Close()
		s.feed.Close()
		// pgx gives each connection up to 15 s to say goodbye to a server
		// that does not answer; the store waits at most the query timeout
		// and lets the rest finish in the background.
		closed := make(chan struct{})
		go func() {
			s.pool.Close()
			close(closed)
		}()
		select {
		case <-closed:
		case <-time.After(s.queryTimeout):
			s.logger.Warn("pgstore: the database does not answer; closing its connections in the background")
		}
	})
	return nil
}

// enter starts a method call: it fails if ctx is done or the store closed,
// and otherwise holds the store open and returns ctx bounded by the query
// timeout, until leave is called.
func (s *Store) enter(ctx context.Context) (_ context.Context, leave func(), _ error) {
	if err := s.gate.Enter(ctx); err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, s.queryTimeout)
	return ctx, func() {
		cancel()
		s.gate.Leave()
	}, nil
}

// exec runs one statement that changes rows, and fails with none if it
// changed none (nil: success).
func (s *Store) exec(ctx context.Context, none error, query string, args ...any) error {
	ctx, leave, err := s.enter(ctx)
	if err != nil {
		return err
	}
	defer leave()
	tag, err := s.pool.Exec(ctx, query, args...)
	if err != nil {
		return mapError(err)
	}
	if tag.RowsAffected() == 0 && none != nil {
		return none
	}
	return nil
}

// readTime is the node's clock as the queries compare it with expiries:
// truncated to the microsecond that PostgreSQL keeps. With expiries rounded
// up (expiryParam), a record is live exactly while the clock is before its
// rounded expiry.
func (s *Store) readTime() time.Time {
	return s.now().Truncate(time.Microsecond)
}

// expiryParam is the expires_at parameter of an expiry: NULL for never,
// otherwise rounded up to the next microsecond.
func expiryParam(expiresAt time.Time) any {
	if expiresAt.IsZero() {
		return nil
	}
	if t := expiresAt.Truncate(time.Microsecond); !t.Equal(expiresAt) {
		return t.Add(time.Microsecond)
	}
	return expiresAt
}

// runPurge deletes expired records every interval until Close.
func (s *Store) runPurge(interval time.Duration) {
	defer close(s.purgeDone)
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		select {
		case <-s.purgeCtx.Done():
			return
		case <-ticker.C:
		}
		if _, err := s.purge(s.purgeCtx); err != nil && s.purgeCtx.Err() == nil {
			s.logger.Warn("pgstore: purging expired records failed", zap.Error(err))
		}
	}
}

// purgeQuery deletes at most $2 records that expired before $1. SKIP
// LOCKED lets the nodes purge together without waiting for each other.
const purgeQuery = `DELETE FROM records WHERE (namespace, key) IN (
	SELECT namespace, key FROM records WHERE expires_at < $1
	ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED)`

// purge deletes the records that expired more than purgeDelay ago, in
// batches of s.purgeBatch, and returns how many it deleted.
func (s *Store) purge(ctx context.Context) (int64, error) {
	var total int64
	for {
		n, err := s.purgeBatchOnce(ctx)
		total += n
		if err != nil || n < int64(s.purgeBatch) {
			return total, err
		}
	}
}

// purgeBatchOnce runs purgeQuery once, in a transaction that tells the
// change feed's trigger to keep quiet: expiry is not a change.
func (s *Store) purgeBatchOnce(ctx context.Context) (int64, error) {
	ctx, leave, err := s.enter(ctx)
	if err != nil {
		return 0, err
	}
	defer leave()
	var n int64
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT set_config('caddy_uma.purging', 'on', true)"); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, purgeQuery, s.readTime().Add(-purgeDelay), s.purgeBatch)
		n = tag.RowsAffected()
		return err
	})
	if err != nil {
		return 0, mapError(err)
	}
	return n, nil
}

// PostgreSQL error codes that map onto the store's errors.
const (
	codeUniqueViolation = "23505"
	codeDiskFull        = "53100"
)

// mapError maps PostgreSQL's errors of a write onto the store's sentinels,
// keeping the original error in the chain: a unique violation is
// store.ErrExists, a full disk (the server could not extend a file; the
// transaction wrote nothing) store.ErrNoSpace. The reads leave their errors
// as they are: store.ErrNoSpace is for writes only.
func mapError(err error) error {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return err
	}
	switch pgErr.Code {
	case codeUniqueViolation:
		return fmt.Errorf("%w: %w", store.ErrExists, err)
	case codeDiskFull:
		return fmt.Errorf("%w: %w", store.ErrNoSpace, err)
	}
	return err
}

// wrap adds the package and operation to an error.
func wrap(op string, err error) error {
	return fmt.Errorf("pgstore: %s: %w", op, err)
}

// Interface guard.
var _ store.Store = (*Store)(nil)
