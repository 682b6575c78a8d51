package claimtoken

import (
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
// is never kept, and one is dropped once expired (package verified keeps
// them: at most 1,024, past which a new one drops one at random).

// verifiedToken is a token whose signature verified under key.
type verifiedToken struct {
	ik     *issuerKeys
	tok    compactToken
	key    jwk.Key
	parsed jwt.Token
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
