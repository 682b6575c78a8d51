package caddymodule

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"

	"github.com/caddy-uma/caddy-uma/store"
	"github.com/caddy-uma/caddy-uma/store/badgerstore"
)

func TestBadgerStorageUnmarshalCaddyfile(t *testing.T) {
	tests := map[string]struct {
		input   string
		want    BadgerStorage
		wantErr string // substring; empty means success
	}{
		"default directory":  {input: `badger`, want: BadgerStorage{}},
		"directory":          {input: `badger /var/lib/uma`, want: BadgerStorage{Path: "/var/lib/uma"}},
		"relative directory": {input: `badger ./data/uma`, want: BadgerStorage{Path: "./data/uma"}},
		"placeholder kept":   {input: `badger {env.UMA_DATA}`, want: BadgerStorage{Path: "{env.UMA_DATA}"}},
		"extra argument":     {input: `badger /a /b`, wantErr: "wrong argument count"},
		"min_free_space": {
			input: "badger /a {\n\tmin_free_space 16MiB\n}",
			want:  BadgerStorage{Path: "/a", MinFreeSpace: 16 << 20},
		},
		"min_free_space in decimal units, without a dir": {
			input: "badger {\n\tmin_free_space 1GB\n}",
			want:  BadgerStorage{MinFreeSpace: 1e9},
		},
		"min_free_space in bytes": {
			input: "badger /a {\n\tmin_free_space 2000000\n}",
			want:  BadgerStorage{Path: "/a", MinFreeSpace: 2e6},
		},
		"min_free_space too small": {
			input:   "badger /a {\n\tmin_free_space 512KiB\n}",
			wantErr: "min_free_space 512KiB is too small: use at least 1MiB",
		},
		"min_free_space not a size": {
			input:   "badger /a {\n\tmin_free_space lots\n}",
			wantErr: `min_free_space "lots": want a size such as 256MiB or 1GB`,
		},
		"min_free_space negative": {
			input:   "badger /a {\n\tmin_free_space -1MiB\n}",
			wantErr: `min_free_space "-1MiB": want a size`,
		},
		"min_free_space without a size": {
			input:   "badger /a {\n\tmin_free_space\n}",
			wantErr: "wrong argument count",
		},
		"min_free_space with two sizes": {
			input:   "badger /a {\n\tmin_free_space 1GiB 2GiB\n}",
			wantErr: "wrong argument count",
		},
		"unknown option": {
			input:   "badger /a {\n\tpath /b\n}",
			wantErr: `unknown storage badger option "path" (known: min_free_space)`,
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			var got BadgerStorage
			err := got.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tt.input))
			if expectError(t, err, tt.wantErr) {
				return
			}
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

// TestStorageCaddyfileJSON checks the JSON that a storage line of the uma
// global option adapts to: the app's "storage" object, named by its
// "backend" key.
func TestStorageCaddyfileJSON(t *testing.T) {
	tests := map[string]struct {
		line     string
		wantJSON string
		wantErr  string // substring; empty means success
	}{
		"badger with a directory": {
			line:     `storage badger /var/lib/uma`,
			wantJSON: `{"backend":"badger","path":"/var/lib/uma"}`,
		},
		"badger with the default directory": {
			line:     `storage badger`,
			wantJSON: `{"backend":"badger"}`,
		},
		"badger with a placeholder": {
			line:     `storage badger {env.UMA_DATA}`,
			wantJSON: `{"backend":"badger","path":"{env.UMA_DATA}"}`,
		},
		"postgres with a placeholder": {
			line:     `storage postgres {env.UMA_PG_DSN}`,
			wantJSON: `{"backend":"postgres","dsn":"{env.UMA_PG_DSN}"}`,
		},
		"postgres with a URL": {
			line:     `storage postgres "postgres://uma@db:5432/uma?pool_max_conns=8"`,
			wantJSON: `{"backend":"postgres","dsn":"postgres://uma@db:5432/uma?pool_max_conns=8"}`,
		},
		"postgres without a DSN": {line: `storage postgres`, wantErr: "needs a DSN"},
		"unknown backend names the known ones": {
			line:    `storage mysql mysql://db`,
			wantErr: `unknown storage backend "mysql" (known backends: badger, postgres)`,
		},
		"backend names are case-sensitive": {
			line:    `storage Badger /a`,
			wantErr: `unknown storage backend "Badger"`,
		},
		"a namespace is not a backend": {
			line:    `storage badger.extra /a`,
			wantErr: `unknown storage backend "badger.extra"`,
		},
		"badger with min_free_space": {
			line:     "storage badger /var/lib/uma {\n\tmin_free_space 64MiB\n}",
			wantJSON: `{"backend":"badger","min_free_space":67108864,"path":"/var/lib/uma"}`,
		},
		"badger with an unknown option": {
			line:    "storage badger /a {\n\tpath /b\n}",
			wantErr: `unknown storage badger option "path"`,
		},
		"storage twice": {
			line:    "storage badger /a\nstorage badger /b",
			wantErr: "storage specified more than once",
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			val, err := parseGlobalOption(caddyfile.NewTestDispenser("uma {\n"+tt.line+"\n}"), nil)
			if expectError(t, err, tt.wantErr) {
				return
			}
			var got struct {
				Storage json.RawMessage `json:"storage"`
			}
			if err := json.Unmarshal(val.(httpcaddyfile.App).Value, &got); err != nil {
				t.Fatal(err)
			}
			if string(got.Storage) != tt.wantJSON {
				t.Errorf("storage JSON = %s, want %s", got.Storage, tt.wantJSON)
			}
		})
	}
}

func TestAdaptUnknownStorageBackendNamesLine(t *testing.T) {
	_, _, err := adaptCaddyfile("{\n\tuma {\n\t\tissuer https://a\n\t\tstorage mysql mysql://db\n\t}\n}\n")
	if err == nil || !strings.Contains(err.Error(), "Caddyfile:4") ||
		!strings.Contains(err.Error(), `unknown storage backend "mysql" (known backends: badger, postgres)`) {
		t.Fatalf("error = %v, want the unknown backend, the known ones and the line", err)
	}
}

// loadStorageModule loads and provisions the storage module id from its
// JSON, as the uma app does.
func loadStorageModule[T any](t *testing.T, id, raw string) (*T, error) {
	t.Helper()
	mod, err := newTestContext(t).LoadModuleByID(id, json.RawMessage(raw))
	if err != nil {
		return nil, err
	}
	return mod.(*T), nil
}

// loadBadger loads the badger module.
func loadBadger(t *testing.T, raw string) (*BadgerStorage, error) {
	t.Helper()
	return loadStorageModule[BadgerStorage](t, "uma.storage.badger", raw)
}

func TestBadgerStorageProvision(t *testing.T) {
	t.Setenv("UMA_TEST_DATA", "from-env")
	t.Setenv("UMA_TEST_EMPTY", "")
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}

	tests := map[string]struct {
		json    string
		wantDir string
		wantErr string // substring; empty means success
	}{
		"default directory":    {json: `{}`, wantDir: filepath.Join(caddy.AppDataDir(), "uma")},
		"absolute directory":   {json: `{"path": "/var/lib/uma/"}`, wantDir: "/var/lib/uma"},
		"relative and unclean": {json: `{"path": "data/x/../uma"}`, wantDir: filepath.Join(wd, "data", "uma")},
		"placeholder":          {json: `{"path": "/var/lib/{env.UMA_TEST_DATA}"}`, wantDir: "/var/lib/from-env"},
		"missing directory":    {json: `{"path": "` + filepath.Join(t.TempDir(), "a", "b") + `"}`},
		"unset placeholder":    {json: `{"path": "{env.UMA_TEST_EMPTY}"}`, wantErr: "expanding storage path"},
		"a file, not a dir":    {json: `{"path": "` + file + `"}`, wantErr: "is not a directory"},
		"unknown field":        {json: `{"dir": "/var/lib/uma"}`, wantErr: `unknown field "dir"`},
		"min_free_space":       {json: `{"path": "/var/lib/uma", "min_free_space": 16777216}`, wantDir: "/var/lib/uma"},
		"min_free_space below 1 MiB": {
			json:    `{"path": "/var/lib/uma", "min_free_space": 1000}`,
			wantErr: "storage badger: min_free_space 1000 is too small: use at least 1MiB",
		},
		"negative min_free_space": {
			json:    `{"path": "/var/lib/uma", "min_free_space": -1}`,
			wantErr: "min_free_space -1 is too small",
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			b, err := loadBadger(t, tt.json)
			if expectError(t, err, tt.wantErr) {
				return
			}
			if tt.wantDir != "" && b.dir != tt.wantDir {
				t.Errorf("dir = %q, want %q", b.dir, tt.wantDir)
			}
			if b.PoolKey() != b.dir {
				t.Errorf("PoolKey = %q, want the directory %q", b.PoolKey(), b.dir)
			}
			if _, err := os.Stat(b.dir); tt.wantDir == "" && !errors.Is(err, os.ErrNotExist) {
				t.Errorf("provisioning created %s (stat: %v); Open creates it", b.dir, err)
			}
		})
	}
}

// TestBadgerStorageOpen opens real Badger directories.
func TestBadgerStorageOpen(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "uma")
	b, err := loadBadger(t, `{"path": "`+dir+`"}`)
	if err != nil {
		t.Fatal(err)
	}
	st, err := b.Open(nil)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o700 {
		t.Errorf("directory mode = %o, want 700 (it holds the signing keys)", perm)
	}

	// A second open of the directory fails on the lock, and says why.
	_, err = b.Open(nil)
	if !errors.Is(err, badgerstore.ErrLocked) {
		t.Fatalf("second Open = %v, want an error wrapping ErrLocked", err)
	}
	if !strings.Contains(err.Error(), "caddy reload") {
		t.Errorf("error %q does not tell the user to use caddy reload", err)
	}

	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	st, err = b.Open(nil)
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	_ = st.Close()

	// A directory that cannot be created.
	parent := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(parent, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	bad := &BadgerStorage{dir: filepath.Join(parent, "uma")}
	if _, err := bad.Open(nil); err == nil || !strings.Contains(err.Error(), "creating storage directory") {
		t.Fatalf("Open under a file = %v, want a directory creation error", err)
	}
}

// TestBadgerStorageMinFreeSpace opens real databases with a minimum free
// space that no disk has: opening fails and says what to do, and a shared
// database that a reload gives that minimum refuses writes.
func TestBadgerStorageMinFreeSpace(t *testing.T) {
	const everything = 1 << 62 // 4 EiB
	dir := filepath.Join(t.TempDir(), "uma")
	b, err := loadBadger(t, fmt.Sprintf(`{"path": %q, "min_free_space": %d}`, dir, int64(everything)))
	if err != nil {
		t.Fatal(err)
	}
	_, err = b.Open(nil)
	if !errors.Is(err, store.ErrNoSpace) || !strings.Contains(err.Error(), "min_free_space") ||
		!strings.Contains(err.Error(), dir) {
		t.Fatalf("Open below min_free_space = %v, want ErrNoSpace naming the directory and min_free_space", err)
	}

	// The config that opened it has the default; a reload asks for more.
	first, err := loadBadger(t, fmt.Sprintf(`{"path": %q}`, dir))
	if err != nil {
		t.Fatal(err)
	}
	st, err := first.Open(nil)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer st.Close()
	ctx := t.Context()
	if err := st.Put(ctx, "n", "k", []byte("v"), time.Time{}); err != nil {
		t.Fatalf("Put with the default minimum: %v", err)
	}
	b.Reuse(st)
	if err := st.Put(ctx, "n", "k", []byte("v2"), time.Time{}); !errors.Is(err, store.ErrNoSpace) {
		t.Errorf("Put after a reload to min_free_space 4EiB = %v, want ErrNoSpace", err)
	}
	if got, err := st.Get(ctx, "n", "k"); err != nil || string(got) != "v" {
		t.Errorf("Get while writes are refused = %q, %v; want v", got, err)
	}
	first.Reuse(st)
	if err := st.Put(ctx, "n", "k", []byte("v3"), time.Time{}); err != nil {
		t.Errorf("Put after a reload back to the default: %v", err)
	}
}

func TestBadgerStorageModule(t *testing.T) {
	mod, err := caddy.GetModule("uma.storage.badger")
	if err != nil {
		t.Fatalf("uma.storage.badger is not registered: %v", err)
	}
	if _, ok := mod.New().(StorageBackend); !ok {
		t.Fatalf("uma.storage.badger is a %T, not a StorageBackend", mod.New())
	}
	if got := reflect.TypeOf(mod.New()); got != reflect.TypeOf(new(BadgerStorage)) {
		t.Errorf("New() = %v, want *BadgerStorage", got)
	}
	if got := knownStorageBackends(); got != "badger, postgres" {
		t.Errorf("known backends = %q, want badger, postgres", got)
	}
}
