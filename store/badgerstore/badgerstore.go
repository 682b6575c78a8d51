// Package badgerstore implements store.Store on Badger, an embedded
// key-value database.
//
// Every write is committed with SyncWrites, so an acknowledged write
// survives a crash of the process. Resources are kept with three indexes
// (by resource server, by owner, by both) written in the same transaction
// as the resource. Records expire through Badger's TTL, rounded up to whole
// seconds, and through a check of their exact expiry on every read, so a
// record is never visible once its ExpiresAt has passed.
//
// Badger takes an exclusive lock on its directory, even within one process:
// open a directory once and share the *Store (Open returns ErrLocked for a
// second open).
package badgerstore

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"math/rand/v2"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/dgraph-io/badger/v4"
	"go.uber.org/zap"

	"github.com/caddy-uma/caddy-uma/store"
)

// DefaultGCInterval is how often the value-log garbage collection runs when
// Options.GCInterval is zero.
const DefaultGCInterval = 5 * time.Minute

// gcDiscardRatio is the share of stale data above which a value-log file is
// rewritten.
const gcDiscardRatio = 0.5

// maxConflictRetries bounds the retries of a transaction that Badger
// aborted because a concurrent transaction wrote a key it had read.
const maxConflictRetries = 10

// resourceLockStripes is the number of mutexes that serialize the writes of
// one resource id (see Store.lockResource).
const resourceLockStripes = 64

// Size limits. Badger refuses larger keys and values with an error that
// dumps them in hex (a leak of secrets into logs): they are checked first.
const (
	maxKeySize = 65000
	// maxValueSizeInMemory is Badger's value threshold, above which values
	// go to the value log, which does not exist in memory.
	maxValueSizeInMemory = 1 << 20
	// maxValueSizeOnDisk is Badger's default value-log file size.
	maxValueSizeOnDisk = 1<<30 - 1
)

// ErrLocked means that the database directory is locked by another open
// store, in this process or in another one. Badger allows one open per
// directory: share the open *Store instead of opening the directory again.
var ErrLocked = errors.New("badgerstore: database directory is locked by another open store")

// Options configures Open.
type Options struct {
	// Dir is the directory of the database. It is created if missing.
	// It is required unless InMemory is set.
	Dir string
	// InMemory keeps everything in memory and nothing on disk; for tests.
	// Dir must be empty. Nothing survives Close.
	InMemory bool
	// GCInterval is how often the value-log garbage collection runs.
	// Zero means DefaultGCInterval; a negative value disables it. It never
	// runs in memory.
	GCInterval time.Duration
	// Logger receives Badger's warnings and errors (not its informational
	// messages). Nil means silent.
	Logger *zap.Logger
}

// Store is a store.Store on Badger. Its methods are safe for concurrent use.
type Store struct {
	db           *badger.DB
	logger       *zap.Logger
	maxValueSize int

	// resourceLocks serialize the writes of one resource id, so that
	// concurrent writers of a resource wait for each other instead of
	// aborting each other's transactions (Badger's conflict detection) and
	// exhausting their retries.
	resourceLocks [resourceLockStripes]sync.Mutex
	lockSeed      maphash.Seed

	// gate makes Close wait for the calls in flight and later calls fail.
	gate store.Gate

	closeOnce sync.Once
	stopGC    chan struct{}
	gcDone    chan struct{}
}

// Open opens (or creates) the database described by opts. It returns an
// error wrapping ErrLocked if the directory is already open.
func Open(opts Options) (*Store, error) {
	if opts.InMemory && opts.Dir != "" {
		return nil, errors.New("badgerstore: Dir must be empty with InMemory")
	}
	if !opts.InMemory && opts.Dir == "" {
		return nil, errors.New("badgerstore: Dir is required")
	}
	logger := opts.Logger
	if logger == nil {
		logger = zap.NewNop()
	}

	bopts := badger.DefaultOptions(opts.Dir).
		WithInMemory(opts.InMemory).
		WithSyncWrites(true).
		// WithLogger last: WithLoggingLevel would replace it.
		WithLogger(badgerLogger{logger.Named("badger").Sugar()})
	db, err := badger.Open(bopts)
	if err != nil {
		if isLockError(err) {
			return nil, fmt.Errorf("%w: %s (%v)", ErrLocked, opts.Dir, err)
		}
		return nil, fmt.Errorf("badgerstore: opening %s: %w", opts.Dir, err)
	}
	if err := checkFormat(db); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("badgerstore: opening %s: %w", opts.Dir, err)
	}

	s := &Store{db: db, logger: logger, maxValueSize: maxValueSizeOnDisk, lockSeed: maphash.MakeSeed()}
	if opts.InMemory {
		s.maxValueSize = maxValueSizeInMemory
	}
	interval := opts.GCInterval
	if interval == 0 {
		interval = DefaultGCInterval
	}
	if interval > 0 && !opts.InMemory {
		s.stopGC = make(chan struct{})
		s.gcDone = make(chan struct{})
		go s.runGC(interval)
	}
	return s, nil
}

// isLockError recognizes Badger's directory-lock failure, which wraps the
// flock error without supporting errors.Is.
func isLockError(err error) bool {
	return errors.Is(err, syscall.EWOULDBLOCK) ||
		strings.Contains(err.Error(), "Cannot acquire directory lock")
}

// checkFormat writes the format version into a new database and refuses a
// database written in another format.
func checkFormat(db *badger.DB) error {
	return db.Update(func(txn *badger.Txn) error {
		item, err := txn.Get(versionKey)
		if errors.Is(err, badger.ErrKeyNotFound) {
			return txn.Set(versionKey, []byte(formatVersion))
		}
		if err != nil {
			return fmt.Errorf("reading format version: %w", err)
		}
		v, err := item.ValueCopy(nil)
		if err != nil {
			return fmt.Errorf("reading format version: %w", err)
		}
		if string(v) != formatVersion {
			return fmt.Errorf("unsupported format version %q (want %q)", v, formatVersion)
		}
		return nil
	})
}

// Close stops the garbage collection, waits for the calls in flight and
// closes the database. Later calls of any method return store.ErrClosed;
// later calls of Close return nil.
func (s *Store) Close() error {
	var err error
	s.closeOnce.Do(func() {
		s.gate.Close()
		if s.stopGC != nil {
			close(s.stopGC)
			<-s.gcDone
		}
		if cerr := s.db.Close(); cerr != nil {
			err = fmt.Errorf("badgerstore: closing: %w", cerr)
		}
	})
	return err
}

// enter starts a method call: it fails if ctx is done or the store closed,
// and otherwise holds the store open until leave.
func (s *Store) enter(ctx context.Context) error { return s.gate.Enter(ctx) }

func (s *Store) leave() { s.gate.Leave() }

// update runs fn in a read-write transaction and commits it, retrying a
// bounded number of times when Badger reports a conflict. fn must be
// idempotent: it is run again from scratch on each retry.
func (s *Store) update(fn func(txn *badger.Txn) error) error {
	for attempt := 1; ; attempt++ {
		err := s.db.Update(fn)
		if !errors.Is(err, badger.ErrConflict) || attempt == maxConflictRetries {
			return err
		}
		// Spread the retries of colliding writers.
		time.Sleep(time.Duration(rand.Int64N(int64(attempt) * int64(time.Millisecond))))
	}
}

// lockResource locks the writes of resource id and returns the unlock
// function.
func (s *Store) lockResource(id string) (unlock func()) {
	m := &s.resourceLocks[maphash.String(s.lockSeed, id)%resourceLockStripes]
	m.Lock()
	return m.Unlock
}

// errTooLarge is returned for a key or value above Badger's limits.
var errTooLarge = errors.New("too large")

// checkSize checks an encoded key and value against Badger's limits.
func (s *Store) checkSize(key, value []byte) error {
	if len(key) > maxKeySize {
		return fmt.Errorf("key of %d bytes: %w (limit %d)", len(key), errTooLarge, maxKeySize)
	}
	if len(value) > s.maxValueSize {
		return fmt.Errorf("value of %d bytes: %w (limit %d)", len(value), errTooLarge, s.maxValueSize)
	}
	return nil
}

// runGC runs the value-log garbage collection every interval until Close.
func (s *Store) runGC(interval time.Duration) {
	defer close(s.gcDone)
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		select {
		case <-s.stopGC:
			return
		case <-ticker.C:
		}
		// Each successful run rewrites one file; repeat until nothing is
		// left to rewrite.
		for {
			select {
			case <-s.stopGC:
				return
			default:
			}
			err := s.db.RunValueLogGC(gcDiscardRatio)
			if err == nil {
				continue
			}
			if !errors.Is(err, badger.ErrNoRewrite) && !errors.Is(err, badger.ErrRejected) {
				s.logger.Warn("badgerstore: value-log garbage collection failed", zap.Error(err))
			}
			break
		}
	}
}

// wrap adds the package and operation to an error.
func wrap(op string, err error) error {
	return fmt.Errorf("badgerstore: %s: %w", op, err)
}

// badgerLogger passes Badger's warnings and errors to zap and drops its
// informational and debug messages.
type badgerLogger struct {
	l *zap.SugaredLogger
}

func (b badgerLogger) Errorf(format string, args ...any) {
	b.l.Error(strings.TrimSpace(fmt.Sprintf(format, args...)))
}

func (b badgerLogger) Warningf(format string, args ...any) {
	b.l.Warn(strings.TrimSpace(fmt.Sprintf(format, args...)))
}

func (badgerLogger) Infof(string, ...any)  {}
func (badgerLogger) Debugf(string, ...any) {}

// Interface guards.
var (
	_ store.Store   = (*Store)(nil)
	_ badger.Logger = badgerLogger{}
)
