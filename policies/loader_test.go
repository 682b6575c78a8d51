package policies

import (
	"context"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// writeFile writes a file atomically, as the README asks operators to: a
// watcher polling meanwhile never sees it half written.
func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(filepath.Dir(path), ".tmp-"+filepath.Base(path))
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

const (
	aliceRules  = "package uma.share\n\nallow contains \"view\"\n"
	systemRules = "package uma.system\n\ndeny contains \"admin\"\n"
)

func TestLoadDir(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "alice", "share.rego"), aliceRules)
	writeFile(t, filepath.Join(dir, "alice", "share_test.rego"), "package uma.share_test\n")
	writeFile(t, filepath.Join(dir, "alice", "notes.md"), "not rules")
	writeFile(t, filepath.Join(dir, "alice", ".hidden.rego"), "package broken")
	writeFile(t, filepath.Join(dir, "alice", "sub", "deep.rego"), "package uma.share\n")
	writeFile(t, filepath.Join(dir, "bob", "README"), "no rules")
	writeFile(t, filepath.Join(dir, "_system", "sys.rego"), systemRules)
	writeFile(t, filepath.Join(dir, "_drafts", "x.rego"), "package uma.share\n")
	writeFile(t, filepath.Join(dir, ".git", "x.rego"), "package uma.share\n")
	writeFile(t, filepath.Join(dir, "README.md"), "operator notes")
	// A ConfigMap-style symbolic link.
	writeFile(t, filepath.Join(dir, "carol", "..data", "c.rego"), aliceRules)
	if err := os.Symlink(filepath.Join("..data", "c.rego"), filepath.Join(dir, "carol", "c.rego")); err != nil {
		t.Fatal(err)
	}

	owners, system, err := LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]map[string]string{
		"alice": {"share.rego": aliceRules},
		"carol": {"c.rego": aliceRules},
	}
	if len(owners) != len(want) {
		t.Errorf("owners = %v, want %v", owners, want)
	}
	for o, m := range want {
		if !maps.Equal(owners[o], m) {
			t.Errorf("owners[%s] = %v, want %v", o, owners[o], m)
		}
	}
	if !maps.Equal(system, map[string]string{"sys.rego": systemRules}) {
		t.Errorf("system = %v", system)
	}

	if _, _, err := LoadDir(filepath.Join(dir, "missing")); err == nil {
		t.Error("LoadDir of a missing directory succeeded")
	}
}

func TestLoadDirExamples(t *testing.T) {
	// The examples directory is laid out like an operator directory.
	owners, system, err := LoadDir("examples")
	if err != nil {
		t.Fatal(err)
	}
	e := newTestEngine(Options{})
	for owner, modules := range owners {
		if _, ok := modules["policy_test.rego"]; ok {
			t.Errorf("%s: test file loaded", owner)
		}
		if err := e.SetOwnerModules(context.Background(), owner, modules); err != nil {
			t.Errorf("%s: %v", owner, err)
		}
	}
	if err := e.SetSystemModules(context.Background(), system); err != nil || len(system) == 0 {
		t.Errorf("system: %v, %v", system, err)
	}
}

func TestWatcherPoll(t *testing.T) {
	dir := t.TempDir()
	alice := filepath.Join(dir, "alice", "share.rego")
	writeFile(t, alice, aliceRules)

	type report struct {
		owners map[string]map[string]string
		system map[string]string
	}
	var reports []report
	w := NewWatcher(dir, time.Hour, func(owners map[string]map[string]string, system map[string]string) {
		reports = append(reports, report{owners, system})
	}, nil)

	steps := []struct {
		name     string
		change   func()
		reported bool
		owners   int
		system   bool
	}{
		{"first load reports", nil, true, 1, false},
		{"nothing changed", func() {}, false, 1, false},
		{"touched, same content", func() {
			later := time.Now().Add(time.Minute)
			must(t, os.Chtimes(alice, later, later))
		}, false, 1, false},
		{"content changed", func() { writeFile(t, alice, aliceRules+"\nallow contains \"download\"\n") }, true, 1, false},
		{"owner added", func() { writeFile(t, filepath.Join(dir, "bob", "b.rego"), aliceRules) }, true, 2, false},
		{"system rules added", func() { writeFile(t, filepath.Join(dir, "_system", "s.rego"), systemRules) }, true, 2, true},
		{"test file added", func() { writeFile(t, filepath.Join(dir, "bob", "b_test.rego"), "x") }, false, 2, true},
		{"owner removed", func() { must(t, os.RemoveAll(filepath.Join(dir, "bob"))) }, true, 1, true},
		{"same-size rewrite with an older time", func() {
			writeFile(t, alice, "package uma.share\n\nallow contains \"edit\"\n")
			old := time.Now().Add(-time.Hour)
			must(t, os.Chtimes(alice, old, old))
		}, true, 1, true},
	}
	for i, s := range steps {
		n := len(reports)
		var reported bool
		var err error
		if i == 0 {
			reported, err = w.poll(true)
		} else {
			s.change()
			reported, err = w.poll(false)
		}
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if reported != s.reported || len(reports) != n+btoi(s.reported) {
			t.Fatalf("%s: reported %v (%d reports), want %v", s.name, reported, len(reports)-n, s.reported)
		}
		if !reported {
			continue
		}
		r := reports[len(reports)-1]
		if len(r.owners) != s.owners || (r.system != nil) != s.system {
			t.Errorf("%s: got %d owners, system %v", s.name, len(r.owners), r.system)
		}
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestWatcherStartStop(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "alice", "share.rego"), aliceRules)
	e := newTestEngine(Options{})
	changes := make(chan struct{}, 10)
	errs := make(chan error, 10)
	w := NewWatcher(dir, 10*time.Millisecond, func(owners map[string]map[string]string, system map[string]string) {
		for owner, modules := range owners {
			if err := e.SetOwnerModules(context.Background(), owner, modules); err != nil {
				errs <- err
				return
			}
		}
		changes <- struct{}{}
	}, func(err error) { errs <- err })

	if err := w.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	<-changes // the first load is reported by Start itself
	if e.OwnerModules("alice") == nil {
		t.Fatal("alice's rules not loaded")
	}
	if err := w.Start(context.Background()); err == nil {
		t.Error("second Start succeeded")
	}

	writeFile(t, filepath.Join(dir, "bob", "b.rego"), aliceRules)
	select {
	case <-changes:
	case err := <-errs:
		t.Fatal(err)
	case <-time.After(10 * time.Second):
		t.Fatal("the change was not reported")
	}
	if e.OwnerModules("bob") == nil {
		t.Error("bob's rules not loaded")
	}

	// A broken file: the callback reports the compile error, the old rules stay.
	writeFile(t, filepath.Join(dir, "bob", "b.rego"), "package uma.share\n\nallow contains\n")
	select {
	case err := <-errs:
		t.Logf("reported: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("the broken rules were not reported")
	}
	if e.OwnerModules("bob")["b.rego"] != aliceRules {
		t.Error("bob's old rules were replaced")
	}

	// The directory goes away (at once): onError, not onChange.
	must(t, os.Rename(dir, dir+".gone"))
	select {
	case <-errs:
	case <-changes:
		t.Error("a missing directory was reported as a change")
	case <-time.After(10 * time.Second):
		t.Fatal("the missing directory was not reported")
	}
	w.Stop()
	w.Stop()
}

func TestWatcherStartFails(t *testing.T) {
	w := NewWatcher(filepath.Join(t.TempDir(), "missing"), 0, nil, nil)
	if err := w.Start(context.Background()); err == nil {
		t.Error("Start on a missing directory succeeded")
	}
	w.Stop()
}

// TestCheckDir shows the check of a configuration: every file that does not
// compile, named by its path on disk, with line and column.
func TestCheckDir(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "alice", "share.rego"), aliceRules)
	writeFile(t, filepath.Join(dir, "bob", "share.rego"), aliceRules)
	writeFile(t, filepath.Join(dir, "bob", "broken.rego"), "package uma.share\n\n# notes\n\nallow contains \"view\" if {\n\tinput.x ==\n}\n")
	writeFile(t, filepath.Join(dir, "_system", "sys.rego"), "package uma.system\n\nallow contains \"x\"\n")
	if err := CheckDir(t.Context(), filepath.Join(dir, "missing"), Options{}); err == nil || errors.Is(err, ErrCompile) {
		t.Errorf("missing directory: %v", err)
	}
	err := CheckDir(t.Context(), dir, Options{})
	var ce CompileErrors
	if !errors.As(err, &ce) {
		t.Fatalf("got %v, want CompileErrors", err)
	}
	want := []string{
		filepath.Join(dir, "_system", "sys.rego") + ":3:1: uma_rule_error: system rules can only deny",
		filepath.Join(dir, "bob", "broken.rego") + ":7:1: rego_parse_error: ",
	}
	if len(ce) != len(want) {
		t.Fatalf("got\n%v\nwant %d problems", err, len(want))
	}
	for i, w := range want {
		if !strings.HasPrefix(ce[i].Error(), w) {
			t.Errorf("problem %d = %q, want it to start with %q", i, ce[i].Error(), w)
		}
	}
	os.Remove(filepath.Join(dir, "bob", "broken.rego"))
	os.Remove(filepath.Join(dir, "_system", "sys.rego"))
	if err := CheckDir(t.Context(), dir, Options{}); err != nil {
		t.Errorf("fixed: %v", err)
	}
}

// TestWatcherNotified shows the watcher on notifications: with a poll
// interval of an hour, a new owner's directory created after Start, a file
// replaced by rename (as editors and the README's operators do), a file
// written in place and a file removed are all reported; and nothing is
// read while nothing changes.
func TestWatcherNotified(t *testing.T) {
	dir := t.TempDir()
	alice := filepath.Join(dir, "alice", "share.rego")
	writeFile(t, alice, aliceRules)
	reports := make(chan map[string]map[string]string, 10)
	errs := make(chan error, 10)
	w := NewWatcher(dir, time.Hour, func(owners map[string]map[string]string, _ map[string]string) {
		reports <- owners
	}, func(err error) { errs <- err })
	if err := w.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	<-reports
	if !w.notified.Load() {
		if runtime.GOOS == "linux" {
			t.Fatal("changes are not notified on Linux")
		}
		t.Skipf("no notifications on %s", runtime.GOOS)
	}
	next := func(what string) map[string]map[string]string {
		t.Helper()
		select {
		case owners := <-reports:
			return owners
		case err := <-errs:
			t.Fatalf("%s: %v", what, err)
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: not reported", what)
		}
		return nil
	}

	// A new owner's directory, empty at first: nothing to report; its
	// rules come later, into a directory the watcher found by itself.
	must(t, os.Mkdir(filepath.Join(dir, "bob"), 0o755))
	time.Sleep(5 * settle) // the watcher has read the directory, and found no rules
	writeFile(t, filepath.Join(dir, "bob", "b.rego"), aliceRules)
	if owners := next("new owner"); owners["bob"]["b.rego"] != aliceRules {
		t.Errorf("new owner: %v", owners)
	}

	edited := aliceRules + "\nallow contains \"download\"\n"
	writeFile(t, alice, edited) // a temporary file renamed over the old one
	if owners := next("replaced by rename"); owners["alice"]["share.rego"] != edited {
		t.Errorf("replaced by rename: %v", owners)
	}

	must(t, os.WriteFile(alice, []byte(aliceRules), 0o644))
	if owners := next("written in place"); owners["alice"]["share.rego"] != aliceRules {
		t.Errorf("written in place: %v", owners)
	}

	must(t, os.Remove(filepath.Join(dir, "bob", "b.rego")))
	if owners := next("removed"); owners["bob"] != nil || owners["alice"] == nil {
		t.Errorf("removed: %v", owners)
	}

	reads := w.reads.Load()
	time.Sleep(10 * settle)
	if n := w.reads.Load() - reads; n != 0 || !w.notified.Load() {
		t.Errorf("%d reads while nothing changed (notified %v)", n, w.notified.Load())
	}
}
