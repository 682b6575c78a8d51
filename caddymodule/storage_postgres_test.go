package caddymodule

import (
	"reflect"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/caddy-uma/caddy-uma/store/pgstore/pgtest"
)

func TestPostgresStorageUnmarshalCaddyfile(t *testing.T) {
	tests := map[string]struct {
		input   string
		want    PostgresStorage
		wantErr string // substring; empty means success
	}{
		"url":         {input: `postgres postgres://uma@db/uma`, want: PostgresStorage{DSN: "postgres://uma@db/uma"}},
		"placeholder": {input: `postgres {env.UMA_PG_DSN}`, want: PostgresStorage{DSN: "{env.UMA_PG_DSN}"}},
		"quoted keywords": {
			input: `postgres "host=db dbname=uma user=uma password={env.PGPASSWORD}"`,
			want:  PostgresStorage{DSN: "host=db dbname=uma user=uma password={env.PGPASSWORD}"},
		},
		"no dsn":            {input: `postgres`, wantErr: "needs a DSN"},
		"unquoted keywords": {input: `postgres host=db dbname=uma`, wantErr: "quote a keyword=value DSN"},
		"block":             {input: "postgres postgres://db {\n\tpool_max_conns 4\n}", wantErr: "takes no block"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			var got PostgresStorage
			err := got.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tt.input))
			if expectError(t, err, tt.wantErr) {
				return
			}
			if got.DSN != tt.want.DSN {
				t.Errorf("DSN = %q, want %q", got.DSN, tt.want.DSN)
			}
		})
	}
}

// loadPostgres loads, provisions and validates the postgres module from
// its JSON, as the uma app does.
func loadPostgres(t *testing.T, raw string) (*PostgresStorage, error) {
	t.Helper()
	return loadStorageModule[PostgresStorage](t, "uma.storage.postgres", raw)
}

func TestPostgresStorageProvision(t *testing.T) {
	t.Setenv("UMA_TEST_PG_DSN", "postgres://uma:s3cret@db.example:5433/uma?search_path=uma")
	t.Setenv("UMA_TEST_PG_PASSWORD", "s3cret")
	t.Setenv("UMA_TEST_PG_EMPTY", "")

	tests := map[string]struct {
		json    string
		wantKey string
		wantErr string // substring; empty means success
	}{
		"placeholder": {
			json:    `{"dsn": "{env.UMA_TEST_PG_DSN}"}`,
			wantKey: "postgres://uma@db.example:5433/uma?search_path=uma",
		},
		"password placeholder": {
			json:    `{"dsn": "host=db.example dbname=uma user=uma password={env.UMA_TEST_PG_PASSWORD}"}`,
			wantKey: "postgres://uma@db.example:5432/uma",
		},
		// Validate parses the DSN without connecting: nothing listens
		// there.
		"unreachable host": {
			json:    `{"dsn": "postgres://uma:s3cret@127.0.0.1:1/uma?pool_max_conns=2"}`,
			wantKey: "postgres://uma@127.0.0.1:1/uma",
		},
		"missing": {json: `{}`, wantErr: "storage postgres: the DSN is missing"},
		"empty expansion": {
			json:    `{"dsn": "{env.UMA_TEST_PG_EMPTY}"}`,
			wantErr: "storage postgres: expanding the DSN: evaluated placeholder {env.UMA_TEST_PG_EMPTY} is empty; set it in the environment of Caddy",
		},
		"unknown placeholder": {
			json: `{"dsn": "postgres://uma:{nope}@db/uma"}`, wantErr: "storage postgres: expanding the DSN",
		},
		"invalid": {
			json: `{"dsn": "postgres://uma:{env.UMA_TEST_PG_PASSWORD}@db:port/uma"}`, wantErr: "storage postgres: pgstore: invalid DSN",
		},
		"bad pool setting": {
			json: `{"dsn": "postgres://uma:{env.UMA_TEST_PG_PASSWORD}@db/uma?pool_max_conns=0"}`, wantErr: "pool_max_conns",
		},
		"not durable": {
			json: `{"dsn": "postgres://uma:s3cret@db/uma?synchronous_commit=off"}`, wantErr: "synchronous_commit=off",
		},
		"unknown field": {json: `{"url": "postgres://db/uma"}`, wantErr: `unknown field "url"`},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			p, err := loadPostgres(t, tt.json)
			if err != nil && strings.Contains(err.Error(), "s3cret") {
				t.Errorf("error %q holds the password", err)
			}
			if expectError(t, err, tt.wantErr) {
				return
			}
			if got := p.PoolKey(); got != tt.wantKey {
				t.Errorf("PoolKey = %q, want %q", got, tt.wantKey)
			}
		})
	}
}

func TestPostgresStorageModule(t *testing.T) {
	mod, err := caddy.GetModule("uma.storage.postgres")
	if err != nil {
		t.Fatalf("uma.storage.postgres is not registered: %v", err)
	}
	if got := reflect.TypeOf(mod.New()); got != reflect.TypeOf(new(PostgresStorage)) {
		t.Errorf("New() = %v, want *PostgresStorage", got)
	}
}

// TestPostgresStorageApp runs two configs of the uma app, as a reload does,
// on a real PostgreSQL database: the second shares the first's open store,
// and the last cleanup closes it.
func TestPostgresStorageApp(t *testing.T) {
	t.Setenv("UMA_TEST_PG_DSN", pgtest.DSN(t))
	cfg := `{"issuer": "https://as.example/uma",
		"storage": {"backend": "postgres", "dsn": "{env.UMA_TEST_PG_DSN}"},
		"clients": [{"id": "rs", "secret": "s3cret", "resource_server": true}]}`
	var apps []*App
	for range 2 {
		app, err := provisionApp(t, cfg)
		if err != nil {
			t.Fatalf("provisioning: %v", err)
		}
		if err := app.Start(); err != nil {
			t.Fatalf("Start: %v", err)
		}
		apps = append(apps, app)
	}
	key := storeKey(apps[0].storage)
	if !strings.HasPrefix(key, "uma.storage.postgres postgres://uma@") || strings.Contains(key, ":uma@") {
		t.Errorf("store key %q: want the module and the location, without the password", key)
	}
	if refs, _ := storePool.References(key); refs != 2 {
		t.Errorf("pool references = %d, want 2 (one open store, shared)", refs)
	}
	// The AS works on it: its signing key was stored at Start.
	srv := apps[1].running()
	if srv == nil {
		t.Fatal("no running server")
	}
	for _, app := range apps {
		if err := app.Stop(); err != nil {
			t.Fatal(err)
		}
		if err := app.Cleanup(); err != nil {
			t.Fatal(err)
		}
	}
	if _, ok := storePool.References(key); ok {
		t.Errorf("pool entry %q left behind", key)
	}
}

// TestPostgresStorageOpenFails checks the error of a database that does
// not answer.
func TestPostgresStorageOpenFails(t *testing.T) {
	p, err := loadPostgres(t, `{"dsn": "postgres://uma:s3cret@127.0.0.1:1/uma?connect_timeout=2"}`)
	if err != nil {
		t.Fatal(err)
	}
	st, err := p.Open(nil)
	if err == nil {
		st.Close()
		t.Fatal("Open of a closed port succeeded")
	}
	if strings.Contains(err.Error(), "s3cret") {
		t.Errorf("error %q holds the password", err)
	}
	if !strings.Contains(err.Error(), "pgstore: connecting") {
		t.Errorf("error %q does not say what failed", err)
	}
}
