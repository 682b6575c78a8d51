package oauth

// MaxScopeLen is the longest scope accepted, in bytes.
const MaxScopeLen = 256

// ValidScope reports whether s is a scope-token of RFC 6749 section 3.3:
// 1 to MaxScopeLen characters of %x21 / %x23-5B / %x5D-7E (printable
// ASCII without space, '"' and '\'). The protection API, the Caddyfile
// and the enforcement point all check scopes with it.
func ValidScope(s string) bool {
	if s == "" || len(s) > MaxScopeLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x21 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}
