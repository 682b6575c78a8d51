package caddymodule

import (
	"encoding/json"
	"fmt"
	"runtime/debug"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// FuzzCaddyfile parses any Caddyfile text with our directives' parsers:
// the uma global option, uma_server, uma_protect and uma_demo_idp, each
// given the tokens of src; then, when src is one or more of our directives
// with balanced braces, a whole Caddyfile through the Caddyfile adapter:
// src as the global options, or as a site's directives. No panic, no hang,
// and what adapts is JSON. Seeds: testdata/fuzz/FuzzCaddyfile.
func FuzzCaddyfile(f *testing.F) {
	const limit = 10 * time.Second
	f.Fuzz(func(t *testing.T, src string) {
		tokens, err := caddyfile.Tokenize([]byte(src), "Caddyfile")
		if err != nil {
			return // Caddy's lexer refuses it before any directive sees it
		}
		hang := time.AfterFunc(limit, func() { debug.SetTraceback("all"); panic(fmt.Sprintf("Caddyfile: no answer within %s", limit)) })
		defer hang.Stop()
		_, _ = parseGlobalOption(caddyfile.NewDispenser(tokens), nil)
		_ = new(Handler).UnmarshalCaddyfile(caddyfile.NewDispenser(tokens))
		_ = new(Protect).UnmarshalCaddyfile(caddyfile.NewDispenser(tokens))
		_ = new(DemoIdP).UnmarshalCaddyfile(caddyfile.NewDispenser(tokens))

		var doc string
		switch {
		case strings.Contains(src, "import"):
			return // imports read files
		case onlyDirectives(tokens, "uma"):
			doc = "{\n" + src + "\n}\n"
		case onlyDirectives(tokens, "uma_server", "uma_protect", "uma_demo_idp"):
			doc = "example.com {\n" + src + "\n}\n"
		default:
			return // other directives are Caddy's
		}
		out, _, err := adaptCaddyfile(doc)
		if err == nil && !json.Valid(out) {
			t.Fatalf("adapted to invalid JSON: %s", out)
		}
	})
}

// onlyDirectives reports whether tokens are lines of the named directives
// with their blocks, braces balanced: nothing outside them.
func onlyDirectives(tokens []caddyfile.Token, names ...string) bool {
	depth, line := 0, -1
	for _, tok := range tokens {
		first := tok.Line != line
		line = tok.Line
		switch {
		case tok.Text == "}":
			depth--
			if depth < 0 {
				return false
			}
		case depth == 0 && first && !slices.Contains(names, tok.Text):
			return false
		case tok.Text == "{":
			depth++
		}
	}
	return depth == 0 && len(tokens) > 0
}
