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
