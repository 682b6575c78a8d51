// Package verified keeps tokens whose signature verified, by the SHA-256
// of their exact bytes, so that a token presented again need not be
// verified again: checking an ES256 signature is the largest part of an
// introspection or of a grant with a claim token (about 50 µs,
// BENCHMARKS.md). The same bytes under the same key verify the same way;
// what the caller keeps with a token says which key that was, and the
// caller takes a token from memory only while that key is still the one
// it would verify with. Only the signature is taken from memory: every
// other check of the token is the caller's, each time.
package verified

import (
	"crypto/sha256"
	"sync"
	"time"

	"github.com/caddy-uma/caddy-uma/authz/bounded"
)

// Sum is the key of a token: the SHA-256 of its bytes.
type Sum = [sha256.Size]byte

// Of returns the Sum of token.
func Of(token string) Sum { return sha256.Sum256([]byte(token)) }

// Tokens are kept tokens, each with what its caller keeps of it (V), at
// most Max (past it, each new one drops one at random). The zero value is
// ready, with Max DefaultMax. It is safe for concurrent use.
type Tokens[V any] struct {
	Max int

	mu   sync.Mutex
	kept bounded.Map[Sum, entry[V]]
}

// DefaultMax is the bound of Tokens whose Max is zero.
const DefaultMax = 1024

type entry[V any] struct {
	v     V
	until time.Time
}

// Get returns what was kept of the token of sum, unless it was kept until
// now or before (it is then dropped).
func (t *Tokens[V]) Get(sum Sum, now time.Time) (V, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.kept.Get(sum)
	if ok && !now.Before(e.until) {
		t.kept.Delete(sum)
		var zero V
		return zero, false
	}
	return e.v, ok
}

// Put keeps v for the token of sum until the given time (the token's
// expiry: past it the token is dropped).
func (t *Tokens[V]) Put(sum Sum, v V, until time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.kept.Max = t.Max
	if t.kept.Max <= 0 {
		t.kept.Max = DefaultMax
	}
	t.kept.Put(sum, entry[V]{v: v, until: until})
}

// Len is the number of tokens kept.
func (t *Tokens[V]) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.kept.Len()
}
