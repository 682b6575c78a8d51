package authz_test

import (
	"context"
	"reflect"
	"testing"
)

// FuzzVerifyRPT gives any token and audience to Server.VerifyRPT, what a
// co-hosted enforcement point calls: no panic, no hang, and whatever it
// accepts is the one RPT the fixture issued (to app, for rs-a), as issued
// and spelled as issued.
// Seeds: testdata/fuzz/FuzzVerifyRPT ($RPT is that RPT).
func FuzzVerifyRPT(f *testing.F) {
	as := newFuzzAS(f)
	issued, err := as.srv.VerifyRPT(f.Context(), as.values["$RPT"], "rs-a")
	if err != nil {
		f.Fatalf("the fixture's RPT does not verify: %v", err)
	}
	f.Fuzz(func(t *testing.T, token, audience string) {
		token = as.expand(t, token)
		ctx, cancel := context.WithTimeout(context.Background(), callLimit)
		defer cancel()
		hang := watchdog("VerifyRPT")
		rpt, err := as.srv.VerifyRPT(ctx, token, audience)
		hang.Stop()
		if err != nil {
			return
		}
		if audience != "rs-a" || token != as.values["$RPT"] || !reflect.DeepEqual(rpt, issued) {
			t.Fatalf("accepted %q for audience %q: %+v; the only RPT issued is %+v for rs-a, spelled one way", token, audience, rpt, issued)
		}
	})
}
