package authz_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/caddy-uma/caddy-uma/authz"
	"github.com/caddy-uma/caddy-uma/authz/authztest"
	"github.com/caddy-uma/caddy-uma/authz/claimtoken"
	"github.com/caddy-uma/caddy-uma/authz/claimtoken/claimtokentest"
)

// A claim token counts only for the client it was issued to: client "app"
// pushing an ID token issued to "app-2" must not get an RPT, even when
// the operator trusts both audiences, unless any_client_audience says so.
func TestGrantClaimTokenIssuedToThePushingClient(t *testing.T) {
	type push struct {
		name string
		aud  any    // "{issuer}" stands for the AS's issuer
		azp  string // "" means no azp claim
		ok   bool
	}
	tests := []struct {
		name   string
		issuer claimtoken.Issuer // Issuer is filled in
		pushes []push
	}{
		{
			name:   "audiences app and app-2",
			issuer: claimtoken.Issuer{Audiences: []string{"app", "app-2"}},
			pushes: []push{
				{name: "issued to app", aud: "app", ok: true},
				{name: "issued to app-2", aud: "app-2"},
				{name: "issued to app, azp app", aud: "app", azp: "app", ok: true},
				{name: "aud app, azp app-2", aud: "app", azp: "app-2"},
				{name: "several audiences, azp app", aud: []string{"app-2", "app"}, azp: "app", ok: true},
				{name: "several audiences, no azp", aud: []string{"app-2", "app"}},
				{name: "several audiences, azp app-2", aud: []string{"app", "app-2"}, azp: "app-2"},
				{name: "several audiences without app, azp app", aud: []string{"app-2", "app-3"}, azp: "app"},
				{name: "issued to a client not listed", aud: "app-3"},
			},
		},
		{
			name: "no audiences configured",
			pushes: []push{
				{name: "issued to app", aud: "app", ok: true},
				{name: "issued to app-2", aud: "app-2"},
				{name: "for the AS, not for a client", aud: "{issuer}"},
				{name: "for the AS and app, azp app", aud: []string{"{issuer}", "app"}, azp: "app", ok: true},
			},
		},
		{
			name:   "any_client_audience",
			issuer: claimtoken.Issuer{Audiences: []string{"app", "app-2", "{issuer}"}, AnyClientAudience: true},
			pushes: []push{
				{name: "issued to app", aud: "app", ok: true},
				{name: "issued to app-2", aud: "app-2", ok: true},
				{name: "several audiences, azp app-2", aud: []string{"app", "app-2"}, azp: "app-2", ok: true},
				{name: "for the AS", aud: "{issuer}", ok: true},
				{name: "issued to a client not listed", aud: "app-3"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			idp := claimtokentest.NewProvider(t)
			f := authztest.NewGrantFixture(t, func(c *authz.Config) {
				iss := tt.issuer
				iss.Issuer = idp.Issuer()
				iss.Audiences = nil
				for _, a := range tt.issuer.Audiences {
					iss.Audiences = append(iss.Audiences, strings.ReplaceAll(a, "{issuer}", c.Issuer))
				}
				c.TrustedIssuers = []claimtoken.Issuer{iss}
			})
			for _, p := range tt.pushes {
				t.Run(p.name, func(t *testing.T) {
					claims := map[string]any{"sub": "doc-1", "email": "doctor@clinic.example", "aud": withIssuer(p.aud, f.Issuer)}
					if p.azp != "" {
						claims["azp"] = p.azp
					}
					r := f.Grant(authztest.WithClaims(f.LabsTicket("read"), idp.Sign(t, claims)))
					if p.ok {
						if r.Status != http.StatusOK {
							t.Fatalf("grant: %d %s, want an RPT", r.Status, r.Body)
						}
						return
					}
					m := authztest.ExpectUMAError(t, r, "need_info", true)
					if desc, _ := m["error_description"].(string); !strings.Contains(desc, "aud") && !strings.Contains(desc, "azp") {
						t.Fatalf("error_description %q names neither aud nor azp", desc)
					}
				})
			}
		})
	}
}

func withIssuer(aud any, issuer string) any {
	switch a := aud.(type) {
	case string:
		return strings.ReplaceAll(a, "{issuer}", issuer)
	case []string:
		out := make([]string, len(a))
		for i, s := range a {
			out[i] = strings.ReplaceAll(s, "{issuer}", issuer)
		}
		return out
	}
	return aud
}

// A trusted issuer that is down when the AS starts: a claim token gets 503
// temporarily_unavailable with Retry-After (not need_info), the ticket is
// not spent, and once the issuer is back the same ticket works after at
// most a second of the AS's clock.
func TestGrantClaimTokenIssuerDownAtStart(t *testing.T) {
	tests := []struct {
		name          string
		down, recover func(*testing.T, *claimtokentest.Provider)
	}{
		{
			name:    "issuer answers 503",
			down:    func(_ *testing.T, p *claimtokentest.Provider) { p.Fail(http.StatusServiceUnavailable) },
			recover: func(_ *testing.T, p *claimtokentest.Provider) { p.Fail(0) },
		},
		{
			name:    "issuer refuses connections",
			down:    func(_ *testing.T, p *claimtokentest.Provider) { p.Close() },
			recover: func(t *testing.T, p *claimtokentest.Provider) { p.Reopen(t) },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			idp := claimtokentest.NewProvider(t)
			tt.down(t, idp)
			f := authztest.NewGrantFixture(t, func(c *authz.Config) {
				c.TrustedIssuers = []claimtoken.Issuer{{Issuer: idp.Issuer()}}
			})
			requests := func() int { return idp.JWKSRequests() + idp.DiscoveryRequests() }
			tk := f.LabsTicket("read")
			push := authztest.WithClaims(tk, idp.Sign(t, map[string]any{"sub": "doc-1", "email": "doctor@clinic.example", "aud": "app"}))

			unavailable := func(step string) {
				t.Helper()
				r := f.Grant(push)
				authztest.ExpectError(t, r, http.StatusServiceUnavailable, "temporarily_unavailable")
				if ra := r.Header.Get("Retry-After"); ra != "1" {
					t.Fatalf("%s: Retry-After = %q, want 1", step, ra)
				}
				if _, has := r.JSON(t)["ticket"]; has {
					t.Fatalf("%s: a 503 carries a ticket: %s", step, r.Body)
				}
			}
			unavailable("issuer down")
			before := requests()
			unavailable("issuer down, asked again at once")
			if n := requests(); n != before {
				t.Fatalf("issuer down, asked again at once: %d more requests to the issuer, want 0", n-before)
			}

			tt.recover(t, idp)
			unavailable("issuer back, less than a second after the last attempt")
			if n := requests(); n != before {
				t.Fatalf("issuer back within a second: %d more requests to the issuer, want 0", n-before)
			}

			f.Clock.Advance(claimtoken.KeysRetryInterval)
			r := f.Grant(push)
			if r.Status != http.StatusOK {
				t.Fatalf("issuer back, %s later, same ticket: %d %s, want an RPT", claimtoken.KeysRetryInterval, r.Status, r.Body)
			}
			if perms := f.RPTPermissions(r.JSON(t)["access_token"].(string)); strings.Join(perms[f.Labs], ",") != "read" {
				t.Fatalf("permissions %v, want labs:[read]", perms)
			}
			// The ticket was redeemed once, by the grant that succeeded.
			authztest.ExpectUMAError(t, f.Grant(push), "invalid_grant", false)
		})
	}
}
