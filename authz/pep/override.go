package pep

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// MethodOverride says what an Enforcer does with the ways a client can
// ask an upstream to treat a request as another method: the headers
// X-HTTP-Method-Override, X-HTTP-Method and X-Method-Override (also spelled
// with underscores, as CGI-style servers read them) and the query
// parameter _method. An upstream that honours them would run, say, a
// DELETE for a GET that a read-only RPT was enough for.
type MethodOverride string

// Handling of method overrides.
const (
	// MethodOverrideStrip (the default) removes them before the protected
	// handler; the request's own method decides the scopes.
	MethodOverrideStrip MethodOverride = "strip"
	// MethodOverrideKeep passes them on, and the overriding method decides
	// the scopes. Overrides that name different methods are refused with
	// 400 (ReasonAmbiguousMethod).
	MethodOverrideKeep MethodOverride = "keep"
)

// methodOverrideParam is the query parameter of Rails, Laravel, Symfony and
// others.
const methodOverrideParam = "_method"

// errAmbiguousMethod is the Err of a request whose overrides disagree.
var errAmbiguousMethod = errors.New("method overrides name different methods")

// isMethodOverrideHeader reports whether the header field name is one of
// the method override headers, in any case, with - or _.
func isMethodOverrideHeader(name string) bool {
	switch strings.ReplaceAll(strings.ToLower(name), "_", "-") {
	case "x-http-method-override", "x-http-method", "x-method-override":
		return true
	}
	return false
}

// queryParts splits a raw query at & and ; (some upstreams take either as
// the separator), returning each part with the separator before it.
func queryParts(raw string) []string {
	var parts []string
	start := 0
	for i := 0; i < len(raw); i++ {
		if raw[i] == '&' || raw[i] == ';' {
			parts = append(parts, raw[start:i])
			start = i
		}
	}
	return append(parts, raw[start:])
}

// overrideParam returns the value of a raw query part (with or without its
// leading separator) that sets _method, in any case, however encoded.
func overrideParam(part string) (string, bool) {
	part = strings.TrimLeft(part, "&;")
	k, v, _ := strings.Cut(part, "=")
	key, err := url.QueryUnescape(k)
	if err != nil || !strings.EqualFold(key, methodOverrideParam) {
		return "", false
	}
	val, err := url.QueryUnescape(v)
	if err != nil {
		val = v
	}
	return val, true
}

// effectiveMethod returns the method a request asks for: its own, or with
// MethodOverrideKeep the one its overrides name (upper-cased). Overrides
// that disagree are an error.
func (e *Enforcer) effectiveMethod(r *http.Request) (string, error) {
	if e.override != MethodOverrideKeep {
		return r.Method, nil
	}
	method := ""
	add := func(v string) error {
		v = strings.ToUpper(strings.TrimSpace(v))
		if v == "" {
			return nil
		}
		if method != "" && method != v {
			return fmt.Errorf("%w: %s and %s", errAmbiguousMethod, method, v)
		}
		method = v
		return nil
	}
	for name, vals := range r.Header {
		if !isMethodOverrideHeader(name) {
			continue
		}
		for _, v := range vals {
			if err := add(v); err != nil {
				return "", err
			}
		}
	}
	if r.URL.RawQuery != "" {
		for _, part := range queryParts(r.URL.RawQuery) {
			if v, ok := overrideParam(part); ok {
				if err := add(v); err != nil {
					return "", err
				}
			}
		}
	}
	if method == "" {
		return r.Method, nil
	}
	return method, nil
}

// stripMethodOverride removes the override headers and query parameters
// of r (and updates RequestURI, as Caddy's rewrite does).
func stripMethodOverride(r *http.Request) {
	for name := range r.Header {
		if isMethodOverrideHeader(name) {
			delete(r.Header, name)
		}
	}
	if r.URL.RawQuery == "" {
		return
	}
	parts := queryParts(r.URL.RawQuery)
	var b strings.Builder
	removed := false
	for _, part := range parts {
		if _, ok := overrideParam(part); ok {
			removed = true
			continue
		}
		if b.Len() == 0 {
			part = strings.TrimLeft(part, "&;")
		}
		b.WriteString(part)
	}
	if !removed {
		return
	}
	r.URL.RawQuery = b.String()
	if r.RequestURI != "" {
		r.RequestURI = r.URL.RequestURI()
	}
}

// PrepareForward removes from an allowed request what the protected
// handler must not see: the Authorization header with StripAuthorization,
// and the method overrides unless MethodOverride is MethodOverrideKeep (in
// Disabled mode only the Authorization header). Handler calls it; callers
// of Decide that pass requests on themselves should too.
func (e *Enforcer) PrepareForward(r *http.Request) {
	if e.strip {
		r.Header.Del("Authorization")
	}
	if e.mode != Disabled && e.override != MethodOverrideKeep {
		stripMethodOverride(r)
	}
}
