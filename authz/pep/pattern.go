package pep

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

// segmentKind is what one pattern segment matches.
type segmentKind uint8

const (
	segLiteral segmentKind = iota // the text exactly
	segParam                      // one segment, named
	segAny                        // one segment, anonymous
	segRest                       // the rest, named or anonymous
)

type segment struct {
	kind segmentKind
	text string // literal text or parameter name
}

// pattern is a compiled path pattern.
type pattern struct {
	raw  string
	host string // lower-cased host[:port] of an absolute pattern, else ""
	segs []segment
}

// Param is one named value captured from the request path.
type Param struct {
	Name  string
	Value string
}

// Params are the values a pattern captured, in pattern order.
type Params []Param

// Get returns the value of the named parameter.
func (ps Params) Get(name string) (string, bool) {
	for _, p := range ps {
		if p.Name == name {
			return p.Value, true
		}
	}
	return "", false
}

// compilePattern parses a path pattern.
func compilePattern(raw string) (pattern, error) {
	p := pattern{raw: raw}
	path := raw
	if !strings.HasPrefix(raw, "/") {
		u, err := url.Parse(raw)
		if err != nil || !u.IsAbs() || u.Host == "" {
			return p, fmt.Errorf("path pattern %q must start with / or be an absolute URL", raw)
		}
		if u.RawQuery != "" || u.Fragment != "" {
			return p, fmt.Errorf("path pattern %q must not have a query or fragment", raw)
		}
		p.host = strings.ToLower(u.Host)
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
			p.segs = append(p.segs, segment{kind: segRest})
		case part == "*":
			p.segs = append(p.segs, segment{kind: segAny})
		case strings.HasPrefix(part, "{") && strings.HasSuffix(part, "}"):
			name := part[1 : len(part)-1]
			kind := segParam
			if rest, ok := strings.CutSuffix(name, "..."); ok {
				if !last {
					return p, fmt.Errorf("path pattern %q: {%s} must be the last segment", raw, name)
				}
				name, kind = rest, segRest
			}
			if !validParamName(name) {
				return p, fmt.Errorf("path pattern %q: %q is not a valid parameter name (letters, digits, _)", raw, name)
			}
			if seen[name] {
				return p, fmt.Errorf("path pattern %q names {%s} twice", raw, name)
			}
			seen[name] = true
			p.segs = append(p.segs, segment{kind: kind, text: name})
		case strings.ContainsAny(part, "{}"):
			return p, fmt.Errorf("path pattern %q: a parameter must be a whole segment, as in /{name}/", raw)
		case strings.Contains(part, "*"):
			return p, fmt.Errorf("path pattern %q: * must be a whole segment", raw)
		default:
			p.segs = append(p.segs, segment{kind: segLiteral, text: part})
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

// paramNames returns the names of the pattern's parameters.
func (p pattern) paramNames() []string {
	var out []string
	for _, s := range p.segs {
		if (s.kind == segParam || s.kind == segRest) && s.text != "" {
			out = append(out, s.text)
		}
	}
	return out
}

// match reports whether path (a clean request path, see splitPath) and
// host match the pattern, appending the captured values to params.
func (p pattern) match(host string, segs []string, params Params) (Params, bool) {
	if p.host != "" && !sameHost(p.host, host) {
		return params, false
	}
	for i, s := range p.segs {
		if s.kind == segRest {
			if s.text != "" {
				params = append(params, Param{Name: s.text, Value: strings.Join(segs[min(i, len(segs)):], "/")})
			}
			return params, true
		}
		if i >= len(segs) {
			return params, false
		}
		switch s.kind {
		case segLiteral:
			if segs[i] != s.text {
				return params, false
			}
		case segParam:
			params = append(params, Param{Name: s.text, Value: segs[i]})
		}
	}
	return params, len(segs) == len(p.segs)
}

// sameHost reports whether the request's Host matches a pattern's host:
// with its port when the pattern has one, by name alone otherwise.
func sameHost(patternHost, reqHost string) bool {
	if _, _, err := net.SplitHostPort(patternHost); err == nil {
		return strings.EqualFold(patternHost, reqHost)
	}
	if h, _, err := net.SplitHostPort(reqHost); err == nil {
		reqHost = h
	}
	return strings.EqualFold(strings.Trim(patternHost, "[]"), strings.Trim(reqHost, "[]"))
}

// specificity orders patterns that match one path: more literal segments
// first, then patterns without a rest wildcard.
func (p pattern) specificity() int {
	n := 0
	rest := false
	for _, s := range p.segs {
		switch s.kind {
		case segLiteral:
			n += 4
		case segParam, segAny:
			n++
		case segRest:
			rest = true
		}
	}
	n *= 2
	if !rest {
		n++
	}
	if p.host != "" {
		n += 1 << 16
	}
	return n
}

// errAmbiguousPath reports a request path that an upstream might read
// differently from the enforcement point: dot segments, empty segments,
// encoded slashes or backslashes.
var errAmbiguousPath = errors.New("ambiguous request path")

// splitPath returns the segments of a request's path, ignoring one trailing
// slash. It refuses paths that an upstream could resolve to another
// resource than the one the enforcement point decided on.
func splitPath(u *url.URL) ([]string, error) {
	path := u.Path
	if path == "" {
		path = "/"
	}
	if path[0] != '/' {
		return nil, errAmbiguousPath
	}
	if raw := u.RawPath; raw != "" {
		l := strings.ToLower(raw)
		if strings.Contains(l, "%2f") || strings.Contains(l, "%5c") {
			return nil, errAmbiguousPath
		}
	}
	if strings.ContainsRune(path, '\\') || strings.ContainsRune(path, 0) {
		return nil, errAmbiguousPath
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
			return nil, errAmbiguousPath
		}
	}
	return segs, nil
}
