package main

import (
	"bufio"
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/template"
	"time"
)

//go:embed Caddyfile.tmpl
var caddyfileSource string

var caddyfileTemplate = template.Must(template.New("Caddyfile").Parse(caddyfileSource))

// The clients of the generated Caddyfile.
const (
	resourceServer       = "rs-api"
	resourceServerSecret = "rs-api-secret"
	clientID             = "bench-app"
	clientSecret         = "bench-app-secret"
)

// caddyConfig is what the Caddyfile template varies.
type caddyConfig struct {
	AdminAddr            string
	Issuer               string
	ASPort, APIPort      int
	BadgerDir            string // Badger backend
	DSN                  string // PostgreSQL backend
	Policies             string
	IdP                  string
	Upstream             string
	ResourceServer       string
	ResourceServerSecret string
	ClientID             string
	ClientSecret         string
	IdleConns            int
}

func (c caddyConfig) render() (string, error) {
	var b strings.Builder
	if err := caddyfileTemplate.Execute(&b, c); err != nil {
		return "", fmt.Errorf("rendering the Caddyfile: %w", err)
	}
	return b.String(), nil
}

// buildCaddy builds ./cmd/caddy of the module that contains the working
// directory into dir.
func buildCaddy(ctx context.Context, dir string, log io.Writer) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("finding the module (go env GOMOD): %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("run bench from the caddy-uma repository (it builds ./cmd/caddy), or give -caddy")
	}
	bin := filepath.Join(dir, "caddy")
	start := time.Now()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/caddy")
	cmd.Dir = filepath.Dir(gomod)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/caddy: %w\n%s", err, out)
	}
	fmt.Fprintf(log, "built %s in %s\n", bin, time.Since(start).Round(100*time.Millisecond))
	return bin, nil
}

// freePort returns want if it is free, or a free port when want is 0.
func freePort(flagName string, want int) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(want)))
	if err != nil {
		return 0, fmt.Errorf("-%s %d: the port is not available (%v): choose another one, or 0 for any free port", flagName, want, err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// caddyProcess is one running Caddy.
type caddyProcess struct {
	cmd     *exec.Cmd
	logPath string
	log     *os.File
	admin   string
	exited  chan struct{}
	waitErr error
	stopped sync.Once
}

// startCaddy writes the Caddyfile into dir and runs `caddy run` on it, with
// Caddy's own data and config directories inside dir.
func startCaddy(bin, dir string, cfg caddyConfig) (*caddyProcess, error) {
	src, err := cfg.render()
	if err != nil {
		return nil, err
	}
	caddyfile := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(caddyfile, []byte(src), 0o600); err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, "caddy.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "run", "--config", caddyfile, "--adapter", "caddyfile")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"HOME="+filepath.Join(dir, "home"),
		"XDG_DATA_HOME="+filepath.Join(dir, "data"),
		"XDG_CONFIG_HOME="+filepath.Join(dir, "config"),
	)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// Its own process group: a Ctrl-C in the terminal reaches the harness,
	// which stops Caddy itself after the last request. Should the harness
	// be killed outright, the kernel stops Caddy too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("starting caddy: %w", err)
	}
	p := &caddyProcess{cmd: cmd, logPath: logPath, log: logFile, admin: cfg.AdminAddr, exited: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

// waitReady waits until every URL answers (any status), or fails with the
// end of Caddy's log when it exits or does not answer within timeout.
func (p *caddyProcess) waitReady(ctx context.Context, timeout time.Duration, urls ...string) error {
	deadline := time.Now().Add(timeout)
	client := &http.Client{Timeout: 2 * time.Second}
	for _, u := range urls {
		for {
			select {
			case <-p.exited:
				return fmt.Errorf("caddy exited at start (%v):\n%s", p.waitErr, p.logTail(30))
			case <-ctx.Done():
				return ctx.Err()
			default:
			}
			resp, err := client.Get(u)
			if err == nil {
				resp.Body.Close()
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("caddy did not answer %s within %s:\n%s", u, timeout, p.logTail(30))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return nil
}

// logTail returns the last n lines of Caddy's log, with a hint for the
// usual cause of a failed start.
func (p *caddyProcess) logTail(n int) string {
	data, _ := os.ReadFile(p.logPath)
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	out := strings.Join(lines, "\n")
	if bytes.Contains(data, []byte("address already in use")) {
		out += "\n(a port is taken: choose others with -as-port, -api-port, -admin-port, or 0 for free ones)"
	}
	return out
}

// stop ends Caddy: SIGTERM (a graceful stop, which closes the database),
// then SIGKILL after 15 s.
func (p *caddyProcess) stop() {
	p.stopped.Do(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(15 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
		p.log.Close()
	})
}

// memory is where Caddy's resident memory is, in MiB: the kernel's view
// (VmRSS, split into anonymous pages and mapped files such as Badger's
// tables and logs) and the Go runtime's (its heap in use, the heap pages
// it holds idle and has not yet returned, and the heap size at which the
// next collection starts).
type memory struct {
	RSS       float64 `json:"rss_mib"`
	Anon      float64 `json:"anon_mib"`
	File      float64 `json:"file_mib"`
	HeapInuse float64 `json:"heap_inuse_mib,omitempty"`
	HeapIdle  float64 `json:"heap_idle_unreturned_mib,omitempty"`
	NextGC    float64 `json:"next_gc_mib,omitempty"`
}

func (m memory) String() string {
	s := fmt.Sprintf("RSS %.0f MiB (anonymous %.0f, files %.0f)", m.RSS, m.Anon, m.File)
	if m.HeapInuse > 0 { // the admin endpoint answered
		s += fmt.Sprintf("; Go heap in use %.0f MiB, idle not yet returned %.0f, next GC at %.0f",
			m.HeapInuse, m.HeapIdle, m.NextGC)
	}
	return s
}

// procMemory reads VmRSS, RssAnon and RssFile of the Caddy process from
// /proc/<pid>/status.
func (p *caddyProcess) procMemory() (memory, error) {
	var m memory
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return m, err
	}
	defer f.Close()
	fields := map[string]*float64{"VmRSS:": &m.RSS, "RssAnon:": &m.Anon, "RssFile:": &m.File}
	found := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		words := strings.Fields(sc.Text())
		if len(words) < 2 {
			continue
		}
		if dst, ok := fields[words[0]]; ok {
			kb, err := strconv.ParseFloat(words[1], 64)
			if err != nil {
				return m, err
			}
			*dst = kb / 1024
			found++
		}
	}
	if found == 0 {
		return m, errors.New("no VmRSS in /proc/<pid>/status")
	}
	return m, sc.Err()
}

// memory reads procMemory and the Go runtime's memstats of Caddy's admin
// endpoint (/debug/vars); without the latter it reports the kernel's view.
func (p *caddyProcess) memory(ctx context.Context) (memory, error) {
	m, err := p.procMemory()
	if err != nil {
		return m, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://%s/debug/vars", p.admin), nil)
	if err != nil {
		return m, err
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return m, nil
	}
	defer resp.Body.Close()
	var vars struct {
		MemStats *struct {
			HeapInuse, HeapIdle, HeapReleased, NextGC uint64
		} `json:"memstats"`
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&vars) != nil || vars.MemStats == nil {
		return m, nil
	}
	const mib = 1 << 20
	ms := vars.MemStats
	m.HeapInuse = float64(ms.HeapInuse) / mib
	m.HeapIdle = float64(ms.HeapIdle-min(ms.HeapReleased, ms.HeapIdle)) / mib
	m.NextGC = float64(ms.NextGC) / mib
	return m, nil
}

// profile fetches a CPU profile of d from Caddy's admin endpoint into path.
func (p *caddyProcess) profile(ctx context.Context, d time.Duration, path string) error {
	secs := max(1, int(d.Round(time.Second)/time.Second))
	return p.fetchProfile(ctx, fmt.Sprintf("profile?seconds=%d", secs), d+30*time.Second, path)
}

// heapProfile fetches a heap profile (in use and allocated since the
// start) from Caddy's admin endpoint into path, after a collection.
func (p *caddyProcess) heapProfile(ctx context.Context, path string) error {
	return p.fetchProfile(ctx, "heap?gc=1", 30*time.Second, path)
}

// fetchProfile copies /debug/pprof/<what> of the admin endpoint into path.
func (p *caddyProcess) fetchProfile(ctx context.Context, what string, timeout time.Duration, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet,
		fmt.Sprintf("http://%s/debug/pprof/%s", p.admin, what), nil)
	if err != nil {
		return err
	}
	resp, err := (&http.Client{Timeout: timeout}).Do(req)
	if err != nil {
		return fmt.Errorf("profile: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("profile: %s: %s", resp.Status, b)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
