package badgerstore

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-uma/caddy-uma/store"
)

// The free-space guard.
//
// Badger's log and table files are sparse and memory-mapped. When a write
// touches a page that the filesystem cannot allocate, the kernel sends
// SIGBUS, which Go cannot recover: the whole process dies, and dies again
// at each restart while Badger replays its log into a full disk. So the
// store measures the free space of its filesystem itself (statfs) and
// refuses writes with store.ErrNoSpace while it is below a minimum that
// covers what Badger may still write on its own (see minFreeSpace).
//
// The bound: a write is admitted against the free space measured at most
// spaceCheckInterval ago, less every byte admitted since (the guard counts
// what each write adds to Badger's log, with its overhead, before the write
// runs, under one lock), so the store's own writes never pass on a stale
// "enough space". What a measure cannot see is space that other processes
// take from the same filesystem in the interval after it, and the writes
// Badger defers (flushes, compactions): the minimum covers both.

// spaceCheckInterval is how long a measure of the free space is trusted:
// statfs runs at most once per interval, however many writes come.
const spaceCheckInterval = 100 * time.Millisecond

// What one entry and one commit add to Badger's write-ahead log beyond the
// key and the value: the entry header (up to 22 bytes), its checksum (4),
// the version appended to the key (8), and the transaction's commit marker.
// Rounded up; over-counting only makes the guard stricter.
const (
	entryOverhead  = 64
	commitOverhead = 64
)

// closeMargin is what Close needs beyond the size of the write-ahead logs:
// Badger's Close writes the memtable into a level-0 table (its blocks,
// index and bloom filter), which is not larger than the log that holds the
// same entries, plus this.
const closeMargin = 1 << 20

// freeSpaceFunc returns the space available to this process on the
// filesystem of dir. known is false for a filesystem that does not report
// its size.
type freeSpaceFunc func(dir string) (free uint64, known bool, err error)

// logBytes is what one commit of entries of the given sizes (key plus
// value) adds to Badger's log, for the guard.
func logBytes(entrySizes ...int) uint64 {
	n := uint64(commitOverhead)
	for _, size := range entrySizes {
		n += uint64(size) + entryOverhead
	}
	return n
}

// spaceGuard refuses writes while the free space is below minFree. It enters
// the low state when a write does not fit (the estimate falls below minFree),
// and leaves it when a measure shows resume bytes free: the gap between the
// two (one eighth of minFree) keeps a disk that hovers at the limit from
// flipping back and forth. Each change of state is logged once.
//
// A nil *spaceGuard (a store in memory) admits everything.
type spaceGuard struct {
	dir     string
	minFree uint64
	resume  uint64
	statfs  freeSpaceFunc
	now     func() time.Time
	logger  *zap.Logger

	mu       sync.Mutex
	measured time.Time // when free was measured
	free     uint64    // the measured free space, less the bytes admitted since
	known    bool      // whether the filesystem reports its free space
	low      bool
	statErr  bool // the last statfs failed (logged when it starts failing)
}

func newSpaceGuard(dir string, minFree uint64, logger *zap.Logger) *spaceGuard {
	g := &spaceGuard{dir: dir, statfs: freeSpace, now: time.Now, logger: logger}
	g.setMin(minFree)
	return g
}

// setMin changes the minimum; the next write is judged against it.
func (g *spaceGuard) setMin(minFree uint64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.minFree, g.resume = minFree, minFree+minFree/8
	g.measured = time.Time{} // measure again
}

// start takes the first measure, at Open. It fails with store.ErrNoSpace
// if the free space is below the minimum: Badger's Open replays and
// flushes its logs, which can need as much space as a running store.
func (g *spaceGuard) start() error {
	free, known, err := g.statfs(g.dir)
	if err != nil {
		return fmt.Errorf("reading the free space of %s: %w", g.dir, err)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.measured, g.free, g.known = g.now(), free, known
	if known && free < g.minFree {
		return g.errLocked()
	}
	return nil
}

// admit accounts for a write of n bytes, or refuses it with an error
// matching store.ErrNoSpace.
func (g *spaceGuard) admit(n uint64) error { return g.take(n, true) }

// reserve accounts for n bytes of background work (value-log garbage
// collection) if they fit, and reports whether they did. Unlike admit, a
// refusal does not change the state: the work is just skipped.
func (g *spaceGuard) reserve(n uint64) bool { return g.take(n, false) == nil }

// take accounts for n bytes if they fit in the free space above the
// minimum. A write that does not fit enters the low state.
func (g *spaceGuard) take(n uint64, write bool) error {
	if g == nil {
		return nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.measureIfStaleLocked()
	if !g.known {
		return nil
	}
	if write && !g.low && !g.fitsLocked(n) {
		g.low = true
		g.logger.Error("badgerstore: free disk space is below the minimum: refusing writes until space is freed",
			zap.String("dir", g.dir), zap.Uint64("free_bytes", g.free), zap.Uint64("min_free_bytes", g.minFree))
	}
	if g.low || !g.fitsLocked(n) {
		return g.errLocked()
	}
	g.free -= n
	return nil
}

// fitsNow measures the free space now and reports whether n bytes fit in
// it, ignoring the minimum (for Close, which needs only room for its own
// writes). A filesystem that does not report its size, or a failed
// measure, counts as room.
func (g *spaceGuard) fitsNow(n uint64) (free uint64, fits bool) {
	if g == nil {
		return 0, true
	}
	g.mu.Lock()
	statfs := g.statfs
	g.mu.Unlock()
	free, known, err := statfs(g.dir)
	return free, err != nil || !known || free >= n
}

func (g *spaceGuard) fitsLocked(n uint64) bool {
	return g.free >= g.minFree && g.free-g.minFree >= n
}

// measureIfStaleLocked measures the free space if the last measure is older
// than spaceCheckInterval (or the clock went back), and leaves the low
// state if the new measure allows it. It never enters the low state: admit
// does, when a write does not fit.
func (g *spaceGuard) measureIfStaleLocked() {
	now := g.now()
	if d := now.Sub(g.measured); d >= 0 && d < spaceCheckInterval {
		return
	}
	g.measured = now
	free, known, err := g.statfs(g.dir)
	if err != nil {
		// No new information: keep the estimate and the state.
		if !g.statErr {
			g.statErr = true
			g.logger.Warn("badgerstore: cannot read the free disk space; judging writes by the last measure",
				zap.String("dir", g.dir), zap.Error(err))
		}
		return
	}
	if g.statErr {
		g.statErr = false
		g.logger.Info("badgerstore: reading the free disk space works again", zap.String("dir", g.dir))
	}
	g.free, g.known = free, known
	if g.low && (!known || free >= g.resume) {
		g.low = false
		g.logger.Info("badgerstore: free disk space is above the minimum again: accepting writes",
			zap.String("dir", g.dir), zap.Uint64("free_bytes", free), zap.Uint64("min_free_bytes", g.minFree))
	}
}

func (g *spaceGuard) errLocked() error {
	return fmt.Errorf("%w: about %s free in %s, below the minimum of %s",
		store.ErrNoSpace, formatBytes(g.free), g.dir, formatBytes(g.minFree))
}

// formatBytes writes n in MiB, for messages.
func formatBytes(n uint64) string {
	return strconv.FormatFloat(float64(n)/(1<<20), 'f', 1, 64) + " MiB"
}

// logFileSizes returns what Badger's logs in dir hold: wal, the space taken
// by the memtables' write-ahead logs (*.mem, sparse: counted by allocated
// blocks), and sealedVlog, the size of the largest value-log file but the
// newest (the most that one value-log garbage collection run rewrites; the
// newest is never collected).
func logFileSizes(dir string) (wal, sealedVlog uint64) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, 0
	}
	newest := -1
	var newestSize uint64
	for _, e := range entries {
		name := e.Name()
		switch {
		case strings.HasSuffix(name, ".mem"):
			wal += allocatedBytes(filepath.Join(dir, name))
		case strings.HasSuffix(name, ".vlog"):
			fid, err := strconv.Atoi(strings.TrimSuffix(name, ".vlog"))
			info, ierr := e.Info()
			if err != nil || ierr != nil {
				continue
			}
			size := uint64(info.Size())
			if fid > newest {
				sealedVlog = max(sealedVlog, newestSize)
				newest, newestSize = fid, size
			} else {
				sealedVlog = max(sealedVlog, size)
			}
		}
	}
	return wal, sealedVlog
}
