package caddymodule

import (
	"encoding/json"
	"os"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
)

// Caddyfile.example bounds how long a client may take to send its headers
// and body, on every server: slow clients cannot hold connections.
func TestExampleSetsServerTimeouts(t *testing.T) {
	src, err := os.ReadFile("../Caddyfile.example")
	if err != nil {
		t.Fatal(err)
	}
	adapted, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt(src, map[string]any{"filename": "Caddyfile.example"})
	if err != nil {
		t.Fatalf("adapting: %v (%v)", err, warnings)
	}
	var cfg struct {
		Apps struct {
			HTTP struct {
				Servers map[string]struct {
					Listen            []string `json:"listen"`
					ReadHeaderTimeout int64    `json:"read_header_timeout"`
					ReadTimeout       int64    `json:"read_timeout"`
					IdleTimeout       int64    `json:"idle_timeout"`
				} `json:"servers"`
			} `json:"http"`
		} `json:"apps"`
	}
	if err := json.Unmarshal(adapted, &cfg); err != nil {
		t.Fatal(err)
	}
	if len(cfg.Apps.HTTP.Servers) == 0 {
		t.Fatal("no servers")
	}
	for name, srv := range cfg.Apps.HTTP.Servers {
		if srv.ReadHeaderTimeout <= 0 || srv.ReadTimeout <= 0 || srv.IdleTimeout <= 0 {
			t.Errorf("server %s %v: timeouts read_header %d, read_body %d, idle %d", name, srv.Listen, srv.ReadHeaderTimeout, srv.ReadTimeout, srv.IdleTimeout)
		}
	}
}
