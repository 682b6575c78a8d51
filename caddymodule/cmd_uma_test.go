package caddymodule

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// TestCreateDump checks the output file of an export: written beside its
// path and renamed when complete, mode 0600, replacing an older file, and
// removed without a trace when the export fails.
func TestCreateDump(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "uma.dump")
	if err := os.WriteFile(path, []byte("older"), 0o644); err != nil {
		t.Fatal(err)
	}

	w, commit, err := createDump(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(w, "half"); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(path); string(b) != "older" {
		t.Errorf("the file changed before the dump was complete: %q", b)
	}
	failure := errors.New("the export failed")
	if err := commit(failure); !errors.Is(err, failure) {
		t.Errorf("commit(failure) = %v", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "older" {
		t.Errorf("a failed export replaced the file: %q", b)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("a failed export left %d files, want only the older one", len(entries))
	}

	w, commit, err = createDump(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(w, "the dump"); err != nil {
		t.Fatal(err)
	}
	if err := commit(nil); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(path); string(b) != "the dump" || fi.Mode().Perm() != 0o600 {
		t.Errorf("the dump file: %q, mode %v; want the dump, mode 0600", b, fi.Mode().Perm())
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("%d files after the export, want 1", len(entries))
	}

	if _, _, err := createDump(filepath.Join(dir, "missing", "uma.dump")); err == nil {
		t.Error("createDump in a missing directory succeeded")
	}
}
