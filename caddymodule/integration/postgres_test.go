//go:build unix

package integration

import (
	"strings"
	"testing"

	"github.com/caddy-uma/caddy-uma/store/pgstore/pgtest"
)

// TestPostgresRestart runs the AS on PostgreSQL (a schema of its own on the
// test server, see pgtest): a PAT, a resource registration, then a restart,
// after which the resource and the signing key are still there, and
// discovery answers.
func TestPostgresRestart(t *testing.T) {
	skipShort(t)
	dsn := pgtest.DSN(t)
	cfg := newConfig(t)
	cfg.Postgres = "{env.UMA_PG_DSN}"
	cfg.Env = []string{pgtest.EnvDSN + "=" + dsn}
	first, again := checkRestart(t, cfg)
	if _, err := discovery(cfg.issuer()); err != nil {
		t.Error(err)
	}
	for _, inst := range []*instance{first, again} {
		if n := inst.countLog(logStorageOpened, "uma.storage.postgres postgres://uma@"); n != 1 {
			t.Errorf("%d storage openings on postgres logged, want 1", n)
		}
		if log := inst.log.String(); strings.Contains(log, dsn) || strings.Contains(log, "uma:uma@") {
			t.Errorf("the log holds the DSN with its password")
		}
	}
}
