// Package uripattern is the path patterns of caddy-uma: the resource
// templates of enforcement points and the uris of registered resources
// (which Keycloak's matchingUri also matches), one rule for both.
package uripattern

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
)

// Path patterns, shared by resource templates and by the uris of
// resources registered through the protection API:
//
//	/api/records/{owner}/{record}   {name} matches one path segment
//	/files/{owner}/{path...}        {name...} matches the rest (zero or more segments); last only
//	/photos/*/thumbnail             * matches one segment
//	/photos/*                       a final * matches the rest, as in Keycloak
//	https://api.example/photos/*    an absolute URI also requires the host
//
// Literal segments match exactly (case-sensitive). One trailing slash of
// the request path is ignored, so /a/b/ is /a/b.

// Kind is what one pattern segment matches.
type Kind uint8

const (
	Literal Kind = iota // the text exactly
	Param               // one segment, named
	Any                 // one segment, anonymous
	Rest                // the rest, named or anonymous
)

// Segment is one segment of a pattern.
type Segment struct {
	Kind Kind
	Text string // literal text or parameter name
}

// Pattern is a compiled path pattern.
type Pattern struct {
	Raw  string
	Host string // lower-cased host[:port] of an absolute pattern, else ""
	Segs []Segment
}

// Compile parses a path pattern.
func Compile(raw string) (Pattern, error) {
	p := Pattern{Raw: raw}
	path := raw
	if !strings.HasPrefix(raw, "/") {
		u, err := url.Parse(raw)
		if err != nil || !u.IsAbs() || u.Host == "" {
			return p, fmt.Errorf("path pattern %q must start with / or be an absolute URL", raw)
		}
		if u.RawQuery != "" || u.Fragment != "" {
			return p, fmt.Errorf("path pattern %q must not have a query or fragment", raw)
		}
		p.Host = strings.ToLower(u.Host)
		path = u.Path
		if path == "" {
			path = "/"
		}
	}
	if len(path) > 1 {
		path = strings.TrimSuffix(path, "/")
	}
	if path == "/" {
		return p, nil // the root: no segments
	}
	parts := strings.Split(path[1:], "/")
	seen := map[string]bool{}
	for i, part := range parts {
		last := i == len(parts)-1
		switch {
		case part == "":
			return p, fmt.Errorf("path pattern %q has an empty segment", raw)
		case part == "*" && last:
			p.Segs = append(p.Segs, Segment{Kind: Rest})
		case part == "*":
			p.Segs = append(p.Segs, Segment{Kind: Any})
		case strings.HasPrefix(part, "{") && strings.HasSuffix(part, "}"):
			name := part[1 : len(part)-1]
			kind := Param
			if rest, ok := strings.CutSuffix(name, "..."); ok {
				if !last {
					return p, fmt.Errorf("path pattern %q: {%s} must be the last segment", raw, name)
				}
				name, kind = rest, Rest
			}
			if !validParamName(name) {
				return p, fmt.Errorf("path pattern %q: %q is not a valid parameter name (letters, digits, _)", raw, name)
			}
			if seen[name] {
				return p, fmt.Errorf("path pattern %q names {%s} twice", raw, name)
			}
			seen[name] = true
			p.Segs = append(p.Segs, Segment{Kind: kind, Text: name})
		case strings.ContainsAny(part, "{}"):
			return p, fmt.Errorf("path pattern %q: a parameter must be a whole segment, as in /{name}/", raw)
		case strings.Contains(part, "*"):
			return p, fmt.Errorf("path pattern %q: * must be a whole segment", raw)
		default:
			p.Segs = append(p.Segs, Segment{Kind: Literal, Text: part})
		}
	}
	return p, nil
}

func validParamName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// ParamNames returns the names of the pattern's parameters.
func (p Pattern) ParamNames() []string {
	var out []string
	for _, s := range p.Segs {
		if (s.Kind == Param || s.Kind == Rest) && s.Text != "" {
			out = append(out, s.Text)
		}
	}
	return out
}

// Matches reports whether host and path (a clean request path, see
// SplitPath) match the pattern.
func (p Pattern) Matches(host string, segs []string) bool {
	_, ok := Match(p, host, segs, []struct{}(nil), nil)
	return ok
}

// Match reports whether host and path (a clean request path, see
// SplitPath) match p, appending the values it captures to params, each
// made by param (not called when nil).
func Match[P any](p Pattern, host string, segs []string, params []P, param func(name, value string) P) ([]P, bool) {
	if p.Host != "" && !SameHost(p.Host, host) {
		return params, false
	}
	for i, s := range p.Segs {
		if s.Kind == Rest {
			if s.Text != "" && param != nil {
				params = append(params, param(s.Text, strings.Join(segs[min(i, len(segs)):], "/")))
			}
			return params, true
		}
		if i >= len(segs) {
			return params, false
		}
		switch s.Kind {
		case Literal:
			if segs[i] != s.Text {
				return params, false
			}
		case Param:
			if param != nil {
				params = append(params, param(s.Text, segs[i]))
			}
		}
	}
	return params, len(segs) == len(p.Segs)
}

// SameHost reports whether the request's Host matches a pattern's host:
// with its port when the pattern has one, by name alone otherwise.
func SameHost(patternHost, reqHost string) bool {
	if _, _, err := net.SplitHostPort(patternHost); err == nil {
		return strings.EqualFold(patternHost, reqHost)
	}
	if h, _, err := net.SplitHostPort(reqHost); err == nil {
		reqHost = h
	}
	return strings.EqualFold(strings.Trim(patternHost, "[]"), strings.Trim(reqHost, "[]"))
}

// Specificity orders patterns that match one path: more literal segments
// first, then patterns without a rest wildcard.
func (p Pattern) Specificity() int {
	n := 0
	rest := false
	for _, s := range p.Segs {
		switch s.Kind {
		case Literal:
			n += 4
		case Param, Any:
			n++
		case Rest:
			rest = true
		}
	}
	n *= 2
	if !rest {
		n++
	}
	if p.Host != "" {
		n += 1 << 16
	}
	return n
}

// ErrAmbiguousPath reports a request path that an upstream might read
// differently from the enforcement point: dot segments, empty segments,
// encoded slashes or backslashes.
var ErrAmbiguousPath = errors.New("ambiguous request path")

// SplitPath returns the segments of a request's path, ignoring one trailing
// slash. It refuses paths that an upstream could resolve to another
// resource than the one the enforcement point decided on.
func SplitPath(u *url.URL) ([]string, error) {
	path := u.Path
	if path == "" {
		path = "/"
	}
	if path[0] != '/' {
		return nil, ErrAmbiguousPath
	}
	if raw := u.RawPath; raw != "" {
		l := strings.ToLower(raw)
		if strings.Contains(l, "%2f") || strings.Contains(l, "%5c") {
			return nil, ErrAmbiguousPath
		}
	}
	if strings.ContainsRune(path, '\\') || strings.ContainsRune(path, 0) {
		return nil, ErrAmbiguousPath
	}
	if len(path) > 1 {
		path = strings.TrimSuffix(path, "/")
	}
	if path == "/" {
		return nil, nil
	}
	segs := strings.Split(path[1:], "/")
	for _, s := range segs {
		if s == "" || s == "." || s == ".." {
			return nil, ErrAmbiguousPath
		}
	}
	return segs, nil
}

// Target is what Match matches: a request's host and path segments.
type Target struct {
	Host string
	Segs []string
}

// ParseTarget reads a path (/...) or an absolute http or https URI as a
// Target, refusing the ambiguous paths SplitPath refuses.
func ParseTarget(s string) (Target, error) {
	u, err := url.Parse(s)
	if err != nil {
		return Target{}, fmt.Errorf("target %q is not a URI", s)
	}
	if !strings.HasPrefix(s, "/") || strings.HasPrefix(s, "//") {
		if !u.IsAbs() || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
			return Target{}, fmt.Errorf("target %q must start with / or be an absolute http or https URI", s)
		}
	}
	segs, err := SplitPath(u)
	if err != nil {
		return Target{}, err
	}
	return Target{Host: u.Host, Segs: segs}, nil
}

// MatchTarget reports whether t matches the pattern.
func (p Pattern) MatchTarget(t Target) bool { return p.Matches(t.Host, t.Segs) }
