package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The harness is tested as users run it: its flags, then a run of the
// real binary on loopback. The smoke pass is what CI runs; the figures are
// not checked (no timed assertions), only that every scenario got answers
// of its kind.

// inCI reports whether the tests run in CI, where nothing may skip.
func inCI() bool { return os.Getenv("CI") == "true" }

// requireLong skips t under -short, except in CI.
func requireLong(t *testing.T) {
	t.Helper()
	if testing.Short() && !inCI() {
		t.Skip("builds and runs Caddy; skipped under -short (set CI=true to run it)")
	}
}

var built struct {
	once sync.Once
	dir  string
	bin  string
	err  error
}

// caddyBinary builds ./cmd/caddy once for the tests of this package.
func caddyBinary(t *testing.T) string {
	t.Helper()
	built.once.Do(func() {
		built.dir, built.err = os.MkdirTemp("", "caddy-uma-bench-test-")
		if built.err == nil {
			var log bytes.Buffer
			built.bin, built.err = buildCaddy(context.Background(), built.dir, &log)
		}
	})
	if built.err != nil {
		t.Fatal(built.err)
	}
	return built.bin
}

func TestMain(m *testing.M) {
	code := m.Run()
	if built.dir != "" {
		os.RemoveAll(built.dir)
	}
	os.Exit(code)
}

// TestSmoke runs the smoke pass (-smoke) on both backends, with the binary
// the harness builds, and checks that every scenario of every
// round got only answers of its kind: 200 from the upstream (A and with an
// RPT), 401 with a ticket, RPTs from grants, refreshed tokens, active
// introspections and positive decisions, at a non-zero rate; and that the
// calibration units, the floors and the resident memory were measured.
func TestSmoke(t *testing.T) {
	requireLong(t)
	// The binary as the harness builds it, once for every test here.
	// Half a second per scenario keeps the test under a minute on a busy
	// machine.
	profiles := t.TempDir()
	args := []string{"-smoke", "-duration", "500ms", "-caddy", caddyBinary(t), "-profile", profiles}
	if inCI() {
		// PostgreSQL must answer in CI: naming the backends makes it
		// required.
		args = append(args, "-backends", "badger,postgres")
	}
	o, err := parseFlags(args, os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	var out, log bytes.Buffer
	rep, err := run(context.Background(), o, &out, &log)
	t.Log(out.String())
	if err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	for _, s := range rep.Skipped {
		t.Logf("skipped (PostgreSQL is required only under CI=true): %s", s)
	}
	wantBackends := 2 - len(rep.Skipped)
	if len(rep.Backends) != wantBackends || wantBackends < 1 {
		t.Fatalf("%d backends ran, %d skipped; want badger and postgres", len(rep.Backends), len(rep.Skipped))
	}
	if rep.Calibration.ES256VerifyUs <= 0 || rep.Calibration.ProxyUs <= 0 {
		t.Errorf("calibration not measured: %+v", rep.Calibration)
	}
	want := []string{scenarioProxy, scenarioHalfLoad + "/" + scenarioProxy, scenarioHalfLoad + "/" + scenarioAuthorized}
	for _, sc := range allScenarios {
		if sc != scenarioHalfLoad { // its runs are the two above
			want = append(want, sc)
		}
	}
	for _, be := range rep.Backends {
		if be.FsyncFloorUs <= 0 {
			t.Errorf("%s: no fsync floor", be.Backend)
		}
		if be.Backend == backendPostgres && be.CommitFloorUs <= 0 {
			t.Errorf("%s: no commit floor", be.Backend)
		}
		if len(be.Sizes) != 1 || be.Sizes[0].Size != 1 {
			t.Fatalf("%s: sizes %+v, want one of 1 resource", be.Backend, be.Sizes)
		}
		sz := be.Sizes[0]
		if sz.Seeded.RSS <= 0 || sz.Seeded.Anon <= 0 {
			t.Errorf("%s: no resident memory: %+v", be.Backend, sz.Seeded)
		}
		if sz.Load.Busy <= 0 || sz.Load.Busy > 1 || sz.Load.Steal < 0 || sz.Load.LoadAvg == "unknown" {
			t.Errorf("%s: machine load during the rounds not measured: %+v", be.Backend, sz.Load)
		}
		if sz.AfterRounds.HeapInuse <= 0 || sz.AfterRounds.NextGC <= 0 {
			t.Errorf("%s: no Go heap figures from the admin endpoint: %+v", be.Backend, sz.AfterRounds)
		}
		for _, name := range []string{"1-heap", "1-" + scenarioGrant} {
			path := filepath.Join(profiles, be.Backend+"-"+name+".pprof")
			if fi, err := os.Stat(path); err != nil || fi.Size() == 0 {
				t.Errorf("%s: no profile %s: %v", be.Backend, path, err)
			}
		}
		seen := map[string]bool{}
		for _, r := range sz.Runs {
			seen[r.Scenario] = true
			if r.OK == 0 || r.Rate <= 0 || r.Unexpected > 0 {
				t.Errorf("%s %s: %d expected answers (%.0f/s), %d unexpected: %s", be.Backend, r.Scenario, r.OK, r.Rate, r.Unexpected, r.Sample)
			}
			if (r.Scenario == scenarioAuthorized || r.Scenario == scenarioTokenless) && r.Ratio <= 0 {
				t.Errorf("%s %s: no ratio to the plain proxy", be.Backend, r.Scenario)
			}
		}
		for _, sc := range want {
			if !seen[sc] {
				t.Errorf("%s: scenario %s did not run", be.Backend, sc)
			}
		}
	}
	for _, part := range []string{"== summary", "calibration: ES256 verify", "targets:", "grants >= 3000/s", "RSS < 300 MiB"} {
		if !strings.Contains(out.String(), part) {
			t.Errorf("the output lacks %q", part)
		}
	}
}

// TestInterrupted cancels a run in its first scenario, as Ctrl-C does, and
// checks that Caddy is gone (its ports are free again) and that the
// temporary directory is removed.
func TestInterrupted(t *testing.T) {
	requireLong(t)
	bin := caddyBinary(t)
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	ports := []int{freeTestPort(t), freeTestPort(t), freeTestPort(t)}
	o, err := parseFlags([]string{"-smoke", "-backends", "badger", "-duration", "1m", "-caddy", bin,
		"-as-port", strconv.Itoa(ports[0]), "-api-port", strconv.Itoa(ports[1]), "-admin-port", strconv.Itoa(ports[2])}, os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := &cancelOn{want: "round scenario", cancel: cancel}
	var log bytes.Buffer
	_, err = run(ctx, o, out, &log)
	if err == nil || ctx.Err() == nil {
		t.Fatalf("run: %v (context %v); want it interrupted\n%s", err, ctx.Err(), out.String())
	}
	for _, p := range ports {
		if c, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p))); err == nil {
			c.Close()
			t.Errorf("port %d still answers after the interrupted run", p)
		}
	}
	left, _ := filepath.Glob(filepath.Join(tmp, "caddy-uma-bench-*"))
	if len(left) > 0 {
		t.Errorf("left behind: %v", left)
	}
}

// cancelOn cancels once the output contains want.
type cancelOn struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	want   string
	cancel func()
}

func (c *cancelOn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.buf.Write(p)
	if strings.Contains(c.buf.String(), c.want) {
		// Let the first scenario start before the interruption.
		time.AfterFunc(300*time.Millisecond, c.cancel)
	}
	return len(p), nil
}

func (c *cancelOn) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.String()
}

// freeTestPort is a port that was free a moment ago, as the harness picks
// them.
func freeTestPort(t *testing.T) int {
	t.Helper()
	p, err := freePort("test-port", 0)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestUnavailable checks the messages of a run that cannot start: a port
// that is taken, and a PostgreSQL server that does not answer (required
// when -backends names it, skipped in smoke mode without -backends).
func TestUnavailable(t *testing.T) {
	requireLong(t)
	bin := caddyBinary(t)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	port := strconv.Itoa(taken.Addr().(*net.TCPAddr).Port)
	const deadDSN = "postgres://uma:s3cret@127.0.0.1:1/uma?sslmode=disable"
	for _, c := range []struct {
		name    string
		args    []string
		wantErr []string // parts of the error; none: the run succeeds
		skipped string   // part of the one skipped backend
	}{
		{"as port taken", []string{"-backends", "badger", "-as-port", port},
			[]string{"-as-port " + port + ": the port is not available", "0 for any free port"}, ""},
		{"admin port taken", []string{"-backends", "badger", "-admin-port", port},
			[]string{"-admin-port " + port + ": the port is not available"}, ""},
		{"postgres required", []string{"-backends", "postgres", "-pg-dsn", deadDSN},
			[]string{"postgres: no PostgreSQL server answers at postgres://uma:xxx@127.0.0.1:1/uma", "-pg-dsn", "bash .ci/postgres"}, ""},
		{"postgres optional in smoke mode", []string{"-pg-dsn", deadDSN, "-scenarios", scenarioAuthorized, "-duration", "200ms"},
			nil, "no PostgreSQL server answers"},
	} {
		t.Run(c.name, func(t *testing.T) {
			o, err := parseFlags(append([]string{"-smoke", "-caddy", bin}, c.args...), os.Stderr)
			if err != nil {
				t.Fatal(err)
			}
			var out, log bytes.Buffer
			rep, err := run(context.Background(), o, &out, &log)
			if len(c.wantErr) == 0 {
				if err != nil {
					t.Fatalf("run: %v\n%s", err, log.String())
				}
				if len(rep.Skipped) != 1 || !strings.Contains(rep.Skipped[0], c.skipped) || len(rep.Backends) != 1 {
					t.Fatalf("skipped %q, ran %d backends; want postgres skipped with %q", rep.Skipped, len(rep.Backends), c.skipped)
				}
				if strings.Contains(out.String(), "s3cret") {
					t.Error("the output shows the database password")
				}
				return
			}
			if err == nil {
				t.Fatal("the run succeeded; want an error")
			}
			for _, part := range c.wantErr {
				if !strings.Contains(err.Error(), part) {
					t.Errorf("error %q lacks %q", err, part)
				}
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("error %q shows the database password", err)
			}
		})
	}
}

// TestFlags checks the flags: the smoke defaults, explicit values that
// override them, and each bad value refused with the flag, the value and
// what it takes.
func TestFlags(t *testing.T) {
	ok := []struct {
		name  string
		args  []string
		check func(options) bool
	}{
		{"defaults", nil, func(o options) bool {
			return o.rounds == 3 && len(o.sizes) == 3 && o.sizes[2] == 100000 && o.owners == 10000 &&
				len(o.backends) == 2 && !o.pgOptional && o.proxyClients == 8 && o.grantClients == 32
		}},
		{"smoke", []string{"-smoke"}, func(o options) bool {
			return o.duration == time.Second && o.rounds == 1 && len(o.sizes) == 1 && o.sizes[0] == 1 && o.pgOptional &&
				o.calibration == 200*time.Millisecond
		}},
		{"smoke with backends", []string{"-smoke", "-backends", "postgres", "-sizes", "1,10"}, func(o options) bool {
			return !o.pgOptional && len(o.backends) == 1 && len(o.sizes) == 2
		}},
		{"lists", []string{"-scenarios", "grant, grant-1,grant", "-backends", "badger"}, func(o options) bool {
			return len(o.scenarios) == 2 && o.has(scenarioGrantOne) && !o.has(scenarioRefresh)
		}},
	}
	for _, c := range ok {
		t.Run(c.name, func(t *testing.T) {
			o, err := parseFlags(c.args, &bytes.Buffer{})
			if err != nil {
				t.Fatal(err)
			}
			if !c.check(o) {
				t.Errorf("options %+v", o)
			}
		})
	}
	bad := []struct {
		args []string
		want string
	}{
		{[]string{"-sizes", "1,x"}, `-sizes "1,x": "x" is not a number`},
		{[]string{"-sizes", "0"}, `-sizes "0": "0" is not a number of resources (at least 1)`},
		{[]string{"-sizes", "100,10"}, "sizes must be ascending"},
		{[]string{"-scenarios", "grant,fly"}, `-scenarios "grant,fly": unknown "fly"; known: authorized`},
		{[]string{"-backends", "mysql"}, `-backends "mysql": unknown "mysql"; known: badger, postgres`},
		{[]string{"-rounds", "0"}, "-rounds 0: must be at least 1"},
		{[]string{"-grant-clients", "-1"}, "-grant-clients -1: must be at least 1"},
		{[]string{"-duration", "10ms"}, "-duration 10ms: must be at least 100ms"},
		{[]string{"-calibration", "1ms"}, "-calibration 1ms: must be at least 10ms"},
		{[]string{"-api-port", "70000"}, "-api-port 70000: not a TCP port"},
		{[]string{"extra"}, `unexpected argument "extra"`},
		{[]string{"-nope"}, "flag provided but not defined: -nope"},
	}
	for _, c := range bad {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			_, err := parseFlags(c.args, &bytes.Buffer{})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v; want one with %q", err, c.want)
			}
		})
	}
}
