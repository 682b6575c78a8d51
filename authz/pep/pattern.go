package pep

import (
	"net/url"

	"github.com/caddy-uma/caddy-uma/authz/uripattern"
)

// Path patterns, shared by resource templates and by the uris of
// resources registered through the protection API, are package
// uripattern's (the AS matches Keycloak's matchingUri with them too):
//
//	/api/records/{owner}/{record}   {name} matches one path segment
//	/files/{owner}/{path...}        {name...} matches the rest (zero or more segments); last only
//	/photos/*/thumbnail             * matches one segment
//	/photos/*                       a final * matches the rest, as in Keycloak
//	https://api.example/photos/*    an absolute URI also requires the host

// Segment kinds of a pattern.
const (
	segLiteral = uripattern.Literal
	segParam   = uripattern.Param
	segAny     = uripattern.Any
	segRest    = uripattern.Rest
)

type segment = uripattern.Segment

// pattern is a compiled path pattern.
type pattern struct{ uripattern.Pattern }

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

func newParam(name, value string) Param { return Param{Name: name, Value: value} }

// compilePattern parses a path pattern.
func compilePattern(raw string) (pattern, error) {
	p, err := uripattern.Compile(raw)
	return pattern{p}, err
}

// match reports whether path (a clean request path, see splitPath) and
// host match the pattern, appending the captured values to params.
func (p pattern) match(host string, segs []string, params Params) (Params, bool) {
	return uripattern.Match(p.Pattern, host, segs, params, newParam)
}

// specificity orders patterns that match one path (uripattern's
// Specificity).
func (p pattern) specificity() int { return p.Specificity() }

// errAmbiguousPath reports a request path that an upstream might read
// differently from the enforcement point.
var errAmbiguousPath = uripattern.ErrAmbiguousPath

// splitPath returns the segments of a request's path (uripattern's
// SplitPath).
func splitPath(u *url.URL) ([]string, error) { return uripattern.SplitPath(u) }
