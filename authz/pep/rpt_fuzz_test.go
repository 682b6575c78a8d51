package pep

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime/debug"
	"slices"
	"strings"
	"testing"
	"time"
)

// FuzzRemoteRPT sends requests with any Authorization header through
// Decide of a remote enforcement point against a real AS on httptest:
// with introspect, RPTs are also introspected (the default
// revocation_check), else only their signature is checked. No panic, no
// hang; a refusal is a 401 with a new ticket; whatever is let through
// carries the one RPT the AS issued, spelled as issued, and exactly what
// it grants (bob, demo-app, read on alice's record). $RPT in the header is that RPT. Seeds:
// testdata/fuzz/FuzzRemoteRPT.
func FuzzRemoteRPT(f *testing.F) {
	const path, limit = "/api/records/alice/1", 10 * time.Second
	as := newRealAS(f, nil)
	jwtOnly, _ := enforcerFor(f, as, "rs-api", true, func(c *RemoteConfig) { c.RevocationCheck = -1 })
	introspecting, _ := enforcerFor(f, as, "rs-api", true, nil)
	first := introspecting.Decide(request(http.MethodGet, path, ""))
	rpt := as.rptFor(first.Challenge)
	f.Fuzz(func(t *testing.T, introspect bool, authorization string) {
		authorization = strings.ReplaceAll(authorization, "$RPT", rpt)
		if strings.ContainsFunc(authorization, func(r rune) bool { return r < ' ' && r != '\t' || r == 0x7f }) {
			return // net/http delivers no such header
		}
		r := httptest.NewRequest(http.MethodGet, path, nil)
		r.Header.Set("Authorization", authorization)
		e := jwtOnly
		if introspect {
			e = introspecting
		}
		hang := time.AfterFunc(limit, func() { debug.SetTraceback("all"); panic(fmt.Sprintf("Decide: no answer within %s", limit)) })
		d := e.Decide(r)
		hang.Stop()
		switch {
		case !d.Allow && (d.Status != http.StatusUnauthorized || d.Challenge == ""):
			t.Fatalf("refused without a ticket: %+v", d)
		case !d.Allow:
		case !d.Authorized || bearer(r) != rpt || d.Subject != "bob-sub" || d.ClientID != "demo-app" || d.Owner != "alice" ||
			d.ResourceID != first.ResourceID || !slices.Equal(d.Scopes, []string{"read"}):
			t.Fatalf("let through with what the AS never granted: %+v", d)
		}
	})
}

// bearer is the request's Bearer token, or "".
func bearer(r *http.Request) string {
	tok, _ := BearerToken(r)
	return tok
}
