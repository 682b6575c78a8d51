package peptest

import (
	"crypto/elliptic"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"strings"
)

// Malleated returns copies of the compact JWS token that a lenient parser
// reads as the same token with a valid signature, by name: padding after
// the signature, the signature in standard base64 (padded, and unpadded when
// that differs), non-zero trailing bits in the signature's last character,
// and for ES256, ES384 and ES512 the twin signature (r, n-s), which is as
// valid as (r, s). A token that is not a compact JWS gets none.
func Malleated(token string) map[string]string {
	parts, sig, ok := splitJWS(token)
	if !ok {
		return nil
	}
	signed := parts[0] + "." + parts[1] + "."
	out := map[string]string{
		"padding":                   token + "==",
		"standard base64 signature": signed + base64.StdEncoding.EncodeToString(sig),
		"non-zero trailing bits":    signed + trailingBits(parts[2]),
	}
	if raw := base64.RawStdEncoding.EncodeToString(sig); raw != parts[2] {
		out["standard alphabet signature"] = signed + raw
	}
	if twin, ok := ecdsaTwin(parts[0], sig); ok {
		out["ECDSA twin (r, n-s)"] = signed + base64.RawURLEncoding.EncodeToString(twin)
	}
	return out
}

// splitJWS splits a compact JWS into its three parts and decodes its
// signature.
func splitJWS(token string) ([]string, []byte, bool) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil, nil, false
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	return parts, sig, err == nil
}

// trailingBits sets the unused low bits of the last character of an
// unpadded base64url string, which a lenient decoder ignores.
func trailingBits(s string) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	unused := map[int]int{2: 4, 3: 2}[len(s)%4]
	if unused == 0 {
		return s // no unused bits: a whole number of 3-byte groups
	}
	i := strings.IndexByte(alphabet, s[len(s)-1])
	return s[:len(s)-1] + string(alphabet[i|((1<<unused)-1)])
}

// curveOrder returns the group order of the ECDSA algorithm named in the
// JOSE header, or nil.
func curveOrder(header string) *big.Int {
	raw, err := base64.RawURLEncoding.DecodeString(header)
	if err != nil {
		return nil
	}
	var h struct {
		Alg string `json:"alg"`
	}
	if json.Unmarshal(raw, &h) != nil {
		return nil
	}
	switch h.Alg {
	case "ES256":
		return elliptic.P256().Params().N
	case "ES384":
		return elliptic.P384().Params().N
	case "ES512":
		return elliptic.P521().Params().N
	}
	return nil
}

// ecdsaTwin returns the r||s signature sig with s replaced by n-s.
func ecdsaTwin(header string, sig []byte) ([]byte, bool) {
	n := curveOrder(header)
	if n == nil || len(sig)%2 != 0 {
		return nil, false
	}
	size := len(sig) / 2
	s := new(big.Int).SetBytes(sig[size:])
	twin := make([]byte, len(sig))
	copy(twin, sig[:size])
	new(big.Int).Sub(n, s).FillBytes(twin[size:])
	return twin, true
}
