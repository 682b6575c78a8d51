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
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/caddy-uma/caddy-uma/authz"
	"github.com/caddy-uma/caddy-uma/authz/authztest"
	"github.com/caddy-uma/caddy-uma/authz/people"
)

// BenchmarkLoginFailure measures a failed login with an unknown name and
// with a known name and a wrong password, against a cost-12 hash (what
// `caddy hash-password` makes is 14): the two should take the same time.
// The clock jumps an hour before each attempt, out of the throttle's way.
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

	for _, name := range []string{"unknown", "alice"} {
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
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
				form := url.Values{"csrf": {string(m[1])}, "username": {name}, "password": {"wrong"}}
				b.StartTimer()
				resp, err = c.Post(srv.URL+"/uma"+people.PathLogin, "application/x-www-form-urlencoded", strings.NewReader(form.Encode()))
				if err != nil {
					b.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusUnauthorized {
					b.Fatalf("status %d", resp.StatusCode)
				}
			}
		})
	}
}
