package pgstore

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// DefaultConnectTimeout bounds a connection attempt (dial, TLS, startup
// and authentication) when the DSN names no connect_timeout.
const DefaultConnectTimeout = 5 * time.Second

// applicationName is the application_name of the connections (shown in
// pg_stat_activity) when the DSN names none.
const applicationName = "caddy-uma"

// Location is where a DSN points, without its secrets: fit for logs and
// for telling databases apart.
type Location struct {
	// Hosts are host:port pairs, or socket directories with a port, the
	// first one first and then the fallbacks that libpq tries in order.
	Hosts []string
	// Database and User are the database name and the role.
	Database string
	User     string
	// SearchPath is the search_path the DSN sets, if any: its first schema
	// holds the tables.
	SearchPath string
}

// String renders l as a URL without password, such as
// postgres://uma@db1:5432,db2:5432/uma?search_path=uma.
func (l Location) String() string {
	var b strings.Builder
	b.WriteString("postgres://")
	if l.User != "" {
		b.WriteString(l.User)
		b.WriteByte('@')
	}
	b.WriteString(strings.Join(l.Hosts, ","))
	b.WriteByte('/')
	b.WriteString(l.Database)
	if l.SearchPath != "" {
		b.WriteString("?search_path=")
		b.WriteString(l.SearchPath)
	}
	return b.String()
}

// ParseDSN checks a DSN without connecting and tells where it points. It
// refuses what Open would refuse.
//
// The DSN is libpq's, as a URL or as keyword=value pairs, with libpq's
// parameters (host, port, dbname, user, password, sslmode, connect_timeout,
// ..., and the PG* environment variables for those it does not name), any
// server setting such as search_path, and the pool settings of pgxpool:
//
//	pool_max_conns            connections at most; default 4, or the number of CPUs if more
//	pool_min_conns            connections kept open; default 0
//	pool_min_idle_conns       idle connections kept open; default 0
//	pool_max_conn_lifetime    a connection is replaced after this; default 1h
//	pool_max_conn_idle_time   an idle connection is closed after this; default 30m
//	pool_health_check_period  idle connections are checked this often; default 1m
//	pool_ping_timeout         bound of the check of a connection idle for over 1s
//	                          before its use; default none (the call's deadline)
//
// connect_timeout (seconds) defaults to DefaultConnectTimeout here, not to
// libpq's none. synchronous_commit defaults to on; "off" is refused, since
// the store acknowledges only durable writes (remote_write, remote_apply
// and local are accepted). application_name defaults to caddy-uma.
// plan_cache_mode defaults to force_custom_plan: every query is planned for
// the table as it is, not once for good after five runs (PostgreSQL's
// generic plans, kept until the next ANALYZE, are sequential scans when
// they were made while the table was nearly empty, as in a new deployment).
func ParseDSN(dsn string) (Location, error) {
	cfg, err := poolConfig(dsn)
	if err != nil {
		return Location{}, err
	}
	cc := cfg.ConnConfig.Config
	loc := Location{
		Hosts:      []string{hostPort(cc.Host, cc.Port)},
		Database:   cc.Database,
		User:       cc.User,
		SearchPath: cc.RuntimeParams["search_path"],
	}
	for _, fb := range cc.Fallbacks {
		// sslmode=prefer (the default) tries each host with TLS and
		// without: one host, twice.
		if hp := hostPort(fb.Host, fb.Port); !slices.Contains(loc.Hosts, hp) {
			loc.Hosts = append(loc.Hosts, hp)
		}
	}
	return loc, nil
}

func hostPort(host string, port uint16) string {
	return net.JoinHostPort(host, strconv.Itoa(int(port)))
}

// poolConfig parses a DSN into the pool's configuration, with this
// package's defaults.
func poolConfig(dsn string) (*pgxpool.Config, error) {
	if strings.TrimSpace(dsn) == "" {
		return nil, errors.New("pgstore: the DSN is empty")
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("pgstore: invalid DSN: %s", parseErrorText(err))
	}
	cc := cfg.ConnConfig
	if cc.ConnectTimeout == 0 {
		cc.ConnectTimeout = DefaultConnectTimeout
	}
	params := cc.RuntimeParams
	switch params["synchronous_commit"] {
	case "":
		params["synchronous_commit"] = "on"
	case "off", "false", "no", "0":
		return nil, errors.New("pgstore: invalid DSN: synchronous_commit=off would acknowledge writes " +
			"that a crash of the database loses; leave it out (on) or name a durable level")
	}
	if params["application_name"] == "" {
		params["application_name"] = applicationName
	}
	if params["plan_cache_mode"] == "" {
		params["plan_cache_mode"] = "force_custom_plan"
	}
	return cfg, nil
}

// parseErrorText is the reason of a DSN parse error without the DSN:
// pgx quotes the DSN in its errors, masking passwords only where it
// recognizes them.
func parseErrorText(err error) string {
	var pce *pgconn.ParseConfigError
	if !errors.As(err, &pce) {
		return "cannot parse it"
	}
	bare := *pce
	bare.ConnString = ""
	return strings.TrimPrefix(bare.Error(), "cannot parse ``: ")
}
