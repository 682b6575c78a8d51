package caddymodule

import (
	"context"
	"encoding/json"
	"errors"
	"github.com/caddy-uma/caddy-uma/authz"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// fakeEndpoints is an authorization server that serves the paths under
// /uma/ with 200.
type fakeEndpoints struct{ served int }

func (f *fakeEndpoints) Handles(path string) bool { return strings.HasPrefix(path, "/uma/") }

func (f *fakeEndpoints) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	f.served++
	w.WriteHeader(http.StatusOK)
}

// nextRecorder is the next handler of the chain.
type nextRecorder struct{ called int }

func (n *nextRecorder) ServeHTTP(w http.ResponseWriter, _ *http.Request) error {
	n.called++
	w.WriteHeader(http.StatusTeapot)
	return nil
}

func TestHandlerServeHTTP(t *testing.T) {
	tests := map[string]struct {
		server     *fakeEndpoints // nil: the uma app has not started
		path       string
		wantStatus int
		wantNext   bool
	}{
		"not started":         {path: "/uma/token", wantStatus: http.StatusServiceUnavailable},
		"not started, other":  {path: "/index.html", wantStatus: http.StatusServiceUnavailable},
		"an AS path":          {server: &fakeEndpoints{}, path: "/uma/token", wantStatus: http.StatusOK},
		"a path of the site":  {server: &fakeEndpoints{}, path: "/index.html", wantStatus: http.StatusTeapot, wantNext: true},
		"prefix is not a dir": {server: &fakeEndpoints{}, path: "/umami", wantStatus: http.StatusTeapot, wantNext: true},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			h := Handler{live: func(context.Context) authz.Paths {
				if tt.server == nil {
					return nil
				}
				return tt.server
			}}
			next := &nextRecorder{}
			rec := httptest.NewRecorder()
			if err := h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, tt.path, nil), next); err != nil {
				t.Fatalf("ServeHTTP: %v", err)
			}
			if rec.Code != tt.wantStatus {
				t.Errorf("status = %d, want %d", rec.Code, tt.wantStatus)
			}
			if got := next.called == 1; got != tt.wantNext {
				t.Errorf("next called %d times, want called: %v", next.called, tt.wantNext)
			}
			if tt.server != nil && !tt.wantNext && tt.server.served != 1 {
				t.Errorf("server served %d requests, want 1", tt.server.served)
			}
			if tt.wantStatus == http.StatusServiceUnavailable {
				checkTemporarilyUnavailable(t, rec)
			}
		})
	}
}

func checkTemporarilyUnavailable(t *testing.T, rec *httptest.ResponseRecorder) {
	t.Helper()
	if got := rec.Header().Get("Cache-Control"); got != "no-store" {
		t.Errorf("Cache-Control = %q, want no-store", got)
	}
	if got := rec.Header().Get("Content-Type"); got != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", got)
	}
	var body struct {
		Error string `json:"error"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || body.Error != "temporarily_unavailable" {
		t.Errorf("body = %q (%v), want the OAuth error temporarily_unavailable", rec.Body, err)
	}
}

func TestHandlerProvisionWithoutApp(t *testing.T) {
	// A config without the uma app: the handler cannot work.
	ctx, err := caddy.ProvisionContext(&caddy.Config{AppsRaw: caddy.ModuleMap{}})
	if err != nil {
		t.Fatal(err)
	}
	err = new(Handler).Provision(ctx)
	if !errors.Is(err, caddy.ErrNotConfigured) {
		t.Fatalf("Provision = %v, want an error wrapping caddy.ErrNotConfigured", err)
	}
	if !strings.Contains(err.Error(), "uma global option") {
		t.Errorf("error %q does not say how to configure the app", err)
	}
}

// TestHandlerFollowsAppLifecycle provisions the handler against a real uma
// app, and serves through the real authorization server once it starts.
func TestHandlerFollowsAppLifecycle(t *testing.T) {
	useCountingBackend(t)
	appJSON := `{"issuer": "https://as.example/uma", "storage": {"path": "` + t.TempDir() + `"}}`
	ctx, err := caddy.ProvisionContext(&caddy.Config{AppsRaw: caddy.ModuleMap{"uma": json.RawMessage(appJSON)}})
	if err != nil {
		t.Fatal(err)
	}
	h := new(Handler)
	if err := h.Provision(ctx); err != nil {
		t.Fatalf("Provision: %v", err)
	}
	val, err := ctx.App("uma")
	if err != nil {
		t.Fatal(err)
	}
	app := val.(*App)
	t.Cleanup(func() { _ = app.Cleanup() })

	serveCtx := func(ctx context.Context, path string) (*httptest.ResponseRecorder, bool) {
		next := &nextRecorder{}
		rec := httptest.NewRecorder()
		req := httptest.NewRequestWithContext(ctx, http.MethodGet, "https://as.example"+path, nil)
		if err := h.ServeHTTP(rec, req, next); err != nil {
			t.Errorf("ServeHTTP: %v", err)
		}
		return rec, next.called > 0
	}
	serve := func(path string) (*httptest.ResponseRecorder, bool) {
		return serveCtx(context.Background(), path)
	}

	// Before Start (the http app may start first), a request waits for the
	// app, up to startWait or the end of the request: 503 then.
	reqCtx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	rec, _ := serveCtx(reqCtx, "/uma/.well-known/uma2-configuration")
	cancel()
	if rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("before Start: status %d, want 503", rec.Code)
	}
	checkTemporarilyUnavailable(t, rec)

	// A request that arrives just before Start is served once it has run.
	waiting := make(chan int)
	go func() {
		rec, _ := serve("/uma/.well-known/uma2-configuration")
		waiting <- rec.Code
	}()
	time.Sleep(20 * time.Millisecond)
	if err := app.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	if code := <-waiting; code != http.StatusOK {
		t.Errorf("request waiting for Start: status %d, want 200", code)
	}

	rec, calledNext := serve("/uma/.well-known/uma2-configuration")
	if calledNext || rec.Code == http.StatusServiceUnavailable {
		t.Fatalf("after Start: status %d, next called %v; want the AS to answer", rec.Code, calledNext)
	}
	if rec.Code != http.StatusOK {
		t.Errorf("discovery: status %d %s, want 200", rec.Code, rec.Body)
	}
	if rec, calledNext = serve("/app/index.html"); !calledNext {
		t.Errorf("a path outside the issuer: status %d, want it passed to next", rec.Code)
	}

	// A reload: Caddy stops and cleans up the old config while its http
	// servers still finish requests. They are answered, not given 503.
	next, err := provisionApp(t, appJSON)
	if err != nil {
		t.Fatal(err)
	}
	if err := next.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = next.Cleanup() })
	if err := app.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := app.Cleanup(); err != nil {
		t.Fatal(err)
	}
	if rec, _ = serve("/uma/jwks"); rec.Code != http.StatusOK {
		t.Errorf("old config after its cleanup: status %d %s, want in-flight requests served", rec.Code, rec.Body)
	}
}

// TestHandlerConfigUnloadedBeforeStart: when the config is unloaded without
// the app having started (another app's Start failed), waiting requests get
// 503 at once.
func TestHandlerConfigUnloadedBeforeStart(t *testing.T) {
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	app := new(App)
	if err := caddy.StrictUnmarshalJSON([]byte(`{"issuer": "https://as.example"}`), app); err != nil {
		t.Fatal(err)
	}
	if err := app.Provision(ctx); err != nil {
		t.Fatal(err)
	}

	done := make(chan *httptest.ResponseRecorder)
	go func() {
		rec := httptest.NewRecorder()
		h := Handler{live: func(ctx context.Context) authz.Paths {
			if srv := app.awaitRunning(ctx, time.Minute); srv != nil {
				return srv
			}
			return nil
		}}
		_ = h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil), &nextRecorder{})
		done <- rec
	}()
	time.Sleep(20 * time.Millisecond)
	cancel()
	select {
	case rec := <-done:
		if rec.Code != http.StatusServiceUnavailable {
			t.Errorf("status %d, want 503", rec.Code)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the request still waits after the config was unloaded")
	}
}

// Interface guard for the fakes.
var (
	_ authz.Paths       = (*fakeEndpoints)(nil)
	_ caddyhttp.Handler = (*nextRecorder)(nil)
)

// A uma app that is configured but fails to load is named, with its own
// error, by the uma_server that needs it: not "needs the uma app".
func TestHandlerNamesTheAppsOwnError(t *testing.T) {
	t.Setenv("UMA_TEST_UNSET_SECRET", "")
	cfg := `{
		"admin": {"disabled": true},
		"apps": {
			"uma": {"issuer": "http://127.0.0.1:9/uma", "clients": [{"id": "rs", "secret": "{env.UMA_TEST_UNSET_SECRET}"}]},
			"http": {"servers": {"s": {"listen": ["127.0.0.1:0"], "routes": [{"handle": [{"handler": "uma_server"}]}]}}}
		}
	}`
	err := caddy.Load([]byte(cfg), false)
	if err == nil {
		_ = caddy.Stop()
		t.Fatal("a config with an empty secret loaded")
	}
	msg := err.Error()
	if !strings.Contains(msg, `client "rs": expanding secret`) || strings.Contains(msg, "needs the uma app") {
		t.Fatalf("error = %v", err)
	}
}
