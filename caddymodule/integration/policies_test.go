//go:build unix

package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestValidateNamesBrokenRuleFiles runs `caddy validate` on a Caddyfile
// whose policies directory holds a rule file that does not compile: it
// fails, naming the file on disk with line and column.
func TestValidateNamesBrokenRuleFiles(t *testing.T) {
	skipShort(t)
	dir := t.TempDir()
	rules := filepath.Join(dir, "rules")
	for rel, src := range map[string]string{
		"alice/share.rego":  "package uma.share\n\nallow contains \"read\" if input.requesting_party.sub == \"bob\"\n",
		"alice/broken.rego": "package uma.share\n\n# notes\n\nallow contains \"read\" if {\n\tinput.requesting_party.sub ==\n}\n",
	} {
		p := filepath.Join(rules, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	caddyfile := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(caddyfile, []byte(`{
	uma {
		issuer http://127.0.0.1:9
		storage badger `+filepath.Join(dir, "uma")+`
		policies `+rules+`
	}
}

http://127.0.0.1:9 {
	uma_server
}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	validate := func() (string, error) {
		cmd := exec.Command(caddyBin, "validate", "--config", caddyfile, "--adapter", "caddyfile")
		cmd.Dir = dir
		cmd.Env = caddyEnv(dir)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := validate()
	if err == nil {
		t.Fatalf("caddy validate accepted a broken rule file:\n%s", out)
	}
	if want := filepath.Join(rules, "alice", "broken.rego") + ":7:1: rego_parse_error"; !strings.Contains(out, want) {
		t.Errorf("caddy validate output does not name %s:\n%s", want, out)
	}
	if err := os.WriteFile(filepath.Join(rules, "alice", "broken.rego"), []byte("package uma.share\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := validate(); err != nil || !strings.Contains(out, "Valid configuration") {
		t.Errorf("caddy validate after the fix: %v\n%s", err, out)
	}
}
