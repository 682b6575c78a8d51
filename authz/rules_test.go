package authz_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddy-uma/caddy-uma/authz"
	"github.com/caddy-uma/caddy-uma/authz/authztest"
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
	f := authztest.NewGrantFixture(t, func(c *authz.Config) {
		c.PolicyDir = dir
		c.PolicyPollInterval = 50 * time.Millisecond
	})
	carolPAT, _ := f.Server.IssuePAT(t.Context(), "rs-a", "carol")
	res := f.Register(carolPAT, `{"name":"diary","resource_scopes":["read","write"]}`)
	ticket := func() string {
		r := f.Do("POST", authz.PathPermission, `{"resource_id":"`+res+`","resource_scopes":["read"]}`, "Authorization", authztest.Bearer(carolPAT))
		return r.JSON(t)["ticket"].(string)
	}
	dan := f.IDToken(map[string]any{"sub": "dan", "email": "dan@example.com"})
	eve := f.IDToken(map[string]any{"sub": "eve", "email": "eve@example.com"})

	if r := f.Grant(authztest.WithClaims(ticket(), dan)); r.Status != 200 {
		t.Fatalf("directory rule: %d %s", r.Status, r.Body)
	}
	authztest.ExpectUMAError(t, f.Grant(authztest.WithClaims(ticket(), eve)), "request_denied", false)

	// The directory's rules are listed read-only in the owner API.
	r := f.Do("GET", authz.PathOwnerRules, nil, "Authorization", authztest.Bearer(carolPAT))
	if !strings.Contains(string(r.Body), `"name":"dir/share.rego"`) || !strings.Contains(string(r.Body), `"read_only":true`) {
		t.Fatalf("rules list: %s", r.Body)
	}

	// A change of the file applies without restart.
	write("carol/share.rego", "package uma.share\n\nallow contains \"read\" if input.requesting_party.sub == \"eve\"\n")
	eventually(t, func() bool { return f.Grant(authztest.WithClaims(ticket(), eve)).Status == 200 })
	authztest.ExpectUMAError(t, f.Grant(authztest.WithClaims(ticket(), dan)), "request_denied", false)

	// A system rule takes away, whatever the owner says.
	write("_system/freeze.rego", "package uma.system\n\ndeny contains \"read\" if input.resource.name == \"diary\"\n")
	eventually(t, func() bool { return f.Grant(authztest.WithClaims(ticket(), eve)).Status == 403 })

	// A file that does not compile leaves the rules in force.
	write("_system/freeze.rego", "package uma.system\n\ndeny contains \"read\" if {\n")
	time.Sleep(300 * time.Millisecond)
	authztest.ExpectUMAError(t, f.Grant(authztest.WithClaims(ticket(), eve)), "request_denied", false)
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
