package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
)

// attackSpec is one load of one scenario.
type attackSpec struct {
	name    string
	clients int
	rate    float64 // requests per second; 0: as fast as clients go
	target  vegeta.Targeter
	// check says whether an answer is of the expected kind.
	check func(*vegeta.Result) error
	// each, if set, sees every answer that passed check (refresh feeds
	// its pool of refresh tokens back).
	each func(*vegeta.Result)
}

// stats is what one attack measured.
type stats struct {
	Requests   int     `json:"requests"`
	OK         int     `json:"ok"`
	Unexpected int     `json:"unexpected"`
	Sample     string  `json:"sample,omitempty"` // the first unexpected answer
	Seconds    float64 `json:"seconds"`
	Rate       float64 `json:"rate"` // expected answers per second
	P50us      float64 `json:"p50_us"`
	P99us      float64 `json:"p99_us"`
	P999us     float64 `json:"p999_us"`
}

// attack runs spec for d and measures it. Latencies are those of the
// expected answers, from vegeta's timestamp (before the targeter) to the
// end of the body.
func attack(ctx context.Context, spec attackSpec, d time.Duration) stats {
	atk := vegeta.NewAttacker(
		vegeta.Workers(uint64(spec.clients)), vegeta.MaxWorkers(uint64(spec.clients)),
		vegeta.Connections(spec.clients*2), vegeta.MaxConnections(spec.clients*2),
		vegeta.KeepAlive(true), vegeta.HTTP2(false), vegeta.Redirects(vegeta.NoFollow),
		vegeta.Timeout(2*time.Minute),
	)
	pacer := vegeta.ConstantPacer{Freq: 0}
	if spec.rate > 0 {
		pacer = vegeta.ConstantPacer{Freq: max(1, int(spec.rate)), Per: time.Second}
	}
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-ctx.Done():
			atk.Stop()
		case <-done:
		}
	}()
	var st stats
	var lat []time.Duration
	var first, last time.Time
	for r := range atk.Attack(spec.target, pacer, d, spec.name) {
		st.Requests++
		if first.IsZero() || r.Timestamp.Before(first) {
			first = r.Timestamp
		}
		if e := r.End(); e.After(last) {
			last = e
		}
		if err := spec.check(r); err != nil {
			st.Unexpected++
			if st.Sample == "" {
				st.Sample = err.Error()
			}
			continue
		}
		st.OK++
		lat = append(lat, r.Latency)
		if spec.each != nil {
			spec.each(r)
		}
	}
	if st.Requests > 0 {
		st.Seconds = last.Sub(first).Seconds()
	}
	if st.Seconds > 0 {
		st.Rate = float64(st.OK) / st.Seconds
	}
	slices.Sort(lat)
	q := func(p float64) float64 {
		if len(lat) == 0 {
			return 0
		}
		i := min(len(lat)-1, int(p*float64(len(lat))))
		return float64(lat[i].Nanoseconds()) / 1e3
	}
	st.P50us, st.P99us, st.P999us = q(0.50), q(0.99), q(0.999)
	return st
}

// describe is a short view of an unexpected answer.
func describe(r *vegeta.Result, want string) error {
	if r.Error != "" && r.Code == 0 {
		return fmt.Errorf("want %s, got error %s", want, r.Error)
	}
	b := bytes.TrimSpace(r.Body)
	if len(b) > 200 {
		b = b[:200]
	}
	return fmt.Errorf("want %s, got %d %s", want, r.Code, b)
}

func expectUpstream(r *vegeta.Result) error {
	if r.Code != http.StatusOK || string(r.Body) != upstreamBody {
		return describe(r, "200 from the upstream")
	}
	return nil
}

func expectChallenge(r *vegeta.Result) error {
	h := r.Headers.Get("WWW-Authenticate")
	if r.Code != http.StatusUnauthorized || !strings.HasPrefix(h, "UMA ") || !strings.Contains(h, `ticket="`) {
		return describe(r, "401 with a UMA ticket")
	}
	return nil
}

func expectRPT(r *vegeta.Result) error {
	if _, err := parseTokens(answer{status: int(r.Code), body: r.Body}); err != nil {
		return describe(r, "200 with an RPT")
	}
	return nil
}

func expectRefreshed(r *vegeta.Result) error {
	if t, err := parseTokens(answer{status: int(r.Code), body: r.Body}); err != nil || t.RefreshToken == "" {
		return describe(r, "200 with an RPT and a new refresh token")
	}
	return nil
}

func expectActive(r *vegeta.Result) error {
	var out struct {
		Active bool `json:"active"`
	}
	if r.Code != http.StatusOK || json.Unmarshal(r.Body, &out) != nil || !out.Active {
		return describe(r, `200 {"active":true}`)
	}
	return nil
}

func expectDecision(r *vegeta.Result) error {
	var out struct {
		Result bool `json:"result"`
	}
	if r.Code != http.StatusOK || json.Unmarshal(r.Body, &out) != nil || !out.Result {
		return describe(r, `200 {"result":true}`)
	}
	return nil
}

// cycle returns a targeter that hands out targets in turn.
func cycle(tgts []vegeta.Target) vegeta.Targeter {
	var n atomic.Uint64
	return func(t *vegeta.Target) error {
		*t = tgts[(n.Add(1)-1)%uint64(len(tgts))]
		return nil
	}
}

// workload is what the scenarios of one size run against.
type workload struct {
	c        *asClient
	all      []resource // every registered resource
	set      []resource // the resources of the RPT set
	rpts     []tokens   // an RPT (and refresh token) for each of set
	proxied  []vegeta.Target
	authz    []vegeta.Target
	noToken  []vegeta.Target
	introspt []vegeta.Target
}

func newWorkload(c *asClient, all, set []resource, rpts []tokens) *workload {
	w := &workload{c: c, all: all, set: set, rpts: rpts}
	hdr := func(kv ...string) http.Header {
		h := http.Header{}
		for i := 0; i+1 < len(kv); i += 2 {
			h.Set(kv[i], kv[i+1])
		}
		return h
	}
	for i, res := range set {
		plain := strings.Replace(res.Name, "/api/", "/plain/", 1)
		w.proxied = append(w.proxied, vegeta.Target{Method: http.MethodGet, URL: c.api + plain})
		w.authz = append(w.authz, vegeta.Target{Method: http.MethodGet, URL: c.api + res.Name,
			Header: hdr("Authorization", "Bearer "+rpts[i].AccessToken)})
		w.noToken = append(w.noToken, vegeta.Target{Method: http.MethodGet, URL: c.api + res.Name})
		w.introspt = append(w.introspt, vegeta.Target{Method: http.MethodPost, URL: c.issuer + "/introspect",
			Body:   []byte("token=" + rpts[i].AccessToken + "&token_type_hint=access_token"),
			Header: hdr("Authorization", "Bearer "+c.pat, "Content-Type", formType)})
	}
	return w
}

func (w *workload) random() resource { return w.all[rand.IntN(len(w.all))] }

// grantTargeter gets a permission ticket for a random resource (the
// client's first step, inside the measured time) and targets the UMA
// grant that redeems it.
func (w *workload) grantTargeter(ctx context.Context) vegeta.Targeter {
	auth := clientForm()
	return func(t *vegeta.Target) error {
		tk, err := w.c.ticket(ctx, w.random())
		if err != nil {
			return err
		}
		*t = vegeta.Target{Method: http.MethodPost, URL: w.c.issuer + "/token", Body: []byte(w.c.grantForm(tk)), Header: auth}
		return nil
	}
}

// refreshPool is a pool of single-use refresh tokens: each refresh
// returns the next one.
type refreshPool chan string

func (w *workload) refreshTargeter(ctx context.Context, pool refreshPool) vegeta.Targeter {
	hdr := clientForm()
	return func(t *vegeta.Target) error {
		var rt string
		select {
		case rt = <-pool:
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Minute):
			return fmt.Errorf("no refresh token came back for a minute")
		}
		*t = vegeta.Target{Method: http.MethodPost, URL: w.c.issuer + "/token", Header: hdr,
			Body: []byte("grant_type=refresh_token&refresh_token=" + rt)}
		return nil
	}
}

func (pool refreshPool) feed(r *vegeta.Result) {
	var t tokens
	if json.Unmarshal(r.Body, &t) == nil && t.RefreshToken != "" {
		select {
		case pool <- t.RefreshToken:
		default:
		}
	}
}

// decisionTargeter asks, without a ticket, for the decision on read of a
// random resource (Keycloak's permission= with response_mode=decision).
func (w *workload) decisionTargeter() vegeta.Targeter {
	hdr := clientForm()
	return func(t *vegeta.Target) error {
		res := w.random()
		body := "grant_type=" + umaTicketGrant + "&audience=" + resourceServer + "&permission=" + res.ID + "%23read" +
			"&response_mode=decision&claim_token=" + w.c.idToken + "&claim_token_format=" + idTokenFormatEscaped
		*t = vegeta.Target{Method: http.MethodPost, URL: w.c.issuer + "/token", Header: hdr, Body: []byte(body)}
		return nil
	}
}

var idTokenFormatEscaped = strings.NewReplacer(":", "%3A", "/", "%2F", "#", "%23").Replace(idTokenFormat)

// clientForm is the header of a form the client posts to the token
// endpoint, authenticated with HTTP Basic.
func clientForm() http.Header {
	req, _ := http.NewRequest(http.MethodPost, "http://127.0.0.1/", nil)
	basic(clientID, clientSecret)(req)
	req.Header.Set("Content-Type", formType)
	return req.Header
}
