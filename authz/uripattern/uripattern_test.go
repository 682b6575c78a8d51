package uripattern

import (
	"errors"
	"testing"
)

func TestParseTargetAndMatch(t *testing.T) {
	tests := []struct {
		pattern, target string
		want            bool
	}{
		{"/photos/{id}", "/photos/7", true},
		{"/photos/{id}", "/photos/7/", true},
		{"/photos/{id}", "/photos/7/8", false},
		{"/photos/*", "/photos/7/8", true},
		{"/photos/*/thumb", "/photos/7/thumb", true},
		{"/files/{path...}", "/files", true},
		{"/a", "/A", false},
		{"https://api.example/p/{x}", "https://API.example/p/1", true},
		{"https://api.example/p/{x}", "/p/1", false},
		{"/p/{x}", "https://other.example/p/1", true},
		{"https://api.example:8443/p", "https://api.example/p", false},
	}
	for _, tt := range tests {
		p, err := Compile(tt.pattern)
		if err != nil {
			t.Fatalf("Compile(%q): %v", tt.pattern, err)
		}
		target, err := ParseTarget(tt.target)
		if err != nil {
			t.Fatalf("ParseTarget(%q): %v", tt.target, err)
		}
		if got := p.MatchTarget(target); got != tt.want {
			t.Errorf("%s matches %s = %v, want %v", tt.pattern, tt.target, got, tt.want)
		}
	}
}

func TestParseTargetRefuses(t *testing.T) {
	for _, s := range []string{"photos/1", "//host/p", "javascript:alert(1)", "ftp://h/p", "/a/../b", "/a//b", "/a%2fb", "/a\\b", "%zz"} {
		if _, err := ParseTarget(s); err == nil {
			t.Errorf("ParseTarget(%q) succeeded", s)
		}
	}
	if _, err := ParseTarget("/a/./b"); !errors.Is(err, ErrAmbiguousPath) {
		t.Errorf("dot segment: %v", err)
	}
}

func TestMatchCaptures(t *testing.T) {
	p, err := Compile("/r/{owner}/{rest...}")
	if err != nil {
		t.Fatal(err)
	}
	type kv struct{ k, v string }
	got, ok := Match(p, "", []string{"r", "alice", "a", "b"}, nil, func(k, v string) kv { return kv{k, v} })
	if !ok || len(got) != 2 || got[0] != (kv{"owner", "alice"}) || got[1] != (kv{"rest", "a/b"}) {
		t.Fatalf("Match = %v, %v", got, ok)
	}
	if !p.Matches("", []string{"r", "bob"}) || p.Matches("", []string{"s", "bob"}) {
		t.Fatal("Matches")
	}
}
