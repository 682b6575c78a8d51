//go:build unix

package people_test

import (
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/caddy-uma/caddy-uma/authz"
	"github.com/caddy-uma/caddy-uma/authz/authztest"
	"github.com/caddy-uma/caddy-uma/authz/people"
)

// BenchmarkLoginFailure measures a failed login with an unknown name and
// with a known name and a wrong password, against a cost-12 hash (what
// `caddy hash-password` makes is 14): the two should take the same time
// (unknown/wrong near 1). The clock jumps an hour before each attempt,
// out of the throttle's way.
func BenchmarkLoginFailure(b *testing.B) {
	hash, err := bcrypt.GenerateFromPassword([]byte("alice password"), 12)
	if err != nil {
		b.Fatal(err)
	}
	st := authztest.OpenStore(b, b.TempDir())
	b.Cleanup(func() { st.Close() })
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	b.Cleanup(srv.Close)
	as, err := authz.New(b.Context(), authz.Config{Issuer: srv.URL + "/uma", Store: st, LoginPages: true, Now: clock})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { as.Close() })
	site, err := people.New(b.Context(), as, st, people.Config{Users: []people.User{{Name: "alice", PasswordHash: string(hash)}}, Now: clock})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { site.Close() })
	mux.Handle("/", people.Endpoints{AS: as, Site: site})
	csrf := regexp.MustCompile(`name="csrf" value="([^"]+)"`)

	// The two kinds alternate, so that the machine's load weighs on both
	// alike; each is timed on its own and reported as a metric.
	// Wall time suffers from a loaded machine; the process's CPU time (the
	// server runs in it) does not.
	attempt := func(name string) (wall, cpu time.Duration) {
		b.StopTimer()
		mu.Lock()
		now = now.Add(time.Hour)
		mu.Unlock()
		jar, _ := cookiejar.New(nil)
		c := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		resp, err := c.Get(srv.URL + "/uma" + people.PathLogin)
		if err != nil {
			b.Fatal(err)
		}
		page, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		m := csrf.FindSubmatch(page)
		if m == nil {
			b.Fatalf("no CSRF token: %s", page)
		}
		form := strings.NewReader(url.Values{"csrf": {string(m[1])}, "username": {name}, "password": {"wrong"}}.Encode())
		b.StartTimer()
		cpu0 := cpuTime(b)
		start := time.Now()
		resp, err = c.Post(srv.URL+"/uma"+people.PathLogin, "application/x-www-form-urlencoded", form)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		wall, cpu = time.Since(start), cpuTime(b)-cpu0
		if resp.StatusCode != http.StatusUnauthorized {
			b.Fatalf("status %d", resp.StatusCode)
		}
		return wall, cpu
	}
	var unknown, wrong, unknownCPU, wrongCPU time.Duration
	n := 0
	for b.Loop() {
		w, c := attempt("unknown")
		unknown, unknownCPU = unknown+w, unknownCPU+c
		w, c = attempt("alice")
		wrong, wrongCPU = wrong+w, wrongCPU+c
		n++
	}
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 / float64(n) }
	b.ReportMetric(ms(unknown), "unknown-ms")
	b.ReportMetric(ms(wrong), "wrong-password-ms")
	b.ReportMetric(ms(unknownCPU), "unknown-cpu-ms")
	b.ReportMetric(ms(wrongCPU), "wrong-password-cpu-ms")
	b.ReportMetric(float64(unknownCPU)/float64(wrongCPU), "cpu-unknown/wrong")
}

// cpuTime is the CPU time the process has used.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
