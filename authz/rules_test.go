package authz

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestPolicyDirectoryIsWatched shows that rules in the operator directory
// apply, that system rules take away, and that changes apply without a
// restart.
func TestPolicyDirectoryIsWatched(t *testing.T) {
	dir := t.TempDir()
	write := func(rel, src string) {
		t.Helper()
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		tmp := p + ".tmp"
		if err := os.WriteFile(tmp, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, p); err != nil {
			t.Fatal(err)
		}
	}
	write("carol/share.rego", "package uma.share\n\nallow contains \"read\" if input.requesting_party.sub == \"dan\"\n")
	f := newGrantFixture(t, func(c *Config) {
		c.PolicyDir = dir
		c.PolicyPollInterval = 50 * time.Millisecond
	})
	carolPAT, _ := f.srv.IssuePAT(t.Context(), "rs-a", "carol")
	res := f.register(carolPAT, `{"name":"diary","resource_scopes":["read","write"]}`)
	ticket := func() string {
		r := f.do("POST", PathPermission, `{"resource_id":"`+res+`","resource_scopes":["read"]}`, "Authorization", bearer(carolPAT))
		return r.json(t)["ticket"].(string)
	}
	dan := f.idToken(map[string]any{"sub": "dan", "email": "dan@example.com"})
	eve := f.idToken(map[string]any{"sub": "eve", "email": "eve@example.com"})

	if r := f.grant(withClaims(ticket(), dan)); r.status != 200 {
		t.Fatalf("directory rule: %d %s", r.status, r.body)
	}
	expectUMAError(t, f.grant(withClaims(ticket(), eve)), "request_denied", false)

	// The directory's rules are listed read-only in the owner API.
	r := f.do("GET", PathOwnerRules, nil, "Authorization", bearer(carolPAT))
	if !strings.Contains(string(r.body), `"name":"dir/share.rego"`) || !strings.Contains(string(r.body), `"read_only":true`) {
		t.Fatalf("rules list: %s", r.body)
	}

	// A change of the file applies without restart.
	write("carol/share.rego", "package uma.share\n\nallow contains \"read\" if input.requesting_party.sub == \"eve\"\n")
	eventually(t, func() bool { return f.grant(withClaims(ticket(), eve)).status == 200 })
	expectUMAError(t, f.grant(withClaims(ticket(), dan)), "request_denied", false)

	// A system rule takes away, whatever the owner says.
	write("_system/freeze.rego", "package uma.system\n\ndeny contains \"read\" if input.resource.name == \"diary\"\n")
	eventually(t, func() bool { return f.grant(withClaims(ticket(), eve)).status == 403 })

	// A file that does not compile leaves the rules in force.
	write("_system/freeze.rego", "package uma.system\n\ndeny contains \"read\" if {\n")
	time.Sleep(300 * time.Millisecond)
	expectUMAError(t, f.grant(withClaims(ticket(), eve)), "request_denied", false)
}

func eventually(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("condition not met within 5s")
}
