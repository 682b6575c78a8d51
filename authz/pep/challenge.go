package pep

import (
	"net/http"
	"strings"
)

// WarningUnreachable is the Warning header value of UMA Grant section
// 3.2.2, sent with a 403 when no permission ticket could be had.
const WarningUnreachable = `199 - "UMA Authorization Server Unreachable"`

// maxTokenLen bounds the bearer tokens an enforcement point looks at.
const maxTokenLen = 16 << 10

// BearerToken returns the token of an RFC 6750 Authorization request
// header ("Bearer <token>", scheme case-insensitive). Tokens in the query
// or the body are not looked at. ok is false when there is none, or when
// the header is not a single well-formed b64token.
func BearerToken(r *http.Request) (string, bool) {
	vals := r.Header.Values("Authorization")
	if len(vals) != 1 {
		return "", false
	}
	scheme, tok, ok := strings.Cut(vals[0], " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimLeft(tok, " ")
	if tok == "" || len(tok) > maxTokenLen || !isB64Token(tok) {
		return "", false
	}
	return tok, true
}

// isB64Token reports whether s is an RFC 6750 b64token:
// 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=".
func isB64Token(s string) bool {
	i := 0
	for i < len(s) {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/' {
			i++
			continue
		}
		break
	}
	if i == 0 {
		return false
	}
	for ; i < len(s); i++ {
		if s[i] != '=' {
			return false
		}
	}
	return true
}

// Challenge returns the WWW-Authenticate value of a UMA challenge (UMA
// Grant section 3.2.1): UMA realm="...", as_uri="...", ticket="...". The
// realm is left out when empty. Values are RFC 7230 quoted-strings.
func Challenge(realm, asURI, ticket string) string {
	var b strings.Builder
	b.Grow(len(realm) + len(asURI) + len(ticket) + 40)
	b.WriteString("UMA ")
	if realm != "" {
		b.WriteString("realm=")
		writeQuoted(&b, realm)
		b.WriteString(", ")
	}
	b.WriteString("as_uri=")
	writeQuoted(&b, asURI)
	b.WriteString(", ticket=")
	writeQuoted(&b, ticket)
	return b.String()
}

// writeQuoted writes s as a quoted-string: " and \ are escaped with a
// backslash, and characters a quoted-string cannot hold (controls other
// than tab) are dropped.
func writeQuoted(b *strings.Builder, s string) {
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c == '\t' || (c >= 0x20 && c != 0x7f):
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
}
