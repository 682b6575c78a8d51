package caddymodule

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

func TestParsePeopleOptions(t *testing.T) {
	const hash = "$2a$14$Zkx19XLiW6VYouLHR5NmfOFU0z2GTNmpkT/5qqR7hx4IjWJPDhjvG"
	tests := map[string]struct {
		input   string
		want    App
		wantErr string
	}{
		"users, OpenID login, sessions, registration": {
			input: `uma {
				issuer https://as.example.com
				user alice {
					password_hash ` + hash + `
					email alice@example.org
					name Alice Liddell
					groups family friends
				}
				user bob {
					password_hash ` + hash + `
				}
				login_oidc https://id.example.com {
					client_id caddy-uma
					client_secret {env.OIDC_SECRET}
					scopes email profile groups
					name Example ID
				}
				session_ttl 12h
				dynamic_registration {env.DCR_TOKEN}
			}`,
			want: App{
				Issuer: "https://as.example.com",
				Users: []User{
					{Name: "alice", PasswordHash: hash, Email: "alice@example.org", DisplayName: "Alice Liddell", Groups: []string{"family", "friends"}},
					{Name: "bob", PasswordHash: hash},
				},
				LoginOIDC: &LoginOIDC{Issuer: "https://id.example.com", ClientID: "caddy-uma", ClientSecret: "{env.OIDC_SECRET}",
					Scopes: []string{"email", "profile", "groups"}, Name: "Example ID"},
				SessionTTL:          caddy.Duration(12 * time.Hour),
				DynamicRegistration: &DynamicRegistration{InitialAccessToken: "{env.DCR_TOKEN}"},
			},
		},
		"user without hash": {
			input:   "uma {\n issuer https://a.example\n user alice {\n email a@b\n }\n}",
			wantErr: "password_hash is required",
		},
		"user twice": {
			input:   "uma {\n user a {\n password_hash " + hash + "\n }\n user a {\n password_hash " + hash + "\n }\n}",
			wantErr: `user "a" defined more than once`,
		},
		"unknown user option": {
			input:   "uma {\n user a {\n password " + hash + "\n }\n}",
			wantErr: `unknown subdirective "password" of user "a"`,
		},
		"oidc without client": {
			input:   "uma {\n login_oidc https://id.example\n}",
			wantErr: "client_id is required",
		},
		"registration without token": {
			input:   "uma {\n dynamic_registration\n}",
			wantErr: "wrong argument count",
		},
		"session ttl twice": {
			input:   "uma {\n session_ttl 1h\n session_ttl 2h\n}",
			wantErr: "session_ttl specified more than once",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var got App
			err := got.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.input))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestProvisionPeopleOptions(t *testing.T) {
	t.Setenv("OIDC_SECRET", "s3cret")
	t.Setenv("DCR_TOKEN", "initial")
	ctx, cancel := caddy.NewContext(caddy.Context{Context: t.Context()})
	defer cancel()
	a := &App{
		Issuer:              "https://as.example.com",
		Storage:             json.RawMessage(`{"path": "` + t.TempDir() + `"}`),
		LoginOIDC:           &LoginOIDC{Issuer: "https://id.example.com", ClientID: "c", ClientSecret: "{env.OIDC_SECRET}"},
		DynamicRegistration: &DynamicRegistration{InitialAccessToken: "{env.DCR_TOKEN}"},
		Users:               []User{{Name: "a", PasswordHash: "$2a$04$x6lf/KCauiji2oWKmmxMNeL2xCcB7xIdPA/0uHhxG7cFi0scU6z4y"}},
	}
	if err := a.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	if err := a.Validate(); err != nil {
		t.Fatal(err)
	}
	if a.loginOIDC.ClientSecret != "s3cret" || a.registration().InitialAccessToken != "initial" || len(a.users()) != 1 {
		t.Fatalf("provisioned: %+v %+v", a.loginOIDC, a.registration())
	}
	// An unset variable is an error, not an empty token.
	b := &App{Issuer: "https://as.example.com", DynamicRegistration: &DynamicRegistration{InitialAccessToken: "{env.NOT_SET_ANYWHERE}"}}
	if err := b.Provision(ctx); err == nil {
		t.Fatal("an unset initial_access_token was accepted")
	}
	c := &App{Issuer: "https://as.example.com", Users: []User{{Name: "a b", PasswordHash: "x"}}}
	if err := c.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err == nil {
		t.Fatal("a user name with a space was accepted")
	}
}
