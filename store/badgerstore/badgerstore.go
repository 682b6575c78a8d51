// Package badgerstore implements store.Store on Badger, an embedded
// key-value database.
//
// Every write is committed with SyncWrites, so an acknowledged write
// survives a crash of the process. The writes of records that concurrent
// callers make share commits (group commit, see commit.go): one synced
// transaction holds every write that arrived while the previous one was
// syncing, and each caller returns once it is committed. Resources are kept
// with five indexes (by resource server, by owner, by both, by resource
// server and name, by all three) written in the same transaction as the
// resource. Records expire through Badger's TTL, rounded up to whole
// seconds, and through a check of their exact expiry on every read, so a
// record is never visible once its ExpiresAt has passed by the store's
// clock (Options.Now).
//
// The change feed (Watch) is in-process: the directory lock keeps every
// other process out, so each write method publishes its changes to the
// store's watchers once its transaction has committed.
//
// Badger takes an exclusive lock on its directory, even within one process:
// open a directory once and share the *Store (Open returns ErrLocked for a
// second open).
//
// Badger's files are sparse and memory-mapped, and a write into a full
// filesystem kills the process with SIGBUS. The store therefore refuses
// writes with store.ErrNoSpace while the free space of its filesystem is
// below Options.MinFreeSpace (see space.go for how it is measured), pauses
// its value-log garbage collection meanwhile, refuses to open below it, and
// accepts writes again by itself once space is freed.
package badgerstore

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
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

// DefaultMinFreeSpace is the minimum free space, in bytes, of
// Options.MinFreeSpace zero: what Badger, with the options Open uses, may
// write on its own once the store refuses writes (see minFreeSpace). It is
// 122 MiB.
var DefaultMinFreeSpace = int64(minFreeSpace(badgerOptions(Options{})))

// spaceMargin is the part of the minimum free space that no Badger option
// sizes: Badger's small files (MANIFEST rewrites, the 1 MiB DISCARD file,
// KEYREGISTRY), the first pages of each new log file, and what other
// processes write to the same filesystem within one spaceCheckInterval.
const spaceMargin = 16 << 20

// minFreeSpace is the free space below which a store on Badger opened with
// o refuses writes: what Badger may still write after the store's last
// admitted write, before it deletes what that replaces.
//
//   - A flush: a full memtable becomes a level-0 table of up to
//     MemTableSize bytes, on rotation or at Close, before its write-ahead
//     log is deleted.
//   - A compaction of the level-0 tables into the base level, which starts
//     at NumLevelZeroTables tables (each up to MemTableSize) and merges the
//     base level (BaseLevelSize) with them: it writes its output before it
//     deletes its inputs. Compactions of deeper levels move smaller tables
//     (BaseTableSize, doubling per level) and are covered by the margin on
//     databases of a few GB; a larger database needs a larger minimum.
//   - spaceMargin.
//
// Values above Badger's value threshold go to the value log, and are
// counted by the guard as they are written; value-log garbage collection
// checks the space it needs before each run (see collectGarbage).
//
// While writes are refused Badger starts nothing new: a flush starts when
// a write fills the memtable (or at Close, see Store.Close), a compaction
// when a flush or an earlier compaction makes a level exceed its target,
// and its other background work (size updates, cache metrics, compactors
// that find nothing to do) does not write. What can still run is the flush
// and the compactions that the last admitted writes started: the terms
// above.
func minFreeSpace(o badger.Options) uint64 {
	flush := o.MemTableSize
	compaction := int64(o.NumLevelZeroTables)*o.MemTableSize + o.BaseLevelSize
	return uint64(flush + compaction + spaceMargin)
}

// minSetMinFreeSpace is the smallest Options.MinFreeSpace: below it, Badger's
// small files alone could run out of space.
const minSetMinFreeSpace = 1 << 20

// checkMinFreeSpace refuses an Options.MinFreeSpace below 1 MiB (zero is
// the default).
func checkMinFreeSpace(n int64) error {
	if n != 0 && n < minSetMinFreeSpace {
		return fmt.Errorf("badgerstore: MinFreeSpace %d is below the smallest safe minimum, %d bytes (1 MiB)",
			n, minSetMinFreeSpace)
	}
	return nil
}

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
	// messages), and the store's: free space falling below MinFreeSpace and
	// coming back, each logged once. Nil means silent.
	Logger *zap.Logger
	// MinFreeSpace is the free space, in bytes, of the database's filesystem
	// below which writes are refused with store.ErrNoSpace and Open fails.
	// Zero means DefaultMinFreeSpace; otherwise it must be at least 1 MiB.
	// It is ignored in memory. A smaller minimum suits a small database (the
	// writes Badger defers are at most about the size of the database).
	MinFreeSpace int64
	// Now is the clock that expiry is compared with: the authorization
	// server's. Nil means time.Now. Badger drops expired entries by the
	// real clock; with a clock behind it, the store moves each record's
	// Badger TTL later by the difference at the time of the write, so that
	// Badger never drops what this clock still sees live.
	Now func() time.Time
}

// Store is a store.Store on Badger. Its methods are safe for concurrent use.
type Store struct {
	db           *badger.DB
	dir          string
	logger       *zap.Logger
	maxValueSize int
	// space refuses writes while the disk is nearly full; nil in memory.
	space *spaceGuard
	// valueLogGC runs one value-log garbage collection (db.RunValueLogGC;
	// tests count the runs).
	valueLogGC func(discardRatio float64) error
	// now is the clock of expiry; ownClock is set when it is not time.Now.
	now      func() time.Time
	ownClock bool
	// feed delivers the committed changes to the watchers.
	feed store.Feed
	// commits groups the writes of records into shared commits.
	commits *store.CommitQueue[*recordOp]

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
	if err := checkMinFreeSpace(opts.MinFreeSpace); err != nil {
		return nil, err
	}

	bopts := badgerOptions(opts)
	var space *spaceGuard
	if !opts.InMemory {
		minFree := uint64(opts.MinFreeSpace)
		if minFree == 0 {
			minFree = minFreeSpace(bopts)
		}
		// Badger creates the directory with the same mode.
		if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
			return nil, fmt.Errorf("badgerstore: opening %s: %w", opts.Dir, err)
		}
		space = newSpaceGuard(opts.Dir, minFree, logger)
		if err := space.start(); err != nil {
			return nil, fmt.Errorf("badgerstore: opening %s: %w", opts.Dir, err)
		}
	}
	bopts = bopts.WithLogger(badgerLogger{logger.Named("badger").Sugar()})
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

	s := &Store{
		db:           db,
		dir:          opts.Dir,
		logger:       logger,
		maxValueSize: maxValueSizeOnDisk,
		space:        space,
		valueLogGC:   db.RunValueLogGC,
		lockSeed:     maphash.MakeSeed(),
		now:          opts.Now,
		ownClock:     opts.Now != nil,
	}
	if s.now == nil {
		s.now = time.Now
	}
	s.commits = store.NewCommitQueue(s.commitRecords)
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

// Exists reports whether dir holds a Badger database, without opening it
// (which would create one): whether Badger's MANIFEST file is there.
func Exists(dir string) (bool, error) {
	_, err := os.Stat(filepath.Join(dir, badger.ManifestFilename))
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, os.ErrNotExist):
		return false, nil
	}
	return false, fmt.Errorf("badgerstore: %w", err)
}

// Badger's tables are written uncompressed (options.None, not Badger's
// Snappy), and so need no block cache: a block is read where its table is
// mapped, instead of decompressed into memory and cached. Compressing
// costs memory twice over: each table being built (a memtable flushed, a
// compaction) holds its compressed blocks beside the plain ones, in
// buffers Badger pools and frees only once writes pause, and each block
// read is decompressed into the block cache. With 100k resources and 10k
// owners, after the bench's rounds, the live heap was 337 MB with Snappy
// (of which 156 MB Badger's buffers and cached blocks) and 179 MB
// without; 127 and 64 MB with one resource. The price is disk: the same
// records took 71 MiB of tables instead of 38 (BENCHMARKS.md). Tables
// written compressed by an earlier version stay readable (Badger records
// each table's compression in its manifest), decompressed on each read
// until a compaction rewrites them.
const (
	compression    = options.None
	blockCacheSize = 0
)

// memTableSize is the size of Badger's memtables (and so of its level-0
// tables and write-ahead log files): 16 MiB, not Badger's 64 MiB. Badger
// allocates each memtable's arena whole, keeps up to NumMemtables of them
// while writes come in, and a write-ahead log file of that size is mapped
// beside each: with 64 MiB, writing 100k resources left about 300 MiB more
// resident than with 16 MiB. The records of the AS are small (a
// transaction of the commit queue holds at most maxTxnBytes, under 15% of a
// memtable as Badger requires), so smaller memtables only mean more,
// smaller level-0 tables, and a smaller minimum free space.
const memTableSize = 16 << 20

// numCompactors is the number of Badger's compaction workers: 2 (the
// least Badger runs with), not 4. Each worker builds its tables in memory
// as it goes: after a burst of grants and refreshes, registering 100k
// resources left 551 MiB resident with four workers and 305 MiB with two,
// at the same registration rate (BENCHMARKS.md).
const numCompactors = 2

// Badger's own metrics (expvar maps of reads, bloom filter hits and sizes
// per level, under /debug/vars) are off: every read of a key updated a
// map entry per level it looked in (2% of Caddy's CPU in the bench's
// introspection at 100k resources, 0.6-0.7% in grants and refreshes),
// and nothing reads them.
// The store's operations are measured by the caddy_uma_store_* metrics.
const badgerMetrics = false

// badgerOptions returns the Badger options of opts, without the logger
// (WithLogger goes last: WithLoggingLevel would replace it).
func badgerOptions(opts Options) badger.Options {
	return badger.DefaultOptions(opts.Dir).
		WithInMemory(opts.InMemory).
		WithSyncWrites(true).
		WithCompression(compression).
		WithBlockCacheSize(blockCacheSize).
		WithMemTableSize(memTableSize).
		WithNumCompactors(numCompactors).
		WithMetricsEnabled(badgerMetrics)
}

// SetMinFreeSpace changes the minimum free space of a running store (see
// Options.MinFreeSpace; zero means DefaultMinFreeSpace). The next write is
// judged against it. It does nothing in memory.
func (s *Store) SetMinFreeSpace(n int64) error {
	if err := checkMinFreeSpace(n); err != nil {
		return err
	}
	if s.space == nil {
		return nil
	}
	minFree := uint64(n)
	if minFree == 0 {
		minFree = uint64(DefaultMinFreeSpace)
	}
	s.space.setMin(minFree)
	return nil
}

// isLockError recognizes Badger's directory-lock failure, which wraps the
// flock error without supporting errors.Is.
func isLockError(err error) bool {
	return errors.Is(err, syscall.EWOULDBLOCK) ||
		strings.Contains(err.Error(), "Cannot acquire directory lock")
}

// checkFormat writes the format version into a new database, upgrades a
// database of format 1 (see upgradeFormat1), and refuses one written in
// any other format.
func checkFormat(db *badger.DB) error {
	var version string
	err := db.Update(func(txn *badger.Txn) error {
		item, err := txn.Get(versionKey)
		if errors.Is(err, badger.ErrKeyNotFound) {
			version = formatVersion
			return txn.Set(versionKey, []byte(formatVersion))
		}
		if err != nil {
			return fmt.Errorf("reading format version: %w", err)
		}
		v, err := item.ValueCopy(nil)
		if err != nil {
			return fmt.Errorf("reading format version: %w", err)
		}
		version = string(v)
		return nil
	})
	switch {
	case err != nil:
		return err
	case version == formatVersion:
		return nil
	case version == formatVersion1:
		return upgradeFormat1(db)
	}
	return fmt.Errorf("unsupported format version %q (want %q)", version, formatVersion)
}

// upgradeBatch is how many resources one transaction of upgradeFormat1
// indexes.
const upgradeBatch = 1000

// upgradeFormat1 adds the name indexes of format 2 to every resource, a
// batch of resources per transaction, then sets the format version. A
// crash half way leaves format 1 with some name index entries, which are
// those of format 2: the next Open starts over.
func upgradeFormat1(db *badger.DB) error {
	after := ""
	for {
		var batch []store.Resource
		err := db.View(func(txn *badger.Txn) error {
			return scan(txn, resourcePrefix(), false, store.ResourceQuery{After: after, Limit: upgradeBatch}, &batch)
		})
		if err != nil {
			return fmt.Errorf("upgrading to format %s: %w", formatVersion, err)
		}
		if len(batch) == 0 {
			break
		}
		err = db.Update(func(txn *badger.Txn) error {
			for _, r := range batch {
				for _, k := range indexKeys(r) {
					if err := txn.Set(k, nil); err != nil {
						return err
					}
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("upgrading to format %s: %w", formatVersion, err)
		}
		after = batch[len(batch)-1].ID
	}
	return db.Update(func(txn *badger.Txn) error { return txn.Set(versionKey, []byte(formatVersion)) })
}

// Close stops the garbage collection, waits for the calls in flight, ends
// the watchers and closes the database. Later calls of any method return
// store.ErrClosed; later calls of Close return nil.
//
// Badger's Close writes the memtable into a table file. If the disk has no
// room for it, Close leaves the database open instead (a write into a full
// disk would kill the process), logs why, and returns an error matching
// store.ErrNoSpace: everything acknowledged is in the synced write-ahead
// log, and the next Open recovers it. The directory stays locked until the
// process exits.
func (s *Store) Close() error {
	var err error
	s.closeOnce.Do(func() {
		s.gate.Close()
		s.feed.Close()
		if s.stopGC != nil {
			close(s.stopGC)
			<-s.gcDone
		}
		if s.space != nil {
			wal, _ := logFileSizes(s.dir)
			if free, fits := s.space.fitsNow(wal + closeMargin); !fits {
				err = fmt.Errorf("badgerstore: closing %s: %w: %s free, closing needs %s; "+
					"left open, its data is safe in the write-ahead log and recovered at the next open",
					s.dir, store.ErrNoSpace, formatBytes(free), formatBytes(wal+closeMargin))
				s.logger.Error("badgerstore: not closing the database: the disk is full", zap.Error(err))
				return
			}
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

// Watch calls fn with the changes of the records of namespaces, and of the
// resources for store.ResourcesNamespace, that this store commits, until
// ctx ends or the store is closed (see store.Changes). It is established
// when it returns; the feed is never interrupted, and a Resync comes only
// when fn falls store.FeedQueueSize changes behind.
func (s *Store) Watch(ctx context.Context, fn func(store.Change), namespaces ...string) error {
	const op = "watching changes"
	if err := s.enter(ctx); err != nil {
		return wrap(op, err)
	}
	defer s.leave()
	if _, err := s.feed.Add(ctx, fn, namespaces); err != nil {
		return wrap(op, err)
	}
	return nil
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
		s.collectGarbage()
	}
}

// collectGarbage runs the value-log garbage collection until nothing is
// left to rewrite (each successful run rewrites one file), Close is called,
// or the disk lacks the space of a run: a run copies the live entries of
// one value-log file into the newest before it deletes the old file, so
// each needs the size of the largest file it may pick besides the minimum.
// It returns the number of runs.
func (s *Store) collectGarbage() (runs int) {
	for {
		select {
		case <-s.stopGC:
			return runs
		default:
		}
		_, rewrite := logFileSizes(s.dir)
		if !s.space.reserve(rewrite) {
			return runs // paused while the disk is nearly full
		}
		runs++
		err := s.valueLogGC(gcDiscardRatio)
		if err == nil {
			continue
		}
		if !errors.Is(err, badger.ErrNoRewrite) && !errors.Is(err, badger.ErrRejected) {
			s.logger.Warn("badgerstore: value-log garbage collection failed", zap.Error(err))
		}
		return runs
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
