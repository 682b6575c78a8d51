package caddymodule

import (
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"go.uber.org/zap"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-uma/caddy-uma/store"
	"github.com/caddy-uma/caddy-uma/store/badgerstore"
)

// TestAppLoadsStorage checks the app's storage JSON: a uma.storage module
// named by its "backend" key, badger when no backend is named.
func TestAppLoadsStorage(t *testing.T) {
	dir := t.TempDir()
	defaultDir := filepath.Join(caddy.AppDataDir(), "uma")

	tests := map[string]struct {
		storage string // the value of "storage"; empty means absent
		wantDir string // the badger directory
		wantErr string // substring; empty means success
	}{
		"absent":                {wantDir: defaultDir},
		"null":                  {storage: `null`, wantDir: defaultDir},
		"empty":                 {storage: `{}`, wantDir: defaultDir},
		"badger":                {storage: `{"backend": "badger", "path": "` + dir + `"}`, wantDir: dir},
		"path without backend":  {storage: `{"path": "` + dir + `"}`, wantDir: dir},
		"empty backend":         {storage: `{"backend": "", "path": "` + dir + `"}`, wantDir: dir},
		"badger default path":   {storage: `{"backend": "badger"}`, wantDir: defaultDir},
		"unknown backend":       {storage: `{"backend": "mysql", "dsn": "mysql://db"}`, wantErr: `storage: unknown backend "mysql" (known backends: badger, postgres)`},
		"backend not a string":  {storage: `{"backend": 1}`, wantErr: "storage: backend"},
		"not an object":         {storage: `"badger"`, wantErr: "storage:"},
		"unknown badger option": {storage: `{"backend": "badger", "dir": "/x"}`, wantErr: `loading storage`},
		"badger provision fails": {
			storage: `{"backend": "badger", "path": "{env.UMA_TEST_UNSET_DATA}"}`, wantErr: "expanding storage path",
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			cfg := `{"issuer": "https://as.example"}`
			if tt.storage != "" {
				cfg = `{"issuer": "https://as.example", "storage": ` + tt.storage + `}`
			}
			a, err := provisionApp(t, cfg)
			if expectError(t, err, tt.wantErr) {
				return
			}
			if got := badgerDir(t, a); got != tt.wantDir {
				t.Errorf("dir = %q, want %q", got, tt.wantDir)
			}
			if want := "uma.storage.badger " + tt.wantDir; storeKey(a.storage) != want {
				t.Errorf("store key = %q, want %q", storeKey(a.storage), want)
			}
		})
	}
}

// memoryBackend is a storage backend that is not registered: in-memory
// Badger stores, whatever its key.
type memoryBackend struct {
	key string

	mu    sync.Mutex
	opens int
}

func (*memoryBackend) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "uma.storage.memory_test", New: func() caddy.Module { return new(memoryBackend) }}
}

func (m *memoryBackend) PoolKey() string { return m.key }

func (m *memoryBackend) Open(*zap.Logger) (store.Store, error) {
	m.mu.Lock()
	m.opens++
	m.mu.Unlock()
	return badgerstore.Open(badgerstore.Options{InMemory: true})
}

// TestStoreKeySeparatesBackends runs two backends whose pool keys are
// equal: each gets its own pool entry and its own store.
func TestStoreKeySeparatesBackends(t *testing.T) {
	badger := useCountingBackend(t)
	dir := t.TempDir()
	onDisk := appFor(t, dir, "")
	other := appFor(t, dir, "")
	memory := &memoryBackend{key: dir}
	other.storage = memory

	if storeKey(onDisk.storage) == storeKey(other.storage) {
		t.Fatalf("two backends share the store key %q", storeKey(other.storage))
	}
	for _, app := range []*App{onDisk, other} {
		if err := app.Start(); err != nil {
			t.Fatalf("Start: %v", err)
		}
	}
	if opens, _ := badger.counts(); opens != 1 || memory.opens != 1 {
		t.Fatalf("badger opens, memory opens = %d, %d, want 1, 1", opens, memory.opens)
	}
	for _, key := range []string{storeKey(onDisk.storage), storeKey(other.storage)} {
		if refs, _ := storePool.References(key); refs != 1 {
			t.Errorf("pool references of %q = %d, want 1", key, refs)
		}
	}
	for _, app := range []*App{onDisk, other} {
		if err := app.Stop(); err != nil {
			t.Fatal(err)
		}
		if err := app.Cleanup(); err != nil {
			t.Fatal(err)
		}
	}
	if _, closes := badger.counts(); closes != 1 {
		t.Errorf("badger closes = %d, want 1", closes)
	}
	for _, key := range []string{storeKey(onDisk.storage), storeKey(other.storage)} {
		if _, ok := storePool.References(key); ok {
			t.Errorf("pool entry %q left behind", key)
		}
	}
}

// TestAppStartNamesStorage checks the error of a backend that fails to open.
func TestAppStartNamesStorage(t *testing.T) {
	backend := useCountingBackend(t)
	backend.fail = fmt.Errorf("disk on fire")
	dir := t.TempDir()
	app := appFor(t, dir, "")
	err := app.Start()
	if err == nil || !strings.Contains(err.Error(), "opening storage uma.storage.badger "+dir+": disk on fire") {
		t.Fatalf("Start = %v, want the storage and the cause", err)
	}
	if err := app.Cleanup(); err != nil {
		t.Fatal(err)
	}
}
