package pep

import (
	"net/http"
	"net/url"
	"path"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// FuzzPathMatching maps requests with any method and path through an
// Enforcer whose one resource has any path pattern: a template (Decide
// registers it with the captured parameters in its name), or, with
// registered, the uris of a resource registered through the protection
// API. Decide never panics, refuses ambiguous paths and only those, and
// for a pattern starting with / matches exactly what a regular expression
// built from the pattern's documented rules matches, capturing the same
// values. Seeds: testdata/fuzz/FuzzPathMatching.
func FuzzPathMatching(f *testing.F) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, registered bool, pattern, method, target string) {
		if _, err := New(Config{AS: newFakeAS(), Templates: []Template{{Path: pattern, Owner: "alice"}}}); err != nil {
			return // not a pattern
		}
		u, err := url.ParseRequestURI(target)
		if err != nil || !validMethod(method) {
			return // net/http delivers no such request
		}
		host := u.Host
		if host == "" {
			host = "api.example"
		}
		r := &http.Request{Method: method, URL: u, Host: host, Header: http.Header{}, RemoteAddr: "192.0.2.1:1234"}
		as := newFakeAS()
		oracle := compileOracle(pattern)
		cfg := Config{AS: as, Now: func() time.Time { return now }}
		if registered {
			cfg.RegisteredURIs = true
			as.registered = []Resource{{ID: "registered", Owner: "alice", Scopes: []string{"read", "write", "delete"}, URIs: []string{pattern}}}
		} else {
			cfg.Templates = []Template{{Path: pattern, Owner: "alice", Name: oracle.name}}
		}
		e, err := New(cfg)
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		d := e.Decide(r)

		clean, ambiguous := cleanPath(u)
		if ambiguous != (d.Reason == ReasonAmbiguousPath) {
			t.Fatalf("path %q (raw %q): reason %s, ambiguous %v", u.Path, u.RawPath, d.Reason, ambiguous)
		}
		if ambiguous {
			return
		}
		matched := d.Reason != ReasonUnmatched
		if matched && d.Reason != ReasonMethodNotMapped && (d.Status != http.StatusUnauthorized || d.ResourceID == "") {
			t.Fatalf("%s %s mapped to %q: %+v", method, target, d.ResourceID, d)
		}
		if _, mapped := DefaultMethods()[method]; matched && mapped == (d.Reason == ReasonMethodNotMapped) {
			t.Fatalf("method %q: reason %s", method, d.Reason)
		}
		if oracle.re == nil || !utf8.ValidString(clean) {
			return // absolute patterns: no oracle
		}
		values := oracle.re.FindStringSubmatch(clean)
		if (values != nil) != matched {
			t.Fatalf("pattern %q, path %q: matched %v, the oracle %q says %v", pattern, clean, matched, oracle.re, values != nil)
		}
		if matched && !registered && d.Reason != ReasonMethodNotMapped {
			if got, want := as.resources[d.ResourceID].Name, oracle.captured(values); got != want {
				t.Fatalf("pattern %q, path %q: captured %q, the oracle %q", pattern, clean, got, want)
			}
		}
	})
}

// validMethod reports whether method is an HTTP token, as net/http requires.
func validMethod(method string) bool {
	return method != "" && !strings.ContainsFunc(method, func(r rune) bool {
		return r <= ' ' || r >= 0x7f || strings.ContainsRune(`"(),/:;<=>?@[\]{}`, r)
	})
}

// cleanPath returns a request's path without one trailing slash, and
// whether an upstream could read the path as another one: it is not
// absolute, path.Clean would change it, or it has a backslash, a NUL or an
// encoded slash or backslash.
func cleanPath(u *url.URL) (string, bool) {
	p := u.Path
	if p == "" {
		p = "/"
	}
	raw := strings.ToLower(u.RawPath)
	if p[0] != '/' || strings.ContainsAny(p, "\\\x00") || strings.Contains(raw, "%2f") || strings.Contains(raw, "%5c") {
		return p, true
	}
	if len(p) > 1 {
		p = strings.TrimSuffix(p, "/")
	}
	return p, path.Clean(p) != p
}

// oracle is a path pattern as a regular expression, written from the
// documentation of patterns (pattern.go), and the template name that
// lists its parameters.
type oracle struct {
	re   *regexp.Regexp // nil for an absolute pattern
	name string
}

// nameSep separates the captured values in a template's name.
const nameSep = "\x1f"

func compileOracle(pattern string) oracle {
	if !strings.HasPrefix(pattern, "/") || !utf8.ValidString(pattern) {
		return oracle{}
	}
	p := pattern
	if len(p) > 1 {
		p = strings.TrimSuffix(p, "/")
	}
	var segs []string
	if p != "/" {
		segs = strings.Split(p[1:], "/")
	}
	expr, name := "^", "params"
	for i, s := range segs {
		last := i == len(segs)-1
		param, isParam := strings.CutPrefix(s, "{")
		param, _ = strings.CutSuffix(param, "}")
		rest, isRest := strings.CutSuffix(param, "...")
		switch {
		case last && s == "*": // the rest, zero or more segments
			expr += "(?:/.*)?"
		case last && isParam && isRest:
			expr += "(?:/(.*))?"
			name += nameSep + "{" + rest + "}"
		case s == "*": // one segment
			expr += "/[^/]+"
		case isParam:
			expr += "/([^/]+)"
			name += nameSep + "{" + param + "}"
		default:
			expr += "/" + regexp.QuoteMeta(s)
		}
	}
	if len(segs) == 0 {
		expr += "/"
	}
	return oracle{re: regexp.MustCompile(expr + "$"), name: name}
}

// captured is the template name Decide registers for a match with values
// (FindStringSubmatch).
func (o oracle) captured(values []string) string {
	return "params" + strings.Join(append([]string{""}, values[1:]...), nameSep)
}
