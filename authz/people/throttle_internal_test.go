package people

import (
	"errors"
	"strconv"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// The throttle's bounds, which HTTP tests would need tens of thousands of
// logins to reach.

func TestThrottleMemoryIsBounded(t *testing.T) {
	th := newLoginThrottle()
	now := time.Now()
	for i := range 3 * maxThrottledKeys {
		a, wait := th.admit("name"+strconv.Itoa(i), "addr"+strconv.Itoa(i), now)
		if wait > 0 {
			t.Fatalf("attempt %d waits %s", i, wait)
		}
		th.done(a, false, now)
		now = now.Add(time.Millisecond)
	}
	if n, m := len(th.names.entries), len(th.addresses.entries); n > maxThrottledKeys || m > maxThrottledKeys {
		t.Fatalf("%d names and %d addresses kept, at most %d each", n, m, maxThrottledKeys)
	}
	// The newest key is kept.
	if th.names.entries["name"+strconv.Itoa(3*maxThrottledKeys-1)] == nil {
		t.Fatal("the newest name was evicted")
	}
	// Forgotten keys make room at once.
	now = now.Add(loginFailureMemory + pruneInterval)
	a, _ := th.admit("new", "new", now)
	th.done(a, false, now)
	if n := len(th.names.entries); n != 1 {
		t.Fatalf("%d names kept after they were forgotten, want 1", n)
	}
	// A flood of names with one failure each does not push out the count
	// of a name that is delayed.
	th = newLoginThrottle()
	for range maxNameFailures {
		a, _ := th.admit("alice", "192.0.2.1", now)
		th.done(a, false, now)
	}
	for i := range 2 * maxThrottledKeys {
		a, _ := th.admit("junk"+strconv.Itoa(i), "addr"+strconv.Itoa(i), now)
		th.done(a, false, now)
	}
	if _, wait := th.admit("alice", "192.0.2.2", now); wait == 0 {
		t.Fatal("the flood reset alice's delay")
	}
	// Successful logins leave nothing behind.
	th = newLoginThrottle()
	for i := range 100 {
		a, _ := th.admit("name"+strconv.Itoa(i), "addr", now)
		th.done(a, true, now)
	}
	if n, m := len(th.names.entries), len(th.addresses.entries); n != 0 || m != 0 {
		t.Fatalf("after successful logins: %d names, %d addresses kept", n, m)
	}
}

// TestThrottleOneAttemptAtATime: concurrent attempts cannot pass the
// free failures (each is counted while its password is checked).
func TestThrottleOneAttemptAtATime(t *testing.T) {
	th := newLoginThrottle()
	now := time.Now()
	var admitted []loginAttempt
	for range 3 * maxNameFailures {
		if a, wait := th.admit("alice", "192.0.2.1", now); wait == 0 {
			admitted = append(admitted, a)
		}
	}
	if len(admitted) != maxNameFailures {
		t.Fatalf("%d concurrent attempts admitted, want %d", len(admitted), maxNameFailures)
	}
	for _, a := range admitted {
		th.done(a, false, now)
	}
	if _, wait := th.admit("alice", "192.0.2.1", now); wait != firstLoginDelay {
		t.Fatalf("wait after the free failures: %s", wait)
	}
	now = now.Add(firstLoginDelay)
	a, wait := th.admit("alice", "192.0.2.1", now)
	if wait != 0 {
		t.Fatalf("wait after the delay: %s", wait)
	}
	if _, wait := th.admit("alice", "192.0.2.1", now); wait == 0 {
		t.Fatal("a second attempt went through while one is checked")
	}
	th.done(a, true, now)
	if _, wait := th.admit("alice", "192.0.2.1", now); wait != 0 {
		t.Fatalf("wait after the right password: %s", wait)
	}
}

func TestThrottleForgetsOldFailures(t *testing.T) {
	th := newLoginThrottle()
	now := time.Now()
	for range maxNameFailures + 3 {
		now = now.Add(maxLoginDelay)
		a, wait := th.admit("alice", "192.0.2.1", now)
		if wait != 0 {
			t.Fatalf("wait: %s", wait)
		}
		th.done(a, false, now)
	}
	now = now.Add(loginFailureMemory)
	for i := range maxNameFailures {
		a, wait := th.admit("alice", "192.0.2.1", now)
		if wait != 0 {
			t.Fatalf("attempt %d after the failures were forgotten waits %s", i, wait)
		}
		th.done(a, false, now)
	}
}

func TestDummyHashCostsAComparison(t *testing.T) {
	for _, cost := range []int{bcrypt.MinCost, 6, 12, bcrypt.MaxCost} {
		text := dummyHashText(cost)
		if h := dummyHash(cost); h.Cost() != cost {
			t.Fatalf("cost %d: %d", cost, h.Cost())
		}
		if cost > 6 {
			continue // well-formed is enough; comparing costs 2^cost
		}
		// bcrypt runs to the end and finds a mismatch (not a malformed
		// hash, which it would refuse at once).
		if err := bcrypt.CompareHashAndPassword([]byte(text), []byte("x")); !errors.Is(err, bcrypt.ErrMismatchedHashAndPassword) {
			t.Fatalf("cost %d: %v", cost, err)
		}
	}
}

func TestAddressKey(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.1":            "192.0.2.1",
		"::ffff:192.0.2.1":     "192.0.2.1",
		"2001:db8:1:2::1":      "2001:db8:1:2::/64",
		"2001:db8:1:2:ffff::9": "2001:db8:1:2::/64",
		"fe80::1%eth0":         "fe80::/64",
		"@":                    "@",
	} {
		if got := addressKey(in); got != want {
			t.Errorf("addressKey(%q) = %q, want %q", in, got, want)
		}
	}
}
