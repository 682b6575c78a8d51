package pep

import (
	"sync"
	"time"
)

// logEvery is the least time between two warn lines for one reason: an
// outage or a configuration mistake refuses every request, and one line
// (with the count of those left out) says as much as a thousand.
const logEvery = 10 * time.Second

// logLimiter rate-limits log lines by key. The keys are a fixed set
// (reasons), so its map stays small. It is safe for concurrent use.
type logLimiter struct {
	now  func() time.Time
	mu   sync.Mutex
	keys map[string]*limitedKey
}

type limitedKey struct {
	last       time.Time
	suppressed int
}

func newLogLimiter(now func() time.Time) *logLimiter {
	return &logLimiter{now: now, keys: map[string]*limitedKey{}}
}

// allow reports whether a line for key may be written now, and how many
// were left out since the last one written.
func (l *logLimiter) allow(key string) (suppressed int, ok bool) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	k := l.keys[key]
	if k == nil {
		l.keys[key] = &limitedKey{last: now}
		return 0, true
	}
	if now.Sub(k.last) < logEvery {
		k.suppressed++
		return 0, false
	}
	n := k.suppressed
	k.last, k.suppressed = now, 0
	return n, true
}
