// Package secret holds the rules for the random values that stand for
// something (tokens, codes, session ids, CSRF tokens): how they are made,
// how they are stored, and how they are compared.
package secret

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
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
