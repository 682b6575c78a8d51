package caddymodule

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"go.uber.org/zap"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/caddy-uma/caddy-uma/store"
	"github.com/caddy-uma/caddy-uma/store/badgerstore"
)

func init() {
	caddy.RegisterModule(BadgerStorage{})
}

// BadgerStorage is the storage backend uma.storage.badger, the default:
// Badger, an embedded database in a local directory. Every write is synced
// to disk before it is acknowledged. Badger locks its directory, so only
// one process can open it at a time; the uma app shares the open database
// across config reloads.
type BadgerStorage struct {
	// Path is the directory of the database, created if missing (mode
	// 0700: it holds the private signing keys). A relative path is resolved
	// against the working directory of the Caddy process. Placeholders such
	// as {env.UMA_DATA} are expanded. Default: "uma" in Caddy's data
	// directory.
	Path string `json:"path,omitempty"`

	// dir is Path with placeholders expanded, absolute and clean.
	dir string
}

// openBadger opens the Badger database in dir. Tests replace it.
var openBadger = func(dir string, logger *zap.Logger) (store.Store, error) {
	return badgerstore.Open(badgerstore.Options{Dir: dir, Logger: logger})
}

// CaddyModule returns the Caddy module information.
func (BadgerStorage) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "uma.storage.badger",
		New: func() caddy.Module { return new(BadgerStorage) },
	}
}

// Provision expands placeholders in the path, applies the default and makes
// the path absolute. It does not open the database: Open does.
func (b *BadgerStorage) Provision(caddy.Context) error {
	path := b.Path
	if path == "" {
		path = filepath.Join(caddy.AppDataDir(), "uma")
	}
	path, err := caddy.NewReplacer().ReplaceOrErr(path, true, true)
	if err != nil {
		return fmt.Errorf("expanding storage path: %w", err)
	}
	// filepath.Abs also cleans the path, which makes it a pool key.
	if b.dir, err = filepath.Abs(path); err != nil {
		return fmt.Errorf("resolving storage path %q: %w", path, err)
	}
	return nil
}

// Validate refuses a path that exists and is not a directory. A missing
// directory is fine: Open creates it.
func (b *BadgerStorage) Validate() error {
	if fi, err := os.Stat(b.dir); err == nil && !fi.IsDir() {
		return fmt.Errorf("storage path %s is not a directory", b.dir)
	}
	return nil
}

// PoolKey returns the clean absolute path of the database directory.
func (b *BadgerStorage) PoolKey() string { return b.dir }

// Open creates the directory if needed and opens the database in it.
func (b *BadgerStorage) Open(logger *zap.Logger) (store.Store, error) {
	if err := os.MkdirAll(b.dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating storage directory: %w", err)
	}
	st, err := openBadger(b.dir, logger)
	if errors.Is(err, badgerstore.ErrLocked) {
		return nil, fmt.Errorf("%w: another process, usually another running Caddy instance, "+
			"has the database open; use 'caddy reload' to change the config of a running Caddy", err)
	}
	return st, err
}

// UnmarshalCaddyfile sets up the badger storage from the storage line of the
// uma global option, starting at the backend's name. Syntax:
//
//	storage badger [<dir>]
//
// <dir> is the database directory, by default "uma" in Caddy's data
// directory; a relative <dir> is resolved against Caddy's working
// directory, and {env.*} placeholders are expanded when the config loads.
func (b *BadgerStorage) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume the backend name
	if d.NextArg() {
		b.Path = d.Val()
	}
	if d.NextArg() {
		return d.ArgErr()
	}
	if d.NextBlock(0) {
		return d.Errf("storage badger takes no block")
	}
	return nil
}

// Interface guards
var (
	_ StorageBackend        = (*BadgerStorage)(nil)
	_ caddy.Provisioner     = (*BadgerStorage)(nil)
	_ caddy.Validator       = (*BadgerStorage)(nil)
	_ caddyfile.Unmarshaler = (*BadgerStorage)(nil)
)
