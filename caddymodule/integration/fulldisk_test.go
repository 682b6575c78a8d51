//go:build unix

package integration

import (
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/caddy-uma/caddy-uma/store/storetest"
)

// Log messages of the storage's free-space guard.
const (
	logRefusingWrites  = "free disk space is below the minimum: refusing writes"
	logAcceptingWrites = "free disk space is above the minimum again: accepting writes"
)

// tokenStatus sends the client_credentials grant of the resource server and
// returns the status, or an error if no answer came (the process died or
// the connection failed).
func tokenStatus(issuer string) (int, string, error) {
	form := url.Values{"grant_type": {"client_credentials"}, "scope": {"uma_protection"}}
	req, err := http.NewRequest(http.MethodPost, issuer+"/token", strings.NewReader(form.Encode()))
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(rsID, rsSecret)
	resp, err := httpClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	return resp.StatusCode, strings.TrimSpace(string(body)), nil
}

// TestFullDisk runs Caddy with its database on a small tmpfs, fills the
// disk as another process would, and checks that Caddy stays up: requests
// that write are refused, reads are answered, and once the disk has space
// again token requests succeed without a restart. Before the free-space
// guard, Badger's memory-mapped log got SIGBUS and the whole process died.
func TestFullDisk(t *testing.T) {
	skipShort(t)
	disk := storetest.Tmpfs(t, 32<<20)
	cfg := newConfig(t)
	cfg.Storage = filepath.Join(disk, "uma")
	cfg.MinFreeSpace = "8MiB"
	inst := startCaddy(t, cfg)
	issuer := cfg.issuer()

	pat, err := getPAT(issuer)
	if err != nil {
		t.Fatal(err)
	}
	id, err := registerResource(issuer, pat)
	if err != nil {
		t.Fatal(err)
	}

	filler, err := storetest.FillDisk(disk, -1)
	if err != nil {
		t.Fatalf("filling the disk: %v", err)
	}
	// The store measures the free space at most every 100 ms; space that
	// another process takes in that time is covered by min_free_space,
	// which the filler took all at once.
	time.Sleep(200 * time.Millisecond)

	const tries = 20
	for i := range tries {
		status, body, err := tokenStatus(issuer)
		if err != nil {
			inst.alive()
			t.Fatalf("token request %d on a full disk: no answer: %v", i, err)
		}
		if status != http.StatusServiceUnavailable || !strings.Contains(body, `"error":"temporarily_unavailable"`) {
			t.Errorf("token request %d on a full disk = %d %s, want 503 temporarily_unavailable (nothing can be stored)", i, status, body)
		}
	}
	inst.alive()
	if _, err := registerResource(issuer, pat); err == nil {
		t.Error("registering a resource on a full disk succeeded")
	}
	inst.alive()

	// Reads are answered.
	if _, err := discovery(issuer); err != nil {
		t.Errorf("discovery on a full disk: %v", err)
	}
	if _, err := signingKeyIDs(issuer); err != nil {
		t.Errorf("JWKS on a full disk: %v", err)
	}
	if err := checkResource(issuer, pat, id); err != nil {
		t.Errorf("reading a resource with a PAT on a full disk: %v", err)
	}
	if n := inst.countLog(logRefusingWrites); n != 1 {
		t.Errorf("%d log lines %q after %d refused requests, want 1", n, logRefusingWrites, tries+1)
	}

	// Space comes back: a token request works again, without a restart.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := getPAT(issuer)
		if err == nil {
			break
		}
		inst.alive()
		if time.Now().After(deadline) {
			t.Fatalf("no token 10 s after space was freed: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := checkWithNewPAT(issuer, id); err != nil {
		t.Error(err)
	}
	if n := inst.countLog(logAcceptingWrites); n != 1 {
		t.Errorf("%d log lines %q, want 1", n, logAcceptingWrites)
	}
	inst.alive()
	inst.checkLog()
	var st syscall.Statfs_t
	if err := syscall.Statfs(disk, &st); err == nil {
		used := int64(st.Blocks-st.Bfree) * int64(st.Bsize)
		t.Logf("tmpfs of 32 MiB, min_free_space 8 MiB: %d KiB in use after the test", used>>10)
	}
}
