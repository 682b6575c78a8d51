package authz

import (
	"net/url"
	"unicode/utf8"
)

// The text rule: what the AS stores and later shows (resource names,
// types and descriptions, owners, subjects, e-mail addresses) must be
// valid UTF-8 without control characters (C0, DEL, C1; a description may
// hold line breaks and tabs) and without the bidirectional formatting
// characters that make text show as something else (U+061C, U+200E,
// U+200F, U+202A-U+202E, U+2066-U+2069).

// validText reports whether s follows the text rule; multiline allows
// line feeds, carriage returns and tabs.
func validText(s string, multiline bool) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		switch {
		case r == '\n' || r == '\r' || r == '\t':
			if !multiline {
				return false
			}
		case r < 0x20 || r >= 0x7f && r < 0xa0:
			return false
		case r == 0x061c || r == 0x200e || r == 0x200f || r >= 0x202a && r <= 0x202e || r >= 0x2066 && r <= 0x2069:
			return false
		}
	}
	return true
}

// ValidSubject reports whether s is usable as a subject: an owner, a
// requesting party, a user's name. It is a component of store keys, and
// shown on pages.
func ValidSubject(s string) bool {
	return s != "" && len(s) <= MaxSubjectLen && validText(s, false)
}

// MaxSubjectLen is the longest subject (owner, requesting party, user
// name) accepted, in bytes.
const MaxSubjectLen = 256

// webURI reports whether raw is an absolute http or https URI: what a
// resource's icon_uri may be (never javascript:, data: and the like).
func webURI(raw string) bool {
	u, err := url.Parse(raw)
	return err == nil && (u.Scheme == "https" || u.Scheme == "http") && u.Host != "" && validText(raw, false)
}

// resourceURI reports whether raw may be one of a resource's uris: a path
// ("/labs/alice/*", as the enforcement point matches them) or an absolute
// http or https URI.
func resourceURI(raw string) bool {
	if len(raw) > 0 && raw[0] == '/' {
		return validText(raw, false)
	}
	return webURI(raw)
}
