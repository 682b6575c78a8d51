//go:build unix

package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"text/template"
	"time"

	"github.com/caddy-uma/caddy-uma/authz/claimtoken/claimtokentest"
	"github.com/caddy-uma/caddy-uma/store"
	"github.com/caddy-uma/caddy-uma/store/badgerstore"
)

// BenchmarkResidentMemory measures the resident memory of a Caddy whose
// Badger store holds 100k resources with uris over 10k owners, each owner
// with a rule of their own: the resources and rules are seeded through the
// store API, then Caddy starts, its co-hosted enforcement point maps a
// request by registered uris (which lists them all into its table), and a
// ticketless decision per owner puts every owner's rule in force. It
// reports Caddy's resident set (rss-MiB, and its peak, hwm-MiB) and its Go
// heap in use (heap-MiB), from /proc and the admin API's /debug/vars; the
// target is under 300 MiB. Seeding takes about a minute (synced commits):
//
//	go test -run '^$' -bench ResidentMemory -benchtime 1x ./caddymodule/integration/
//
// UMA_MEM_RESOURCES and UMA_MEM_OWNERS change the sizes.
func BenchmarkResidentMemory(b *testing.B) {
	if caddyBin == "" {
		b.Skip("needs the caddy binary (not under -short)")
	}
	resources, owners := envInt(b, "UMA_MEM_RESOURCES", 100_000), envInt(b, "UMA_MEM_OWNERS", 10_000)
	storage := filepath.Join(b.TempDir(), "uma")
	t0 := time.Now()
	seedStore(b, storage, resources, owners)
	b.Logf("seeded %d resources and %d owners' rules in %v", resources, owners, time.Since(t0).Round(time.Millisecond))

	idp := claimtokentest.NewProvider(b)
	up := newRecorder(b)
	up.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})
	mc := memoryConfig{
		AdminAddr: fmt.Sprintf("127.0.0.1:%d", port(b)), ASPort: port(b), APIPort: port(b),
		Storage: storage, IdP: idp.Issuer(), Upstream: up.Listener.Addr().String(),
	}
	inst := startTemplate(b, memoryTemplate, mc, config{AdminAddr: mc.AdminAddr, Port: mc.ASPort}, 60*time.Second)
	api := fmt.Sprintf("http://127.0.0.1:%d", mc.APIPort)
	issuer := fmt.Sprintf("http://127.0.0.1:%d", mc.ASPort)
	idToken := idp.Sign(b, map[string]any{"aud": "demo-app", "sub": "reader", "email": "reader@example.com"})
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 8}}

	for b.Loop() {
		// The enforcement point lists the registered resources.
		t1 := time.Now()
		last := resources - 1
		resp := send(b, "GET", fmt.Sprintf("%s/files/owner-%d/%d", api, last%owners, last), "")
		if resp.status != http.StatusUnauthorized || !strings.Contains(resp.header.Get("WWW-Authenticate"), "ticket=") {
			b.Fatalf("a registered uri: %d %v %s", resp.status, resp.header, resp.body)
		}
		b.Logf("first request (the uri table loaded) in %v", time.Since(t1).Round(time.Millisecond))

		// One decision per owner: every owner's rule is compiled.
		t2 := time.Now()
		var wg sync.WaitGroup
		errs := make(chan error, 4)
		for w := range 4 {
			wg.Go(func() {
				for o := w; o < owners; o += 4 {
					form := url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:uma-ticket"}, "audience": {"rs-api"},
						"permission": {fmt.Sprintf("res-%06d#read", o)}, "response_mode": {"decision"},
						"claim_token": {idToken}, "claim_token_format": {"http://openid.net/specs/openid-connect-core-1_0.html#IDToken"}}
					req, _ := http.NewRequest(http.MethodPost, issuer+"/token", strings.NewReader(form.Encode()))
					req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
					req.SetBasicAuth("demo-app", "demo-app-secret")
					resp, err := client.Do(req)
					if err != nil {
						errs <- err
						return
					}
					var body bytes.Buffer
					_, _ = body.ReadFrom(resp.Body)
					resp.Body.Close()
					// The reader is no one's friend: refused by a rule in force.
					if resp.StatusCode != http.StatusForbidden || !strings.Contains(body.String(), "access_denied") {
						errs <- fmt.Errorf("decision for owner-%d: %d %s", o, resp.StatusCode, body.String())
						return
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			b.Fatal(err)
		}
		b.Logf("%d decisions (each owner's rule compiled) in %v", owners, time.Since(t2).Round(time.Millisecond))
	}
	rss, hwm := procMemory(b, inst.cmd.Process.Pid)
	heap := caddyHeap(b, mc.AdminAddr)
	b.ReportMetric(rss, "rss-MiB")
	b.ReportMetric(hwm, "hwm-MiB")
	b.ReportMetric(heap, "heap-MiB")
	if profile := os.Getenv("UMA_MEM_PROFILE"); profile != "" {
		saveHeapProfile(b, mc.AdminAddr, profile)
	}
}

func envInt(tb testing.TB, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		tb.Fatalf("%s=%q: want a positive number", name, v)
	}
	return n
}

// seedStore creates n resources of rs-api over owners owners (the i-th,
// res-%06d, of owner-(i mod owners), with the uris /files/<owner>/<i> and
// what is under it), and a rule for each owner naming a friend of theirs,
// so that no two owners share a compilation.
func seedStore(b *testing.B, dir string, n, owners int) {
	st, err := badgerstore.Open(badgerstore.Options{Dir: dir})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	at := time.Now().UTC()
	const workers = 64
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < n; i += workers {
				owner := fmt.Sprintf("owner-%d", i%owners)
				base := fmt.Sprintf("/files/%s/%d", owner, i)
				r := store.Resource{ID: fmt.Sprintf("res-%06d", i), ResourceServer: "rs-api", Owner: owner, Name: fmt.Sprintf("file %d", i),
					Scopes: []string{"read", "write"}, URIs: []string{base, base + "/*"}, CreatedAt: at, UpdatedAt: at}
				if err := st.CreateResource(ctx, r); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	var writes []store.Write
	flush := func() {
		if err := st.PutAll(ctx, writes); err != nil {
			b.Fatal(err)
		}
		writes = writes[:0]
	}
	for o := range owners {
		rule := fmt.Sprintf("package uma.share\n\nimport data.uma.lib\n\nallow contains \"read\" if lib.is_email(\"friend-%d@example.com\")\n", o)
		writes = append(writes, store.Write{Namespace: "policy", Key: fmt.Sprintf("owner-%d\x00main", o), Value: []byte(rule)})
		if len(writes) == 500 {
			flush()
		}
	}
	if len(writes) > 0 {
		flush()
	}
}

// procMemory returns the resident set of a process and its peak, in MiB.
func procMemory(tb testing.TB, pid int) (rss, hwm float64) {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		tb.Fatal(err)
	}
	for line := range strings.SplitSeq(string(status), "\n") {
		name, value, _ := strings.Cut(line, ":")
		kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(value), " kB"), 64)
		switch {
		case err != nil:
		case name == "VmRSS":
			rss = kb / 1024
		case name == "VmHWM":
			hwm = kb / 1024
		}
	}
	return rss, hwm
}

// caddyHeap returns Caddy's Go heap in use, in MiB, from the admin API.
func caddyHeap(tb testing.TB, admin string) float64 {
	resp, err := http.Get("http://" + admin + "/debug/vars")
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	var vars struct {
		Memstats struct {
			HeapInuse uint64
		} `json:"memstats"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&vars); err != nil {
		tb.Fatal(err)
	}
	return float64(vars.Memstats.HeapInuse) / (1 << 20)
}

// saveHeapProfile writes Caddy's heap profile to path.
func saveHeapProfile(tb testing.TB, admin, path string) {
	resp, err := http.Get("http://" + admin + "/debug/pprof/heap")
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(resp.Body); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		tb.Fatal(err)
	}
}

type memoryConfig struct {
	AdminAddr       string
	ASPort, APIPort int
	Storage, IdP    string
	Upstream        string
}

var memoryTemplate = template.Must(template.New("Caddyfile").Parse(`{
	admin {{.AdminAddr}}
	persist_config off
	uma {
		issuer http://127.0.0.1:{{.ASPort}}
		storage badger {{.Storage}}
		trust_issuer {{.IdP}} {
			audience demo-app
		}
		client rs-api {
			secret rs-api-secret
			resource_server
		}
		client demo-app {
			secret demo-app-secret
		}
	}
}

http://127.0.0.1:{{.ASPort}} {
	bind 127.0.0.1
	uma_server
	respond "not an AS endpoint" 404
}

http://127.0.0.1:{{.APIPort}} {
	bind 127.0.0.1
	uma_protect {
		as co-hosted
		resource_server rs-api
	}
	reverse_proxy {{.Upstream}}
}
`))
