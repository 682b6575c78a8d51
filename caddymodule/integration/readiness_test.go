//go:build unix

package integration

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-uma/caddy-uma/authz/claimtoken/claimtokentest"
	"github.com/caddy-uma/caddy-uma/store/pgstore/pgtest"
	"github.com/caddy-uma/caddy-uma/store/storetest"
)

// probeAnswer is an answer of uma_health.
type probeAnswer struct {
	status     int
	retryAfter string
	body       struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Desc   string `json:"error_description"`
		Checks map[string]struct {
			OK               bool    `json:"ok"`
			Error            string  `json:"error"`
			Backend          string  `json:"backend"`
			LatencyMS        float64 `json:"latency_ms"`
			FreeBytes        *uint64 `json:"free_bytes"`
			MinFreeBytes     *uint64 `json:"min_free_bytes"`
			KeyID            string  `json:"key_id"`
			OwnersWithErrors *int    `json:"owners_with_errors"`
		} `json:"checks"`
	}
	took time.Duration
}

// probe asks uma_health at u.
func probe(t *testing.T, u string) probeAnswer {
	t.Helper()
	start := time.Now()
	resp, err := httpClient.Get(u)
	if err != nil {
		t.Fatalf("probe %s: %v", u, err)
	}
	defer resp.Body.Close()
	a := probeAnswer{status: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After"), took: time.Since(start)}
	raw, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(raw, &a.body); err != nil {
		t.Fatalf("probe %s: %d, not JSON: %v: %s", u, resp.StatusCode, err, raw)
	}
	return a
}

// awaitProbe asks the probe at u until cond holds, for at most 30 s (the
// states it waits for come from outside: a disk, a database, a file), and
// returns the answer that met it.
func awaitProbe(t *testing.T, what, u string, cond func(probeAnswer) bool) probeAnswer {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		a := probe(t, u)
		if cond(a) {
			return a
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still %d %+v after 30 s", what, a.status, a.body)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func isReady(a probeAnswer) bool { return a.status == http.StatusOK && a.body.Status == "ready" }

// checkUnready checks an unready answer: 503, the OAuth error
// temporarily_unavailable with Retry-After, the failed check named.
func checkUnready(t *testing.T, what string, a probeAnswer, failed, desc string) {
	t.Helper()
	if a.status != http.StatusServiceUnavailable || a.body.Status != "unready" || a.body.Error != "temporarily_unavailable" || a.retryAfter == "" {
		t.Errorf("%s: %d %q %+v, want 503 unready temporarily_unavailable with Retry-After", what, a.status, a.retryAfter, a.body)
	}
	if c := a.body.Checks[failed]; c.OK || !strings.Contains(c.Error, desc) || !strings.Contains(a.body.Desc, failed+": ") {
		t.Errorf("%s: check %s %+v, description %q; want it failed with %q", what, failed, c, a.body.Desc, desc)
	}
}

// TestReadinessDiskFull runs the AS with Badger on a small tmpfs: ready,
// then unready while another process fills the disk (writes are refused),
// and ready again by itself once the space is freed; liveness stays 200
// throughout. A rule file broken while running shows in the policies
// check, which does not make the probe fail.
func TestReadinessDiskFull(t *testing.T) {
	skipShort(t)
	disk := storetest.Tmpfs(t, 32<<20)
	idp := claimtokentest.NewProvider(t)
	oc := newObsConfig(t, idp, newRecorder(t))
	oc.Storage = filepath.Join(disk, "uma")
	oc.MinFreeSpace = "8MiB"
	c := startObsCaddy(t, oc)
	as := c.cfg.issuer()

	a := probe(t, as+"/ready")
	if !isReady(a) {
		t.Fatalf("at start: %d %+v", a.status, a.body)
	}
	for _, name := range []string{"store", "disk", "signing_keys", "policies"} {
		if !a.body.Checks[name].OK {
			t.Errorf("at start, check %s: %+v", name, a.body.Checks[name])
		}
	}
	if ch := a.body.Checks["store"]; ch.Backend != "badger" {
		t.Errorf("store check %+v, want backend badger", ch)
	}
	if d := a.body.Checks["disk"]; d.FreeBytes == nil || d.MinFreeBytes == nil || *d.MinFreeBytes != 8<<20 || *d.FreeBytes < *d.MinFreeBytes {
		t.Errorf("disk check %+v, want the free bytes above the 8 MiB minimum", d)
	}
	if a.body.Checks["signing_keys"].KeyID == "" {
		t.Error("no key id in the signing_keys check")
	}
	ids, err := signingKeyIDs(as)
	if err != nil || len(ids) == 0 || ids[0] != a.body.Checks["signing_keys"].KeyID {
		t.Errorf("signing key %q, JWKS %v %v", a.body.Checks["signing_keys"].KeyID, ids, err)
	}

	// A rule file broken on disk: the old rules stay in force, and the
	// probe says so, still ready.
	broken := filepath.Join(oc.Policies, "alice", "share.rego")
	if err := os.WriteFile(broken, []byte("package uma.share\n\nallow contains \"read\" if {\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	a = awaitProbe(t, "a broken rule file", as+"/ready", func(a probeAnswer) bool { return !a.body.Checks["policies"].OK })
	if p := a.body.Checks["policies"]; !isReady(a) || p.OwnersWithErrors == nil || *p.OwnersWithErrors != 1 || p.Error == "" {
		t.Errorf("with a broken rule file: %d %+v, want ready with one owner's rules failing", a.status, a.body)
	}
	if err := os.WriteFile(broken, []byte(aliceRules), 0o644); err != nil {
		t.Fatal(err)
	}
	awaitProbe(t, "the rule file fixed", as+"/ready", func(a probeAnswer) bool { return a.body.Checks["policies"].OK })

	filler, err := storetest.FillDisk(disk, -1)
	if err != nil {
		t.Fatalf("filling the disk: %v", err)
	}
	a = awaitProbe(t, "the disk full", as+"/ready", func(a probeAnswer) bool { return a.status != http.StatusOK })
	checkUnready(t, "the disk full", a, "disk", "below min_free_space")
	if !a.body.Checks["store"].OK {
		t.Errorf("the disk full: the store check failed too: %+v", a.body.Checks["store"])
	}
	if l := probe(t, as+"/live"); l.status != http.StatusOK || l.body.Status != "live" {
		t.Errorf("liveness with the disk full: %d %+v", l.status, l.body)
	}
	if status, _, err := tokenStatus(as); err != nil || status != http.StatusServiceUnavailable {
		t.Errorf("a token request with the disk full: %d %v, want 503", status, err)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	awaitProbe(t, "space freed", as+"/ready", isReady)
	if _, err := getPAT(as); err != nil {
		t.Errorf("a PAT once ready again: %v", err)
	}
	c.alive()
	c.checkLog()
}

// cuttableProxy forwards TCP connections to a target, and can refuse them
// (cut: connections closed, the port closed) or stall them (freeze: bytes
// held, as a database that stopped answering), then let them through again.
type cuttableProxy struct {
	t      *testing.T
	addr   string
	target string

	mu     sync.Mutex
	ln     net.Listener
	conns  map[net.Conn]bool
	frozen chan struct{} // closed when not frozen
}

func newCuttableProxy(t *testing.T, target string) *cuttableProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	open := make(chan struct{})
	close(open)
	p := &cuttableProxy{t: t, addr: ln.Addr().String(), target: target, ln: ln, conns: map[net.Conn]bool{}, frozen: open}
	go p.serve(ln)
	t.Cleanup(p.cut)
	return p
}

func (p *cuttableProxy) serve(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns[c], p.conns[up] = true, true
		p.mu.Unlock()
		go p.pipe(c, up)
		go p.pipe(up, c)
	}
}

// pipe copies from src to dst, holding what it read while frozen.
func (p *cuttableProxy) pipe(dst, src net.Conn) {
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			open := p.frozen
			p.mu.Unlock()
			<-open
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// cut closes the port and every connection.
func (p *cuttableProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		c.Close()
	}
	clear(p.conns)
}

// restore listens on the same port again.
func (p *cuttableProxy) restore() {
	p.t.Helper()
	var ln net.Listener
	var err error
	for range 50 {
		if ln, err = net.Listen("tcp", p.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		p.t.Fatalf("listening on %s again: %v", p.addr, err)
	}
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	go p.serve(ln)
}

// freeze holds every byte until thaw.
func (p *cuttableProxy) freeze() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.frozen = make(chan struct{})
}

func (p *cuttableProxy) thaw() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.frozen:
	default:
		close(p.frozen)
	}
}

// TestReadinessStoreDown runs the AS on PostgreSQL through a TCP proxy:
// ready; unready when the database cannot be reached (the proxy refuses
// connections) and when it stops answering (the proxy holds every byte:
// the ping gives up within its bound); ready again by itself each time
// the database is back. Liveness stays 200, and nothing of the DSN shows.
func TestReadinessStoreDown(t *testing.T) {
	skipShort(t)
	pgtest.Require(t)
	dsn := pgtest.DSN(t)
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	proxy := newCuttableProxy(t, u.Host)
	u.Host = proxy.addr
	idp := claimtokentest.NewProvider(t)
	oc := newObsConfig(t, idp, newRecorder(t))
	oc.Postgres = "{env.UMA_PG_DSN}"
	c := startObsCaddy(t, oc, pgtest.EnvDSN+"="+u.String())
	as := c.cfg.issuer()

	a := probe(t, as+"/ready")
	if !isReady(a) || a.body.Checks["store"].Backend != "postgres" {
		t.Fatalf("at start: %d %+v", a.status, a.body)
	}
	if d := a.body.Checks["disk"]; !d.OK || d.FreeBytes != nil {
		t.Errorf("disk check of PostgreSQL %+v, want ok without free bytes (the database server's disk is not ours to measure)", d)
	}

	steps := []struct {
		name     string
		down, up func()
		desc     string
	}{
		{"connections refused", proxy.cut, proxy.restore, "the store cannot be reached"},
		{"no answer", proxy.freeze, proxy.thaw, "the store did not answer within 750ms"},
	}
	for _, s := range steps {
		s.down()
		a = awaitProbe(t, s.name, as+"/ready", func(a probeAnswer) bool { return a.status != http.StatusOK })
		checkUnready(t, s.name, a, "store", s.desc)
		t.Logf("%s: the readiness probe answered 503 in %s", s.name, a.took.Round(time.Millisecond))
		if l := probe(t, as+"/live"); l.status != http.StatusOK {
			t.Errorf("%s: liveness %d", s.name, l.status)
		}
		s.up()
		awaitProbe(t, s.name+", then back", as+"/ready", isReady)
		if _, err := getPAT(as); err != nil {
			t.Errorf("%s, then back: a PAT: %v", s.name, err)
		}
	}
	c.alive()
	log := c.log.String()
	if strings.Contains(log, "uma:uma@") || strings.Contains(log, u.String()) {
		t.Error("the log holds the DSN with its password")
	}
	if n := c.countLog("readiness: the store does not answer"); n == 0 {
		t.Error("the failed pings were not logged")
	}
}
