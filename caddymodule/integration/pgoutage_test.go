//go:build unix

package integration

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-uma/caddy-uma/store/pgstore/pgtest"
)

// pgProxy is a TCP proxy between Caddy nodes and the PostgreSQL test
// server. Cutting it takes the database away from those nodes (every
// connection closed, new ones refused) without stopping a server that other
// tests use.
type pgProxy struct {
	target string
	addr   string // where it listens, also while cut

	mu    sync.Mutex
	ln    net.Listener // nil while cut
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

// newPGProxy listens on a free port of the loopback and forwards every
// connection to target (host:port).
func newPGProxy(t *testing.T, target string) *pgProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &pgProxy{target: target, addr: ln.Addr().String(), conns: map[net.Conn]struct{}{}}
	p.serve(ln)
	t.Cleanup(func() {
		p.cut()
		p.wg.Wait()
	})
	return p
}

func (p *pgProxy) serve(ln net.Listener) {
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	p.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.wg.Go(func() { p.forward(c) })
		}
	})
}

// forward copies between c and a new connection to the server until either
// side ends or the proxy is cut.
func (p *pgProxy) forward(c net.Conn) {
	up, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		_ = c.Close()
		return
	}
	p.mu.Lock()
	if p.ln == nil { // cut meanwhile
		p.mu.Unlock()
		_ = c.Close()
		_ = up.Close()
		return
	}
	p.conns[c], p.conns[up] = struct{}{}, struct{}{}
	p.mu.Unlock()
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		done <- struct{}{}
	}
	go pipe(up, c)
	go pipe(c, up)
	<-done
	_ = c.Close()
	_ = up.Close()
	<-done
	p.mu.Lock()
	delete(p.conns, c)
	delete(p.conns, up)
	p.mu.Unlock()
}

// cut closes every connection and stops listening: connecting is refused.
func (p *pgProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		_ = p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		_ = c.Close()
	}
	clear(p.conns)
}

// restore listens again, on the same address.
func (p *pgProxy) restore(t *testing.T) {
	t.Helper()
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		t.Fatalf("the proxy listening again on %s: %v", p.addr, err)
	}
	p.serve(ln)
}

// load is what a test measures under load: each request with its answer.
type load struct {
	mu   sync.Mutex
	done []loadRequest
}

// loadRequest is one request of a load.
type loadRequest struct {
	node, kind string
	start, end time.Time
	answer
	err error
	// ticket is the ticket a grant redeems.
	ticket string
}

func (l *load) add(r loadRequest) {
	l.mu.Lock()
	l.done = append(l.done, r)
	l.mu.Unlock()
}

func (l *load) requests() []loadRequest {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.done)
}

// run calls send with a function that adds a request of kind, started at
// start, with its answer, until stop.
func (l *load) run(wg *sync.WaitGroup, stop <-chan struct{}, n *node, send func(add func(r loadRequest))) {
	add := func(r loadRequest) {
		r.node, r.end = n.name, time.Now()
		l.add(r)
	}
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			send(add)
			time.Sleep(20 * time.Millisecond) // the machine is small
		}
	})
}

// Kinds of requests of the outage test.
const (
	kindRegister = "resource registration"
	kindGrant    = "grant"
	kindCached   = "cached RPT at uma_protect"
	// kindChallenge is a request without RPT at uma_protect: a 401 with a
	// ticket, or, when the AS cannot issue one, 403 with a Warning (UMA
	// grant, section 3.2).
	kindChallenge = "challenge at uma_protect"
)

// succeeded reports whether r got the answer of a working store.
func (r loadRequest) succeeded() bool {
	if r.err != nil {
		return false
	}
	switch r.kind {
	case kindRegister:
		return r.status == http.StatusCreated
	case kindChallenge:
		return r.status == http.StatusUnauthorized && ticketParam.MatchString(r.header.Get("WWW-Authenticate"))
	}
	return r.status == http.StatusOK
}

// unavailable checks that r got 503 temporarily_unavailable with
// Retry-After, in OAuth JSON.
func (r loadRequest) unavailable() error {
	switch {
	case r.status != http.StatusServiceUnavailable:
		return fmt.Errorf("status %d, want 503", r.status)
	case r.header.Get("Retry-After") == "":
		return errors.New("no Retry-After")
	case !strings.HasPrefix(r.header.Get("Content-Type"), "application/json"):
		return fmt.Errorf("Content-Type %q", r.header.Get("Content-Type"))
	case r.member("error") != "temporarily_unavailable" || r.member("error_description") == "":
		return fmt.Errorf("body %s", r.body)
	}
	return nil
}

// outageClient sends the requests of the outage test: an answer that has
// not come within outageTimeout is a hang.
const outageTimeout = 12 * time.Second

// TestMultiNodeDatabaseOutage cuts two nodes off PostgreSQL for 10 s while
// they are under load (resource registrations, grants, requests with cached
// RPTs at uma_protect), then gives the database back: no request hangs,
// writes answer 503 with Retry-After, cached RPTs keep working for
// feed_staleness and are refused after it, and both nodes recover by
// themselves.
func TestMultiNodeDatabaseOutage(t *testing.T) {
	skipShort(t)
	const (
		outage    = 10 * time.Second
		staleness = 2 * time.Second
		// noticed bounds how long a node takes to notice that the
		// connection of its change feed is lost: at once when it is
		// closed, as here (within 4 s when the network drops everything
		// silently); the margin is for a loaded machine.
		noticed = time.Second
	)
	proxy := newPGProxy(t, pgtest.Addr(t))
	c := startCluster(t, clusterOptions{nodes: 2, feedStaleness: staleness.String(), policies: true,
		dsn: func(schema string) string { return pgtest.Via(schema, proxy.addr) }})
	prevTimeout := clusterClient.Timeout
	clusterClient.Timeout = outageTimeout
	t.Cleanup(func() { clusterClient.Timeout = prevTimeout })

	const record = "/api/records/alice/1"
	var l load
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, n := range c.nodes {
		pat, err := n.pat()
		if err != nil {
			t.Fatal(err)
		}
		tk, err := n.challenge(record)
		if err != nil {
			t.Fatal(err)
		}
		rpt, err := n.rpt(tk, c.bob)
		if err != nil {
			t.Fatal(err)
		}
		if a, err := n.api(record, rpt); err != nil || a.status != http.StatusOK {
			t.Fatalf("the RPT at %s: %v %v", n.name, a, err)
		}
		registered := 0
		l.run(&wg, stop, n, func(add func(loadRequest)) {
			registered++
			start := time.Now()
			a, err := n.do(call{method: http.MethodPost, path: "/resource_set", bearer: pat, contentType: "application/json",
				body: fmt.Sprintf(`{"name":"outage %s %d","owner":"alice","resource_scopes":["read"]}`, n.name, registered)})
			add(loadRequest{kind: kindRegister, start: start, answer: a, err: err})
		})
		// Challenges on their own, to see tickets issued from the
		// resource kept within feed_staleness and refused after it.
		l.run(&wg, stop, n, func(add func(loadRequest)) {
			start := time.Now()
			a, err := n.do(call{method: http.MethodGet, path: record})
			add(loadRequest{kind: kindChallenge, start: start, answer: a, err: err})
		})
		// Grants redeem the oldest ticket at hand, and keep one more, so
		// that they go on during the outage (which refuses challenges
		// past feed_staleness).
		var tickets []string
		l.run(&wg, stop, n, func(add func(loadRequest)) {
			for range 2 - len(tickets) {
				start := time.Now()
				a, err := n.do(call{method: http.MethodGet, path: record})
				add(loadRequest{kind: kindChallenge, start: start, answer: a, err: err})
				if m := ticketParam.FindStringSubmatch(a.header.Get("WWW-Authenticate")); err == nil && a.status == http.StatusUnauthorized && m != nil {
					tickets = append(tickets, m[1])
				}
			}
			if len(tickets) == 0 {
				return
			}
			start := time.Now()
			a, err := n.redeem(tickets[0], c.bob)
			add(loadRequest{kind: kindGrant, start: start, answer: a, err: err, ticket: tickets[0]})
			// Redeemed, or spent by a redemption whose answer was lost (it
			// committed as the database went away, see checkOutage).
			if err == nil && (a.status == http.StatusOK || a.member("error") == "invalid_grant") {
				tickets = tickets[1:]
			}
		})
		l.run(&wg, stop, n, func(add func(loadRequest)) {
			start := time.Now()
			a, err := n.api(record, rpt)
			add(loadRequest{kind: kindCached, start: start, answer: a, err: err})
		})
	}
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
	}()

	time.Sleep(time.Second)
	cutAt := time.Now()
	proxy.cut()
	time.Sleep(outage / 2)
	// What needs no database keeps answering: discovery (a load
	// balancer's health check) and the JWKS.
	for _, n := range c.nodes {
		for _, path := range []string{"/.well-known/uma2-configuration", "/jwks"} {
			if _, err := n.expect(call{method: http.MethodGet, path: path}, http.StatusOK); err != nil {
				t.Errorf("during the outage: %v", err)
			}
		}
	}
	time.Sleep(outage - time.Since(cutAt))
	restoreAt := time.Now()
	proxy.restore(t)
	// Both nodes recover by themselves: wait until every kind of request
	// has succeeded on each since the database came back, and a little
	// more.
	recovered := func() bool {
		ok := map[string]bool{}
		for _, r := range l.requests() {
			if r.start.After(restoreAt) && r.succeeded() {
				ok[r.node+" "+r.kind] = true
			}
		}
		return len(ok) == 4*len(c.nodes)
	}
	if _, err := until(20*time.Second, func() (bool, error) { return recovered(), nil }); err != nil {
		t.Errorf("the nodes did not recover within 20 s of the database's return")
	}
	time.Sleep(time.Second)
	close(stop)
	wg.Wait()

	checkOutage(t, l.requests(), cutAt, restoreAt, staleness, noticed)
	for _, n := range c.nodes {
		t.Logf("%s logged %d error and %d warn lines", n.name, n.countLog(`"level":"error"`), n.countLog(`"level":"warn"`))
		// The change feed listens again by itself, after at most its
		// longest delay between attempts (5 s, a quarter more with jitter).
		var at time.Time
		if _, err := until(10*time.Second, func() (ok bool, _ error) {
			at, ok = n.logged("the change feed listens again", restoreAt)
			return ok, nil
		}); err != nil {
			t.Errorf("%s: the change feed does not listen again: %v", n.name, err)
		} else {
			t.Logf("%s: the change feed listens again %s after the database's return", n.name, at.Sub(restoreAt).Round(time.Millisecond))
		}
		n.alive()
		n.checkLog()
	}
}

// checkOutage checks and reports the requests of an outage from cutAt to
// restoreAt.
func checkOutage(t *testing.T, requests []loadRequest, cutAt, restoreAt time.Time, staleness, noticed time.Duration) {
	t.Helper()
	type key struct{ node, kind, phase string }
	took := map[key]delays{}
	statuses := map[key]map[int]int{}
	firstOK := map[string]time.Duration{} // node and kind: recovery after restoreAt
	lastFail := map[string]time.Time{}
	// A redemption under way at the cut may have spent its ticket (the
	// replay record committed, the answer lost with the connection): later
	// ones answer invalid_grant, and the client starts again. Any other
	// ticket that the outage refused stays good.
	atCut, refused, redeemed := map[string]bool{}, map[string]bool{}, map[string]bool{}
	for _, r := range requests {
		if r.kind != kindGrant {
			continue
		}
		switch {
		case !r.start.After(cutAt) && !r.end.Before(cutAt):
			atCut[r.ticket] = true
		case r.end.After(restoreAt) && r.succeeded():
			// After the return, or sent before it and answered after.
			redeemed[r.ticket] = true
		case r.start.After(cutAt) && r.end.Before(restoreAt):
			refused[r.ticket] = true
		}
	}
	for tk := range refused {
		if !atCut[tk] && !redeemed[tk] {
			t.Errorf("a ticket that the outage refused was not redeemed after it")

		}
	}
	for _, r := range requests {
		if r.err != nil {
			t.Errorf("%s at %s, %s after the cut: no answer (client timeout %s) after %s: %v", r.kind, r.node, r.start.Sub(cutAt).Round(time.Millisecond), outageTimeout, r.end.Sub(r.start), r.err)
			continue
		}
		phase := "outage"
		switch {
		case r.end.Before(cutAt):
			phase = "before"
			if !r.succeeded() {
				t.Errorf("%s at %s before the cut: %s", r.kind, r.node, r.answer)
			}
		case r.start.After(restoreAt):
			phase = "after"
			nk := r.node + " " + r.kind
			if r.kind == kindGrant && atCut[r.ticket] && r.member("error") == "invalid_grant" {
				phase = "after, a ticket spent at the cut"
			} else if r.succeeded() {
				if _, ok := firstOK[nk]; !ok {
					firstOK[nk] = r.end.Sub(restoreAt)
				}
			} else {
				lastFail[nk] = r.start
			}
		case r.start.After(cutAt) && r.end.Before(restoreAt):
			since := r.start.Sub(cutAt)
			switch {
			case r.kind == kindChallenge:
				// The AS issues tickets from the resources it keeps for
				// feed_staleness, as it answers for cached RPTs; after it,
				// it cannot read the resource and says so.
				refused := r.status == http.StatusForbidden && r.header.Get("Warning") != ""
				switch {
				case r.end.Before(cutAt.Add(staleness)):
					phase = "outage, within feed_staleness"
					if !refused && !r.succeeded() {
						t.Errorf("a challenge at %s, %s into the outage (feed_staleness %s): %s, want 401 with a ticket or 403 with a Warning", r.node, since.Round(time.Millisecond), staleness, r.answer)
					}
				case r.start.After(cutAt.Add(staleness + noticed)):
					phase = "outage, past feed_staleness"
					if !refused {
						t.Errorf("a challenge at %s, %s into the outage (feed_staleness %s): %s, Warning %q, want 403 with a Warning", r.node, since.Round(time.Millisecond), staleness, r.answer, r.header.Get("Warning"))
					}
				default:
					phase = "outage, around feed_staleness"
				}
			case r.kind != kindCached:
				if err := r.unavailable(); err != nil {
					t.Errorf("%s at %s, %s into the outage: %v: %s", r.kind, r.node, since.Round(time.Millisecond), err, r.answer)
				}
			case r.end.Before(cutAt.Add(staleness)):
				phase = "outage, within feed_staleness"
				if r.status != http.StatusOK {
					t.Errorf("a cached RPT at %s, %s into the outage (feed_staleness %s): %s, want 200", r.node, since.Round(time.Millisecond), staleness, r.answer)
				}
			case r.start.After(cutAt.Add(staleness + noticed)):
				phase = "outage, past feed_staleness"
				if r.status != http.StatusForbidden || r.header.Get("Warning") == "" {
					t.Errorf("a cached RPT at %s, %s into the outage (feed_staleness %s): %s, Warning %q, want refused: 403 with a Warning", r.node, since.Round(time.Millisecond), staleness, r.answer, r.header.Get("Warning"))
				}
			default:
				phase = "outage, around feed_staleness"
			}
		default:
			phase = "at the cut or the return"
		}
		k := key{r.node, r.kind, phase}
		took[k] = append(took[k], r.took)
		if statuses[k] == nil {
			statuses[k] = map[int]int{}
		}
		statuses[k][r.status]++
	}
	keys := make([]key, 0, len(took))
	for k := range took {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b key) int { return strings.Compare(a.node+a.kind+a.phase, b.node+b.kind+b.phase) })
	for _, k := range keys {
		took[k].report(t, fmt.Sprintf("%s, %s, %s: statuses %v; time per request", k.node, k.kind, k.phase, statuses[k]), outageTimeout)
	}
	// When the cached RPTs were let through last, and refused first.
	for _, n := range []string{"node1", "node2"} {
		var lastOK, firstRefused time.Duration = -1, -1
		for _, r := range requests {
			if r.node != n || r.kind != kindCached || r.err != nil || !r.start.After(cutAt) || !r.end.Before(restoreAt) {
				continue
			}
			if at := r.end.Sub(cutAt); r.status == http.StatusOK {
				lastOK = max(lastOK, at)
			} else if firstRefused < 0 || r.start.Sub(cutAt) < firstRefused {
				firstRefused = r.start.Sub(cutAt)
			}
		}
		t.Logf("%s: a cached RPT let through until %s after the cut, refused from %s (feed_staleness %s)", n, lastOK.Round(time.Millisecond), firstRefused.Round(time.Millisecond), staleness)
	}
	for nk, d := range firstOK {
		t.Logf("%s: first success %s after the database's return", nk, d.Round(time.Millisecond))
		if at, ok := lastFail[nk]; ok && at.Sub(restoreAt) > d {
			t.Errorf("%s: failed again %s after the database's return, after succeeding at %s", nk, at.Sub(restoreAt).Round(time.Millisecond), d.Round(time.Millisecond))
		}
	}
	for _, kind := range []string{kindRegister, kindGrant, kindCached} {
		if !slices.ContainsFunc(keys, func(k key) bool { return k.kind == kind && strings.HasPrefix(k.phase, "outage") }) {
			t.Errorf("no %s during the outage", kind)
		}
	}
	for _, kind := range []string{kindCached, kindChallenge} {
		if !slices.ContainsFunc(keys, func(k key) bool { return k.kind == kind && k.phase == "outage, past feed_staleness" }) {
			t.Errorf("no %s past feed_staleness during the outage", kind)
		}
	}
}
