package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// run is one run of the harness: every backend, every size, every round.
func run(ctx context.Context, o options, out, log io.Writer) (*report, error) {
	rep := &report{Machine: describeMachine(), Options: o.summary(), Started: time.Now().UTC()}
	fmt.Fprint(out, rep.Machine.text())
	if o.profileDir != "" {
		if err := os.MkdirAll(o.profileDir, 0o755); err != nil {
			return nil, fmt.Errorf("-profile: %w", err)
		}
	}

	tmp, err := os.MkdirTemp("", "caddy-uma-bench-")
	if err != nil {
		return nil, err
	}
	if o.keep {
		fmt.Fprintf(log, "keeping %s\n", tmp)
	} else {
		defer os.RemoveAll(tmp)
	}

	bin := o.caddyBin
	if bin == "" {
		if bin, err = buildCaddy(ctx, tmp, log); err != nil {
			return nil, err
		}
	}

	if rep.Calibration.ES256VerifyUs, err = usOf(es256Verify(o.calibration)); err != nil {
		return nil, fmt.Errorf("calibration: %w", err)
	}

	up, err := newUpstream()
	if err != nil {
		return nil, err
	}
	defer up.close()
	idp, err := newIdentityProvider()
	if err != nil {
		return nil, err
	}
	defer idp.close()

	for _, backend := range o.backends {
		br, err := runBackend(ctx, o, backend, bin, filepath.Join(tmp, backend), up, idp, out, log)
		var skip errSkipped
		switch {
		case errors.As(err, &skip):
			rep.Skipped = append(rep.Skipped, skip.Error())
			fmt.Fprintf(out, "\n== %s: skipped: %v\n", backend, skip)
			continue
		case err != nil:
			return nil, fmt.Errorf("%s: %w", backend, err)
		}
		rep.Backends = append(rep.Backends, br)
	}
	rep.Calibration.ProxyUs = rep.proxyUnit()
	fmt.Fprint(out, rep.summary())
	return rep, nil
}

// errSkipped is a backend that could not run, and need not (PostgreSQL
// unreachable in smoke mode).
type errSkipped struct{ err error }

func (e errSkipped) Error() string { return e.err.Error() }

func usOf(d time.Duration, err error) (float64, error) {
	return float64(d.Nanoseconds()) / 1e3, err
}

// postgresSchema creates a new schema on the server of dsn and returns the
// DSN that names it, and a function that drops it.
func postgresSchema(ctx context.Context, dsn string) (string, func(), error) {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(cctx, dsn)
	if err != nil {
		return "", nil, fmt.Errorf("no PostgreSQL server answers at %s (-pg-dsn; start the local one with `bash .ci/postgres`): %w", redactDSN(dsn), err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	schema := "uma_bench_" + hex.EncodeToString(b)
	if _, err := conn.Exec(cctx, "CREATE SCHEMA "+schema); err != nil {
		return "", nil, fmt.Errorf("creating schema %s: %w", schema, err)
	}
	drop := func() {
		dctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if c, err := pgx.Connect(dctx, dsn); err == nil {
			_, _ = c.Exec(dctx, "DROP SCHEMA IF EXISTS "+schema+" CASCADE")
			_ = c.Close(dctx)
		}
	}
	u, err := url.Parse(dsn)
	if err != nil || u.Scheme == "" {
		drop()
		return "", nil, fmt.Errorf("-pg-dsn: give a URL (postgres://user:password@host:port/db?sslmode=disable)")
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String(), drop, nil
}

// analyze runs VACUUM (ANALYZE) on the tables of dsn's schema.
func analyze(ctx context.Context, dsn string) error {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	conn, err := pgx.Connect(cctx, dsn)
	if err != nil {
		return fmt.Errorf("analyze: %w", err)
	}
	defer conn.Close(context.Background())
	rows, err := conn.Query(cctx, "SELECT quote_ident(tablename) FROM pg_tables WHERE schemaname = current_schema()")
	if err != nil {
		return fmt.Errorf("analyze: %w", err)
	}
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("analyze: %w", err)
	}
	for _, t := range tables {
		if _, err := conn.Exec(cctx, "VACUUM (ANALYZE) "+t); err != nil {
			return fmt.Errorf("analyze %s: %w", t, err)
		}
	}
	return nil
}

// redactDSN hides the password of a DSN, for messages.
func redactDSN(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil || u.User == nil {
		return dsn
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "xxx")
	}
	return u.String()
}

// runBackend starts one Caddy on backend and runs every size on it, adding
// resources from one size to the next.
func runBackend(ctx context.Context, o options, backend, bin, dir string, up *upstream, idp *identityProvider, out, log io.Writer) (backendReport, error) {
	br := backendReport{Backend: backend}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return br, err
	}
	cfg := caddyConfig{
		Policies: filepath.Join(dir, "policies"), IdP: idp.issuer, Upstream: up.addr,
		ResourceServer: resourceServer, ResourceServerSecret: resourceServerSecret,
		ClientID: clientID, ClientSecret: clientSecret, IdleConns: 1024,
	}
	switch backend {
	case backendPostgres:
		dsn, drop, err := postgresSchema(ctx, o.pgDSN)
		if err != nil {
			if o.pgOptional {
				return br, errSkipped{err}
			}
			return br, err
		}
		defer drop()
		cfg.DSN = dsn
		floor, err := usOf(pgCommitFloor(ctx, dsn, o.calibration))
		if err != nil {
			return br, fmt.Errorf("commit floor: %w", err)
		}
		br.CommitFloorUs = floor
	default:
		cfg.BadgerDir = filepath.Join(dir, "uma")
	}
	var err error
	if br.FsyncFloorUs, err = usOf(fsyncFloor(dir, o.calibration)); err != nil {
		return br, fmt.Errorf("fsync floor: %w", err)
	}
	for _, p := range []struct {
		name string
		want int
		dst  *int
	}{{"as-port", o.asPort, &cfg.ASPort}, {"api-port", o.apiPort, &cfg.APIPort}} {
		if *p.dst, err = freePort(p.name, p.want); err != nil {
			return br, err
		}
	}
	admin, err := freePort("admin-port", o.adminPort)
	if err != nil {
		return br, err
	}
	cfg.AdminAddr = fmt.Sprintf("127.0.0.1:%d", admin)
	cfg.Issuer = fmt.Sprintf("http://127.0.0.1:%d", cfg.ASPort)
	api := fmt.Sprintf("http://127.0.0.1:%d", cfg.APIPort)

	if err := writeRules(cfg.Policies, o.owners); err != nil {
		return br, fmt.Errorf("writing rules: %w", err)
	}
	fmt.Fprintf(out, "\n== backend %s: %d owners' rules, sizes %v\n", backend, o.owners, o.sizes)
	t0 := time.Now()
	caddy, err := startCaddy(bin, dir, cfg)
	if err != nil {
		return br, err
	}
	defer caddy.stop()
	if err := caddy.waitReady(ctx, 10*time.Minute, cfg.Issuer+"/.well-known/uma2-configuration", api+"/plain/ready"); err != nil {
		return br, err
	}
	br.StartSeconds = time.Since(t0).Seconds()
	br.StartMemory, _ = caddy.memory(ctx)
	fmt.Fprintf(out, "caddy started in %.1f s (%s); fsync floor %.0f µs", br.StartSeconds, br.StartMemory, br.FsyncFloorUs)
	if br.CommitFloorUs > 0 {
		fmt.Fprintf(out, ", PostgreSQL commit floor %.0f µs", br.CommitFloorUs)
	}
	fmt.Fprintln(out)

	idToken, err := idp.idToken(time.Now())
	if err != nil {
		return br, err
	}
	c := newASClient(cfg.Issuer, api, idToken)
	if err := c.obtainPAT(ctx); err != nil {
		return br, err
	}
	rng := mrand.New(mrand.NewPCG(1, 2))
	var all []resource
	for _, size := range o.sizes {
		sr := sizeReport{Size: size}
		t0 := time.Now()
		added, err := c.register(ctx, len(all), size, o.owners, o.seedClients, func(n int) {
			fmt.Fprintf(log, "  %s: registered %d of %d\n", backend, len(all)+n, size)
		})
		if err != nil {
			return br, err
		}
		all = append(all, added...)
		sr.SeedSeconds = time.Since(t0).Seconds()
		if len(added) > 0 {
			sr.SeedRate = float64(len(added)) / sr.SeedSeconds
		}
		sr.Seeded, _ = caddy.memory(ctx)
		fmt.Fprintf(out, "\n-- %s, %d resources over %d owners: seeded %d in %.1f s (%.0f/s), %s\n",
			backend, size, min(size, o.owners), len(added), sr.SeedSeconds, sr.SeedRate, sr.Seeded)
		if cfg.DSN != "" && len(added) > 0 {
			// What autovacuum does after a bulk load, done now rather than
			// during a round: the planner's statistics of the new rows.
			if err := analyze(ctx, cfg.DSN); err != nil {
				return br, err
			}
		}

		w, pool, err := prepare(ctx, o, c, all, rng)
		if err != nil {
			return br, fmt.Errorf("size %d: %w", size, err)
		}
		fmt.Fprint(out, runHeader)
		clock0, _ := readCPUClock()
		for round := 1; round <= o.rounds; round++ {
			runs, err := runRound(ctx, o, w, pool, caddy, backend, size, round, out)
			sr.Runs = append(sr.Runs, runs...)
			if err != nil {
				return br, err
			}
		}
		sr.AfterRounds, _ = caddy.memory(ctx)
		clock1, _ := readCPUClock()
		sr.Load = measureLoad(clock0, clock1)
		fmt.Fprintf(out, "   after the rounds: %s\n   machine during the rounds: %s\n", sr.AfterRounds, sr.Load)
		if o.profileDir != "" {
			path := filepath.Join(o.profileDir, fmt.Sprintf("%s-%d-heap.pprof", backend, size))
			if err := caddy.heapProfile(ctx, path); err != nil {
				return br, err
			}
		}
		br.Sizes = append(br.Sizes, sr)
	}
	return br, nil
}

// prepare picks the RPT set among all, obtains its RPTs, warms them, and
// fills the pool of refresh tokens.
func prepare(ctx context.Context, o options, c *asClient, all []resource, rng *mrand.Rand) (*workload, refreshPool, error) {
	n := min(o.rptSet, len(all))
	set := make([]resource, 0, n)
	for _, i := range rng.Perm(len(all))[:n] {
		set = append(set, all[i])
	}
	rpts, err := c.grants(ctx, set)
	if err != nil {
		return nil, nil, err
	}
	if err := c.warm(ctx, set, rpts); err != nil {
		return nil, nil, err
	}
	var pool refreshPool
	if o.has(scenarioRefresh) {
		k := 2 * o.refreshClients
		pool = make(refreshPool, k)
		src := make([]resource, k)
		for i := range src {
			src[i] = all[rng.IntN(len(all))]
		}
		toks, err := c.grants(ctx, src)
		if err != nil {
			return nil, nil, err
		}
		for _, t := range toks {
			if t.RefreshToken == "" {
				return nil, nil, errors.New("the UMA grant returned no refresh token")
			}
			pool <- t.RefreshToken
		}
	}
	return newWorkload(c, all, set, rpts), pool, nil
}

// runRound runs A and every scenario once. A runs first; each proxied
// scenario's ratio is to that A.
func runRound(ctx context.Context, o options, w *workload, pool refreshPool, caddy *caddyProcess, backend string, size, round int, out io.Writer) ([]runResult, error) {
	var runs []runResult
	var a stats
	one := func(scenario string, spec attackSpec) (stats, error) {
		spec.name = scenario
		profiled := make(chan error, 1)
		if o.profileDir != "" && round == 1 {
			path := filepath.Join(o.profileDir, fmt.Sprintf("%s-%d-%s.pprof", backend, size, strings.ReplaceAll(scenario, "/", "-")))
			go func() { profiled <- caddy.profile(ctx, o.duration, path) }()
		} else {
			profiled <- nil
		}
		st := attack(ctx, spec, o.duration)
		if err := <-profiled; err != nil {
			fmt.Fprintf(out, "   (no profile of %s: %v)\n", scenario, err)
		}
		rr := runResult{Round: round, Scenario: scenario, Clients: spec.clients, TargetRate: spec.rate, stats: st}
		if a.Rate > 0 && (scenario == scenarioAuthorized || scenario == scenarioTokenless) {
			rr.Ratio = st.Rate / a.Rate
		}
		runs = append(runs, rr)
		fmt.Fprint(out, rr.row())
		if ctx.Err() != nil {
			return st, ctx.Err()
		}
		select {
		case <-caddy.exited:
			return st, fmt.Errorf("caddy exited during %s (%v):\n%s", scenario, caddy.waitErr, caddy.logTail(30))
		default:
		}
		return st, nil
	}
	var err error
	if a, err = one(scenarioProxy, attackSpec{clients: o.proxyClients, target: cycle(w.proxied), check: expectUpstream}); err != nil {
		return runs, err
	}
	steps := []struct {
		scenario string
		spec     func() attackSpec
	}{
		{scenarioAuthorized, func() attackSpec {
			return attackSpec{clients: o.proxyClients, target: cycle(w.authz), check: expectUpstream}
		}},
		{scenarioTokenless, func() attackSpec {
			return attackSpec{clients: o.proxyClients, target: cycle(w.noToken), check: expectChallenge}
		}},
		{scenarioGrant, func() attackSpec {
			return attackSpec{clients: o.grantClients, target: w.grantTargeter(ctx), check: expectRPT}
		}},
		{scenarioGrantOne, func() attackSpec {
			return attackSpec{clients: 1, target: w.grantTargeter(ctx), check: expectRPT}
		}},
		{scenarioRefresh, func() attackSpec {
			return attackSpec{clients: o.refreshClients, target: w.refreshTargeter(ctx, pool), check: expectRefreshed, each: pool.feed}
		}},
		{scenarioIntrospect, func() attackSpec {
			return attackSpec{clients: o.introspectClients, target: cycle(w.introspt), check: expectActive}
		}},
		{scenarioDecision, func() attackSpec {
			return attackSpec{clients: o.decisionClients, target: w.decisionTargeter(), check: expectDecision}
		}},
	}
	for _, s := range steps {
		if !o.has(s.scenario) {
			continue
		}
		if _, err := one(s.scenario, s.spec()); err != nil {
			return runs, err
		}
		if s.scenario == scenarioAuthorized && o.has(scenarioHalfLoad) && a.Rate > 2 {
			// A and B at half of A's throughput: what uma_protect adds to
			// the p50 of a request when the machine is not saturated.
			rate := a.Rate / 2
			ha, err := one(scenarioHalfLoad+"/"+scenarioProxy, attackSpec{clients: o.proxyClients, rate: rate, target: cycle(w.proxied), check: expectUpstream})
			if err != nil {
				return runs, err
			}
			hb, err := one(scenarioHalfLoad+"/"+scenarioAuthorized, attackSpec{clients: o.proxyClients, rate: rate, target: cycle(w.authz), check: expectUpstream})
			if err != nil {
				return runs, err
			}
			runs[len(runs)-1].AddedP50us = hb.P50us - ha.P50us
			fmt.Fprintf(out, "   added p50 at half load (%.0f req/s): %+.0f µs\n", rate, hb.P50us-ha.P50us)
		}
	}
	return runs, nil
}
