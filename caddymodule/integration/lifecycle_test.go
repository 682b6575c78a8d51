//go:build unix

package integration

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Lifecycle assertions (the process starts, reloads, restarts, validates,
// logs no lock error) stop a test with t.Fatal. Protocol assertions (PATs,
// resources) report with t.Error and let the lifecycle checks go on.

// Log fragments of the uma app (the tests run Caddy with debug).
const (
	logStorageOpened = `"msg":"storage opened"`
	logShared        = `"shared_with_previous_config":true`
	logStorageClosed = `"msg":"storage closed"`
)

func TestDiscovery(t *testing.T) {
	skipShort(t)
	cfg := newConfig(t)
	inst := startCaddy(t, cfg)

	if _, err := discovery(cfg.issuer()); err != nil {
		t.Error(err)
	}

	// Paths outside the AS go on to the site's next handler.
	resp, err := httpClient.Get(cfg.issuer() + "/somewhere/else")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != "site" {
		t.Errorf("GET /somewhere/else = %d %q, want the site's respond (200 \"site\")", resp.StatusCode, body)
	}
	inst.checkLog()
}

func TestReload(t *testing.T) {
	skipShort(t)
	cfg := newConfig(t)
	inst := startCaddy(t, cfg)
	issuer := cfg.issuer()

	id, err := registerWithNewPAT(issuer)
	if err != nil {
		t.Errorf("before the reloads: %v", err)
	}

	// First reload: one more client and another PAT lifetime.
	first := cfg
	first.ExtraClients = []string{"extra-app"}
	first.PATTTL = "2h"
	inst.reload(first)
	inst.alive()
	checkAdminConfig(t, inst, "/config/apps/uma/pat_ttl", fmt.Sprint((2 * time.Hour).Nanoseconds()))
	checkAdminConfig(t, inst, "/config/apps/uma/clients/2/id", `"extra-app"`)
	if n := inst.countLog(logStorageOpened, logShared); n != 1 {
		t.Errorf("after the first reload: %d reuses of the open database logged, want 1", n)
	}
	if id != "" {
		if err := checkWithNewPAT(issuer, id); err != nil {
			t.Errorf("after the first reload: %v", err)
		}
	}

	// Second reload.
	second := first
	second.ExtraClients = []string{"extra-app", "third-app"}
	inst.reload(second)
	inst.alive()
	checkAdminConfig(t, inst, "/config/apps/uma/clients/3/id", `"third-app"`)
	if n := inst.countLog(logStorageOpened, logShared); n != 2 {
		t.Errorf("after the second reload: %d reuses of the open database logged, want 2", n)
	}
	if id != "" {
		if err := checkWithNewPAT(issuer, id); err != nil {
			t.Errorf("after the second reload: %v", err)
		}
	}
	// A resource registered after the reloads works as well.
	if _, err := registerWithNewPAT(issuer); err != nil {
		t.Errorf("after the second reload: %v", err)
	}
	if _, err := discovery(issuer); err != nil {
		t.Errorf("after the second reload: %v", err)
	}

	if n := inst.countLog(logStorageOpened); n != 3 {
		t.Errorf("%d storage acquisitions logged, want 3 (start and two reloads)", n)
	}
	if n := inst.countLog(logStorageClosed); n != 0 {
		t.Errorf("the database was closed %d times while Caddy ran", n)
	}
	inst.checkLog()
}

func TestRestart(t *testing.T) {
	skipShort(t)
	checkRestart(t, newConfig(t))
}

// checkRestart runs Caddy with cfg, registers a resource, stops Caddy and
// starts it again: the resource and the signing key are still there. It
// returns the two instances.
func checkRestart(t *testing.T, cfg config) (first, again *instance) {
	t.Helper()
	inst := startCaddy(t, cfg)
	issuer := cfg.issuer()

	kids, err := signingKeyIDs(issuer)
	if err != nil {
		t.Errorf("before the restart: %v", err)
	}
	id, err := registerWithNewPAT(issuer)
	if err != nil {
		t.Errorf("before the restart: %v", err)
	}

	inst.stop()
	inst.checkLog()
	if n := inst.countLog(logStorageClosed); n != 1 {
		t.Errorf("database closed %d times at shutdown, want 1", n)
	}

	// Same ports (same issuer), same storage.
	again = startCaddy(t, cfg)
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
	return inst, again
}

func TestValidateWhileRunning(t *testing.T) {
	skipShort(t)
	cfg := newConfig(t)
	inst := startCaddy(t, cfg)

	out, err := inst.caddyCommand("validate", "--config", inst.caddyfile, "--adapter", "caddyfile")
	if err != nil {
		t.Fatalf("caddy validate beside a running server: %v\n%s", err, out)
	}
	if !strings.Contains(out, "Valid configuration") {
		t.Errorf("caddy validate output lacks \"Valid configuration\":\n%s", out)
	}
	checkLogText(t, out)

	inst.alive()
	if _, err := discovery(cfg.issuer()); err != nil {
		t.Errorf("after validate: %v", err)
	}
	inst.checkLog()
}

func TestValidateRejectsBadConfig(t *testing.T) {
	skipShort(t)
	cfg := newConfig(t)
	inst := startCaddy(t, cfg)

	bad := cfg
	bad.PATTTL = "forever"
	path := inst.dir + "/Caddyfile.bad"
	writeCaddyfile(t, path, bad)
	out, err := inst.caddyCommand("validate", "--config", path, "--adapter", "caddyfile")
	if err == nil {
		t.Fatalf("caddy validate accepted pat_ttl forever:\n%s", out)
	}
	if !strings.Contains(out, "bad pat_ttl duration") || !strings.Contains(out, "forever") {
		t.Errorf("validate output does not name the bad duration:\n%s", out)
	}
	// A failed reload leaves the running config in place.
	out, err = inst.caddyCommand("reload", "--config", path, "--adapter", "caddyfile", "--address", cfg.AdminAddr)
	if err == nil {
		t.Fatalf("caddy reload accepted pat_ttl forever:\n%s", out)
	}
	inst.alive()
	if _, err := discovery(cfg.issuer()); err != nil {
		t.Errorf("after a failed reload: %v", err)
	}
	inst.checkLog()
}

func TestSecondInstanceOnSameStorage(t *testing.T) {
	skipShort(t)
	cfg := newConfig(t)
	inst := startCaddy(t, cfg)

	other := cfg
	other.AdminAddr = fmt.Sprintf("127.0.0.1:%d", freePort(t))
	other.Port = freePort(t)
	second := launchCaddy(t, other)
	select {
	case <-second.exited:
	case <-time.After(30 * time.Second):
		t.Fatal("a second caddy on the same storage kept running")
	}
	if second.exitErr == nil {
		t.Fatal("a second caddy on the same storage exited with status 0")
	}
	log := second.log.String()
	if !strings.Contains(log, "locked") || !strings.Contains(log, "caddy reload") {
		t.Errorf("the second caddy's log does not explain the lock and suggest caddy reload:\n%s", log)
	}

	inst.alive()
	if _, err := discovery(cfg.issuer()); err != nil {
		t.Errorf("first instance after the second one failed: %v", err)
	}
	inst.checkLog()
}

// TestNoUnavailableDuringReload sends requests without pause while the
// config reloads: none gets 503 temporarily_unavailable or fails (after the
// usual retry of an idempotent request on a closed connection), because the
// new config starts before the old one stops and the old server answers its
// in-flight requests until it is cleaned up.
func TestNoUnavailableDuringReload(t *testing.T) {
	skipShort(t)
	cfg := newConfig(t)
	inst := startCaddy(t, cfg)
	url := cfg.issuer() + "/.well-known/uma2-configuration"

	var (
		total, unavailable, retried atomic.Int64
		mu                          sync.Mutex
		failures                    []string
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := &http.Client{Timeout: 10 * time.Second}
			for {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := client.Get(url)
				total.Add(1)
				if err != nil {
					// The old server closes its idle keep-alive connections
					// when it shuts down; a request sent on one at that
					// moment fails, and clients retry idempotent requests
					// (RFC 9110, section 9.2.2). Do the same, once.
					retried.Add(1)
					resp, err = client.Get(url)
				}
				if err != nil {
					mu.Lock()
					failures = append(failures, err.Error())
					mu.Unlock()
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusServiceUnavailable {
					unavailable.Add(1)
				}
			}
		}()
	}

	const reloads = 10
	for i := range reloads {
		next := cfg
		next.PATTTL = fmt.Sprintf("%dm", 61+i)
		inst.reload(next)
		time.Sleep(50 * time.Millisecond)
	}
	close(stop)
	wg.Wait()

	t.Logf("%d requests during %d reloads, %d retried after a closed connection", total.Load(), reloads, retried.Load())
	if n := unavailable.Load(); n > 0 {
		t.Errorf("%d of %d requests got 503 during reloads", n, total.Load())
	}
	if len(failures) > 0 {
		t.Errorf("%d of %d requests failed during reloads, first: %s", len(failures), total.Load(), failures[0])
	}
	inst.alive()
	inst.checkLog()
}

// checkAdminConfig checks a value of the running config through the admin
// API.
func checkAdminConfig(t *testing.T, inst *instance, path, want string) {
	t.Helper()
	resp, err := httpClient.Get("http://" + inst.cfg.AdminAddr + path)
	if err != nil {
		t.Fatalf("admin API: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if got := strings.TrimSpace(string(body)); resp.StatusCode != http.StatusOK || got != want {
		t.Fatalf("GET %s = %d %s, want %s: the reload did not take effect", path, resp.StatusCode, got, want)
	}
}
