package caddymodule

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"

	"github.com/caddy-uma/caddy-uma/store"
	"github.com/caddy-uma/caddy-uma/store/badgerstore"
)

// newTestContext returns a Caddy context without a config, cancelled at the
// end of the test.
func newTestContext(t *testing.T) caddy.Context {
	t.Helper()
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	return ctx
}

// provisionApp decodes cfg like Caddy does, then provisions and validates it.
func provisionApp(t *testing.T, cfg string) (*App, error) {
	t.Helper()
	app := new(App)
	if err := caddy.StrictUnmarshalJSON([]byte(cfg), app); err != nil {
		t.Fatalf("decoding %s: %v", cfg, err)
	}
	if err := app.Provision(newTestContext(t)); err != nil {
		return app, err
	}
	return app, app.Validate()
}

// expectError fails the test unless err matches want, a substring of the
// error; an empty want means no error. It reports whether an error was
// expected, so that the case stops there.
func expectError(t *testing.T, err error, want string) bool {
	t.Helper()
	if want == "" {
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		return false
	}
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("error = %v, want one containing %q", err, want)
	}
	return true
}

func TestAppProvisionValidate(t *testing.T) {
	t.Setenv("UMA_TEST_SECRET", "from-env")
	t.Setenv("UMA_TEST_EMPTY", "")
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}

	tests := map[string]struct {
		cfg     string
		wantErr string // substring; empty means success
		check   func(t *testing.T, a *App)
	}{
		"minimal config gets defaults": {
			cfg: `{"issuer": "https://as.example.com"}`,
			check: func(t *testing.T, a *App) {
				if want := filepath.Join(caddy.AppDataDir(), "uma"); badgerDir(t, a) != want {
					t.Errorf("storePath = %q, want %q", badgerDir(t, a), want)
				}
				if a.signingAlg != "ES256" {
					t.Errorf("signingAlg = %q, want ES256", a.signingAlg)
				}
			},
		},
		"full config": {
			cfg: `{
				"issuer": "http://localhost:8080/uma",
				"storage": {"backend": "badger", "path": "data/uma/../uma"},
				"signing_alg": "EdDSA",
				"key_rotation": "720h", "pat_ttl": "2h", "ticket_ttl": "1m", "rpt_ttl": 60000000000,
				"clients": [
					{"id": "rs", "secret": "{env.UMA_TEST_SECRET}", "resource_server": true, "scopes": ["read", "write"]},
					{"id": "app", "redirect_uris": ["https://app.example/cb"], "claims_redirect_uris": ["https://app.example/claims"]}
				]
			}`,
			check: func(t *testing.T, a *App) {
				if want := filepath.Join(wd, "data", "uma"); badgerDir(t, a) != want {
					t.Errorf("storePath = %q, want %q (absolute and clean)", badgerDir(t, a), want)
				}
				if a.issuer != "http://localhost:8080/uma" || a.signingAlg != "EdDSA" {
					t.Errorf("issuer, alg = %q, %q", a.issuer, a.signingAlg)
				}
				if len(a.clients) != 2 {
					t.Fatalf("clients = %+v", a.clients)
				}
				if a.clients[0].Secret != "from-env" || !a.clients[0].ResourceServer {
					t.Errorf("client rs = %+v, want the secret expanded from the environment", a.clients[0])
				}
				if a.Clients[0].Secret != "{env.UMA_TEST_SECRET}" {
					t.Errorf("the JSON field changed to %q; expansion belongs in the provisioned copy", a.Clients[0].Secret)
				}
				if a.clients[1].Secret != "" || a.clients[1].RedirectURIs[0] != "https://app.example/cb" {
					t.Errorf("client app = %+v", a.clients[1])
				}
				if time.Duration(a.RPTTTL) != time.Minute || time.Duration(a.KeyRotation) != 720*time.Hour {
					t.Errorf("durations = %v, %v", a.RPTTTL, a.KeyRotation)
				}
			},
		},
		"bcrypt secret kept as is": {
			cfg: `{"issuer": "https://as.example", "clients": [{"id": "rs", "resource_server": true,
				"secret": "$2a$14$Zkx19XLiW6VYouLHR5NmfOFU0z2GTNmpkT/5qqR7hx4IjWJPDhjvG"}]}`,
			check: func(t *testing.T, a *App) {
				if !strings.HasPrefix(a.clients[0].Secret, "$2a$14$Zkx19") {
					t.Errorf("secret = %q", a.clients[0].Secret)
				}
			},
		},
		"issuer from placeholder": {
			cfg: `{"issuer": "https://{env.UMA_TEST_SECRET}.example"}`,
			check: func(t *testing.T, a *App) {
				if a.issuer != "https://from-env.example" {
					t.Errorf("issuer = %q", a.issuer)
				}
			},
		},

		"missing issuer":             {cfg: `{}`, wantErr: "issuer"},
		"relative issuer":            {cfg: `{"issuer": "/uma"}`, wantErr: "absolute http or https"},
		"issuer with other scheme":   {cfg: `{"issuer": "ftp://as.example"}`, wantErr: "absolute http or https"},
		"issuer without host":        {cfg: `{"issuer": "https:///uma"}`, wantErr: "host"},
		"issuer with query":          {cfg: `{"issuer": "https://as.example?x=1"}`, wantErr: "query"},
		"issuer with empty query":    {cfg: `{"issuer": "https://as.example?"}`, wantErr: "query"},
		"issuer with fragment":       {cfg: `{"issuer": "https://as.example#x"}`, wantErr: "fragment"},
		"issuer with user info":      {cfg: `{"issuer": "https://u:p@as.example"}`, wantErr: "user information"},
		"issuer from unset variable": {cfg: `{"issuer": "{env.UMA_TEST_EMPTY}"}`, wantErr: "expanding issuer"},
		"unknown signing_alg":        {cfg: `{"issuer": "https://as.example", "signing_alg": "HS256"}`, wantErr: "signing_alg"},
		"signing_alg is case-sensitive": {
			cfg: `{"issuer": "https://as.example", "signing_alg": "es256"}`, wantErr: "signing_alg",
		},
		"unknown storage backend": {
			cfg: `{"issuer": "https://as.example", "storage": {"backend": "mysql"}}`, wantErr: "unknown backend",
		},
		"negative duration": {
			cfg: `{"issuer": "https://as.example", "pat_ttl": "-1h"}`, wantErr: "pat_ttl",
		},
		"duplicate client ids": {
			cfg:     `{"issuer": "https://as.example", "clients": [{"id": "a"}, {"id": "b"}, {"id": "a"}]}`,
			wantErr: `client "a": defined more than once`,
		},
		"client without id": {
			cfg: `{"issuer": "https://as.example", "clients": [{"secret": "s"}]}`, wantErr: "client without id",
		},
		"secret from unset variable": {
			cfg:     `{"issuer": "https://as.example", "clients": [{"id": "rs", "secret": "{env.UMA_TEST_EMPTY}"}]}`,
			wantErr: `client "rs": expanding secret`,
		},
		"resource server without secret": {
			cfg:     `{"issuer": "https://as.example", "clients": [{"id": "rs", "resource_server": true}]}`,
			wantErr: "needs a secret",
		},
		"bad scope": {
			cfg:     `{"issuer": "https://as.example", "clients": [{"id": "a", "scopes": ["read write"]}]}`,
			wantErr: "scope",
		},
		"relative redirect URI": {
			cfg:     `{"issuer": "https://as.example", "clients": [{"id": "a", "redirect_uris": ["/cb"]}]}`,
			wantErr: "redirect URI",
		},
		"user named like a client": {
			cfg: `{"issuer": "https://as.example", "clients": [{"id": "rs-api", "resource_server": true, "secret": "s"}],
				"users": [{"name": "rs-api", "password_hash": "$2a$14$Zkx19XLiW6VYouLHR5NmfOFU0z2GTNmpkT/5qqR7hx4IjWJPDhjvG"}]}`,
			wantErr: `user "rs-api": a client has the same id`,
		},
		"trusted issuer with any_client_audience": {
			cfg: `{"issuer": "https://as.example", "trusted_issuers": [{"issuer": "https://idp.example", "audiences": ["api"], "any_client_audience": true}]}`,
		},
		"any_client_audience without audiences": {
			cfg:     `{"issuer": "https://as.example", "trusted_issuers": [{"issuer": "https://idp.example", "any_client_audience": true}]}`,
			wantErr: `trust_issuer: issuer "https://idp.example": any_client_audience needs the audiences it accepts from every client: add audience`,
		},
		"trusted issuer with a bad algorithm": {
			cfg:     `{"issuer": "https://as.example", "trusted_issuers": [{"issuer": "https://idp.example", "algorithms": ["HS256"]}]}`,
			wantErr: `trust_issuer: issuer "https://idp.example": signing algorithm "HS256" is not allowed`,
		},
		"claims redirect URI with fragment": {
			cfg:     `{"issuer": "https://as.example", "clients": [{"id": "a", "claims_redirect_uris": ["https://a/cb#x"]}]}`,
			wantErr: "redirect URI",
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			a, err := provisionApp(t, tt.cfg)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if tt.check != nil {
				tt.check(t, a)
			}
		})
	}
}

// badgerDir returns the database directory of an app provisioned with the
// badger storage.
func badgerDir(t *testing.T, a *App) string {
	t.Helper()
	b, ok := a.storage.(*BadgerStorage)
	if !ok {
		t.Fatalf("storage = %T, want *BadgerStorage", a.storage)
	}
	return b.dir
}

// countingBackend replaces openBadger with in-memory Badger stores that
// behave like directories: a second open of an open directory fails with
// ErrLocked, as Badger does.
type countingBackend struct {
	mu     sync.Mutex
	open   map[string]bool
	opens  int
	closes int
	fail   error // returned by every open when set
}

func useCountingBackend(t *testing.T) *countingBackend {
	t.Helper()
	b := &countingBackend{open: map[string]bool{}}
	orig := openBadger
	openBadger = b.openStore
	t.Cleanup(func() { openBadger = orig })
	return b
}

func (b *countingBackend) openStore(dir string, _ int64, _ *zap.Logger) (store.Store, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.fail != nil {
		return nil, b.fail
	}
	if b.open[dir] {
		return nil, fmt.Errorf("%w: %s", badgerstore.ErrLocked, dir)
	}
	st, err := badgerstore.Open(badgerstore.Options{InMemory: true})
	if err != nil {
		return nil, err
	}
	b.open[dir] = true
	b.opens++
	return &countedStore{Store: st, backend: b, dir: dir}, nil
}

func (b *countingBackend) counts() (opens, closes int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.opens, b.closes
}

type countedStore struct {
	store.Store
	backend *countingBackend
	dir     string
	once    sync.Once
}

func (s *countedStore) Close() error {
	s.once.Do(func() {
		s.backend.mu.Lock()
		s.backend.open[s.dir] = false
		s.backend.closes++
		s.backend.mu.Unlock()
	})
	return s.Store.Close()
}

// appFor provisions an app that stores its state in dir.
func appFor(t *testing.T, dir string, extra string) *App {
	t.Helper()
	cfg := fmt.Sprintf(`{"issuer": "https://as.example/uma", "storage": {"path": %q}, %s
		"clients": [{"id": "rs", "secret": "s3cret", "resource_server": true}]}`, dir, extra)
	app, err := provisionApp(t, cfg)
	if err != nil {
		t.Fatalf("provisioning: %v", err)
	}
	return app
}

// badgerKey is the storePool key of the badger database in dir.
func badgerKey(dir string) string {
	return storeKey(&BadgerStorage{dir: dir})
}

func poolRefs(dir string) int {
	refs, _ := storePool.References(badgerKey(dir))
	return refs
}

// TestAppReloadSharesStore plays Caddy's order of a reload: the new config
// is provisioned and started while the old one runs, then the old one is
// stopped and cleaned up.
func TestAppReloadSharesStore(t *testing.T) {
	backend := useCountingBackend(t)
	dir := t.TempDir()

	// validate: provisioning alone never opens the database.
	validated := appFor(t, dir, "")
	if opens, _ := backend.counts(); opens != 0 {
		t.Fatalf("Provision opened the database %d times; it must wait for Start", opens)
	}
	if err := validated.Cleanup(); err != nil {
		t.Fatalf("Cleanup of a never-started app: %v", err)
	}

	old := appFor(t, dir, "")
	if err := old.Start(); err != nil {
		t.Fatalf("starting the first config: %v", err)
	}
	if old.running() == nil {
		t.Fatal("Start published no server")
	}

	next := appFor(t, dir, `"pat_ttl": "2h",`)
	if err := next.Start(); err != nil {
		t.Fatalf("starting the new config while the old one runs: %v", err)
	}
	if opens, _ := backend.counts(); opens != 1 {
		t.Fatalf("database opened %d times, want 1 shared open", opens)
	}
	if refs := poolRefs(dir); refs != 2 {
		t.Fatalf("pool references = %d, want 2", refs)
	}

	if err := old.Stop(); err != nil {
		t.Fatalf("stopping the old config: %v", err)
	}
	if err := old.Cleanup(); err != nil {
		t.Fatalf("cleaning up the old config: %v", err)
	}
	// Caddy cleans up without waiting for the old http servers' requests:
	// they are still answered by the old server, on the shared store.
	if old.running() == nil {
		t.Fatal("Stop or Cleanup withdrew the server; in-flight requests of the old config would get 503")
	}
	rec := httptest.NewRecorder()
	old.running().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "https://as.example/uma/jwks", nil))
	if rec.Code != http.StatusOK {
		t.Errorf("GET /jwks on the old config after its cleanup = %d %s", rec.Code, rec.Body)
	}
	// A second Cleanup must not release the reference again: that would
	// close the database under the new config.
	if err := old.Cleanup(); err != nil {
		t.Fatalf("second Cleanup: %v", err)
	}
	if _, closes := backend.counts(); closes != 0 {
		t.Fatalf("database closed %d times while the new config uses it", closes)
	}
	if refs := poolRefs(dir); refs != 1 {
		t.Fatalf("pool references = %d, want 1", refs)
	}

	// The new config still works on the shared store.
	rec = httptest.NewRecorder()
	next.running().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "https://as.example/uma/jwks", nil))
	if rec.Code != http.StatusOK {
		t.Errorf("GET /jwks on the new config = %d %s", rec.Code, rec.Body)
	}

	if err := next.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := next.Cleanup(); err != nil {
		t.Fatal(err)
	}
	if opens, closes := backend.counts(); opens != 1 || closes != 1 {
		t.Fatalf("opens, closes = %d, %d, want 1, 1", opens, closes)
	}
	if _, ok := storePool.References(badgerKey(dir)); ok {
		t.Fatal("pool entry left behind")
	}

	// And the directory can be opened again (a restart).
	again := appFor(t, dir, "")
	if err := again.Start(); err != nil {
		t.Fatalf("starting again: %v", err)
	}
	if err := again.Cleanup(); err != nil {
		t.Fatal(err)
	}
}

func TestAppStartFailureReleasesNothing(t *testing.T) {
	backend := useCountingBackend(t)
	dir := t.TempDir()
	backend.fail = fmt.Errorf("%w: %s (held by another process)", badgerstore.ErrLocked, dir)

	app := appFor(t, dir, "")
	err := app.Start()
	if !errors.Is(err, badgerstore.ErrLocked) {
		t.Fatalf("Start = %v, want an error wrapping ErrLocked", err)
	}
	if !strings.Contains(err.Error(), "caddy reload") {
		t.Errorf("error %q does not tell the user to use caddy reload", err)
	}
	if _, ok := storePool.References(badgerKey(dir)); ok {
		t.Fatal("a failed open left a pool entry")
	}
	// Caddy cleans up a config whose Start failed: no Delete must happen
	// (it would panic on a missing reference or steal another config's).
	if err := app.Cleanup(); err != nil {
		t.Fatal(err)
	}
	if app.running() != nil {
		t.Fatal("server published after a failed Start")
	}
}

func TestAppDistinctPathsGetDistinctStores(t *testing.T) {
	backend := useCountingBackend(t)
	a := appFor(t, t.TempDir(), "")
	b := appFor(t, t.TempDir(), "")
	for _, app := range []*App{a, b} {
		if err := app.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = app.Cleanup() })
	}
	if opens, _ := backend.counts(); opens != 2 {
		t.Fatalf("opens = %d, want 2", opens)
	}
}

// TestAppBadgerReload runs the reload sequence on a real Badger directory,
// which locks itself even within the process.
func TestAppBadgerReload(t *testing.T) {
	dir := t.TempDir()
	old := appFor(t, dir, "")
	if err := old.Start(); err != nil {
		t.Fatalf("start: %v", err)
	}
	if _, err := badgerstore.Open(badgerstore.Options{Dir: dir}); !errors.Is(err, badgerstore.ErrLocked) {
		t.Fatalf("opening the directory a second time = %v, want ErrLocked (the test relies on the lock)", err)
	}
	next := appFor(t, dir, `"rpt_ttl": "1m",`)
	if err := next.Start(); err != nil {
		t.Fatalf("reload start: %v", err)
	}
	if err := old.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := old.Cleanup(); err != nil {
		t.Fatal(err)
	}

	st := next.running()
	rec := httptest.NewRecorder()
	st.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "https://as.example/uma/jwks", nil))
	if rec.Code != http.StatusOK {
		t.Errorf("GET /jwks after the reload = %d %s", rec.Code, rec.Body)
	}

	if err := next.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := next.Cleanup(); err != nil {
		t.Fatal(err)
	}
	// Closed: the directory opens again.
	st2, err := badgerstore.Open(badgerstore.Options{Dir: dir})
	if err != nil {
		t.Fatalf("reopening after the last Cleanup: %v", err)
	}
	_ = st2.Close()
}

func TestAppJSONFieldNames(t *testing.T) {
	app := App{
		Issuer:      "https://as.example",
		Storage:     caddyconfig.JSONModuleObject(BadgerStorage{Path: "/var/lib/uma"}, "backend", "badger", nil),
		Clients:     []Client{{ID: "c", Secret: "s", ResourceServer: true, Scopes: []string{"a"}, RedirectURIs: []string{"r"}, ClaimsRedirectURIs: []string{"cr"}}},
		SigningAlg:  "RS256",
		KeyRotation: caddy.Duration(time.Hour),
		PATTTL:      1, TicketTTL: 2, RPTTTL: 3,
	}
	got, err := json.Marshal(app)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"issuer":"https://as.example","storage":{"backend":"badger","path":"/var/lib/uma"},` +
		`"clients":[{"id":"c","secret":"s","resource_server":true,"scopes":["a"],"redirect_uris":["r"],"claims_redirect_uris":["cr"]}],` +
		`"signing_alg":"RS256","key_rotation":3600000000000,"pat_ttl":1,"ticket_ttl":2,"rpt_ttl":3}`
	if string(got) != want {
		t.Errorf("JSON =\n%s\nwant\n%s", got, want)
	}
	if got, _ := json.Marshal(App{}); string(got) != "{}" {
		t.Errorf("empty app JSON = %s, want {} (omitempty everywhere)", got)
	}
}
