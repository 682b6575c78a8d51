package pep

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-uma/caddy-uma/authz/pep/peptest"
)

// TestRemoteKeycloak runs the enforcement point against an AS that answers
// as Keycloak does: it refuses the uma_protection scope at the token
// endpoint, authenticates introspection callers as clients, and its RPT
// introspection carries neither sub nor azp. The requesting party and the
// client come from the verified RPT, and introspection still revokes.
func TestRemoteKeycloak(t *testing.T) {
	kc := peptest.NewKeycloak(t, "rs", "s")
	clock := &testClock{t: time.Now()}
	kc.SetClock(clock.Now)
	rem, err := NewRemote(RemoteConfig{Issuer: kc.Issuer(), ClientID: "rs", ClientSecret: "s", Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer rem.Close()
	e := newEnforcer(t, rem, clock, nil)
	const path = "/api/records/alice/1"

	d := e.Decide(request("GET", path, ""))
	params, ok := parseChallenge(d.Challenge)
	if d.Status != http.StatusUnauthorized || !ok || params["as_uri"] != kc.Issuer() {
		t.Fatalf("no token: %+v", d)
	}
	rpt := kc.RPTForTicket(t, params["ticket"], "bob-id", "app")
	d = e.Decide(request("GET", path, rpt))
	if !d.Allow || d.Subject != "bob-id" || d.ClientID != "app" || strings.Join(d.Scopes, " ") != "read" {
		t.Fatalf("with Keycloak's RPT (introspected, revocation_check 1m): allow %v, subject %q, client %q, scopes %v",
			d.Allow, d.Subject, d.ClientID, d.Scopes)
	}
	// After the revocation check interval: introspected again, and the
	// identity stays the RPT's.
	clock.Advance(DefaultRevocationCheck)
	if d := e.Decide(request("GET", path, rpt)); !d.Allow || d.Subject != "bob-id" || d.ClientID != "app" {
		t.Errorf("after a recheck: allow %v, subject %q, client %q", d.Allow, d.Subject, d.ClientID)
	}
	kc.Revoke(t, rpt)
	clock.Advance(DefaultRevocationCheck)
	if d := e.Decide(request("GET", path, rpt)); d.Allow || d.Reason != ReasonInvalidToken {
		t.Errorf("revoked at Keycloak: %+v", d)
	}

	// Keycloak tokens that are not RPTs for this resource server.
	for name, tok := range map[string]string{
		"another audience":   kc.RPT(t, "bob-id", "app", "rs-other", peptest.Permission{ResourceID: d.ResourceID, Scopes: []string{"read"}}),
		"no authorization":   kc.RPT(t, "bob-id", "app", "rs"),
		"not a token at all": "opaque-token",
	} {
		if d := e.Decide(request("GET", path, tok)); d.Allow || d.Reason != ReasonInvalidToken {
			t.Errorf("%s: %+v", name, d)
		}
	}
	// The PAT was refused once at introspection (then once more with a new
	// PAT), and client authentication was used from then on; the scope
	// uma_protection was refused and the PAT obtained without it.
	if bearer, basic := kc.Introspections(); bearer != 2 || basic < 3 {
		t.Errorf("introspections: %d with the PAT (want 2), %d with client authentication (want 3 or more)", bearer, basic)
	}
	if kc.ScopeRefusals() < 1 {
		t.Error("the PAT was never asked with the uma_protection scope")
	}
}

// TestRemoteIntrospectionNarrows: a JWT RPT verified with the AS's keys and
// then introspected keeps the JWT's identity; the introspection answer can
// revoke it or narrow its permissions and expiry, never widen them. Each
// recheck narrows the JWT anew.
func TestRemoteIntrospectionNarrows(t *testing.T) {
	a := newKeyAS(t)
	var answer atomic.Pointer[map[string]any]
	a.introspection = func(string) map[string]any { return *answer.Load() }
	clock := &testClock{t: time.Unix(1_700_000_000, 0)}
	rem, err := NewRemote(RemoteConfig{Issuer: a.srv.URL, ClientID: "rs", ClientSecret: "s", Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rem.Close() })
	now := clock.Now()
	claims := a.claims(now)
	claims["permissions"] = []map[string]any{
		{"resource_id": "r1", "resource_scopes": []string{"read", "write"}},
		{"resource_id": "r2", "resource_scopes": []string{"read"}},
	}
	token := a.sign(claims, "")
	full := []map[string]any{
		{"rsid": "r1", "resource_id": "r1", "resource_scopes": []string{"read", "write"}},
		{"rsid": "r2", "resource_id": "r2", "resource_scopes": []string{"read"}},
	}
	keycloak := func(mod func(map[string]any)) map[string]any {
		// RPTIntrospectionProvider's answer: no sub, azp, iss or client_id.
		in := map[string]any{"active": true, "jti": "j1", "typ": "Bearer", "aud": "rs", "exp": claims["exp"], "iat": claims["iat"], "permissions": full}
		if mod != nil {
			mod(in)
		}
		return in
	}
	tests := []struct {
		name   string
		answer map[string]any
		perms  string // resource:scopes ..., as granted
		exp    time.Time
		err    error
	}{
		{name: "Keycloak's answer", answer: keycloak(nil), perms: "r1:read,write r2:read", exp: now.Add(time.Minute)},
		{name: "narrower scopes", answer: keycloak(func(in map[string]any) {
			in["permissions"] = []map[string]any{{"resource_id": "r1", "resource_scopes": []string{"read"}}}
		}), perms: "r1:read", exp: now.Add(time.Minute)},
		{name: "wider scopes and other resources are ignored", answer: keycloak(func(in map[string]any) {
			in["permissions"] = append(full, map[string]any{"resource_id": "r3", "resource_scopes": []string{"read"}},
				map[string]any{"resource_id": "r2", "resource_scopes": []string{"read", "delete"}})
		}), perms: "r1:read,write r2:read r2:read", exp: now.Add(time.Minute)},
		{name: "earlier expiry", answer: keycloak(func(in map[string]any) { in["exp"] = now.Add(10 * time.Second).Unix() }),
			perms: "r1:read,write r2:read", exp: now.Add(10 * time.Second)},
		{name: "the same subject and client", answer: keycloak(func(in map[string]any) { in["sub"], in["client_id"] = "bob", "app" }),
			perms: "r1:read,write r2:read", exp: now.Add(time.Minute)},
		{name: "another subject", answer: keycloak(func(in map[string]any) { in["sub"] = "eve" }), err: ErrInvalidRPT},
		{name: "another client", answer: keycloak(func(in map[string]any) { in["azp"] = "evil-app" }), err: ErrInvalidRPT},
		{name: "another token", answer: keycloak(func(in map[string]any) { in["jti"] = "j2" }), err: ErrInvalidRPT},
		{name: "revoked", answer: map[string]any{"active": false}, err: ErrInvalidRPT},
	}
	granted := func(rpt *RPT) string {
		var out []string
		for _, p := range rpt.Permissions {
			out = append(out, p.ResourceID+":"+strings.Join(p.Scopes, ","))
		}
		return strings.Join(out, " ")
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			answer.Store(&tt.answer)
			rpt, err := rem.VerifyRPT(t.Context(), token)
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("VerifyRPT: %v, want %v", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if rpt.Subject != "bob" || rpt.ClientID != "app" || rpt.ID != "j1" || granted(rpt) != tt.perms || !rpt.ExpiresAt.Equal(tt.exp) {
				t.Errorf("RPT %s %s %s %q exp %s, want bob app j1 %q exp %s", rpt.Subject, rpt.ClientID, rpt.ID, granted(rpt), rpt.ExpiresAt, tt.perms, tt.exp)
			}
			// A recheck narrows the JWT anew, not the previous result.
			full := keycloak(nil)
			answer.Store(&full)
			again, err := rem.Recheck(t.Context(), token, rpt)
			if err != nil || again.Subject != "bob" || granted(again) != "r1:read,write r2:read" {
				t.Errorf("recheck: %v %+v", err, again)
			}
		})
	}
}

func TestRemoteDiscoveryEndpoints(t *testing.T) {
	// An https AS: its endpoints must be https too.
	var doc atomic.Pointer[map[string]string]
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/.well-known/uma2-configuration" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(*doc.Load())
	}))
	defer srv.Close()
	u := srv.URL
	base := func() map[string]string {
		return map[string]string{
			"issuer": u, "token_endpoint": u + "/token", "jwks_uri": u + "/jwks", "introspection_endpoint": u + "/introspect",
			"permission_endpoint": u + "/perm", "resource_registration_endpoint": u + "/rreg?realm=x",
		}
	}
	tests := []struct {
		name string
		mod  func(map[string]string)
		ok   bool
	}{
		{name: "valid", ok: true},
		{name: "no token_endpoint", mod: func(d map[string]string) { delete(d, "token_endpoint") }},
		{name: "no permission_endpoint", mod: func(d map[string]string) { delete(d, "permission_endpoint") }},
		{name: "http resource_registration_endpoint", mod: func(d map[string]string) { d["resource_registration_endpoint"] = "http://as.example/rreg" }},
		{name: "token_endpoint with user information", mod: func(d map[string]string) { d["token_endpoint"] = "https://u:p@as.example/token" }},
		{name: "permission_endpoint with a fragment", mod: func(d map[string]string) { d["permission_endpoint"] = u + "/perm#x" }},
		{name: "invalid jwks_uri ignored", mod: func(d map[string]string) { d["jwks_uri"] = "http://as.example/jwks" }, ok: true},
		{name: "invalid introspection_endpoint ignored", mod: func(d map[string]string) { d["introspection_endpoint"] = "/introspect" }, ok: true},
		{name: "no introspection_endpoint", mod: func(d map[string]string) { delete(d, "introspection_endpoint") }, ok: true},
		{name: "invalid jwks_uri and no introspection_endpoint", mod: func(d map[string]string) {
			d["jwks_uri"] = "http://as.example/jwks"
			delete(d, "introspection_endpoint")
		}},
		{name: "neither jwks_uri nor introspection_endpoint", mod: func(d map[string]string) {
			delete(d, "jwks_uri")
			delete(d, "introspection_endpoint")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := base()
			if tt.mod != nil {
				tt.mod(d)
			}
			doc.Store(&d)
			rem, err := NewRemote(RemoteConfig{Issuer: u, ClientID: "rs", ClientSecret: "s", HTTPClient: srv.Client()})
			if err != nil {
				t.Fatal(err)
			}
			defer rem.Close()
			_, err = rem.Issuer(t.Context())
			if tt.ok && err != nil {
				t.Fatalf("Issuer: %v", err)
			}
			if !tt.ok && !errors.Is(err, ErrUnavailable) {
				t.Fatalf("Issuer: %v, want ErrUnavailable", err)
			}
		})
	}
}
