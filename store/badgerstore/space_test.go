package badgerstore

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/caddy-uma/caddy-uma/store"
	"github.com/caddy-uma/caddy-uma/store/storetest"
)

// fakeDisk is a free-space source and a clock for a spaceGuard.
type fakeDisk struct {
	mu      sync.Mutex
	free    uint64
	unknown bool
	err     error
	calls   int // statfs calls
	clock   time.Time
}

func (d *fakeDisk) statfs(string) (uint64, bool, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.calls++
	return d.free, !d.unknown, d.err
}

func (d *fakeDisk) now() time.Time {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.clock
}

// set changes the free space and moves the clock past the check interval,
// so that the next write measures it.
func (d *fakeDisk) set(free uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.free = free
	d.clock = d.clock.Add(spaceCheckInterval)
}

func (d *fakeDisk) tick(by time.Duration) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.clock = d.clock.Add(by)
}

func (d *fakeDisk) statfsCalls() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.calls
}

// useFakeDisk makes s measure its free space on a fakeDisk with free bytes.
func useFakeDisk(s *Store, free uint64) *fakeDisk {
	d := &fakeDisk{free: free, clock: time.Unix(1e9, 0)}
	s.space.mu.Lock()
	defer s.space.mu.Unlock()
	s.space.statfs, s.space.now = d.statfs, d.now
	s.space.measured = time.Time{}
	return d
}

// newTestGuard returns a started guard with a minimum of 1 MiB on a
// fakeDisk, and its log.
func newTestGuard(t *testing.T, free uint64) (*spaceGuard, *fakeDisk, *observer.ObservedLogs) {
	t.Helper()
	core, logs := observer.New(zapcore.DebugLevel)
	g := newSpaceGuard("/db", 1<<20, zap.New(core))
	d := &fakeDisk{free: free, clock: time.Unix(1e9, 0)}
	g.statfs, g.now = d.statfs, d.now
	if err := g.start(); err != nil {
		t.Fatalf("start: %v", err)
	}
	return g, d, logs
}

func logLines(logs *observer.ObservedLogs) []string {
	var lines []string
	for _, e := range logs.All() {
		lines = append(lines, e.Level.String()+": "+e.Message)
	}
	return lines
}

const (
	testMin    = 1 << 20
	testResume = testMin + testMin/8
)

func TestSpaceGuard(t *testing.T) {
	const kib = 1 << 10
	tests := []struct {
		name string
		free uint64 // at start
		// run admits and reserves, changes the disk, and returns what
		// to compare with want.
		run       func(g *spaceGuard, d *fakeDisk) string
		want      string
		wantLog   []string
		wantCalls int // statfs calls, start included; 0: not checked
	}{
		{
			name: "measures at most once per interval, however many writes",
			free: 1 << 30,
			run: func(g *spaceGuard, d *fakeDisk) string {
				var errs int
				for range 1000 {
					if g.admit(kib) != nil {
						errs++
					}
					d.tick(spaceCheckInterval / 500)
				}
				return fmt.Sprint(errs, " refused")
			},
			want:      "0 refused",
			wantCalls: 2, // start, then once when the interval had passed
		},
		{
			name: "counts the bytes it admitted: no write passes on a stale measure",
			free: testMin + 10*kib,
			run: func(g *spaceGuard, d *fakeDisk) string {
				return fmt.Sprint(g.admit(4*kib) == nil, g.admit(4*kib) == nil, errors.Is(g.admit(4*kib), store.ErrNoSpace))
			},
			want:      "true true true",
			wantLog:   []string{"error: badgerstore: free disk space is below the minimum: refusing writes until space is freed"},
			wantCalls: 1,
		},
		{
			name: "refusals are logged once, recovery once, and it stays low until the minimum plus an eighth",
			free: testMin - 1,
			run: func(g *spaceGuard, d *fakeDisk) string {
				var got []bool
				for _, free := range []uint64{testMin - 1, 0, testMin, testResume - 1, testResume, 1 << 30} {
					d.set(free)
					for range 3 {
						got = append(got, g.admit(1) == nil)
					}
				}
				return fmt.Sprint(got)
			},
			want: "[false false false false false false false false false false false false true true true true true true]",
			wantLog: []string{
				"error: badgerstore: free disk space is below the minimum: refusing writes until space is freed",
				"info: badgerstore: free disk space is above the minimum again: accepting writes",
			},
		},
		{
			name: "a write larger than the room left is refused",
			free: testMin + 10*kib,
			run: func(g *spaceGuard, d *fakeDisk) string {
				return fmt.Sprint(errors.Is(g.admit(11*kib), store.ErrNoSpace))
			},
			want:    "true",
			wantLog: []string{"error: badgerstore: free disk space is below the minimum: refusing writes until space is freed"},
		},
		{
			name: "background work that does not fit is skipped without refusing writes",
			free: testMin + 10*kib,
			run: func(g *spaceGuard, d *fakeDisk) string {
				return fmt.Sprint(g.reserve(20*kib), g.admit(kib) == nil, g.reserve(kib), g.admit(8*kib) == nil, g.reserve(kib))
			},
			want: "false true true true false",
		},
		{
			name: "a failed measure is logged once and keeps the estimate",
			free: testMin + 10*kib,
			run: func(g *spaceGuard, d *fakeDisk) string {
				d.mu.Lock()
				d.err = errors.New("input/output error")
				d.mu.Unlock()
				var got []bool
				for range 3 {
					d.set(1 << 30) // not seen: statfs fails
					got = append(got, g.admit(4*kib) == nil)
				}
				d.mu.Lock()
				d.err = nil
				d.mu.Unlock()
				d.set(1 << 30)
				got = append(got, g.admit(4*kib) == nil)
				return fmt.Sprint(got)
			},
			want: "[true true false true]",
			wantLog: []string{
				"warn: badgerstore: cannot read the free disk space; judging writes by the last measure",
				"error: badgerstore: free disk space is below the minimum: refusing writes until space is freed",
				"info: badgerstore: reading the free disk space works again",
				"info: badgerstore: free disk space is above the minimum again: accepting writes",
			},
		},
		{
			name: "a filesystem that reports no size is not guarded",
			free: 0,
			run: func(g *spaceGuard, d *fakeDisk) string {
				d.mu.Lock()
				d.unknown = true
				d.mu.Unlock()
				d.set(0)
				return fmt.Sprint(g.admit(1<<40) == nil, g.reserve(1<<40))
			},
			want: "true true",
		},
		{
			name: "a clock that goes back measures again",
			free: testMin + 10*kib,
			run: func(g *spaceGuard, d *fakeDisk) string {
				d.tick(-time.Second)
				g.admit(1)
				return fmt.Sprint(d.statfsCalls())
			},
			want: "2",
		},
		{
			name: "a new minimum applies to the next write",
			free: testMin + 10*kib,
			run: func(g *spaceGuard, d *fakeDisk) string {
				g.setMin(2 * testMin)
				first := errors.Is(g.admit(1), store.ErrNoSpace)
				g.setMin(testMin / 2)
				d.set(testMin)
				return fmt.Sprint(first, g.admit(1) == nil)
			},
			want: "true true",
			wantLog: []string{
				"error: badgerstore: free disk space is below the minimum: refusing writes until space is freed",
				"info: badgerstore: free disk space is above the minimum again: accepting writes",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			free := tt.free
			if free < testMin {
				free = testMin // start refuses below the minimum
			}
			g, d, logs := newTestGuard(t, free)
			d.set(tt.free)
			d.tick(-spaceCheckInterval) // the start measure is still fresh
			if got := tt.run(g, d); got != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
			if got := logLines(logs); fmt.Sprint(got) != fmt.Sprint(tt.wantLog) {
				t.Errorf("logged %q, want %q", got, tt.wantLog)
			}
			if tt.wantCalls != 0 && d.statfsCalls() != tt.wantCalls {
				t.Errorf("statfs ran %d times, want %d", d.statfsCalls(), tt.wantCalls)
			}
		})
	}
}

func TestSpaceGuardStart(t *testing.T) {
	g := newSpaceGuard("/db", testMin, zap.NewNop())
	d := &fakeDisk{free: testMin - 1}
	g.statfs, g.now = d.statfs, d.now
	err := g.start()
	if !errors.Is(err, store.ErrNoSpace) || !strings.Contains(err.Error(), "/db") ||
		!strings.Contains(err.Error(), "1.0 MiB") {
		t.Errorf("start below the minimum = %v, want ErrNoSpace naming the directory and the minimum", err)
	}
	d.err = errors.New("no such file or directory")
	if err := g.start(); err == nil || errors.Is(err, store.ErrNoSpace) {
		t.Errorf("start with a failing statfs = %v, want that error", err)
	}
}

// TestSuiteNoSpace runs the backend-independent full-disk suite on a real
// store whose free space is faked.
func TestSuiteNoSpace(t *testing.T) {
	storetest.RunNoSpace(t, func(t *testing.T) (store.Store, func(bool)) {
		s := openDir(t, t.TempDir())
		d := useFakeDisk(s, 1<<40)
		return s, func(full bool) {
			if full {
				d.set(0)
			} else {
				d.set(1 << 40)
			}
		}
	})
}

func TestDefaultMinFreeSpace(t *testing.T) {
	// 16 MiB memtables: one flush (16), a level-0 compaction of five
	// tables into a 10 MiB base level (90), and the 16 MiB margin.
	if want := int64(122 << 20); DefaultMinFreeSpace != want {
		t.Errorf("DefaultMinFreeSpace = %d (%s), want %d", DefaultMinFreeSpace, formatBytes(uint64(DefaultMinFreeSpace)), want)
	}
	s := openDir(t, t.TempDir())
	defer s.Close()
	if s.space.minFree != uint64(DefaultMinFreeSpace) {
		t.Errorf("a store opened without MinFreeSpace uses %d, want DefaultMinFreeSpace", s.space.minFree)
	}
}

func TestMinFreeSpaceOption(t *testing.T) {
	for _, n := range []int64{-1, 1, minSetMinFreeSpace - 1} {
		s, err := Open(Options{Dir: t.TempDir(), MinFreeSpace: n})
		if err == nil {
			s.Close()
			t.Errorf("Open with MinFreeSpace %d succeeded", n)
		} else if !strings.Contains(err.Error(), "MinFreeSpace") {
			t.Errorf("Open with MinFreeSpace %d: %v does not name the option", n, err)
		}
	}
	s, err := Open(Options{Dir: t.TempDir(), MinFreeSpace: 8 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.space.minFree != 8<<20 {
		t.Errorf("minimum = %d, want 8 MiB", s.space.minFree)
	}
	if err := s.SetMinFreeSpace(1); err == nil {
		t.Error("SetMinFreeSpace(1) succeeded")
	}
	if err := s.SetMinFreeSpace(0); err != nil || s.space.minFree != uint64(DefaultMinFreeSpace) {
		t.Errorf("SetMinFreeSpace(0) = %v, minimum %d; want the default", err, s.space.minFree)
	}

	// In memory there is no disk to guard.
	m, err := Open(Options{InMemory: true, MinFreeSpace: 8 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if m.space != nil || m.SetMinFreeSpace(16<<20) != nil {
		t.Error("an in-memory store has a free-space guard")
	}
}

// TestGCPausedWhileLow checks that value-log garbage collection, which
// writes, does not run while the disk is nearly full.
func TestGCPausedWhileLow(t *testing.T) {
	s, err := Open(Options{Dir: t.TempDir(), GCInterval: -1, MinFreeSpace: testMin})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var runs int
	s.valueLogGC = func(float64) error { runs++; return badger.ErrNoRewrite }
	d := useFakeDisk(s, 1<<30)
	if n := s.collectGarbage(); n != 1 || runs != 1 {
		t.Fatalf("with space: %d runs, %d calls; want 1", n, runs)
	}
	d.set(testMin - 1)
	if err := s.Put(t.Context(), "n", "k", []byte("v"), time.Time{}); !errors.Is(err, store.ErrNoSpace) {
		t.Fatalf("Put = %v, want ErrNoSpace", err)
	}
	if n := s.collectGarbage(); n != 0 || runs != 1 {
		t.Errorf("while low: %d runs, %d calls; want none", n, runs)
	}
	d.set(1 << 30)
	if n := s.collectGarbage(); n != 1 || runs != 2 {
		t.Errorf("with space again: %d runs, %d calls; want 1 more", n, runs)
	}
}
