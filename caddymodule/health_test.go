package caddymodule

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/caddy-uma/caddy-uma/store"
	"github.com/caddy-uma/caddy-uma/store/badgerstore"
)

func TestParseHealth(t *testing.T) {
	tests := map[string]struct {
		input   string
		want    Health
		wantErr string // substring; empty means success
	}{
		"live":                {input: `uma_health live`, want: Health{Probe: probeLive}},
		"ready":               {input: `uma_health ready`, want: Health{Probe: probeReady}},
		"no probe":            {input: `uma_health`, wantErr: "uma_health: the probe is missing: write uma_health live or uma_health ready"},
		"unknown probe":       {input: `uma_health alive`, wantErr: `uma_health "alive": unknown probe; write uma_health live or uma_health ready`},
		"two probes":          {input: `uma_health live ready`, wantErr: "wrong argument count"},
		"a block":             {input: "uma_health ready {\n\tstore\n}", wantErr: `uma_health ready takes no block (found "store")`},
		"probe in upper case": {input: `uma_health READY`, wantErr: `uma_health "READY": unknown probe`},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			var got Health
			err := got.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tt.input))
			if expectError(t, err, tt.wantErr) {
				return
			}
			if got.Probe != tt.want.Probe {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
			if err := got.Validate(); err != nil {
				t.Errorf("Validate: %v", err)
			}
		})
	}
}

// TestHealthValidate checks the JSON config's probe, which the Caddyfile
// does not check for.
func TestHealthValidate(t *testing.T) {
	tests := map[string]struct {
		probe   string
		wantErr string
	}{
		"live":    {probe: "live"},
		"ready":   {probe: "ready"},
		"missing": {wantErr: "uma_health: the probe is missing"},
		"unknown": {probe: "startup", wantErr: `uma_health "startup": unknown probe`},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			expectError(t, (&Health{Probe: tt.probe}).Validate(), tt.wantErr)
		})
	}
}

// TestLiveProbe: the liveness probe answers GET and HEAD with 200, and
// other methods with 405 and Allow.
func TestLiveProbe(t *testing.T) {
	h := &Health{Probe: probeLive}
	tests := []struct {
		method string
		status int
		body   string
	}{
		{http.MethodGet, http.StatusOK, `{"status":"live"}`},
		{http.MethodHead, http.StatusOK, ""},
		{http.MethodPost, http.StatusMethodNotAllowed, ""},
	}
	for _, tt := range tests {
		t.Run(tt.method, func(t *testing.T) {
			w := httptest.NewRecorder()
			if err := h.ServeHTTP(w, httptest.NewRequest(tt.method, "/live", nil), nil); err != nil {
				t.Fatal(err)
			}
			if w.Code != tt.status {
				t.Fatalf("status %d, want %d: %s", w.Code, tt.status, w.Body)
			}
			if tt.body != "" && w.Body.String() != tt.body+"\n" && w.Body.String() != tt.body {
				t.Errorf("body %q, want %q", w.Body, tt.body)
			}
			if tt.status == http.StatusMethodNotAllowed && w.Header().Get("Allow") == "" {
				t.Error("405 without Allow")
			}
		})
	}
}

// noSpaceStore refuses every write for want of disk space while full is
// set, as PostgreSQL does when its disk is full.
type noSpaceStore struct {
	store.Store
	full bool
}

func (s *noSpaceStore) Put(ctx context.Context, namespace, key string, value []byte, expiresAt time.Time) error {
	if s.full {
		return store.ErrNoSpace
	}
	return s.Store.Put(ctx, namespace, key, value, expiresAt)
}

// TestDiskCheck checks the disk check of the readiness probe: Badger's
// measured space, and for other backends the writes refused for want of
// space, forgotten once a write succeeds.
func TestDiskCheck(t *testing.T) {
	ctx := t.Context()
	b, err := badgerstore.Open(badgerstore.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if c := diskCheck(b, newMeasuredStore(b, "badger")); !c.OK || c.FreeBytes == nil || c.MinFreeBytes == nil || *c.FreeBytes < *c.MinFreeBytes {
		t.Errorf("badger with space: %+v, want ok with the free and minimum bytes", c)
	}

	raw := &noSpaceStore{Store: b}
	m := newMeasuredStore(raw, "postgres")
	put := func() error { return m.Put(ctx, "ns", "k", []byte("v"), time.Time{}) }
	steps := []struct {
		name string
		full bool
		ok   bool
	}{
		{"space", false, true},
		{"a write refused", true, false},
		{"another write refused", true, false},
		{"a write succeeds again", false, true},
	}
	for _, s := range steps {
		raw.full = s.full
		_ = put()
		c := diskCheck(raw, m)
		if c.OK != s.ok || (c.OK == (c.Error != "")) {
			t.Errorf("%s: %+v, want ok=%v with an error only when not ok", s.name, c, s.ok)
		}
		if c.FreeBytes != nil {
			t.Errorf("%s: free bytes %d reported for a backend that cannot measure them", s.name, *c.FreeBytes)
		}
	}
}

// TestHealthDirectiveOrder: written after uma_protect on a protected site,
// the probes still run first, so that an unmatched path is not refused
// before they answer.
func TestHealthDirectiveOrder(t *testing.T) {
	out, _, err := adaptCaddyfile(`{
		uma {
			issuer http://localhost:8080
			client rs-api {
				secret s
				resource_server
			}
		}
	}
	http://localhost:8080 {
		uma_protect {
			as co-hosted
			resource_server rs-api
			resource /api/{owner} {
				owner {owner}
			}
		}
		uma_health /ready ready
		uma_server
		respond "site" 200
	}`)
	if err != nil {
		t.Fatal(err)
	}
	s := string(out)
	server, health, protect := strings.Index(s, `"handler":"uma_server"`), strings.Index(s, `"handler":"uma_health"`), strings.Index(s, `"handler":"uma_protect"`)
	if server < 0 || health < 0 || protect < 0 || !(server < health && health < protect) {
		t.Errorf("handlers at %d (uma_server), %d (uma_health), %d (uma_protect), want them in that order:\n%s", server, health, protect, s)
	}
}
