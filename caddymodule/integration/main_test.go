//go:build unix

// Package integration runs the real Caddy binary of ./cmd/caddy with the
// caddy-uma modules, as a subprocess configured by a Caddyfile, and checks
// the authorization server through its lifecycle: start, reloads, restart,
// validate beside a running server. Every port (the site and the admin API)
// is chosen at runtime, so the tests need nothing else on the machine.
//
// The tests skip under -short. When run with -race, the binary is built
// with the race detector too, and a reported race fails the test.
package integration

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// caddyBin is the binary built by TestMain; empty under -short.
var caddyBin string

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		os.Exit(m.Run())
	}

	dir, err := os.MkdirTemp("", "caddy-uma-integration-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	caddyBin = filepath.Join(dir, "caddy")
	args := []string{"build", "-o", caddyBin}
	if raceEnabled {
		args = append(args, "-race")
	}
	args = append(args, "github.com/caddy-uma/caddy-uma/cmd/caddy")
	start := time.Now()
	if out, err := exec.Command("go", args...).CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building the caddy binary: %v\n%s", err, out)
		_ = os.RemoveAll(dir)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "built %s in %s (race: %v)\n", caddyBin, time.Since(start).Round(time.Second), raceEnabled)

	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// skipShort skips integration tests under -short.
func skipShort(t *testing.T) {
	t.Helper()
	if testing.Short() || caddyBin == "" {
		t.Skip("integration test: runs the caddy binary; skipped under -short")
	}
}
