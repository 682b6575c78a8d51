package caddymodule

import (
	"encoding/json"
	"fmt"
	"strings"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-uma/caddy-uma/store"
)

// storageNamespace is the Caddy module namespace of the storage backends:
// the module uma.storage.<name> is the backend "<name>" of the app's
// storage, in JSON ("backend": "<name>") and in the Caddyfile
// (storage <name> ...).
const storageNamespace = "uma.storage"

// defaultStorageBackend is the backend of an app without storage, or with
// a storage that names no backend.
const defaultStorageBackend = "badger"

// StorageBackend is implemented by the modules of the uma.storage
// namespace: a database the authorization server keeps its state in. The
// uma app loads the module that its storage names in Provision and opens it
// in Start, through a process-wide pool that shares the open store between
// the configs of successive reloads.
//
// A module's Provision and Validate must not open the database: `caddy
// validate` provisions the config in a second process, beside a running
// server that holds it open.
type StorageBackend interface {
	caddy.Module

	// PoolKey identifies the database among those of this backend, such as
	// the clean absolute path of a directory. Configs whose backends return
	// the same key share one open store (the app prefixes the key with the
	// module ID, so two backends never share one). A reused store keeps the
	// options it was opened with: the key must include every option that
	// Open applies, or changing it needs a restart. The key is logged, so
	// it must not hold secrets.
	PoolKey() string

	// Open opens the database. The app calls it once per pool key while
	// configs use that key, and closes the store when the last of them is
	// cleaned up.
	Open(logger *zap.Logger) (store.Store, error)
}

// storageReuser is implemented by a StorageBackend whose settings can
// change without reopening its database: when a config shares a database
// that a previous config opened, the app passes it to Reuse, so that a
// reload applies them (the badger backend's min_free_space).
type storageReuser interface {
	Reuse(st store.Store)
}

// storageFinder is implemented by a StorageBackend that can tell, without
// opening its database, that the database does not exist: `caddy uma
// export` then fails, rather than open (and so create) an empty one.
type storageFinder interface {
	// checkExists returns an error that says where the database was
	// looked for, if it is not there.
	checkExists() error
}

// storePool shares open databases between the uma apps of successive config
// loads, keyed by storeKey. A reload starts the new config before it stops
// the old one, and a database such as Badger locks its directory even
// within one process, so each load cannot open its own.
var storePool = caddy.NewUsagePool()

// sharedStore is the pooled value: an open database, closed when the last
// config that uses it is cleaned up.
type sharedStore struct {
	store.Store
}

// Destruct closes the database.
func (s sharedStore) Destruct() error { return s.Close() }

// storeKey is the storePool key of a backend's database: its module ID and
// its pool key.
func storeKey(b StorageBackend) string {
	return string(b.CaddyModule().ID) + " " + b.PoolKey()
}

// knownStorageBackends lists the names of the registered storage backends,
// sorted, for error messages.
func knownStorageBackends() string {
	mods := caddy.GetModules(storageNamespace)
	names := make([]string, 0, len(mods))
	for _, m := range mods {
		names = append(names, m.ID.Name())
	}
	return strings.Join(names, ", ")
}

// loadStorage loads and provisions the storage module that a.Storage names
// by its "backend" key. An absent storage, or one without a backend, is the
// default backend with the settings given. Loading opens no database.
func (a *App) loadStorage(ctx caddy.Context) error {
	fields := map[string]json.RawMessage{}
	if a.Storage != nil {
		if err := json.Unmarshal(a.Storage, &fields); err != nil {
			return fmt.Errorf("storage: %w", err)
		}
		if fields == nil { // "storage": null
			fields = map[string]json.RawMessage{}
		}
	}
	var name string
	if raw, ok := fields["backend"]; ok {
		if err := json.Unmarshal(raw, &name); err != nil {
			return fmt.Errorf("storage: backend: %w", err)
		}
	}
	if name == "" {
		name = defaultStorageBackend
		fields["backend"], _ = json.Marshal(name) // a string always encodes
		raw, err := json.Marshal(fields)
		if err != nil {
			return fmt.Errorf("storage: %w", err)
		}
		a.Storage = raw
	}
	if _, err := caddy.GetModule(storageNamespace + "." + name); err != nil {
		return fmt.Errorf("storage: unknown backend %q (known backends: %s)", name, knownStorageBackends())
	}

	mod, err := ctx.LoadModule(a, "Storage")
	if err != nil {
		return fmt.Errorf("loading storage: %w", err)
	}
	backend, ok := mod.(StorageBackend)
	if !ok {
		return fmt.Errorf("storage: module %s.%s is not a storage backend (it is a %T)", storageNamespace, name, mod)
	}
	a.storage = backend
	return nil
}

// acquireStore loads the shared database of a.storage from storePool,
// opening it if no running config has. Each success must be matched by
// exactly one releaseStore.
func (a *App) acquireStore() (store.Store, error) {
	key := storeKey(a.storage)
	val, loaded, err := storePool.LoadOrNew(key, func() (caddy.Destructor, error) {
		st, err := a.storage.Open(a.logger.Named("storage"))
		if err != nil {
			return nil, err
		}
		return sharedStore{st}, nil
	})
	if err != nil {
		// A failed LoadOrNew holds no reference: nothing to release.
		return nil, fmt.Errorf("opening storage %s: %w", key, err)
	}

	a.state.mu.Lock()
	a.state.storeKey = key
	a.state.mu.Unlock()

	st := val.(sharedStore).Store
	if r, ok := a.storage.(storageReuser); ok && loaded {
		r.Reuse(st)
	}

	if c := a.logger.Check(zapcore.DebugLevel, "storage opened"); c != nil {
		c.Write(zap.String("storage", key), zap.Bool("shared_with_previous_config", loaded))
	}
	return st, nil
}

// releaseStore gives back the reference acquireStore took, once; later calls
// do nothing. A second Delete would close the database under the config
// that replaced this one.
func (a *App) releaseStore() error {
	a.state.mu.Lock()
	key := a.state.storeKey
	a.state.storeKey = ""
	a.state.mu.Unlock()
	if key == "" {
		return nil
	}

	closed, err := storePool.Delete(key)
	if err != nil {
		return fmt.Errorf("closing storage %s: %w", key, err)
	}
	if closed {
		if c := a.logger.Check(zapcore.DebugLevel, "storage closed"); c != nil {
			c.Write(zap.String("storage", key))
		}
	}
	return nil
}

// Interface guards
var _ caddy.Destructor = sharedStore{}
