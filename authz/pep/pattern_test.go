package pep

import (
	"errors"
	"net/url"
	"slices"
	"strings"
	"testing"
)

func TestPatternMatch(t *testing.T) {
	tests := map[string]struct {
		pattern string
		host    string
		path    string
		match   bool
		params  Params
	}{
		"literal":              {pattern: "/api/records", path: "/api/records", match: true},
		"literal, trailing /":  {pattern: "/api/records", path: "/api/records/", match: true},
		"pattern trailing /":   {pattern: "/api/records/", path: "/api/records", match: true},
		"literal mismatch":     {pattern: "/api/records", path: "/api/Records"},
		"longer path":          {pattern: "/api/records", path: "/api/records/1"},
		"shorter path":         {pattern: "/api/records/{id}", path: "/api/records"},
		"params":               {pattern: "/api/records/{owner}/{id}", path: "/api/records/alice/42", match: true, params: Params{{"owner", "alice"}, {"id", "42"}}},
		"decoded value":        {pattern: "/u/{name}", path: "/u/J%C3%B6rg", match: true, params: Params{{"name", "Jörg"}}},
		"rest":                 {pattern: "/files/{owner}/{path...}", path: "/files/bob/a/b/c.txt", match: true, params: Params{{"owner", "bob"}, {"path", "a/b/c.txt"}}},
		"rest, empty":          {pattern: "/files/{owner}/{path...}", path: "/files/bob", match: true, params: Params{{"owner", "bob"}, {"path", ""}}},
		"anonymous segment":    {pattern: "/photos/*/thumb", path: "/photos/7/thumb", match: true},
		"anonymous, too short": {pattern: "/photos/*/thumb", path: "/photos/thumb"},
		"final star is rest":   {pattern: "/photos/*", path: "/photos/1/2", match: true},
		"final star, zero":     {pattern: "/photos/*", path: "/photos", match: true},
		"root":                 {pattern: "/", path: "/", match: true},
		"root is not a prefix": {pattern: "/", path: "/x"},
		"absolute, same host":  {pattern: "https://api.example/p/{id}", host: "API.example:443", path: "/p/1", match: true, params: Params{{"id", "1"}}},
		"absolute, other host": {pattern: "https://api.example/p/{id}", host: "evil.example", path: "/p/1"},
		"absolute with port":   {pattern: "http://localhost:8081/p", host: "localhost:8081", path: "/p", match: true},
		"absolute, wrong port": {pattern: "http://localhost:8081/p", host: "localhost:9000", path: "/p"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			p, err := compilePattern(tt.pattern)
			if err != nil {
				t.Fatal(err)
			}
			u, err := url.Parse(tt.path)
			if err != nil {
				t.Fatal(err)
			}
			segs, err := splitPath(u)
			if err != nil {
				t.Fatal(err)
			}
			params, ok := p.match(tt.host, segs, nil)
			if ok != tt.match {
				t.Fatalf("match = %v, want %v", ok, tt.match)
			}
			if ok && !slices.Equal(params, tt.params) {
				t.Errorf("params = %v, want %v", params, tt.params)
			}
		})
	}
}

func TestCompilePatternErrors(t *testing.T) {
	tests := map[string]string{
		"relative":           "api/records",
		"empty segment":      "/api//records",
		"rest not last":      "/a/{rest...}/b",
		"partial parameter":  "/a/x{id}",
		"duplicate param":    "/a/{id}/{id}",
		"bad name":           "/a/{my-id}",
		"empty name":         "/a/{}",
		"query":              "https://h.example/a?x=1",
		"not a URL":          "ftp//x",
		"absolute, no host":  "https:///a",
		"unbalanced braces":  "/a/{id",
		"stray closing":      "/a/id}",
		"rest with no name":  "/a/{...}",
		"star inside a word": "/a/*b",
	}
	for name, raw := range tests {
		t.Run(name, func(t *testing.T) {
			if _, err := compilePattern(raw); err == nil {
				t.Errorf("compilePattern(%q) succeeded, want an error", raw)
			}
		})
	}
}

func TestSplitPathRefusesAmbiguousPaths(t *testing.T) {
	for _, raw := range []string{
		"/api/records/alice/../bob/1",
		"/api/records/./alice",
		"/api//records",
		"/api/records/alice%2Fbob",
		"/api/records/alice%2fbob",
		"/api/records/alice%5Cbob",
		"/api/records/alice\\bob",
		"/api/records/%2e%2e/bob",
	} {
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := splitPath(u); !errors.Is(err, errAmbiguousPath) {
			t.Errorf("splitPath(%q) = %v, want errAmbiguousPath", raw, err)
		}
	}
	for raw, want := range map[string]string{"/": "", "": "", "/a/b/": "a|b", "/a/b": "a|b", "/a%20b": "a b"} {
		u, _ := url.Parse(raw)
		segs, err := splitPath(u)
		if err != nil || strings.Join(segs, "|") != want {
			t.Errorf("splitPath(%q) = %q, %v; want %q", raw, segs, err, want)
		}
	}
}

func TestSpecificity(t *testing.T) {
	// Most specific first.
	order := []string{
		"https://api.example/photos/*",
		"/photos/album/{id}",
		"/photos/album/*",
		"/photos/{id}",
		"/photos/*",
		"/*",
	}
	for i := 0; i+1 < len(order); i++ {
		a, _ := compilePattern(order[i])
		b, _ := compilePattern(order[i+1])
		if a.specificity() <= b.specificity() {
			t.Errorf("%s (%d) should be more specific than %s (%d)", order[i], a.specificity(), order[i+1], b.specificity())
		}
	}
}

func TestExpandBraces(t *testing.T) {
	lookup := func(k string) (string, bool) {
		switch k {
		case "owner":
			return "alice", true
		case "evil":
			return "{owner}", true // a value is never expanded again
		}
		return "", false
	}
	tests := map[string]string{
		"plain":            "plain",
		"{owner}":          "alice",
		"x-{owner}-y":      "x-alice-y",
		"{owner}{owner}":   "alicealice",
		"{unknown}":        "",
		"{evil}":           "{owner}",
		"open { only":      "open { only",
		"{owner} and {":    "alice and {",
		"closing } only":   "closing } only",
		"{owner}/{nope}/z": "alice//z",
	}
	for in, want := range tests {
		if got := expandBraces(in, lookup); got != want {
			t.Errorf("expandBraces(%q) = %q, want %q", in, got, want)
		}
	}
}
