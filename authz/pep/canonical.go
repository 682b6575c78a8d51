package pep

import (
	"crypto/elliptic"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"strings"
)

// A JWS has more than one spelling that lenient parsers (jwx among them)
// read as the same signed token: padding after a part, the standard base64
// alphabet, non-zero unused bits in a part's last character, and for ECDSA
// the twin signature (r, n-s), which verifies as well as (r, s). None of
// them is the token the AS issued. The enforcement point accepts only the
// canonical compact serialization: each part unpadded base64url that
// re-encodes to itself, and an ECDSA signature of the algorithm's exact
// size with s at most n/2 (low S). Our AS normalises its ECDSA signatures
// to low S; an AS that does not would see about half of its ECDSA RPTs
// refused, so such an AS must sign RPTs with RS256, PS256 or EdDSA, whose
// signatures have one valid form.

// Errors of checkCanonical.
var (
	errNotCanonical = errors.New("the token is not in the canonical compact serialization")
	errHighS        = errors.New("the token's ECDSA signature is not in low-S form")
)

// looksLikeJWS reports whether token has the shape of a compact JWS: three
// dot-separated parts of which the first, however it is encoded, is a JSON
// object (the JOSE header). Other tokens are opaque to the enforcement
// point.
func looksLikeJWS(token string) bool {
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

// checkCanonical returns nil if token is not a JWS or is one in its
// canonical form, errNotCanonical or errHighS otherwise.
func checkCanonical(token string) error {
	if !looksLikeJWS(token) {
		return nil
	}
	parts := strings.Split(token, ".")
	decoded := make([][]byte, len(parts))
	for i, p := range parts {
		b, err := base64.RawURLEncoding.Strict().DecodeString(p)
		if err != nil || p == "" || base64.RawURLEncoding.EncodeToString(b) != p {
			return errNotCanonical
		}
		decoded[i] = b
	}
	var h struct {
		Alg string `json:"alg"`
	}
	if json.Unmarshal(decoded[0], &h) != nil {
		return errNotCanonical
	}
	var curve elliptic.Curve
	switch h.Alg {
	case "ES256":
		curve = elliptic.P256()
	case "ES384":
		curve = elliptic.P384()
	case "ES512":
		curve = elliptic.P521()
	default:
		return nil
	}
	n := curve.Params().N
	size := (curve.Params().BitSize + 7) / 8
	sig := decoded[2]
	if len(sig) != 2*size {
		return errNotCanonical
	}
	s := new(big.Int).SetBytes(sig[size:])
	if s.Cmp(new(big.Int).Rsh(n, 1)) > 0 {
		return errHighS
	}
	return nil
}
