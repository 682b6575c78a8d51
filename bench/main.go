// Command bench measures caddy-uma on loopback: it builds the Caddy binary
// of ./cmd/caddy, starts it with the uma app, uma_server and uma_protect
// (co-hosted) in front of a small upstream of this process, registers
// resources through the protection API, and drives the scenarios of
// BENCHMARKS.md with vegeta, alternating plain reverse_proxy (A) and the
// same site behind uma_protect (B). It prints throughput and latency
// percentiles per scenario, the B/A ratios, the slope across sizes, and
// calibration units measured in the same run (one ES256 verify, one plain
// proxied request, the fsync floor).
//
//	go run ./bench                       # the full run of BENCHMARKS.md
//	go run ./bench -smoke                # seconds: what CI runs
//	go run ./bench -sizes 1,10000 -backends badger -duration 5s -rounds 3
//
// Run it from the repository root (it builds ./cmd/caddy), on a machine
// with nothing else to do.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Scenario names, as the -scenarios flag takes them. The plain proxy (A)
// runs in every round: it is the unit of the proxied scenarios.
const (
	scenarioProxy      = "proxy"      // A: plain reverse_proxy
	scenarioAuthorized = "authorized" // B: a cached RPT through uma_protect
	scenarioHalfLoad   = "half-load"  // A and B at half of A's throughput
	scenarioTokenless  = "tokenless"  // B: no token, 401 + ticket
	scenarioGrant      = "grant"      // permission ticket + UMA grant with an ID token
	scenarioGrantOne   = "grant-1"    // the same, one client
	scenarioRefresh    = "refresh"    // refresh_token grant (rotating)
	scenarioIntrospect = "introspect" // RFC 7662 introspection of an RPT
	scenarioDecision   = "decision"   // ticketless grant, response_mode=decision
)

var allScenarios = []string{scenarioAuthorized, scenarioHalfLoad, scenarioTokenless, scenarioGrant,
	scenarioGrantOne, scenarioRefresh, scenarioIntrospect, scenarioDecision}

const (
	backendBadger   = "badger"
	backendPostgres = "postgres"
)

// defaultDSN is the local test server of .ci/postgres.
const defaultDSN = "postgres://uma:uma@127.0.0.1:54329/uma?sslmode=disable"

// options is what the flags set.
type options struct {
	duration    time.Duration
	calibration time.Duration // how long each calibration unit is measured
	rounds      int
	sizes       []int
	owners      int
	scenarios   []string
	backends    []string
	pgDSN       string
	pgOptional  bool // skip PostgreSQL when it does not answer (smoke)
	profileDir  string
	jsonOut     string
	caddyBin    string
	seedClients int
	rptSet      int
	// Concurrency per scenario.
	proxyClients, grantClients, refreshClients, introspectClients, decisionClients int
	// Fixed ports (0: any free one).
	asPort, apiPort, adminPort int
	keep                       bool
	smoke                      bool
}

func main() {
	opts, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := run(ctx, opts, os.Stdout, os.Stderr)
	if err == nil && opts.jsonOut != "" {
		err = rep.writeJSON(opts.jsonOut)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		if ctx.Err() != nil {
			fmt.Fprintln(os.Stderr, "bench: interrupted; processes stopped and temporary files removed")
		}
		os.Exit(1)
	}
}

// parseFlags reads the flags; a bad value is an error naming the flag,
// the value and what it takes.
func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.DurationVar(&o.duration, "duration", 5*time.Second, "how long each scenario runs in each round")
	fs.DurationVar(&o.calibration, "calibration", time.Second, "how long each calibration unit (ES256 verify, fsync floor, PostgreSQL commit floor) is measured")
	fs.IntVar(&o.rounds, "rounds", 3, "rounds: each runs A and every scenario once, in turn")
	sizes := fs.String("sizes", "1,10000,100000", "registered resources, comma-separated, ascending: each size adds resources to the previous one")
	fs.IntVar(&o.owners, "owners", 10000, "owners the resources are spread over; each has rules")
	scenarios := fs.String("scenarios", strings.Join(allScenarios, ","), "scenarios, comma-separated (A, the plain proxy, always runs)")
	backends := fs.String("backends", backendBadger+","+backendPostgres, "storage backends, comma-separated: badger, postgres")
	fs.StringVar(&o.pgDSN, "pg-dsn", envOr("UMA_PG_DSN", defaultDSN), "PostgreSQL server (a new schema is created and dropped)")
	fs.StringVar(&o.profileDir, "profile", "", "directory for a CPU profile of Caddy per scenario (first round) and a heap profile per size (after its rounds), from its admin endpoint")
	fs.StringVar(&o.jsonOut, "json", "", "also write the results as JSON to this file")
	fs.StringVar(&o.caddyBin, "caddy", "", "a Caddy binary with the caddy-uma modules (default: go build ./cmd/caddy)")
	fs.IntVar(&o.seedClients, "seed-clients", 32, "parallel clients registering resources")
	fs.IntVar(&o.rptSet, "rpts", 64, "resources (one RPT each) that the authorized, tokenless and introspection scenarios cycle through")
	fs.IntVar(&o.proxyClients, "proxy-clients", 8, "clients of A, authorized and tokenless")
	fs.IntVar(&o.grantClients, "grant-clients", 32, "clients of grant")
	fs.IntVar(&o.refreshClients, "refresh-clients", 32, "clients of refresh")
	fs.IntVar(&o.introspectClients, "introspect-clients", 8, "clients of introspect")
	fs.IntVar(&o.decisionClients, "decision-clients", 4, "clients of decision")
	fs.IntVar(&o.asPort, "as-port", 0, "port of the authorization server site (0: a free one)")
	fs.IntVar(&o.apiPort, "api-port", 0, "port of the protected site (0: a free one)")
	fs.IntVar(&o.adminPort, "admin-port", 0, "port of Caddy's admin endpoint (0: a free one)")
	fs.BoolVar(&o.keep, "keep", false, "keep the temporary directory (Caddyfiles, logs, Badger data)")
	fs.BoolVar(&o.smoke, "smoke", false, "a short pass for CI: size 1, 10 owners, 1 s per scenario, one round, PostgreSQL only if it answers")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q: every setting is a flag (see -help)", fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if o.smoke {
		// The smoke defaults, unless a flag says otherwise.
		if !set["duration"] {
			o.duration = time.Second
		}
		if !set["rounds"] {
			o.rounds = 1
		}
		if !set["calibration"] {
			o.calibration = 200 * time.Millisecond
		}
		if !set["sizes"] {
			*sizes = "1"
		}
		if !set["owners"] {
			o.owners = 10
		}
		if !set["rpts"] {
			o.rptSet = 4
		}
		o.pgOptional = !set["backends"]
	}
	var err error
	if o.sizes, err = parseSizes(*sizes); err != nil {
		return o, err
	}
	if o.scenarios, err = parseList("scenarios", *scenarios, allScenarios); err != nil {
		return o, err
	}
	if o.backends, err = parseList("backends", *backends, []string{backendBadger, backendPostgres}); err != nil {
		return o, err
	}
	for _, c := range []struct {
		name string
		v    int
	}{{"rounds", o.rounds}, {"owners", o.owners}, {"seed-clients", o.seedClients}, {"rpts", o.rptSet},
		{"proxy-clients", o.proxyClients}, {"grant-clients", o.grantClients}, {"refresh-clients", o.refreshClients},
		{"introspect-clients", o.introspectClients}, {"decision-clients", o.decisionClients}} {
		if c.v < 1 {
			return o, fmt.Errorf("-%s %d: must be at least 1", c.name, c.v)
		}
	}
	if o.duration < 100*time.Millisecond {
		return o, fmt.Errorf("-duration %s: must be at least 100ms", o.duration)
	}
	if o.calibration < 10*time.Millisecond {
		return o, fmt.Errorf("-calibration %s: must be at least 10ms", o.calibration)
	}
	for _, p := range []struct {
		name string
		v    int
	}{{"as-port", o.asPort}, {"api-port", o.apiPort}, {"admin-port", o.adminPort}} {
		if p.v < 0 || p.v > 65535 {
			return o, fmt.Errorf("-%s %d: not a TCP port (0 picks a free one)", p.name, p.v)
		}
	}
	return o, nil
}

func parseSizes(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("-sizes %q: %q is not a number of resources (at least 1); use e.g. -sizes 1,10000,100000", s, f)
		}
		if len(out) > 0 && n <= out[len(out)-1] {
			return nil, fmt.Errorf("-sizes %q: sizes must be ascending (each size adds resources to the previous one)", s)
		}
		out = append(out, n)
	}
	return out, nil
}

func parseList(name, s string, known []string) ([]string, error) {
	var out []string
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if !slices.Contains(known, f) {
			return nil, fmt.Errorf("-%s %q: unknown %q; known: %s", name, s, f, strings.Join(known, ", "))
		}
		if !slices.Contains(out, f) {
			out = append(out, f)
		}
	}
	return out, nil
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func (o options) has(scenario string) bool { return slices.Contains(o.scenarios, scenario) }
