package pep

import (
	"net/http"
	"testing"

	"github.com/caddy-uma/caddy-uma/authz/pep/peptest"
)

// TestMalleatedRPTsAreRefused: only the exact token the AS issued passes;
// copies that a lenient parser reads as the same token (padding, standard
// base64, trailing bits, the ECDSA twin signature) are invalid tokens,
// answered with a fresh challenge.
func TestMalleatedRPTsAreRefused(t *testing.T) {
	for _, mode := range []string{"co-hosted", "remote"} {
		t.Run(mode, func(t *testing.T) {
			as := newRealAS(t, nil)
			e, _ := enforcerFor(t, as, "rs-api", mode == "remote", nil)
			const path = "/api/records/alice/1"
			// Several RPTs: an ECDSA signer picks s or n-s at random.
			for range 4 {
				rpt := as.rptFor(e.Decide(request("GET", path, "")).Challenge)
				variants := peptest.Malleated(rpt)
				if len(variants) < 4 {
					t.Fatalf("only %d variants of an ES256 RPT", len(variants))
				}
				for name, tok := range variants {
					d := e.Decide(request("GET", path, tok))
					if d.Allow || d.Status != http.StatusUnauthorized || d.Reason != ReasonInvalidToken || d.Challenge == "" {
						t.Errorf("%s: %s %d, want 401 invalid_token with a challenge", name, d.Reason, d.Status)
					}
				}
				if d := e.Decide(request("GET", path, rpt)); !d.Allow {
					t.Fatalf("the RPT as issued: %+v", d)
				}
				// Once the original is cached, the copies still do not pass.
				for name, tok := range variants {
					if d := e.Decide(request("GET", path, tok)); d.Allow {
						t.Errorf("%s passed after the original was cached", name)
					}
				}
			}
		})
	}
}
