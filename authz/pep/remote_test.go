package pep

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// kcLikeAS is an AS that behaves as Keycloak does where it departs from
// the spec: it refuses the uma_protection scope at the token endpoint,
// and authenticates introspection callers as clients, not with the PAT.
// Its RPTs are opaque here.
type kcLikeAS struct {
	srv                          *httptest.Server
	bearerIntrospections, basics atomic.Int64
	scopeRefusals                atomic.Int64
}

func newKCLikeAS(t *testing.T) *kcLikeAS {
	a := &kcLikeAS{}
	a.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/.well-known/uma2-configuration":
			json.NewEncoder(w).Encode(map[string]string{
				"issuer": a.srv.URL, "token_endpoint": a.srv.URL + "/token",
				"introspection_endpoint": a.srv.URL + "/introspect",
				"permission_endpoint":    a.srv.URL + "/perm", "resource_registration_endpoint": a.srv.URL + "/rreg",
			})
		case "/token":
			r.ParseForm()
			if r.PostForm.Get("scope") != "" {
				a.scopeRefusals.Add(1)
				w.WriteHeader(http.StatusBadRequest)
				json.NewEncoder(w).Encode(map[string]string{"error": "invalid_scope"})
				return
			}
			json.NewEncoder(w).Encode(map[string]any{"access_token": "pat", "token_type": "Bearer", "expires_in": 300})
		case "/introspect":
			if strings.HasPrefix(r.Header.Get("Authorization"), "Bearer ") {
				a.bearerIntrospections.Add(1)
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			if id, secret, ok := r.BasicAuth(); !ok || id != "rs" || secret != "s" {
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			a.basics.Add(1)
			r.ParseForm()
			switch r.PostForm.Get("token") {
			case "opaque-good":
				json.NewEncoder(w).Encode(map[string]any{
					"active": true, "sub": "bob", "azp": "app", "aud": "rs", "iss": a.srv.URL,
					"exp":         time.Now().Add(time.Minute).Unix(),
					"permissions": []map[string]any{{"rsid": "r1", "rsname": "x", "scopes": []string{"read"}}},
				})
			case "access-token":
				json.NewEncoder(w).Encode(map[string]any{"active": true, "scope": "openid", "aud": "rs"})
			case "other-audience":
				json.NewEncoder(w).Encode(map[string]any{"active": true, "aud": []string{"rs-other"}, "permissions": []any{}})
			default:
				json.NewEncoder(w).Encode(map[string]any{"active": false})
			}
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(a.srv.Close)
	return a
}

func TestRemoteIntrospection(t *testing.T) {
	a := newKCLikeAS(t)
	rem, err := NewRemote(RemoteConfig{Issuer: a.srv.URL, ClientID: "rs", ClientSecret: "s"})
	if err != nil {
		t.Fatal(err)
	}
	defer rem.Close()
	ctx := context.Background()

	rpt, err := rem.VerifyRPT(ctx, "opaque-good")
	if err != nil {
		t.Fatalf("opaque RPT: %v", err)
	}
	if rpt.Subject != "bob" || rpt.ClientID != "app" || len(rpt.Permissions) != 1 ||
		rpt.Permissions[0].ResourceID != "r1" || rpt.Permissions[0].Scopes[0] != "read" || rpt.ExpiresAt.IsZero() {
		t.Errorf("RPT = %+v", rpt)
	}
	for _, tok := range []string{"revoked", "access-token", "other-audience"} {
		if _, err := rem.VerifyRPT(ctx, tok); !errors.Is(err, ErrInvalidRPT) {
			t.Errorf("%s: %v, want ErrInvalidRPT", tok, err)
		}
	}
	if _, err := rem.Recheck(ctx, "opaque-good", rpt); err != nil {
		t.Errorf("recheck: %v", err)
	}
	// The PAT was refused once at introspection (then once more after a
	// new PAT), and client authentication was used from then on.
	if n := a.bearerIntrospections.Load(); n != 2 {
		t.Errorf("%d introspections with the PAT, want 2 (one PAT, then a new one)", n)
	}
	if n := a.basics.Load(); n != 5 {
		t.Errorf("%d introspections with client authentication, want 5", n)
	}
	// The scope uma_protection was refused, and the PAT obtained without.
	if n := a.scopeRefusals.Load(); n < 1 {
		t.Error("the PAT was never asked with the uma_protection scope")
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
