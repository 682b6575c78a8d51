//go:build unix

package integration

import (
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"text/template"
	"time"
)

var throttleCaddyfile = template.Must(template.New("Caddyfile").Parse(`{
	admin {{.AdminAddr}}
	persist_config off
{{- if .TrustProxy}}
	servers {
		trusted_proxies static 127.0.0.1/32
	}
{{- end}}

	uma {
		issuer http://127.0.0.1:{{.Port}}
		storage badger {{.Storage}}
		user alice {
			password_hash {{.AliceHash}}
		}
	}
}

http://127.0.0.1:{{.Port}} {
	bind 127.0.0.1
	uma_server
	respond "site" 200
}
`))

var loginCSRFField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// TestLoginThrottleClientAddress: the real Caddy counts failed logins per
// client address, Caddy's client_ip: behind a proxy listed in
// trusted_proxies, the client its X-Forwarded-For names; otherwise the
// connection's peer, whatever X-Forwarded-For says (a header anyone can
// send must not let a guesser pose as many clients).
func TestLoginThrottleClientAddress(t *testing.T) {
	skipShort(t)
	for _, trust := range []bool{true, false} {
		t.Run(fmt.Sprintf("trusted_proxies=%v", trust), func(t *testing.T) {
			inst := startCaddyfile(t, throttleCaddyfile, map[string]any{"AliceHash": hash(t, alicePassword), "TrustProxy": trust})
			cfg := inst.cfg

			jar, _ := cookiejar.New(nil)
			c := &http.Client{Jar: jar, Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
			resp, err := c.Get(cfg.issuer() + "/login")
			if err != nil {
				t.Fatal(err)
			}
			page, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			m := loginCSRFField.FindSubmatch(page)
			if m == nil {
				t.Fatalf("no CSRF token in the login page: %s", page)
			}
			login := func(forwardedFor, name, password string) *http.Response {
				t.Helper()
				form := url.Values{"csrf": {string(m[1])}, "username": {name}, "password": {password}}
				req, _ := http.NewRequest(http.MethodPost, cfg.issuer()+"/login", strings.NewReader(form.Encode()))
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				req.Header.Set("X-Forwarded-For", forwardedFor)
				resp, err := c.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				return resp
			}
			// A guesser tries one name after another, from one client.
			for i := range 20 {
				if r := login("198.51.100.1", fmt.Sprintf("user%d", i), "guess"); r.StatusCode != http.StatusUnauthorized {
					t.Fatalf("failure %d: %d", i, r.StatusCode)
				}
			}
			r := login("198.51.100.1", "someone", "guess")
			if r.StatusCode != http.StatusTooManyRequests || r.Header.Get("Retry-After") == "" {
				t.Fatalf("the guesser's next try: %d, Retry-After %q", r.StatusCode, r.Header.Get("Retry-After"))
			}
			// Alice, from another client behind the proxy.
			r = login("198.51.100.2", "alice", alicePassword)
			want := http.StatusSeeOther
			if !trust {
				want = http.StatusTooManyRequests // everyone is 127.0.0.1 then
			}
			if r.StatusCode != want {
				t.Fatalf("alice from another client: %d, want %d", r.StatusCode, want)
			}
			inst.checkLog()
		})
	}
}
