package authz_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-uma/caddy-uma/authz/authztest"
	"github.com/caddy-uma/caddy-uma/authz/ownerapi"
)

// hostileModule is the audit's module: 30 KB, a chain of 15,000 additions,
// 8-28 s of compiling per call before the compile bounds.
var hostileModule = "package uma.share\n\nx := 1" + strings.Repeat("+1", 14999) + "\n"

// heavyModule is within the compile bounds and still takes a while to
// compile (about 100 ms here, seconds under the race detector): 60 rules
// of comprehensions nested four deep. tag makes each one different, as a
// changed comment would, so that no compiled copy is at hand.
func heavyModule(tag int) string {
	inner := "1"
	for range 4 {
		inner = fmt.Sprintf("[z | z := %s; z == %s]", inner, inner)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "package uma.share\n\n# %d\n", tag)
	for i := range 60 {
		fmt.Fprintf(&b, "y%d := %s\n", i, inner)
	}
	return b.String()
}

// send is as.Do with a context, for a client that gives up at its
// deadline.
func send(ctx context.Context, t *testing.T, as *authztest.AS, method, path, body, contentType, pat string) (authztest.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, as.Issuer+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("Authorization", authztest.Bearer(pat))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return authztest.Response{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return authztest.Response{Status: resp.StatusCode, Header: resp.Header, Body: b}, err
}

// draftBody is a POST /owner/evaluate body trying module on resource.
func draftBody(t *testing.T, resource, module string) string {
	b, err := json.Marshal(map[string]any{"resource_id": resource, "rules": map[string]string{"draft": module}})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestHostileRulesAreRefusedBeforeCompiling shows that rules whose
// compilation would run for seconds are refused from their parsed form,
// with the limit they exceed, through every way an owner sends rules. The
// client's deadline is the test's: before the bounds, these calls answered
// after 8-28 s.
func TestHostileRulesAreRefusedBeforeCompiling(t *testing.T) {
	f := authztest.NewGrantFixture(t, nil)
	tests := []struct {
		name, method, path, body, contentType string
	}{
		{"dry run", "POST", ownerapi.PathEvaluate, draftBody(t, f.Labs, hostileModule), "application/json"},
		{"saving a rule", "PUT", ownerapi.PathRules + "/hostile", hostileModule, "text/plain"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
			defer cancel()
			r, err := send(ctx, t, f.AS, tt.method, tt.path, tt.body, tt.contentType, f.AlicePAT)
			if err != nil {
				t.Fatalf("no answer within the client's deadline: %v", err)
			}
			authztest.ExpectError(t, r, 400, "invalid_request")
			var ce struct {
				Errors []struct {
					Code    string `json:"code"`
					Line    int    `json:"line"`
					Message string `json:"message"`
				} `json:"errors"`
			}
			if json.Unmarshal(r.Body, &ce) != nil || len(ce.Errors) != 1 || ce.Errors[0].Code != "uma_limit_error" ||
				ce.Errors[0].Line != 3 || !strings.Contains(ce.Errors[0].Message, "nested more than 32 deep") {
				t.Errorf("got %s, want the nesting limit at line 3", r.Body)
			}
		})
	}
	// Nothing was saved.
	authztest.ExpectError(t, f.Do("GET", ownerapi.PathRules+"/hostile", nil, "Authorization", authztest.Bearer(f.AlicePAT)), 404, "not_found")
}

// TestConcurrentCompilesAreLimited shows that an owner gets one compilation
// at a time: a second one sent meanwhile is refused with 503
// temporarily_unavailable and Retry-After, and another owner's grants,
// whose rules are compiled, are answered meanwhile.
func TestConcurrentCompilesAreLimited(t *testing.T) {
	f := authztest.NewGrantFixture(t, nil)
	malloryPAT, err := f.Server.IssuePAT(t.Context(), "rs-a", "mallory")
	if err != nil {
		t.Fatal(err)
	}
	box := f.Register(malloryPAT, `{"name":"box","resource_scopes":["read"]}`)
	doctor := f.IDToken(map[string]any{"sub": "doc-1", "email": "doctor@clinic.example"})
	f.Grant(authztest.WithClaims(f.LabsTicket("read"), doctor)) // alice's rules are compiled now

	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	// Two drafts at once, again until they overlap (each takes a while to
	// compile, so the first round should do).
	var refused authztest.Response
	for round := 0; refused.Status == 0 && ctx.Err() == nil; round++ {
		var wg sync.WaitGroup
		answers := make([]authztest.Response, 2)
		for i := range answers {
			wg.Go(func() {
				r, err := send(ctx, t, f.AS, "POST", ownerapi.PathEvaluate, draftBody(t, box, heavyModule(2*round+i)), "application/json", malloryPAT)
				if err != nil {
					t.Errorf("dry run: %v", err)
				}
				answers[i] = r
			})
		}
		// Meanwhile alice's rules, in force, decide.
		if r := f.Grant(authztest.WithClaims(f.LabsTicket("read"), doctor)); r.Status != 200 {
			t.Errorf("alice's grant during mallory's compilations: %d %s", r.Status, r.Body)
		}
		wg.Wait()
		for _, r := range answers {
			switch {
			// Compiled; or, on a slow machine, past the time limit.
			case r.Status == 200, r.Status == 503 && strings.Contains(string(r.Body), "time limit"):
			case r.Status == 503 && strings.Contains(string(r.Body), "at once"):
				refused = r
			default:
				t.Fatalf("dry run: %d %s", r.Status, r.Body)
			}
		}
	}
	if refused.Status == 0 {
		t.Fatal("no two compilations overlapped before the deadline")
	}
	authztest.ExpectError(t, refused, 503, "temporarily_unavailable")
	if ra := refused.Header.Get("Retry-After"); ra != "1" {
		t.Errorf("Retry-After = %q, want 1", ra)
	}
}
