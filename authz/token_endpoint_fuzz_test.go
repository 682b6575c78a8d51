package authz_test

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/caddy-uma/caddy-uma/authz"
)

// FuzzTokenEndpoint posts any form body with any Authorization header to
// the token endpoint: every answer is a token or an OAuth error, never a
// panic, a 5xx but 503, or a hang. Seeds: testdata/fuzz/FuzzTokenEndpoint
// (placeholders: fixture_fuzz_test.go).
func FuzzTokenEndpoint(f *testing.F) {
	as := newFuzzAS(f)
	f.Fuzz(func(t *testing.T, body, authorization string) {
		authorization = as.expand(t, authorization)
		if !validHeaderValue(authorization) {
			t.Skip("net/http delivers no such header")
		}
		rec := as.serve(t, http.MethodPost, authz.PathToken, "application/x-www-form-urlencoded", as.expand(t, body), authorization)
		if rec.Code != http.StatusOK {
			return
		}
		// Keycloak's response_mode answers a list of permissions or a
		// decision; every other 200 is a Bearer token.
		var tok map[string]any
		if json.Unmarshal(rec.Body.Bytes(), &tok) != nil || tok["result"] == true {
			return
		}
		if s, _ := tok["access_token"].(string); s == "" || tok["token_type"] != "Bearer" {
			t.Fatalf("200 without a Bearer access token: %s", rec.Body)
		}
		if rec.Header().Get("Cache-Control") != "no-store" {
			t.Fatalf("a token answer without Cache-Control: no-store: %v", rec.Header())
		}
	})
}
