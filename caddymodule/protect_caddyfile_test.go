package caddymodule

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	// The standard modules (reverse_proxy, handle, respond, ...), for the
	// Caddyfiles of these tests and for Caddyfile.example.
	_ "github.com/caddyserver/caddy/v2/modules/standard"
)

func TestParseProtect(t *testing.T) {
	tests := map[string]struct {
		input   string
		want    Protect
		wantErr string // substring; empty means success
	}{
		"co-hosted, minimal": {
			input: `uma_protect {
				as co-hosted
				resource_server rs-api
			}`,
			want: Protect{CoHosted: true, ResourceServer: "rs-api"},
		},
		"bare co-hosted line": {
			input: `uma_protect {
				co-hosted
				client_id rs-api
			}`,
			want: Protect{CoHosted: true, ResourceServer: "rs-api"},
		},
		"everything": {
			input: `uma_protect {
				as https://as.example.com/realms/x
				resource_server {env.RS_ID}
				client_secret {env.RS_SECRET}
				realm "my api"
				mode permissive
				unmatched pass
				strip_authorization
				rpt_cache_size 500
				revocation_check 30s
				registered_uris off
				timeout 2s
				method get read
				method DELETE delete
				match any
				resource /api/records/{owner}/{id} {
					owner {owner}
					name "record {id}"
					type urn:example:record
					scopes read write delete
					scopes admin
					method GET read
					method POST write admin
					match all
					context ip {http.request.remote.host}
					context via {http.request.header.X-Via}
				}
				resource /files/{path...} {
					owner {http.request.header.X-Owner}
				}
			}`,
			want: Protect{
				AS: "https://as.example.com/realms/x", ResourceServer: "{env.RS_ID}", ClientSecret: "{env.RS_SECRET}",
				Realm: "my api", Mode: "permissive", Unmatched: "pass", StripAuthorization: true,
				RPTCacheSize: 500, RevocationCheck: caddy.Duration(30 * time.Second), RegisteredURIs: -1,
				Timeout: caddy.Duration(2 * time.Second),
				Methods: map[string][]string{"GET": {"read"}, "DELETE": {"delete"}}, Match: "any",
				Resources: []ProtectedResource{
					{
						Path: "/api/records/{owner}/{id}", Owner: "{owner}", Name: "record {id}", Type: "urn:example:record",
						Scopes: []string{"read", "write", "delete", "admin"}, Match: "all",
						Methods: map[string][]string{"GET": {"read"}, "POST": {"write", "admin"}},
						Context: map[string]string{"ip": "{http.request.remote.host}", "via": "{http.request.header.X-Via}"},
					},
					{Path: "/files/{path...}", Owner: "{http.request.header.X-Owner}"},
				},
			},
		},
		"revocation_check off": {
			input: `uma_protect {
				as https://as.example
				resource_server rs
				revocation_check off
			}`,
			want: Protect{AS: "https://as.example", ResourceServer: "rs", RevocationCheck: -1},
		},
		"method_override keep": {
			input: `uma_protect {
				co-hosted
				resource_server rs
				method_override keep
			}`,
			want: Protect{CoHosted: true, ResourceServer: "rs", MethodOverride: "keep"},
		},
		"every placeholder family": {
			input: `uma_protect {
				co-hosted
				resource_server rs
				resource /api/{owner}/{id} {
					owner {http.request.header.X-Owner}
					name "{env.HOME}-{http.vars.v}-{http.regexp.r.1}-{time.now.year}-{system.hostname}-{http.auth.user.id}-{http.request.uri.path.2}-{http.request.host.labels.0}-{id}-{owner}"
					type {http.request.cookie.c}
					context ip {http.request.remote.host}
					context q {http.request.uri.query.q}
				}
			}`,
			want: Protect{CoHosted: true, ResourceServer: "rs", Resources: []ProtectedResource{{
				Path: "/api/{owner}/{id}", Owner: "{http.request.header.X-Owner}",
				Name: "{env.HOME}-{http.vars.v}-{http.regexp.r.1}-{time.now.year}-{system.hostname}-{http.auth.user.id}-{http.request.uri.path.2}-{http.request.host.labels.0}-{id}-{owner}",
				Type: "{http.request.cookie.c}", Context: map[string]string{"ip": "{http.request.remote.host}", "q": "{http.request.uri.query.q}"},
			}}},
		},
		"bad method_override":    {input: `uma_protect { method_override honour }`, wantErr: `unknown method_override "honour" (want strip or keep)`},
		"mistyped owner":         {input: "uma_protect {\nresource /api/{owner}/{id} {\nowner {ownr}\n}\n}", wantErr: "owner {ownr} of resource /api/{owner}/{id}: {ownr} names neither a parameter of the path ({owner}, {id}) nor a known placeholder; did you mean {owner}?"},
		"mistyped family":        {input: "uma_protect {\nresource /api/{owner} {\nowner {owner}\nname {http.reqest.uri}\n}\n}", wantErr: "name {http.reqest.uri} of resource /api/{owner}: {http.reqest.uri} names neither"},
		"unknown request field":  {input: "uma_protect {\nresource /api/{owner} {\nowner {owner}\ntype {http.request.hedaer.X}\n}\n}", wantErr: "type {http.request.hedaer.X} of resource /api/{owner}"},
		"path part not a number": {input: "uma_protect {\nresource /api/{owner} {\nowner {http.request.uri.path.first}\n}\n}", wantErr: "{http.request.uri.path.first} names neither"},
		"mistyped context":       {input: "uma_protect {\nresource /api/{owner} {\nowner {owner}\ncontext ip {http.request.remote.hots}\n}\n}", wantErr: "context ip {http.request.remote.hots} of resource /api/{owner}"},
		"response placeholder":   {input: "uma_protect {\nresource /api/{owner} {\nowner {http.response.header.X}\n}\n}", wantErr: "{http.response.header.X} names neither"},
		"argument":               {input: `uma_protect co-hosted`, wantErr: "wrong argument count"},
		"unknown":                {input: `uma_protect { colour blue }`, wantErr: `unknown subdirective "colour"`},
		"as twice":               {input: `uma_protect { as co-hosted ; as https://a }`, wantErr: "more than once"},
		"bad mode":               {input: `uma_protect { mode audit }`, wantErr: "unknown mode"},
		"bad unmatched":          {input: `uma_protect { unmatched allow }`, wantErr: "unknown unmatched"},
		"bad match":              {input: `uma_protect { match some }`, wantErr: "unknown match"},
		"bad cache size":         {input: `uma_protect { rpt_cache_size 0 }`, wantErr: "positive"},
		"zero revocation":        {input: `uma_protect { revocation_check 0s }`, wantErr: "positive, or off"},
		"bad duration":           {input: `uma_protect { timeout soon }`, wantErr: "bad timeout"},
		"method without":         {input: `uma_protect { method GET }`, wantErr: "at least one scope"},
		"method twice":           {input: `uma_protect { method GET a ; method get b }`, wantErr: "mapped more than once"},
		"bad scope":              {input: `uma_protect { method GET "re ad" }`, wantErr: "not a valid scope"},
		"resource, no owner":     {input: "uma_protect {\nresource /x {\nname n\n}\n}", wantErr: "needs an owner"},
		"resource, no path":      {input: "uma_protect {\nresource {\nowner o\n}\n}", wantErr: "wrong argument count"},
		"resource, unknown":      {input: "uma_protect {\nresource /x {\nowner o\nsize 3\n}\n}", wantErr: `unknown subdirective "size"`},
		"context twice":          {input: "uma_protect {\nresource /x {\nowner o\ncontext a b\ncontext a c\n}\n}", wantErr: "context a specified more than once"},
		"strip with argument":    {input: `uma_protect { strip_authorization yes }`, wantErr: "wrong argument count"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			input := strings.ReplaceAll(tt.input, " ; ", "\n")
			input = strings.Replace(input, "{ ", "{\n", 1)
			input = strings.Replace(input, " }", "\n}", 1)
			var got Protect
			err := got.UnmarshalCaddyfile(caddyfile.NewTestDispenser(input))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				g, _ := json.MarshalIndent(got, "", "  ")
				w, _ := json.MarshalIndent(tt.want, "", "  ")
				t.Errorf("got  %s\nwant %s", g, w)
			}
		})
	}
}

func TestParseDemoIdP(t *testing.T) {
	var p DemoIdP
	err := p.UnmarshalCaddyfile(caddyfile.NewTestDispenser("uma_demo_idp http://localhost:8080/idp {\ntoken_ttl 1m\n}"))
	if err != nil || p.Issuer != "http://localhost:8080/idp" || p.TokenTTL != caddy.Duration(time.Minute) {
		t.Errorf("got %+v, %v", p, err)
	}
	for _, bad := range []string{"uma_demo_idp", "uma_demo_idp a b", "uma_demo_idp http://x {\nkey k\n}"} {
		if err := new(DemoIdP).UnmarshalCaddyfile(caddyfile.NewTestDispenser(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

// TestDirectiveOrder: uma_protect runs after the request rewriting and
// authentication directives, after uma_server (whose AS endpoints stay
// reachable on a site that has both), and before the routing blocks and
// the handlers that respond.
func TestDirectiveOrder(t *testing.T) {
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
		reverse_proxy 127.0.0.1:9
		handle /x {
			respond "x"
		}
		uma_protect {
			as co-hosted
			resource_server rs-api
		}
		uma_server
		basic_auth /admin/* {
			admin $2a$14$Zkx19XLiW6VYouLHR5NmfOFU0z2GTNmpkT/5qqR7hx4IjWJPDhjvG
		}
		rewrite /old /new
	}`)
	httpJSON := string(cfg.AppsRaw["http"])
	order := []string{`"rewrite"`, `"authentication"`, `"uma_server"`, `"uma_protect"`, `"static_response"`, `"reverse_proxy"`}
	last := -1
	for _, h := range order {
		at := strings.Index(httpJSON, `"handler":`+h)
		if at < 0 || at < last {
			t.Fatalf("handler %s out of order %v in:\n%s", h, order, httpJSON)
		}
		last = at
	}
}

func TestAdaptProtect(t *testing.T) {
	cfg, _ := adapt(t, `{
		uma {
			issuer http://localhost:8080
			client rs-api {
				secret s
				resource_server
			}
		}
	}
	http://localhost:8081 {
		uma_protect /api/* {
			as co-hosted
			resource_server rs-api
			resource /api/records/{owner}/{id} {
				owner {owner}
				context ip {http.request.remote.host}
			}
		}
		reverse_proxy /api/* 127.0.0.1:9 {
			header_up X-UMA-Subject {http.auth.uma.subject}
		}
	}`)
	httpJSON := string(cfg.AppsRaw["http"])
	for _, want := range []string{
		`"handler":"uma_protect"`, `"co_hosted":true`, `"resource_server":"rs-api"`,
		`"path":"/api/records/{owner}/{id}"`, `"owner":"{owner}"`, `"context":{"ip":"{http.request.remote.host}"}`,
	} {
		if !strings.Contains(httpJSON, want) {
			t.Errorf("missing %s in:\n%s", want, httpJSON)
		}
	}
	if err := caddy.Validate(&cfg); err != nil {
		t.Fatalf("caddy validate: %v", err)
	}
}

// TestProtectJSONFieldNames keeps the JSON field names snake_case.
func TestProtectJSONFieldNames(t *testing.T) {
	for _, typ := range []reflect.Type{reflect.TypeFor[Protect](), reflect.TypeFor[ProtectedResource](), reflect.TypeFor[DemoIdP]()} {
		for f := range typ.Fields() {
			if !f.IsExported() {
				continue
			}
			tag := f.Tag.Get("json")
			name, opts, _ := strings.Cut(tag, ",")
			if name == "" || strings.ToLower(name) != name || opts != "omitempty" {
				t.Errorf("%s.%s: json tag %q", typ.Name(), f.Name, tag)
			}
		}
	}
}
