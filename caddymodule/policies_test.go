package caddymodule

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
)

// TestValidateCompilesPolicies shows that `caddy validate` (and so a load
// or a reload) compiles the policies directory and names every file that
// does not compile, by its path, line and column.
func TestValidateCompilesPolicies(t *testing.T) {
	dir := t.TempDir()
	write := func(rel, src string) {
		t.Helper()
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("alice/share.rego", "package uma.share\n\nallow contains \"read\" if input.requesting_party.sub == \"bob\"\n")
	write("alice/broken.rego", "package uma.share\n\n# notes\n\nallow contains \"read\" if {\n\tinput.requesting_party.sub ==\n}\n")
	caddyfile := `{
	uma {
		issuer https://as.example/uma
		policies ` + dir + `
	}
}

https://as.example {
	uma_server
}
`
	tests := []struct {
		name string
		want []string // substrings of the error; none: valid
	}{
		{"a file does not compile", []string{
			"policies " + dir + ": fix these rule files, or move them out of the directory",
			filepath.Join(dir, "alice", "broken.rego") + ":7:1: rego_parse_error",
		}},
		{"fixed", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.want == nil {
				write("alice/broken.rego", "package uma.share\n")
			}
			cfg, _ := adapt(t, caddyfile)
			err := caddy.Validate(&cfg)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("valid directory: %v", err)
				}
				return
			}
			for _, w := range tt.want {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("error %v, want it to contain %q", err, w)
				}
			}
		})
	}
}
