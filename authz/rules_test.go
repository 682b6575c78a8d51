package authz_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/caddy-uma/caddy-uma/authz"
	"github.com/caddy-uma/caddy-uma/authz/authztest"
	"github.com/caddy-uma/caddy-uma/authz/ownerapi"
)

// writeRule writes a rule file under dir atomically, as the watcher wants.
func writeRule(t *testing.T, dir, rel, src string) {
	t.Helper()
	p := filepath.Join(dir, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(filepath.Dir(p), ".tmp-"+filepath.Base(p))
	if err := os.WriteFile(tmp, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, p); err != nil {
		t.Fatal(err)
	}
}

// dirFixture is a grant fixture on the operator directory dir, polled
// often, logging into an observer; carol owns a diary (read, write).
type dirFixture struct {
	*authztest.GrantFixture
	logs  *observer.ObservedLogs
	diary string
	carol string // rs-a's PAT for carol
}

func newDirFixture(t *testing.T, dir string) *dirFixture {
	t.Helper()
	core, logs := observer.New(zapcore.InfoLevel)
	f := authztest.NewGrantFixture(t, func(c *authz.Config) {
		c.PolicyDir = dir
		c.PolicyPollInterval = 20 * time.Millisecond
		c.Logger = zap.New(core)
	})
	d := &dirFixture{GrantFixture: f, logs: logs}
	var err error
	if d.carol, err = f.Server.IssuePAT(t.Context(), "rs-a", "carol"); err != nil {
		t.Fatal(err)
	}
	d.diary = f.Register(d.carol, `{"name":"diary","resource_scopes":["read","write"]}`)
	return d
}

// grant asks for read on carol's diary as the person sub.
func (d *dirFixture) grant(sub string) authztest.Response {
	d.T.Helper()
	r := d.Do("POST", authz.PathPermission, `{"resource_id":"`+d.diary+`","resource_scopes":["read"]}`, "Authorization", authztest.Bearer(d.carol))
	tk := r.JSON(d.T)["ticket"].(string)
	return d.Grant(authztest.WithClaims(tk, d.IDToken(map[string]any{"sub": sub, "email": sub + "@example.com"})))
}

// logged returns the entries at level whose message contains msg.
func (d *dirFixture) logged(level zapcore.Level, msg string) []observer.LoggedEntry {
	return d.logs.Filter(func(e observer.LoggedEntry) bool {
		return e.Level == level && strings.Contains(e.Message, msg)
	}).All()
}

const (
	allowDan = "package uma.share\n\nallow contains \"read\" if input.requesting_party.sub == \"dan\"\n"
	allowEve = "package uma.share\n\nallow contains \"read\" if input.requesting_party.sub == \"eve\"\n"
	// brokenNotes does not compile (line 5, column 1) and holds no deny.
	brokenNotes = "package uma.share\n\nallow contains \"read\" if {\n\tinput.requesting_party.sub ==\n}\n"
)

// TestBrokenDirectoryFileAtStart shows that a file that does not compile,
// beside valid ones, is left out at a start when it holds no deny: the
// owner's other rules apply. The error names the file on disk, with line
// and column, and its fix is logged.
func TestBrokenDirectoryFileAtStart(t *testing.T) {
	dir := t.TempDir()
	writeRule(t, dir, "carol/share.rego", allowDan)
	writeRule(t, dir, "carol/notes.rego", brokenNotes)
	d := newDirFixture(t, dir)

	if r := d.grant("dan"); r.Status != 200 {
		t.Fatalf("dan, allowed by share.rego beside the broken notes.rego: %d %s", r.Status, r.Body)
	}
	path := filepath.Join(dir, "carol", "notes.rego")
	var found bool
	for _, e := range d.logged(zapcore.ErrorLevel, "do not compile") {
		m := e.ContextMap()
		if files, _ := m["files"].([]any); len(files) == 1 && files[0] == path &&
			strings.HasPrefix(m["problems"].(string), path+":5:1: rego_parse_error") && m["owner"] == "carol" {
			found = true
		}
	}
	if !found {
		t.Fatalf("no error naming %s:5:1; logged: %v", path, d.logs.All())
	}

	writeRule(t, dir, "carol/notes.rego", allowEve)
	eventually(t, func() bool { return d.grant("eve").Status == 200 })
	if len(d.logged(zapcore.InfoLevel, "rules compile again")) != 1 {
		t.Errorf("the fix was not logged once: %v", d.logs.All())
	}
}

// TestBrokenDenyFileRefusesEverything shows that a file that does not
// compile and may hold a deny is never left out: without a version in
// force, every request for that owner's resources is refused, console
// shares included, rather than granting what the deny would refuse.
func TestBrokenDenyFileRefusesEverything(t *testing.T) {
	dir := t.TempDir()
	writeRule(t, dir, "carol/share.rego", allowDan)
	writeRule(t, dir, "carol/block.rego", "package uma.share\n\ndeny contains \"read\" if {\n\tinput.requesting_party.sub == \"eve\"\n")
	d := newDirFixture(t, dir)
	if _, err := d.Server.AddShare(t.Context(), authz.Share{Owner: "carol", ResourceID: d.diary, Subject: "eve", Scopes: []string{"read"}}); err != nil {
		t.Fatal(err)
	}
	authztest.ExpectUMAError(t, d.grant("eve"), "request_denied", false)
	authztest.ExpectUMAError(t, d.grant("dan"), "request_denied", false)
	if len(d.logged(zapcore.ErrorLevel, "every request for this owner's resources is refused")) == 0 {
		t.Errorf("not logged: %v", d.logs.All())
	}

	// Fixed, the deny applies and the share and share.rego grant again.
	writeRule(t, dir, "carol/block.rego", "package uma.share\n\ndeny contains \"read\" if input.requesting_party.sub == \"mallory\"\n")
	eventually(t, func() bool { return d.grant("eve").Status == 200 })
	if r := d.grant("dan"); r.Status != 200 {
		t.Errorf("dan after the fix: %d %s", r.Status, r.Body)
	}
}

// TestBrokenSystemFileRefusesEverything shows that system rules that do
// not compile at a start refuse every request: they only take away, and
// none may be dropped.
func TestBrokenSystemFileRefusesEverything(t *testing.T) {
	dir := t.TempDir()
	writeRule(t, dir, "carol/share.rego", allowDan)
	writeRule(t, dir, "_system/freeze.rego", "package uma.system\n\ndeny contains \"read\" if {\n")
	d := newDirFixture(t, dir)
	authztest.ExpectUMAError(t, d.grant("dan"), "request_denied", false)
	if len(d.logged(zapcore.ErrorLevel, "every request is refused")) == 0 {
		t.Errorf("not logged: %v", d.logs.All())
	}
	writeRule(t, dir, "_system/freeze.rego", "package uma.system\n\ndeny contains \"write\"\n")
	eventually(t, func() bool { return d.grant("dan").Status == 200 })
}

// TestPolicyDirectoryIsWatched shows that rules in the operator directory
// apply, that system rules take away, and that changes apply without a
// restart.
func TestPolicyDirectoryIsWatched(t *testing.T) {
	dir := t.TempDir()
	write := func(rel, src string) { writeRule(t, dir, rel, src) }
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
	r := f.Do("GET", ownerapi.PathRules, nil, "Authorization", authztest.Bearer(carolPAT))
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
