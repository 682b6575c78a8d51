package caddymodule

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"

	"github.com/dustin/go-humanize"
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
//
// A write into a full disk would kill the whole Caddy process (Badger's
// files are memory-mapped: the kernel answers with SIGBUS), so the database
// refuses writes while its filesystem has less than MinFreeSpace free: the
// authorization server then answers requests that need a write with an
// error, keeps answering those that only read, logs once when it starts
// refusing and once when it stops, and accepts writes again by itself
// within 100 ms of space coming back.
type BadgerStorage struct {
	// Path is the directory of the database, created if missing (mode
	// 0700: it holds the private signing keys). A relative path is resolved
	// against the working directory of the Caddy process. Placeholders such
	// as {env.UMA_DATA} are expanded. Default: "uma" in Caddy's data
	// directory.
	Path string `json:"path,omitempty"`

	// MinFreeSpace is the free space, in bytes, that the filesystem of the
	// database keeps: below it, writes are refused, and the database does
	// not open. It covers what Badger writes on its own (a memtable flush
	// and a compaction) besides the writes it is asked for. Default: 122 MiB
	// (from the table sizes the store gives Badger); at least 1 MiB. A small database
	// (a few MB) on a small disk can use less, such as 16 MiB: Badger's own
	// writes are at most about the size of the database. A change applies
	// on reload.
	MinFreeSpace int64 `json:"min_free_space,omitempty"`

	// dir is Path with placeholders expanded, absolute and clean.
	dir string
}

// openBadger opens the Badger database in dir. Tests replace it.
var openBadger = func(dir string, minFreeSpace int64, logger *zap.Logger) (store.Store, error) {
	return badgerstore.Open(badgerstore.Options{Dir: dir, MinFreeSpace: minFreeSpace, Logger: logger})
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

// Validate refuses a path that exists and is not a directory, and a
// minimum free space below 1 MiB. A missing directory is fine: Open
// creates it.
func (b *BadgerStorage) Validate() error {
	if fi, err := os.Stat(b.dir); err == nil && !fi.IsDir() {
		return fmt.Errorf("storage path %s is not a directory", b.dir)
	}
	if b.MinFreeSpace < 0 || (b.MinFreeSpace > 0 && b.MinFreeSpace < minMinFreeSpace) {
		return fmt.Errorf("storage badger: min_free_space %d is too small: use at least 1MiB "+
			"(Badger writes its own files without asking), or leave it out for the default %s",
			b.MinFreeSpace, humanize.IBytes(uint64(badgerstore.DefaultMinFreeSpace)))
	}
	return nil
}

// minMinFreeSpace is the smallest min_free_space.
const minMinFreeSpace = 1 << 20

// PoolKey returns the clean absolute path of the database directory.
func (b *BadgerStorage) PoolKey() string { return b.dir }

// Open creates the directory if needed and opens the database in it.
func (b *BadgerStorage) Open(logger *zap.Logger) (store.Store, error) {
	if err := os.MkdirAll(b.dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating storage directory: %w", err)
	}
	st, err := openBadger(b.dir, b.MinFreeSpace, logger)
	switch {
	case errors.Is(err, badgerstore.ErrLocked):
		return nil, fmt.Errorf("%w: another process, usually another running Caddy instance, "+
			"has the database open; use 'caddy reload' to change the config of a running Caddy", err)
	case errors.Is(err, store.ErrNoSpace):
		return nil, fmt.Errorf("%w; free space on the disk of %s, or lower min_free_space "+
			"(storage badger %s { min_free_space <size> }) if the database is small", err, b.dir, b.dir)
	}
	return st, err
}

// checkExists returns an error if the directory holds no database.
func (b *BadgerStorage) checkExists() error {
	ok, err := badgerstore.Exists(b.dir)
	switch {
	case err != nil:
		return fmt.Errorf("storage badger %s: %w", b.dir, err)
	case !ok:
		where := ""
		if b.Path == "" {
			where = " (the default, in Caddy's data directory, which depends on the user and on $XDG_DATA_HOME and $HOME: " +
				"run the command as the user Caddy runs as, or name the directory in the config)"
		}
		return fmt.Errorf("storage badger: %s holds no database%s", b.dir, where)
	}
	return nil
}

// Reuse applies min_free_space to the database that a previous config
// opened and this one shares, so that a reload changes it.
func (b *BadgerStorage) Reuse(st store.Store) {
	if bs, ok := st.(*badgerstore.Store); ok {
		_ = bs.SetMinFreeSpace(b.MinFreeSpace) // Validate checked it
	}
}

// UnmarshalCaddyfile sets up the badger storage from the storage line of the
// uma global option, starting at the backend's name. Syntax:
//
//	storage badger [<dir>] {
//		min_free_space <size>
//	}
//
// <dir> is the database directory, by default "uma" in Caddy's data
// directory; a relative <dir> is resolved against Caddy's working
// directory, and {env.*} placeholders are expanded when the config loads.
//
// min_free_space is the free space the disk of <dir> keeps: below it,
// writes are refused (and the database does not open), so that a full disk
// cannot crash Caddy. A size such as 256MiB or 1GB; default 122MiB, at
// least 1MiB.
func (b *BadgerStorage) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume the backend name
	if d.NextArg() {
		b.Path = d.Val()
	}
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		switch d.Val() {
		case "min_free_space":
			if !d.NextArg() {
				return d.ArgErr()
			}
			size, err := humanize.ParseBytes(d.Val())
			if err != nil || size > math.MaxInt64 {
				return d.Errf("min_free_space %q: want a size such as 256MiB or 1GB", d.Val())
			}
			if size < minMinFreeSpace {
				return d.Errf("min_free_space %s is too small: use at least 1MiB "+
					"(Badger writes its own files without asking), or leave it out for the default %s",
					d.Val(), humanize.IBytes(uint64(badgerstore.DefaultMinFreeSpace)))
			}
			b.MinFreeSpace = int64(size)
			if d.NextArg() {
				return d.ArgErr()
			}
		default:
			return d.Errf("unknown storage badger option %q (known: min_free_space)", d.Val())
		}
	}
	return nil
}

// Interface guards
var (
	_ StorageBackend        = (*BadgerStorage)(nil)
	_ storageReuser         = (*BadgerStorage)(nil)
	_ storageFinder         = (*BadgerStorage)(nil)
	_ caddy.Provisioner     = (*BadgerStorage)(nil)
	_ caddy.Validator       = (*BadgerStorage)(nil)
	_ caddyfile.Unmarshaler = (*BadgerStorage)(nil)
)
