package claimtoken

import (
	"crypto/sha256"
	"sync"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jwt"
)

// A client pushes the same claim token (its user's ID token) with every
// grant of the user's session, and checking its signature is the largest
// part of a grant's work (ES256: about 50 µs of some 400, BENCHMARKS.md).
// So the Verifier keeps the tokens whose signature it checked, by the
// SHA-256 of their exact bytes: the same bytes under the same key verify
// the same way. Only the signature is taken from memory; every other check
// (the time claims against the clock, the audiences, the client it was
// issued to) runs on each Verify, and the key is selected again from the
// issuer's current key set each time: a token is taken from memory only
// while that is still the very key object that verified it, so a key
// removed or replaced at the identity provider stops its tokens as soon as
// the key set is fetched again, as without memory. A token that failed
// is never kept, and one is dropped once expired.

// maxVerifiedTokens bounds the tokens kept: past it, each new one drops
// one at random. A token with its decoded claims is a few KiB.
const maxVerifiedTokens = 1024

// verifiedToken is a token whose signature verified under key.
type verifiedToken struct {
	ik     *issuerKeys
	tok    compactToken
	key    jwk.Key
	parsed jwt.Token
	// until is when the token expires, past which it is dropped (its exp
	// plus the leeway; a later Verify would refuse it anyway).
	until time.Time
}

// verifiedTokens are the tokens whose signature verified, by the SHA-256
// of the token as presented.
type verifiedTokens struct {
	mu   sync.Mutex
	kept map[[sha256.Size]byte]*verifiedToken
}

func (vt *verifiedTokens) get(sum [sha256.Size]byte, now time.Time) *verifiedToken {
	vt.mu.Lock()
	defer vt.mu.Unlock()
	t := vt.kept[sum]
	if t != nil && !now.Before(t.until) {
		delete(vt.kept, sum)
		return nil
	}
	return t
}

func (vt *verifiedTokens) put(sum [sha256.Size]byte, t *verifiedToken) {
	vt.mu.Lock()
	defer vt.mu.Unlock()
	if vt.kept == nil {
		vt.kept = map[[sha256.Size]byte]*verifiedToken{}
	}
	if _, ok := vt.kept[sum]; !ok && len(vt.kept) >= maxVerifiedTokens {
		for k := range vt.kept { // Go starts a map's range at random
			delete(vt.kept, k)
			break
		}
	}
	vt.kept[sum] = t
}

// sameKey reports whether a and b are the same key object of a key set
// (jwx keeps its keys behind pointers; a key set fetched again holds new
// ones).
func sameKey(a, b jwk.Key) (same bool) {
	defer func() {
		if recover() != nil { // a key type that is not comparable
			same = false
		}
	}()
	return a == b
}
