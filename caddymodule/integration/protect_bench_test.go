//go:build unix

package integration

import (
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/caddy-uma/caddy-uma/authz/claimtoken/claimtokentest"
)

// BenchmarkProtect compares, in one Caddy and one run, a request through
// uma_protect with a cached RPT and reverse_proxy to a plain
// reverse_proxy to the same upstream (a Go server of this process), over
// loopback with keep-alive. The ratio metric is uma_protect's time per
// request over reverse_proxy's. Run without -race:
//
//	go test -run '^$' -bench Protect -benchtime 3s ./caddymodule/integration/
func BenchmarkProtect(b *testing.B) {
	if caddyBin == "" {
		b.Skip("needs the caddy binary (not under -short)")
	}
	if raceEnabled {
		b.Log("the caddy binary is built with -race: the numbers mean little")
	}
	for _, mode := range []string{"co-hosted", "remote"} {
		b.Run(mode, func(b *testing.B) {
			api, rpt := benchSetup(b, mode == "remote")
			client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
			get := func(b *testing.B, u, rpt string) {
				req, _ := http.NewRequest(http.MethodGet, u, nil)
				if rpt != "" {
					req.Header.Set("Authorization", "Bearer "+rpt)
				}
				resp, err := client.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					b.Fatalf("%s: %d", u, resp.StatusCode)
				}
			}
			plain, protected := api+"/plain/records/alice/1", api+"/api/records/alice/1"

			// Sequential, interleaved: one request of each per iteration.
			b.Run("sequential", func(b *testing.B) {
				var tPlain, tProtect time.Duration
				for b.Loop() {
					t0 := time.Now()
					get(b, plain, "")
					t1 := time.Now()
					get(b, protected, rpt)
					tProtect += time.Since(t1)
					tPlain += t1.Sub(t0)
				}
				n := float64(b.N)
				b.ReportMetric(float64(tPlain.Nanoseconds())/n, "proxy-ns/req")
				b.ReportMetric(float64(tProtect.Nanoseconds())/n, "protect-ns/req")
				b.ReportMetric(float64(tProtect)/float64(tPlain), "ratio")
			})
			// Parallel: throughput of each on its own.
			for _, c := range []struct{ name, url, rpt string }{
				{"parallel/reverse_proxy", plain, ""},
				{"parallel/uma_protect", protected, rpt},
			} {
				b.Run(c.name, func(b *testing.B) {
					b.SetParallelism(4)
					b.RunParallel(func(pb *testing.PB) {
						for pb.Next() {
							get(b, c.url, c.rpt)
						}
					})
					b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
				})
			}
		})
	}
}

// benchSetup starts the Caddy of the benchmark (and a second one with the
// AS when remote) and returns the protected site's URL and an RPT for
// alice's record 1.
func benchSetup(b *testing.B, remote bool) (string, string) {
	idp := claimtokentest.NewProvider(b)
	up := newRecorder(b)
	up.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "upstream")
	})
	asCfg := protectConfig{
		AdminAddr: fmt.Sprintf("127.0.0.1:%d", port(b)),
		ASPort:    port(b),
		Storage:   filepath.Join(b.TempDir(), "uma"),
		Policies:  writeRules(b),
		IdP:       idp.Issuer(),
		Upstream:  up.Listener.Addr().String(),
		RPTTTL:    "1h",
		Quiet:     true,
	}
	issuer := fmt.Sprintf("http://127.0.0.1:%d", asCfg.ASPort)
	pc := asCfg
	if remote {
		startProtectCaddy(b, asCfg, asCfg.ASPort)
		pc = protectConfig{
			AdminAddr: fmt.Sprintf("127.0.0.1:%d", port(b)),
			Upstream:  up.Listener.Addr().String(),
			RemoteAS:  issuer,
			// As a deployment would: the cache answers for a minute.
			RevocationCheck: "1m",
			Quiet:           true,
		}
	}
	pc.APIPort = port(b)
	startProtectCaddy(b, pc, pc.APIPort, "RS_API_SECRET=rs-api-secret")
	api := fmt.Sprintf("http://127.0.0.1:%d", pc.APIPort)
	rpt := obtainRPT(b, issuer, send(b, "GET", api+"/api/records/alice/1", ""), idp)
	return api, rpt
}
