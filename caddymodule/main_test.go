package caddymodule

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/caddy-uma/caddy-uma/store/pgstore/pgtest"
)

// TestMain fails the package's tests when a goroutine outlives them.
// Nothing of Caddy's is ignored: the tests stop what they start.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(pgtest.Tests{M: m})
}
