// Package jwsform holds the one accepted spelling of a compact JWS. A JWS
// has more than one spelling that lenient parsers (jwx among them) read as
// the same signed token: padding after a part, the standard base64
// alphabet, non-zero unused bits in a part's last character, and for ECDSA
// the twin signature (r, n-s), which verifies as well as (r, s). None of
// them is the token the AS issued. Check accepts only the canonical
// compact serialization: each part unpadded base64url that re-encodes to
// itself, and an ECDSA signature of the algorithm's exact size with s at
// most n/2 (low S). LowS puts a signature the AS makes into that form.
//
// An AS that does not sign ECDSA in low-S form sees about half of its
// ECDSA tokens refused; such an AS must sign RPTs with RS256, PS256 or
// EdDSA, whose signatures have one valid form.
package jwsform

import (
	"crypto/elliptic"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"strings"
)

// Errors of Check.
var (
	// ErrNotCanonical means the token is not in the canonical compact
	// serialization.
	ErrNotCanonical = errors.New("the token is not in the canonical compact serialization")
	// ErrHighS means the token's ECDSA signature is the high-S twin.
	ErrHighS = errors.New("the token's ECDSA signature is not in low-S form")
)

// LooksLikeJWS reports whether token has the shape of a compact JWS: three
// dot-separated parts of which the first, however it is encoded, is a JSON
// object (the JOSE header), with or without white space around them.
func LooksLikeJWS(token string) bool {
	// jwx reads a token with white space around it as the token.
	token = strings.TrimSpace(token)
	if strings.Count(token, ".") != 2 {
		return false
	}
	header, _, _ := strings.Cut(token, ".")
	header = strings.TrimRight(header, "=")
	header = strings.NewReplacer("+", "-", "/", "_").Replace(header)
	raw, err := base64.RawURLEncoding.DecodeString(header)
	if err != nil {
		return false
	}
	var obj map[string]json.RawMessage
	return json.Unmarshal(raw, &obj) == nil
}

// Check returns nil if token is not a JWS or is one in its canonical form,
// ErrNotCanonical or ErrHighS otherwise.
func Check(token string) error {
	if !LooksLikeJWS(token) {
		return nil
	}
	parts := strings.Split(token, ".")
	decoded := make([][]byte, len(parts))
	for i, p := range parts {
		b, err := base64.RawURLEncoding.Strict().DecodeString(p)
		if err != nil || p == "" || base64.RawURLEncoding.EncodeToString(b) != p {
			return ErrNotCanonical
		}
		decoded[i] = b
	}
	var h struct {
		Alg string `json:"alg"`
	}
	if json.Unmarshal(decoded[0], &h) != nil {
		return ErrNotCanonical
	}
	curve := ecdsaCurve(h.Alg)
	if curve == nil {
		return nil
	}
	size := (curve.Params().BitSize + 7) / 8
	sig := decoded[2]
	if len(sig) != 2*size {
		return ErrNotCanonical
	}
	if highS(curve, sig[size:]) {
		return ErrHighS
	}
	return nil
}

// LowS returns a compact JWS signed with ECDSA algorithm alg (ES256,
// ES384, ES512) with its signature in low-S form; other tokens are
// returned as they are.
func LowS(token, alg string) string {
	curve := ecdsaCurve(alg)
	if curve == nil {
		return token
	}
	i := strings.LastIndexByte(token, '.')
	if i < 0 {
		return token
	}
	sig, err := base64.RawURLEncoding.DecodeString(token[i+1:])
	if err != nil || len(sig)%2 != 0 || !highS(curve, sig[len(sig)/2:]) {
		return token
	}
	n := curve.Params().N
	s := new(big.Int).SetBytes(sig[len(sig)/2:])
	s.Sub(n, s).FillBytes(sig[len(sig)/2:])
	return token[:i+1] + base64.RawURLEncoding.EncodeToString(sig)
}

func ecdsaCurve(alg string) elliptic.Curve {
	switch alg {
	case "ES256":
		return elliptic.P256()
	case "ES384":
		return elliptic.P384()
	case "ES512":
		return elliptic.P521()
	}
	return nil
}

// highS reports whether the big-endian s is above n/2.
func highS(curve elliptic.Curve, s []byte) bool {
	n := curve.Params().N
	return new(big.Int).SetBytes(s).Cmp(new(big.Int).Rsh(n, 1)) > 0
}
