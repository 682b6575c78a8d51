//go:build unix

package integration

import (
	"slices"
	"strings"
	"testing"

	"github.com/caddy-uma/caddy-uma/store/pgstore/pgtest"
)

// TestPostgresRestart runs the AS on PostgreSQL (a schema of its own on the
// test server, see pgtest): discovery, a PAT, a resource registration, then
// a restart, after which the resource and the signing key are still there.
func TestPostgresRestart(t *testing.T) {
	skipShort(t)
	dsn := pgtest.DSN(t)
	cfg := newConfig(t)
	cfg.Postgres = "{env.UMA_PG_DSN}"
	cfg.Env = []string{pgtest.EnvDSN + "=" + dsn}
	inst := startCaddy(t, cfg)
	issuer := cfg.issuer()

	if _, err := discovery(issuer); err != nil {
		t.Error(err)
	}
	kids, err := signingKeyIDs(issuer)
	if err != nil {
		t.Errorf("before the restart: %v", err)
	}
	id, err := registerWithNewPAT(issuer)
	if err != nil {
		t.Errorf("before the restart: %v", err)
	}
	if n := inst.countLog(logStorageOpened, "uma.storage.postgres postgres://uma@"); n != 1 {
		t.Errorf("%d storage openings on postgres logged, want 1", n)
	}

	inst.stop()
	inst.checkLog()
	if n := inst.countLog(logStorageClosed); n != 1 {
		t.Errorf("database closed %d times at shutdown, want 1", n)
	}

	again := startCaddy(t, cfg)
	if id != "" {
		if err := checkWithNewPAT(issuer, id); err != nil {
			t.Errorf("after the restart: %v", err)
		}
	}
	if kids != nil {
		after, err := signingKeyIDs(issuer)
		if err != nil {
			t.Errorf("after the restart: %v", err)
		} else if !slices.Contains(after, kids[0]) {
			t.Errorf("signing keys %v after the restart, want the persisted key %s", after, kids[0])
		}
	}
	again.checkLog()
	for _, log := range []string{inst.log.String(), again.log.String()} {
		if strings.Contains(log, dsn) || strings.Contains(log, "uma:uma@") {
			t.Errorf("the log holds the DSN with its password")
		}
	}
}
