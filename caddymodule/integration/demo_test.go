//go:build unix

package integration

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// repoRoot is the repository root, seen from this package's directory.
const repoRoot = "../.."

// The demo's fixed addresses (Caddyfile.example).
var demoPorts = []int{8080, 8081, 8082, 2019}

// TestDemoScript runs examples/demo.sh against Caddyfile.example, as a
// user would after the README's run command, in a copy of the repository
// layout (the Caddyfile's paths are relative). The demo uses fixed ports:
// the test skips when one is taken (another Caddy on this machine).
func TestDemoScript(t *testing.T) {
	skipShort(t)
	for _, tool := range []string{"bash", "curl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("examples/demo.sh needs %s", tool)
		}
	}
	for _, port := range demoPorts {
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			t.Skipf("port %d is in use; the demo needs ports %v", port, demoPorts)
		}
		l.Close()
	}

	dir := t.TempDir()
	copyFile(t, filepath.Join(repoRoot, "Caddyfile.example"), filepath.Join(dir, "Caddyfile.example"))
	copyDir(t, filepath.Join(repoRoot, "examples"), filepath.Join(dir, "examples"))

	inst := &instance{
		t: t, dir: dir, caddyfile: filepath.Join(dir, "Caddyfile.example"),
		cfg: config{AdminAddr: "localhost:2019", Port: 8081},
		log: new(syncBuffer), exited: make(chan struct{}),
	}
	inst.cmd = exec.Command(caddyBin, "run", "--config", "Caddyfile.example")
	inst.cmd.Dir = dir
	inst.cmd.Env = caddyEnv(dir)
	inst.cmd.Stdout = inst.log
	inst.cmd.Stderr = inst.log
	if err := inst.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		inst.exitErr = inst.cmd.Wait()
		close(inst.exited)
	}()
	t.Cleanup(func() {
		inst.kill()
		if t.Failed() {
			t.Logf("log of caddy:\n%s", inst.log)
		}
	})
	if err := inst.waitReady(30 * time.Second); err != nil {
		t.Fatalf("caddy did not start: %v", err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", filepath.Join("examples", "demo.sh"))
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	t.Logf("examples/demo.sh:\n%s", out)
	if err != nil {
		t.Fatalf("examples/demo.sh: %v", err)
	}
	if !strings.Contains(string(out), "Demo complete") {
		t.Error("the demo did not complete")
	}
	// The same script, with parameters: another record of alice's (registered
	// on first sight), given as flags and as environment variables; a
	// requester alice's rules give nothing; wrong options.
	demo := func(env []string, args ...string) (string, int) {
		t.Helper()
		cmd := exec.CommandContext(ctx, "bash", append([]string{filepath.Join("examples", "demo.sh")}, args...)...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.CombinedOutput()
		code := 0
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			code = exit.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return string(out), code
	}
	for _, c := range []struct {
		name string
		env  []string
		args []string
		code int
		want []string
	}{
		{"flags", nil, []string{"--record", "/api/records/alice/2", "--requester", "bob2", "--email", "bob@example.com"}, 0,
			[]string{"GET http://localhost:8081/api/records/alice/2", "ID token for bob2", "refreshes the RPT", "Demo complete"}},
		{"environment", []string{"RECORD=/api/records/alice/3", "CLIENT_ID=demo-app"}, nil, 0, []string{"records/alice/3", "Demo complete"}},
		{"refused", nil, []string{"--requester", "carol", "--email", "carol@example.com"}, 1, []string{"FAIL: request_denied", "carol"}},
		{"wrong secret", nil, []string{"--client-secret", "nope"}, 1, []string{"FAIL: HTTP 401 invalid_client"}},
		{"help", nil, []string{"--help"}, 0, []string{"Usage: examples/demo.sh", "--requester", "[REQUESTER]", "Exit status"}},
		{"unknown option", nil, []string{"--bogus"}, 2, []string{"unknown option --bogus"}},
		{"missing value", nil, []string{"--record"}, 2, []string{"--record needs a value"}},
	} {
		out, code := demo(c.env, c.args...)
		if code != c.code {
			t.Errorf("%s: exit %d, want %d\n%s", c.name, code, c.code, out)
		}
		for _, w := range c.want {
			if !strings.Contains(out, w) {
				t.Errorf("%s: the output does not say %q:\n%s", c.name, w, out)
			}
		}
	}

	if _, err := os.Stat(filepath.Join(dir, "data", "uma")); err != nil {
		t.Errorf("the database is not in ./data/uma: %v", err)
	}
	inst.checkLog()
}

// TestXcaddyBuildListsModules builds the binary with xcaddy.sh, as the
// README says, and checks that it has the caddy-uma modules. xcaddy takes
// minutes: it runs only with CADDY_UMA_XCADDY=1.
func TestXcaddyBuildListsModules(t *testing.T) {
	skipShort(t)
	if os.Getenv("CADDY_UMA_XCADDY") != "1" {
		t.Skip("set CADDY_UMA_XCADDY=1 to build with xcaddy.sh (several minutes)")
	}
	out := filepath.Join(t.TempDir(), "caddy-uma")
	cmd := exec.Command("sh", "./xcaddy.sh")
	cmd.Dir = repoRoot
	cmd.Env = append(os.Environ(), "OUTPUT="+out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("xcaddy.sh: %v\n%s", err, b)
	}
	checkListModules(t, out)
}

// TestBuildListsModules checks that the binary of ./cmd/caddy lists the
// caddy-uma modules.
func TestBuildListsModules(t *testing.T) {
	skipShort(t)
	checkListModules(t, caddyBin)
}

// checkListModules fails the test unless `bin list-modules` lists every
// caddy-uma module.
func checkListModules(t *testing.T, bin string) {
	t.Helper()
	b, err := exec.Command(bin, "list-modules").CombinedOutput()
	if err != nil {
		t.Fatalf("list-modules: %v\n%s", err, b)
	}
	for _, m := range []string{"uma", "uma.storage.badger", "uma.storage.postgres", "http.handlers.uma_server", "http.handlers.uma_protect", "http.handlers.uma_demo_idp"} {
		if !strings.Contains("\n"+string(b), "\n"+m+"\n") {
			t.Errorf("module %s is not listed:\n%s", m, b)
		}
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, info.Mode().Perm()); err != nil {
		t.Fatal(err)
	}
}

func copyDir(t *testing.T, from, to string) {
	t.Helper()
	err := filepath.WalkDir(from, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, path)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(to, rel), 0o755)
		}
		copyFile(t, path, filepath.Join(to, rel))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
