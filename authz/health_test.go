package authz_test

import (
	"encoding/json"
	"testing"

	"github.com/caddy-uma/caddy-uma/authz"
)

// TestReadiness checks what Readiness tells a probe: the signing key in
// force (the one the JWKS publishes) and the rule sets of the operator
// directory that do not compile, which it stops counting once they do.
func TestReadiness(t *testing.T) {
	dir := t.TempDir()
	writeRule(t, dir, "carol/share.rego", allowDan)
	writeRule(t, dir, "carol/notes.rego", brokenNotes)
	writeRule(t, dir, "_system/freeze.rego", "package uma.system\n\ndeny contains \"read\" if {\n")
	d := newDirFixture(t, dir)

	r := d.Server.Readiness()
	var jwks struct {
		Keys []struct {
			Kid string `json:"kid"`
		} `json:"keys"`
	}
	if err := json.Unmarshal(d.Do("GET", authz.PathJWKS, nil).Body, &jwks); err != nil || len(jwks.Keys) != 1 {
		t.Fatalf("JWKS: %v %+v", err, jwks)
	}
	if r.SigningKeyID == "" || r.SigningKeyID != jwks.Keys[0].Kid {
		t.Errorf("signing key %q, want the JWKS's %q", r.SigningKeyID, jwks.Keys[0].Kid)
	}
	if r.OwnersWithRuleErrors != 1 || !r.SystemRuleErrors {
		t.Errorf("readiness %+v, want one owner's rules and the system rules with errors", r)
	}

	writeRule(t, dir, "carol/notes.rego", allowEve)
	writeRule(t, dir, "_system/freeze.rego", "package uma.system\n\ndeny contains \"write\"\n")
	eventually(t, func() bool {
		r := d.Server.Readiness()
		return r.OwnersWithRuleErrors == 0 && !r.SystemRuleErrors
	})
}
