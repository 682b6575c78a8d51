//go:build unix

package integration

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"text/template"
	"time"
)

// config is what the tests vary in the Caddyfile.
type config struct {
	AdminAddr string // host:port of the admin API
	Port      int    // the site's port; the issuer is http://127.0.0.1:Port
	Storage   string // the Badger directory
	// MinFreeSpace is the storage's min_free_space; empty: the default.
	MinFreeSpace string
	// Postgres, if set, is the DSN of a storage postgres line, in place of
	// Badger, such as {env.UMA_PG_DSN}.
	Postgres string
	// Env is added to the environment of caddy run.
	Env    []string
	PATTTL string
	// ExtraClients are client ids added with the secret "<id>-secret".
	ExtraClients []string
	// Policies, if set, is the operator directory of rules.
	Policies string
}

var caddyfileTemplate = template.Must(template.New("Caddyfile").Parse(`{
	debug
	admin {{.AdminAddr}}
	persist_config off

	uma {
		issuer http://127.0.0.1:{{.Port}}
{{- if .Postgres}}
		storage postgres {{.Postgres}}
{{- else}}
		storage badger {{.Storage}}
{{- if .MinFreeSpace}} {
			min_free_space {{.MinFreeSpace}}
		}
{{- end}}
{{- end}}
		pat_ttl {{.PATTTL}}
{{- if .Policies}}
		policies {{.Policies}}
{{- end}}
		client rs-api {
			secret rs-api-secret
			resource_server
		}
		client demo-app {
			secret demo-app-secret
		}
{{- range .ExtraClients}}
		client {{.}} {
			secret {{.}}-secret
		}
{{- end}}
	}
}

http://127.0.0.1:{{.Port}} {
	bind 127.0.0.1
	uma_server
	respond "site" 200
}
`))

// issuer is the issuer URL of the config.
func (c config) issuer() string { return fmt.Sprintf("http://127.0.0.1:%d", c.Port) }

// newConfig returns a config on free ports, storing into a new directory.
func newConfig(t *testing.T) config {
	t.Helper()
	return config{
		AdminAddr: fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		Port:      freePort(t),
		Storage:   filepath.Join(t.TempDir(), "uma"),
		PATTTL:    "1h",
	}
}

// freePort returns a TCP port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// instance is one running caddy process.
type instance struct {
	t         *testing.T
	dir       string // working directory, home and XDG directories
	caddyfile string
	cfg       config
	cmd       *exec.Cmd
	log       *syncBuffer
	exited    chan struct{}
	exitErr   error
}

// syncBuffer collects the output of a process.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// writeCaddyfile renders cfg into path.
func writeCaddyfile(t *testing.T, path string, cfg config) {
	t.Helper()
	var buf bytes.Buffer
	if err := caddyfileTemplate.Execute(&buf, cfg); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
}

// caddyEnv is the environment of every caddy command: a private home and
// data directory, so nothing touches the user's.
func caddyEnv(dir string) []string {
	return append(os.Environ(),
		"HOME="+filepath.Join(dir, "home"),
		"XDG_DATA_HOME="+filepath.Join(dir, "data"),
		"XDG_CONFIG_HOME="+filepath.Join(dir, "config"),
	)
}

// startCaddy runs `caddy run` with cfg and waits until the site answers.
// The process is stopped at the end of the test.
func startCaddy(t *testing.T, cfg config) *instance {
	t.Helper()
	inst := launchCaddy(t, cfg)
	if err := inst.waitReady(30 * time.Second); err != nil {
		t.Fatalf("caddy did not start: %v\n%s", err, inst.log)
	}
	return inst
}

// launchCaddy starts `caddy run` with cfg without waiting for it.
func launchCaddy(t *testing.T, cfg config) *instance {
	t.Helper()
	dir := t.TempDir()
	inst := &instance{
		t:         t,
		dir:       dir,
		caddyfile: filepath.Join(dir, "Caddyfile"),
		cfg:       cfg,
		log:       new(syncBuffer),
		exited:    make(chan struct{}),
	}
	writeCaddyfile(t, inst.caddyfile, cfg)
	inst.run(t, cfg.Env, "")
	return inst
}

// run starts `caddy run` on inst's Caddyfile, with env added to its
// environment. The process is stopped at the end of the test, and its log
// (after preamble) shown if the test failed.
func (inst *instance) run(t testing.TB, env []string, preamble string) {
	t.Helper()
	inst.cmd = exec.Command(caddyBin, "run", "--config", inst.caddyfile, "--adapter", "caddyfile")
	inst.cmd.Dir = inst.dir
	inst.cmd.Env = append(caddyEnv(inst.dir), env...)
	inst.cmd.Stdout = inst.log
	inst.cmd.Stderr = inst.log
	if err := inst.cmd.Start(); err != nil {
		t.Fatalf("starting caddy: %v", err)
	}
	go func() {
		inst.exitErr = inst.cmd.Wait()
		close(inst.exited)
	}()
	t.Cleanup(func() {
		inst.kill()
		if t.Failed() {
			t.Logf("%slog of caddy (pid %d):\n%s", preamble, inst.cmd.Process.Pid, inst.log)
		}
	})
}

// waitReady waits until the admin API and the site answer.
func (inst *instance) waitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	client := &http.Client{Timeout: time.Second}
	for {
		select {
		case <-inst.exited:
			return fmt.Errorf("caddy exited: %v", inst.exitErr)
		default:
		}
		if admin, err := client.Get("http://" + inst.cfg.AdminAddr + "/config/"); err == nil {
			admin.Body.Close()
			if site, err := client.Get(inst.cfg.issuer() + "/"); err == nil {
				site.Body.Close()
				if site.StatusCode != http.StatusServiceUnavailable {
					return nil
				}
			}
		}
		if time.Now().After(deadline) {
			return errors.New("timed out")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// caddyCommand runs another caddy subcommand in the instance's environment.
func (inst *instance) caddyCommand(args ...string) (string, error) {
	cmd := exec.Command(caddyBin, args...)
	cmd.Dir = inst.dir
	cmd.Env = caddyEnv(inst.dir)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// reload rewrites the Caddyfile with cfg and runs `caddy reload`.
func (inst *instance) reload(cfg config) {
	inst.t.Helper()
	writeCaddyfile(inst.t, inst.caddyfile, cfg)
	out, err := inst.caddyCommand("reload", "--config", inst.caddyfile, "--adapter", "caddyfile",
		"--address", inst.cfg.AdminAddr)
	if err != nil {
		inst.t.Fatalf("caddy reload: %v\n%s", err, out)
	}
	inst.cfg = cfg
}

// stop sends SIGTERM and waits for a clean exit.
func (inst *instance) stop() {
	inst.t.Helper()
	if err := inst.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		inst.t.Fatalf("SIGTERM: %v", err)
	}
	select {
	case <-inst.exited:
	case <-time.After(30 * time.Second):
		inst.t.Fatal("caddy did not exit within 30s of SIGTERM")
	}
	if inst.exitErr != nil {
		inst.t.Fatalf("caddy exited with %v after SIGTERM", inst.exitErr)
	}
}

// kill ends the process if it still runs.
func (inst *instance) kill() {
	select {
	case <-inst.exited:
		return
	default:
	}
	_ = inst.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-inst.exited:
	case <-time.After(10 * time.Second):
		_ = inst.cmd.Process.Kill()
		<-inst.exited
	}
}

// alive fails the test if the process has exited.
func (inst *instance) alive() {
	inst.t.Helper()
	select {
	case <-inst.exited:
		inst.t.Fatalf("caddy exited: %v", inst.exitErr)
	default:
	}
}

// badLogLines are log fragments that mean a lifecycle bug: the database
// opened twice (lock), the usage pool misused, a panic or a data race.
var badLogLines = []string{
	"locked",
	"directory lock",
	"deleted more than stored",
	"panic",
	"DATA RACE",
	"closing storage",
	"store: closed",
}

// checkLog fails the test if the log of the process shows a lifecycle bug.
func (inst *instance) checkLog() {
	inst.t.Helper()
	checkLogText(inst.t, inst.log.String())
}

func checkLogText(t *testing.T, log string) {
	t.Helper()
	for _, line := range strings.Split(log, "\n") {
		for _, bad := range badLogLines {
			if strings.Contains(line, bad) {
				t.Errorf("log line with %q: %s", bad, line)
			}
		}
	}
}

// countLog counts the log lines that contain every one of parts.
func (inst *instance) countLog(parts ...string) int {
	n := 0
	for _, line := range strings.Split(inst.log.String(), "\n") {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(line, p)
		}
		if all {
			n++
		}
	}
	return n
}
