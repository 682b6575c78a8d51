package people

import (
	"strings"
	"sync"
	"time"
)

// Brute-force protection of password login, as Keycloak's brute-force
// detection does: after maxLoginFailures wrong passwords for one name
// within loginFailureWindow, that name cannot log in until the window
// ends. No bcrypt runs for a blocked name.
const (
	maxLoginFailures   = 5
	loginFailureWindow = 15 * time.Minute
	maxThrottledNames  = 10000
)

// loginThrottle counts recent login failures per name.
type loginThrottle struct {
	mu    sync.Mutex
	fails map[string]*failWindow
}

type failWindow struct {
	count int
	first time.Time
}

func throttleKey(name string) string { return strings.ToLower(strings.TrimSpace(name)) }

// blockedFor returns how long logins of name stay refused, or zero.
func (t *loginThrottle) blockedFor(name string, now time.Time) time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	fw := t.fails[throttleKey(name)]
	if fw == nil {
		return 0
	}
	end := fw.first.Add(loginFailureWindow)
	if !now.Before(end) {
		delete(t.fails, throttleKey(name))
		return 0
	}
	if fw.count < maxLoginFailures {
		return 0
	}
	return end.Sub(now)
}

// fail records a failed login of name.
func (t *loginThrottle) fail(name string, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.fails == nil {
		t.fails = map[string]*failWindow{}
	}
	key := throttleKey(name)
	fw := t.fails[key]
	if fw == nil || !now.Before(fw.first.Add(loginFailureWindow)) {
		if len(t.fails) >= maxThrottledNames {
			t.prune(now)
		}
		fw = &failWindow{first: now}
		t.fails[key] = fw
	}
	fw.count++
}

// succeed forgets name's failures.
func (t *loginThrottle) succeed(name string) {
	t.mu.Lock()
	delete(t.fails, throttleKey(name))
	t.mu.Unlock()
}

// prune drops ended windows, and if the map is still full, all of it
// (memory stays bounded; the worst case is a fresh start for attackers).
func (t *loginThrottle) prune(now time.Time) {
	for k, fw := range t.fails {
		if !now.Before(fw.first.Add(loginFailureWindow)) {
			delete(t.fails, k)
		}
	}
	if len(t.fails) >= maxThrottledNames {
		t.fails = map[string]*failWindow{}
	}
}
