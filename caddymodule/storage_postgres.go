package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/caddy-uma/caddy-uma/store"
	"github.com/caddy-uma/caddy-uma/store/pgstore"
)

func init() {
	caddy.RegisterModule(PostgresStorage{})
}

// postgresOpenTimeout bounds Open: connecting, and waiting for the schema
// migrations of another node that starts at the same time.
const postgresOpenTimeout = time.Minute

// PostgresStorage is the storage backend uma.storage.postgres: a
// PostgreSQL database that several Caddy nodes can share. Every write is
// committed with synchronous_commit before it is acknowledged; single-use
// records (tickets, codes, refresh tokens) are single-use across all nodes.
// The schema is created and migrated at start, under an advisory lock, so
// nodes may start together.
type PostgresStorage struct {
	// DSN is the libpq connection string of the database, as a URL
	// (postgres://user:password@host:port/dbname?sslmode=verify-full) or as
	// keyword=value pairs, with the pool settings pool_max_conns,
	// pool_min_conns, pool_max_conn_lifetime, pool_max_conn_idle_time and
	// pool_health_check_period, connect_timeout (default 5 s) and server
	// settings such as search_path (the first schema holds the tables).
	// Placeholders such as {env.UMA_PG_DSN} are expanded when the config
	// loads; one that expands to nothing is an error. Required. Use a
	// placeholder for the password: Caddy logs the config it loads at
	// DEBUG level.
	DSN string `json:"dsn,omitempty"`

	// dsn is DSN with placeholders expanded; location is where it points.
	dsn      string
	location pgstore.Location
}

// CaddyModule returns the Caddy module information.
func (PostgresStorage) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "uma.storage.postgres",
		New: func() caddy.Module { return new(PostgresStorage) },
	}
}

// Provision expands the placeholders of the DSN. It does not connect:
// Open does.
func (p *PostgresStorage) Provision(caddy.Context) error {
	if p.DSN == "" {
		return errors.New("storage postgres: the DSN is missing: storage postgres <dsn>, e.g. {env.UMA_PG_DSN}")
	}
	dsn, err := caddy.NewReplacer().ReplaceOrErr(p.DSN, true, true)
	if err != nil {
		// The error names the placeholder, never the DSN: it may hold the
		// password.
		return fmt.Errorf("storage postgres: expanding the DSN: %w; set it in the environment of Caddy, "+
			"or give the DSN itself", err)
	}
	p.dsn = dsn
	return nil
}

// Validate parses the DSN without connecting.
func (p *PostgresStorage) Validate() error {
	loc, err := pgstore.ParseDSN(p.dsn)
	if err != nil {
		return fmt.Errorf("storage postgres: %w", err)
	}
	p.location = loc
	return nil
}

// PoolKey returns where the DSN points, without its password: hosts,
// database, user and search_path. Other settings of the DSN (password,
// pool settings, TLS) are not part of it: a reload that changes only them
// keeps the open pool, and they take effect at the next restart.
func (p *PostgresStorage) PoolKey() string { return p.location.String() }

// Open connects to the database and migrates its schema.
func (p *PostgresStorage) Open(logger *zap.Logger) (store.Store, error) {
	ctx, cancel := context.WithTimeout(context.Background(), postgresOpenTimeout)
	defer cancel()
	st, err := pgstore.Open(ctx, pgstore.Options{DSN: p.dsn, Logger: logger})
	if err != nil {
		return nil, err
	}
	return st, nil
}

// UnmarshalCaddyfile sets up the postgres storage from the storage line of
// the uma global option, starting at the backend's name. Syntax:
//
//	storage postgres <dsn>
//
// <dsn> is the libpq connection string, a URL or keyword=value pairs (in
// quotes, since they hold spaces), with pgx's pool settings (see DSN). Use
// an {env.*} or {file.*} placeholder, expanded when the config loads, for
// a DSN that holds a password: {$VAR} would be expanded when the
// Caddyfile is adapted, and written into the JSON config.
func (p *PostgresStorage) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume the backend name
	if !d.NextArg() {
		return d.Err("storage postgres needs a DSN: storage postgres <dsn>, e.g. {env.UMA_PG_DSN}")
	}
	p.DSN = d.Val()
	if d.NextArg() {
		return d.Errf("storage postgres takes one DSN; quote a keyword=value DSN: storage postgres \"host=... dbname=...\"")
	}
	if d.NextBlock(0) {
		return d.Errf("storage postgres takes no block: pool settings go into the DSN (pool_max_conns=...)")
	}
	return nil
}

// Interface guards
var (
	_ StorageBackend        = (*PostgresStorage)(nil)
	_ caddy.Provisioner     = (*PostgresStorage)(nil)
	_ caddy.Validator       = (*PostgresStorage)(nil)
	_ caddyfile.Unmarshaler = (*PostgresStorage)(nil)
)
