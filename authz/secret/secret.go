// Package secret holds the rules for secrets: how the random values that
// stand for something (tokens, codes, session ids, CSRF tokens) are made,
// stored and compared, and how configured passwords and client secrets
// hashed with bcrypt are checked.
package secret

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"

	"golang.org/x/crypto/bcrypt"
)

// New returns n random bytes, base64url-encoded without padding. It
// panics only if the operating system's random source fails, which Go
// treats as fatal anyway.
func New(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (crypto/rand crashes the program instead)
	return base64.RawURLEncoding.EncodeToString(b)
}

// Key returns the store key of a secret: its SHA-256 in hex, so that the
// store never holds a usable token, code or session id.
func Key(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// Equal reports whether two secrets are equal, in time that depends on
// neither (their SHA-256 sums are compared in constant time). An empty
// given value never matches.
func Equal(given, want string) bool {
	if given == "" || want == "" {
		return false
	}
	g, w := sha256.Sum256([]byte(given)), sha256.Sum256([]byte(want))
	return subtle.ConstantTimeCompare(g[:], w[:]) == 1
}

// maxMatched bounds the cache of passwords seen to match a Hashed.
const maxMatched = 4

// Hashed is a bcrypt hash of a password or client secret ($2a$, $2b$ or
// $2y$, as `caddy hash-password` prints it), with a cache of the SHA-256
// sums of the values seen to match it: bcrypt runs once per value, not
// once per request, and later checks compare sums in constant time.
type Hashed struct {
	hash []byte

	mu      sync.Mutex
	matched [][32]byte
}

// LooksHashed reports whether s has the form of a bcrypt hash.
func LooksHashed(s string) bool {
	return len(s) == 60 && (strings.HasPrefix(s, "$2a$") || strings.HasPrefix(s, "$2b$") || strings.HasPrefix(s, "$2y$"))
}

// ParseHashed checks a bcrypt hash's form without the cost of a
// comparison (a known cost, salt and hash in bcrypt's base64 alphabet).
func ParseHashed(h string) (*Hashed, error) {
	if !LooksHashed(h) {
		return nil, errors.New("not a bcrypt hash")
	}
	if _, err := bcrypt.Cost([]byte(h)); err != nil {
		return nil, err
	}
	for _, c := range h[7:] {
		if !(c == '.' || c == '/' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			return nil, fmt.Errorf("unexpected character %q", c)
		}
	}
	return &Hashed{hash: []byte(h)}, nil
}

// Cost returns the bcrypt cost of the hash.
func (h *Hashed) Cost() int {
	c, _ := bcrypt.Cost(h.hash)
	return c
}

// Matches reports whether value is the one hashed.
func (h *Hashed) Matches(value string) bool {
	sum := sha256.Sum256([]byte(value))
	h.mu.Lock()
	for _, m := range h.matched {
		if subtle.ConstantTimeCompare(sum[:], m[:]) == 1 {
			h.mu.Unlock()
			return true
		}
	}
	h.mu.Unlock()
	if bcrypt.CompareHashAndPassword(h.hash, []byte(value)) != nil {
		return false
	}
	h.mu.Lock()
	if len(h.matched) >= maxMatched {
		h.matched = h.matched[1:]
	}
	h.matched = append(h.matched, sum)
	h.mu.Unlock()
	return true
}

// Matched returns how many values are cached as matching, for tests.
func (h *Hashed) Matched() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.matched)
}
