package people

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// Brute-force protection of password login. Failed logins are counted per
// login name (known or not: the answers must not tell them apart) and per
// client address (an IPv6 address by its /64, what one subscriber gets).
// The first failures of a key cost nothing more; after that, each next
// attempt of the key must wait a delay that doubles with every further
// failure, from firstLoginDelay up to maxLoginDelay. While a key waits, its
// attempts are answered 429 with Retry-After at once: no bcrypt runs, and
// they do not count. After the wait, one attempt at a time is let through,
// and the right password logs in. There is no hard lock: whoever fails for
// someone else's name delays that name at most maxLoginDelay after their
// last failure, and the per-address count slows them down too.
//
// A key's failures are forgotten loginFailureMemory after its last one; a
// name's also when its right password is given (an address's are not, or
// logging in to one's own account would reset the count of guesses at
// others'). Memory stays bounded: each table holds at most
// maxThrottledKeys keys (see makeRoom).
const (
	// maxNameFailures and maxAddressFailures are the failures a name and an
	// address have before the delay starts (an address is often shared:
	// an office, a NAT).
	maxNameFailures    = 5
	maxAddressFailures = 20
	firstLoginDelay    = time.Second
	maxLoginDelay      = 5 * time.Minute
	loginFailureMemory = 15 * time.Minute
	maxThrottledKeys   = 10000
	pruneInterval      = time.Minute
	evictionSample     = 16
)

// loginThrottle holds the failure counts of names and addresses.
type loginThrottle struct {
	mu        sync.Mutex
	names     failureTable
	addresses failureTable
}

// failureTable counts the recent failures of keys.
type failureTable struct {
	free    int // failures before the delay starts
	entries map[string]*failures
	pruned  time.Time // when forgotten keys were last dropped
}

// failures are one key's recent failed logins.
type failures struct {
	count    int
	last     time.Time // of the last failure
	until    time.Time // no attempt before
	inFlight int       // attempts let through and not done yet
}

func newLoginThrottle() *loginThrottle {
	return &loginThrottle{
		names:     failureTable{free: maxNameFailures, entries: map[string]*failures{}},
		addresses: failureTable{free: maxAddressFailures, entries: map[string]*failures{}},
	}
}

// loginAttempt is an attempt let through by admit; pass it to done.
type loginAttempt struct{ name, address string }

// admit lets an attempt of name from address through, or returns how long
// it must wait.
func (t *loginThrottle) admit(name, address string, now time.Time) (loginAttempt, time.Duration) {
	a := loginAttempt{name: nameKey(name), address: address}
	t.mu.Lock()
	defer t.mu.Unlock()
	wait := max(t.names.wait(a.name, now), t.addresses.wait(a.address, now))
	if wait > 0 {
		return a, wait
	}
	t.names.start(a.name, now)
	t.addresses.start(a.address, now)
	return a, 0
}

// done records the outcome of an admitted attempt.
func (t *loginThrottle) done(a loginAttempt, ok bool, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.names.finish(a.name, !ok, now)
	t.addresses.finish(a.address, !ok, now)
	if ok {
		t.names.forget(a.name)
	}
}

// wait returns how long key must wait before its next attempt, or zero.
func (ft *failureTable) wait(key string, now time.Time) time.Duration {
	f := ft.get(key, now)
	switch {
	case f == nil:
		return 0
	case now.Before(f.until):
		return f.until.Sub(now)
	case f.count+f.inFlight >= ft.free && f.inFlight > 0:
		// Past the free failures, one attempt at a time.
		return firstLoginDelay
	}
	return 0
}

// get returns key's failures, nil if none, with those older than
// loginFailureMemory forgotten.
func (ft *failureTable) get(key string, now time.Time) *failures {
	f := ft.entries[key]
	if f != nil && f.count > 0 && !now.Before(f.last.Add(loginFailureMemory)) {
		f.count = 0
	}
	return f
}

// start counts an attempt of key in flight.
func (ft *failureTable) start(key string, now time.Time) {
	f := ft.get(key, now)
	if f == nil {
		ft.makeRoom(now)
		f = &failures{}
		ft.entries[key] = f
	}
	f.inFlight++
}

// finish ends an attempt of key, counting it if it failed.
func (ft *failureTable) finish(key string, failed bool, now time.Time) {
	f := ft.get(key, now)
	if f == nil {
		return
	}
	f.inFlight--
	if !failed {
		if f.count == 0 && f.inFlight == 0 {
			delete(ft.entries, key)
		}
		return
	}
	f.count++
	f.last = now
	if over := f.count - ft.free; over >= 0 {
		f.until = now.Add(loginDelay(over))
	}
}

// forget drops key's failures.
func (ft *failureTable) forget(key string) {
	f := ft.entries[key]
	if f == nil {
		return
	}
	if f.inFlight > 0 {
		*f = failures{inFlight: f.inFlight}
		return
	}
	delete(ft.entries, key)
}

// makeRoom makes room for a key when the table is full: it drops the
// forgotten keys (a whole scan, at most once per pruneInterval), and if the
// table is still full, one of a few keys taken at random (Go's map
// iteration starts at a random place; Redis's approximate LRU does the
// same), preferring one that is not delayed, then the oldest. Each insertion costs little even when an
// attacker keeps the table full.
func (ft *failureTable) makeRoom(now time.Time) {
	if len(ft.entries) < maxThrottledKeys {
		return
	}
	if !now.Before(ft.pruned.Add(pruneInterval)) {
		ft.pruned = now
		for k, f := range ft.entries {
			if f.inFlight == 0 && !now.Before(f.last.Add(loginFailureMemory)) && !now.Before(f.until) {
				delete(ft.entries, k)
			}
		}
		if len(ft.entries) < maxThrottledKeys {
			return
		}
	}
	victim, sampled := "", 0
	var worst *failures
	for k, f := range ft.entries {
		if f.inFlight > 0 {
			continue
		}
		if worst == nil || ft.evictsBefore(f, worst) {
			victim, worst = k, f
		}
		if sampled++; sampled == evictionSample {
			break
		}
	}
	if victim != "" {
		delete(ft.entries, victim)
	}
}

// evictsBefore reports whether a goes before b when room is made: a key
// below its free failures before one that is delayed (so that junk keys
// do not push out the count of a name under attack), then the older.
func (ft *failureTable) evictsBefore(a, b *failures) bool {
	if delayedA, delayedB := a.count >= ft.free, b.count >= ft.free; delayedA != delayedB {
		return delayedB
	}
	return a.last.Before(b.last)
}

// loginDelay is the wait after the free failures and over more.
func loginDelay(over int) time.Duration {
	if over >= 30 {
		return maxLoginDelay
	}
	return min(firstLoginDelay<<over, maxLoginDelay)
}

// nameKey is the throttle's key of a login name.
func nameKey(name string) string { return strings.ToLower(strings.TrimSpace(name)) }

// remoteHost is the host of a request's RemoteAddr.
func remoteHost(r *http.Request) string {
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return host
	}
	return r.RemoteAddr
}

// addressKey is the throttle's key of a client address: an IPv4 address,
// or an IPv6 address's /64 network.
func addressKey(addr string) string {
	ip, err := netip.ParseAddr(strings.TrimSpace(addr))
	if err != nil {
		return strings.TrimSpace(addr)
	}
	ip = ip.Unmap().WithZone("")
	if ip.Is4() {
		return ip.String()
	}
	p, _ := ip.Prefix(64)
	return p.String()
}
