// Package pgtest gives tests a PostgreSQL schema of their own, on the
// server named by the environment variable UMA_PG_DSN, or DefaultDSN (the
// server that `bash .ci/postgres` starts).
//
// Each test gets a new, empty schema in that database, named in the
// search_path of the DSN it is given, and dropped when the test ends: tests
// run in parallel and leave nothing behind. When no server answers, the
// test is skipped, except under CI=true, where it fails.
package pgtest

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// EnvDSN is the environment variable of the server's DSN.
const EnvDSN = "UMA_PG_DSN"

// DefaultDSN is the DSN used when EnvDSN is unset: the server of
// .ci/postgres.
const DefaultDSN = "postgres://uma:uma@127.0.0.1:54329/uma?sslmode=disable"

// reachTimeout bounds the first connection that finds out whether a
// server answers.
const reachTimeout = 5 * time.Second

// BaseDSN returns the DSN of the test server's database.
func BaseDSN() string {
	if dsn := os.Getenv(EnvDSN); dsn != "" {
		return dsn
	}
	return DefaultDSN
}

var reach struct {
	once sync.Once
	err  error
}

// Require skips (or under CI=true fails) t unless the test server answers.
// The first call finds out; later calls remember.
func Require(t testing.TB) {
	t.Helper()
	reach.once.Do(func() {
		reach.err = exec(context.Background(), "SELECT 1")
	})
	if reach.err == nil {
		return
	}
	msg := fmt.Sprintf("no PostgreSQL server for the tests at %s (set %s, or start one with `bash .ci/postgres`): %v",
		redacted(BaseDSN()), EnvDSN, reach.err)
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// DSN returns the DSN of a new, empty schema, dropped when t ends.
func DSN(t testing.TB) string {
	t.Helper()
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return schemaDSN(t, "uma_test_"+hex.EncodeToString(b))
}

// NamedDSN returns the DSN of the schema named by key (any string, such as
// a temporary directory): the same schema for the same key, in this process
// and in the child processes of a test. The process that creates the
// schema drops it when t ends.
func NamedDSN(t testing.TB, key string) string {
	t.Helper()
	sum := sha256.Sum256([]byte(key))
	return schemaDSN(t, "uma_test_"+hex.EncodeToString(sum[:8]))
}

func schemaDSN(t testing.TB, schema string) string {
	t.Helper()
	Require(t)
	ctx := context.Background()
	var created bool
	err := withConn(ctx, func(conn *pgx.Conn) error {
		var exists bool
		if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)", schema).Scan(&exists); err != nil {
			return err
		}
		if exists {
			return nil
		}
		_, err := conn.Exec(ctx, "CREATE SCHEMA "+schema)
		created = err == nil
		return err
	})
	if err != nil {
		t.Fatalf("creating schema %s: %v", schema, err)
	}
	if created {
		t.Cleanup(func() {
			if err := exec(context.Background(), "DROP SCHEMA IF EXISTS "+schema+" CASCADE"); err != nil {
				t.Errorf("dropping schema %s: %v", schema, err)
			}
		})
	}
	return WithParam(BaseDSN(), "search_path", schema)
}

// WithParam returns dsn with the parameter name set to value, in a URL DSN
// or in a keyword=value one. value must need no quoting.
func WithParam(dsn, name, value string) string {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err == nil {
			q := u.Query()
			q.Set(name, value)
			u.RawQuery = q.Encode()
			return u.String()
		}
	}
	return dsn + " " + name + "=" + value
}

// Addr returns the TCP address (host:port) of the test server, for a test
// that puts a proxy between its code and the server. A DSN that names a
// Unix socket fails t.
func Addr(t testing.TB) string {
	t.Helper()
	Require(t)
	cfg, err := pgconn.ParseConfig(BaseDSN())
	if err != nil {
		t.Fatalf("parsing %s: %v", EnvDSN, err)
	}
	if strings.HasPrefix(cfg.Host, "/") {
		t.Fatalf("%s names the Unix socket %s: this test needs the server's TCP address", EnvDSN, cfg.Host)
	}
	return net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port)))
}

// Via returns dsn with its host and port replaced by those of addr
// (host:port).
func Via(dsn, addr string) string {
	host, port, _ := net.SplitHostPort(addr)
	return WithParam(WithParam(dsn, "host", host), "port", port)
}

// exec runs one statement on the test database.
func exec(ctx context.Context, sql string) error {
	return withConn(ctx, func(conn *pgx.Conn) error {
		_, err := conn.Exec(ctx, sql)
		return err
	})
}

// admin is the pool of the test database's connections that create and
// drop schemas, shared by the tests of a process.
var admin struct {
	once sync.Once
	pool *pgxpool.Pool
	err  error
}

func withConn(ctx context.Context, fn func(*pgx.Conn) error) error {
	admin.once.Do(func() {
		admin.pool, admin.err = pgxpool.New(context.Background(), BaseDSN())
	})
	if admin.err != nil {
		return admin.err
	}
	ctx, cancel := context.WithTimeout(ctx, reachTimeout)
	defer cancel()
	return admin.pool.AcquireFunc(ctx, func(c *pgxpool.Conn) error { return fn(c.Conn()) })
}

// Tests are the tests of a package that uses pgtest, for a TestMain that
// checks that no goroutine outlives them:
// goleak.VerifyTestMain(pgtest.Tests{M: m}). Run runs them, then closes
// the connections that create and drop schemas, which otherwise stay open
// as long as the process.
type Tests struct{ M *testing.M }

// Run runs the tests and closes pgtest's connections.
func (t Tests) Run() int {
	defer func() {
		if admin.pool != nil {
			admin.pool.Close()
		}
	}()
	return t.M.Run()
}

// redacted is dsn without its password, for messages.
func redacted(dsn string) string {
	if u, err := url.Parse(dsn); err == nil && u.User != nil {
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
		}
		return u.String()
	}
	if strings.Contains(dsn, "password") {
		return "the DSN in " + EnvDSN
	}
	return dsn
}
