package caddymodule

import (
	"encoding/json"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
)

func TestParseGlobalOption(t *testing.T) {
	tests := map[string]struct {
		input   string
		want    App
		wantErr string // substring; empty means success
	}{
		"issuer only": {
			input: `uma {
				issuer https://as.example.com
			}`,
			want: App{Issuer: "https://as.example.com"},
		},
		"everything": {
			input: `uma {
				issuer       https://example.com/uma
				storage      badger /var/lib/caddy-uma
				signing_alg  EdDSA
				key_rotation 90d
				pat_ttl      2h
				ticket_ttl   10m
				rpt_ttl      30s
				client rs-api {
					secret $2a$14$Zkx19XLiW6VYouLHR5NmfOFU0z2GTNmpkT/5qqR7hx4IjWJPDhjvG
					resource_server
					scopes read write
					scopes delete
				}
				client demo-app {
					secret {env.DEMO_SECRET}
					redirect_uri https://app.example/cb https://app.example/cb2
					claims_redirect_uri https://app.example/claims
				}
				client public-app
			}`,
			want: App{
				Issuer:      "https://example.com/uma",
				Storage:     json.RawMessage(`{"backend":"badger","path":"/var/lib/caddy-uma"}`),
				SigningAlg:  "EdDSA",
				KeyRotation: caddy.Duration(90 * 24 * time.Hour),
				PATTTL:      caddy.Duration(2 * time.Hour),
				TicketTTL:   caddy.Duration(10 * time.Minute),
				RPTTTL:      caddy.Duration(30 * time.Second),
				Clients: []Client{
					{
						ID:             "rs-api",
						Secret:         "$2a$14$Zkx19XLiW6VYouLHR5NmfOFU0z2GTNmpkT/5qqR7hx4IjWJPDhjvG",
						ResourceServer: true,
						Scopes:         []string{"read", "write", "delete"},
					},
					{
						ID:                 "demo-app",
						Secret:             "{env.DEMO_SECRET}",
						RedirectURIs:       []string{"https://app.example/cb", "https://app.example/cb2"},
						ClaimsRedirectURIs: []string{"https://app.example/claims"},
					},
					{ID: "public-app"},
				},
			},
		},
		"grant settings": {
			input: `uma {
				issuer https://as.example.com
				refresh_ttl 2h
				pct_ttl 10d
				request_interval 10s
				feed_staleness 2s
				policies ./rules
				policy_timeout 100ms
				trust_issuer https://idp.example.com {
					audience app1 app2
				}
				trust_issuer https://jwt.example.com {
					jwks_uri https://jwt.example.com/keys
					algorithms RS256
				}
			}`,
			want: App{
				Issuer: "https://as.example.com", RefreshTTL: caddy.Duration(2 * time.Hour),
				PCTTTL: caddy.Duration(240 * time.Hour), RequestInterval: caddy.Duration(10 * time.Second),
				FeedStaleness: caddy.Duration(2 * time.Second), Policies: "./rules", PolicyTimeout: caddy.Duration(100 * time.Millisecond),
				TrustedIssuers: []TrustedIssuer{
					{Issuer: "https://idp.example.com", Audiences: []string{"app1", "app2"}},
					{Issuer: "https://jwt.example.com", JWKSURI: "https://jwt.example.com/keys", Algorithms: []string{"RS256"}},
				},
			},
		},
		"trust_issuer with any_client_audience": {
			input: `uma {
				trust_issuer https://idp.example.com {
					audience https://as.example.com api
					any_client_audience
				}
			}`,
			want: App{TrustedIssuers: []TrustedIssuer{
				{Issuer: "https://idp.example.com", Audiences: []string{"https://as.example.com", "api"}, AnyClientAudience: true},
			}},
		},
		"any_client_audience with an argument": {
			input:   "uma {\n trust_issuer https://a {\n any_client_audience yes\n }\n}",
			wantErr: "wrong argument count",
		},
		"duplicate trust_issuer": {
			input:   "uma {\n trust_issuer https://a\n trust_issuer https://a\n}",
			wantErr: "more than once",
		},
		"unknown trust_issuer subdirective": {
			input:   "uma {\n trust_issuer https://a {\n jwks https://x\n }\n}",
			wantErr: "unknown subdirective",
		},
		"storage with default directory": {
			input: `uma {
				issuer http://localhost:8080
				storage badger
			}`,
			want: App{Issuer: "http://localhost:8080", Storage: json.RawMessage(`{"backend":"badger"}`)},
		},
		"empty block": {
			input: `uma {
			}`,
			want: App{},
		},

		"arguments after uma": {
			input:   `uma https://as.example`,
			wantErr: "wrong argument count",
		},
		"unknown subdirective": {
			input: `uma {
				issuer https://as.example
				policy /etc/uma
			}`,
			wantErr: `unknown subdirective "policy"`,
		},
		"unknown client subdirective": {
			input: `uma {
				client app {
					secrets x
				}
			}`,
			wantErr: `unknown subdirective "secrets" of client "app"`,
		},
		"issuer without argument": {
			input: `uma {
				issuer
			}`,
			wantErr: "wrong argument count",
		},
		"issuer with two arguments": {
			input: `uma {
				issuer https://a https://b
			}`,
			wantErr: "wrong argument count",
		},
		"issuer twice": {
			input: `uma {
				issuer https://a
				issuer https://b
			}`,
			wantErr: "issuer specified more than once",
		},
		"storage without backend": {
			input: `uma {
				storage
			}`,
			wantErr: "wrong argument count",
		},
		"storage with unknown backend": {
			input: `uma {
				storage mysql mysql://db
			}`,
			wantErr: `unknown storage backend "mysql"`,
		},
		"storage with extra argument": {
			input: `uma {
				storage badger /a /b
			}`,
			wantErr: "wrong argument count",
		},
		"unknown signing_alg": {
			input: `uma {
				signing_alg HS256
			}`,
			wantErr: `unsupported signing_alg "HS256"`,
		},
		"bad duration": {
			input: `uma {
				pat_ttl forever
			}`,
			wantErr: `bad pat_ttl duration "forever"`,
		},
		"negative duration": {
			input: `uma {
				rpt_ttl -5m
			}`,
			wantErr: `bad rpt_ttl duration "-5m": negative`,
		},
		"feed_staleness of zero": {
			input: `uma {
				feed_staleness 0s
			}`,
			wantErr: `feed_staleness must be positive, not 0`,
		},
		"duration without argument": {
			input: `uma {
				ticket_ttl
			}`,
			wantErr: "wrong argument count",
		},
		"client without id": {
			input: `uma {
				client {
					secret x
				}
			}`,
			wantErr: "wrong argument count",
		},
		"client with two ids": {
			input: `uma {
				client a b
			}`,
			wantErr: "wrong argument count",
		},
		"duplicate client": {
			input: `uma {
				client a
				client a {
					secret x
				}
			}`,
			wantErr: `client "a" defined more than once`,
		},
		"secret without argument": {
			input: `uma {
				client a {
					secret
				}
			}`,
			wantErr: "wrong argument count",
		},
		"empty secret": {
			input: `uma {
				client a {
					secret ""
				}
			}`,
			wantErr: "empty secret",
		},
		"secret twice": {
			input: `uma {
				client a {
					secret x
					secret y
				}
			}`,
			wantErr: "secret specified more than once",
		},
		"resource_server with argument": {
			input: `uma {
				client a {
					resource_server yes
				}
			}`,
			wantErr: "wrong argument count",
		},
		"scopes without argument": {
			input: `uma {
				client a {
					scopes
				}
			}`,
			wantErr: "wrong argument count",
		},
		"redirect_uri without argument": {
			input: `uma {
				client a {
					redirect_uri
				}
			}`,
			wantErr: "wrong argument count",
		},
		"claims_redirect_uri without argument": {
			input: `uma {
				client a {
					claims_redirect_uri
				}
			}`,
			wantErr: "wrong argument count",
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			val, err := parseGlobalOption(caddyfile.NewTestDispenser(tt.input), nil)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			app, ok := val.(httpcaddyfile.App)
			if !ok || app.Name != "uma" {
				t.Fatalf("value = %#v, want an httpcaddyfile.App named uma", val)
			}
			var got App
			if err := caddy.StrictUnmarshalJSON(app.Value, &got); err != nil {
				t.Fatalf("decoding %s: %v", app.Value, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got\n%+v\nwant\n%+v\n(JSON %s)", got, tt.want, app.Value)
			}
		})
	}
}

func TestParseGlobalOptionTwice(t *testing.T) {
	_, err := parseGlobalOption(caddyfile.NewTestDispenser(`uma {
	}`), httpcaddyfile.App{Name: "uma"})
	if err == nil || !strings.Contains(err.Error(), "only once") {
		t.Fatalf("error = %v, want the option refused a second time", err)
	}
}

func TestParseHandler(t *testing.T) {
	tests := map[string]struct {
		input   string
		wantErr string
	}{
		"plain":          {input: `uma_server`},
		"argument":       {input: `uma_server /uma`, wantErr: "wrong argument count"},
		"block":          {input: "uma_server {\n\tissuer x\n}", wantErr: "takes no block"},
		"empty block ok": {input: "uma_server {\n}"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			err := new(Handler).UnmarshalCaddyfile(caddyfile.NewTestDispenser(tt.input))
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

// adaptCaddyfile adapts a whole Caddyfile, named Caddyfile, to Caddy JSON.
func adaptCaddyfile(input string) ([]byte, []caddyconfig.Warning, error) {
	adapter := caddyconfig.GetAdapter("caddyfile")
	return adapter.Adapt([]byte(input), map[string]any{"filename": "Caddyfile"})
}

// adapt adapts a whole Caddyfile to Caddy JSON.
func adapt(t *testing.T, input string) (caddy.Config, []caddyconfig.Warning) {
	t.Helper()
	out, warnings, err := adaptCaddyfile(input)
	if err != nil {
		t.Fatalf("adapting: %v", err)
	}
	var cfg caddy.Config
	if err := json.Unmarshal(out, &cfg); err != nil {
		t.Fatalf("decoding %s: %v", out, err)
	}
	return cfg, warnings
}

func TestAdaptCaddyfile(t *testing.T) {
	cfg, _ := adapt(t, `{
		uma {
			issuer http://localhost:8080
			client rs-api {
				secret s
				resource_server
			}
		}
	}
	http://localhost:8080 {
		handle {
			respond "site" 200
		}
		uma_server
	}`)

	var app App
	if err := caddy.StrictUnmarshalJSON(cfg.AppsRaw["uma"], &app); err != nil {
		t.Fatalf("uma app %s: %v", cfg.AppsRaw["uma"], err)
	}
	if app.Issuer != "http://localhost:8080" || len(app.Clients) != 1 || !app.Clients[0].ResourceServer {
		t.Errorf("uma app = %+v", app)
	}

	// The directive order puts uma_server before the catch-all handle.
	httpJSON := string(cfg.AppsRaw["http"])
	umaAt := strings.Index(httpJSON, `"handler":"uma_server"`)
	respondAt := strings.Index(httpJSON, `"handler":"static_response"`)
	if umaAt < 0 || respondAt < 0 || umaAt > respondAt {
		t.Errorf("uma_server must come before the handle block's respond:\n%s", httpJSON)
	}
}

func TestAdaptUnknownGlobalSubdirectiveNamesLine(t *testing.T) {
	_, _, err := adaptCaddyfile("{\n\tuma {\n\t\tissuer https://a\n\t\ttrusted https://idp {\n\t\t}\n\t}\n}\n")
	if err == nil || !strings.Contains(err.Error(), "Caddyfile:4") || !strings.Contains(err.Error(), `"trusted"`) {
		t.Fatalf("error = %v, want the unknown subdirective and its line", err)
	}
}

// TestExampleCaddyfile keeps Caddyfile.example valid: it adapts without
// warnings (it is formatted) and its config provisions and validates (which
// opens no database, and compiles the example rules it names), from the
// repository's root as its relative paths expect.
func TestExampleCaddyfile(t *testing.T) {
	t.Chdir("..")
	input, err := os.ReadFile("Caddyfile.example")
	if err != nil {
		t.Fatal(err)
	}
	cfg, warnings := adapt(t, string(input))
	for _, w := range warnings {
		t.Errorf("warning: %s", w)
	}
	if cfg.AppsRaw["uma"] == nil || !strings.Contains(string(cfg.AppsRaw["http"]), `"uma_server"`) {
		t.Fatalf("the example configures no uma app or no uma_server handler: %+v", cfg.AppsRaw)
	}
	if err := caddy.Validate(&cfg); err != nil {
		t.Fatalf("caddy validate: %v", err)
	}
}
