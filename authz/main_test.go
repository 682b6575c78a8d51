package authz

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/caddy-uma/caddy-uma/store/pgstore/pgtest"
)

// TestMain fails the package's tests when a goroutine outlives them (the
// PostgreSQL tests' own pool closed first).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(pgtest.Tests{M: m})
}
