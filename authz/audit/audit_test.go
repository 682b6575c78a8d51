package audit_test

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/caddy-uma/caddy-uma/authz"
	"github.com/caddy-uma/caddy-uma/authz/audit"
	"github.com/caddy-uma/caddy-uma/authz/authztest"
	"github.com/caddy-uma/caddy-uma/authz/oauth"
)

// answers is an authz.Observer that keeps the token endpoint's answers and
// counts the rules' compilations and evaluations.
type answers struct {
	mu                   sync.Mutex
	tokens               []audit.TokenAnswer
	compiled, evaluated  int
	compileErr, evalErrs int
}

func (a *answers) TokenAnswered(t audit.TokenAnswer) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.tokens = append(a.tokens, t)
}

func (a *answers) Compiled(_ time.Duration, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.compiled++
	if err != nil {
		a.compileErr++
	}
}

func (a *answers) Evaluated(_ time.Duration, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.evaluated++
	if err != nil {
		a.evalErrs++
	}
}

func (a *answers) last(t *testing.T) audit.TokenAnswer {
	t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.tokens) == 0 {
		t.Fatal("no token answer observed")
	}
	return a.tokens[len(a.tokens)-1]
}

// TestTokenAudit sends token requests of every kind of answer and checks
// the audit line of each (its fields, and that it holds no token, ticket,
// claim token or secret) and what the Observer was told.
func TestTokenAudit(t *testing.T) {
	core, logs := observer.New(zapcore.InfoLevel)
	obs := &answers{}
	f := authztest.NewGrantFixture(t, func(c *authz.Config) {
		c.Audit = zap.New(core)
		c.Observer = obs
	})
	share, err := f.Server.AddShare(t.Context(), authz.Share{Owner: "alice", ResourceID: f.Photos, Subject: "doc-1", Scopes: []string{"view"}})
	if err != nil {
		t.Fatal(err)
	}
	doctor := f.IDToken(map[string]any{"sub": "doc-1", "email": "doctor@clinic.example"})
	mallory := f.IDToken(map[string]any{"sub": "mal", "email": "mallory@clinic.example"})
	stranger := f.IDToken(map[string]any{"sub": "x", "email": "someone@else.example"})
	insurer := f.IDToken(map[string]any{"sub": "ins-7", "email": "agent@insurer.example"})
	secrets := []string{authztest.AppSecret, "secret-a", "wrong-secret", doctor, mallory, stranger, insurer}
	app := authztest.BasicAuth("app", authztest.AppSecret)
	ticket := func(res string, scopes ...string) string {
		tk := f.Ticket(fmt.Sprintf(`{"resource_id":%q,"resource_scopes":[%s]}`, res, `"`+strings.Join(scopes, `","`)+`"`))
		secrets = append(secrets, tk)
		return tk
	}
	uma := func(params url.Values) url.Values {
		params.Set("grant_type", authz.GrantTypeUMATicket)
		return params
	}

	type decision struct {
		resource  string
		outcome   string
		granted   []string
		grantedBy map[string]any
		refusedBy map[string]any
	}
	tests := []struct {
		name     string
		form     url.Values
		auth     string
		status   int
		want     map[string]any // fields of the audit line
		answer   audit.TokenAnswer
		decision *decision
	}{
		{
			name: "a PAT", form: url.Values{"grant_type": {"client_credentials"}}, auth: authztest.BasicAuth("rs-a", "secret-a"), status: 200,
			want:   map[string]any{"grant_type": "client_credentials", "client_id": "rs-a", "outcome": "issued", "status": int64(200)},
			answer: audit.TokenAnswer{GrantType: authz.GrantTypeClientCredentials},
		},
		{
			name: "a wrong client secret", form: url.Values{"grant_type": {"client_credentials"}}, auth: authztest.BasicAuth("rs-a", "wrong-secret"), status: 401,
			want:   map[string]any{"grant_type": "client_credentials", "outcome": "invalid_client", "code": "invalid_client", "status": int64(401)},
			answer: audit.TokenAnswer{GrantType: authz.GrantTypeClientCredentials, Code: oauth.InvalidClient},
		},
		{
			name: "no grant type", form: url.Values{"scope": {"read"}}, auth: app, status: 400,
			want:   map[string]any{"grant_type": "none", "outcome": "invalid_request", "scope": "read"},
			answer: audit.TokenAnswer{GrantType: authz.GrantTypeNone, Code: oauth.InvalidRequest},
		},
		{
			name: "an unknown grant type", form: url.Values{"grant_type": {"password"}}, auth: app, status: 400,
			want:   map[string]any{"grant_type": "other", "client_id": "app", "outcome": "unsupported_grant_type"},
			answer: audit.TokenAnswer{GrantType: authz.GrantTypeOther, Code: oauth.UnsupportedGrantType},
		},
		{
			name: "a spent or forged ticket", form: uma(url.Values{"ticket": {"forged"}}), auth: app, status: 400,
			want:   map[string]any{"grant_type": authz.GrantTypeUMATicket, "client_id": "app", "outcome": "invalid_grant"},
			answer: audit.TokenAnswer{GrantType: authz.GrantTypeUMATicket, Code: oauth.InvalidGrant},
		},
		{
			name: "no claims: need_info", form: uma(url.Values{"ticket": {ticket(f.Labs, "read")}}), auth: app, status: 403,
			want:     map[string]any{"client_id": "app", "outcome": "need_info", "code": "need_info", "status": int64(403)},
			answer:   audit.TokenAnswer{GrantType: authz.GrantTypeUMATicket, Code: oauth.NeedInfo, Decision: audit.GrantNeedInfo},
			decision: &decision{resource: f.Labs, outcome: "refused", refusedBy: map[string]any{"read": "unidentified"}},
		},
		{
			name: "the doctor: granted by the rules", form: uma(authztest.WithClaims(ticket(f.Labs, "read", "delete"), doctor)), auth: app, status: 200,
			want:     map[string]any{"client_id": "app", "outcome": "granted", "requesting_party": "doc-1", "status": int64(200)},
			answer:   audit.TokenAnswer{GrantType: authz.GrantTypeUMATicket, Decision: audit.GrantGranted},
			decision: &decision{resource: f.Labs, outcome: "partly_granted", granted: []string{"read"}, grantedBy: map[string]any{"read": []any{"rules"}}, refusedBy: map[string]any{"delete": "no_match"}},
		},
		{
			name: "the doctor: granted by a share", form: uma(authztest.WithClaims(ticket(f.Photos, "view"), doctor)), auth: app, status: 200,
			want:     map[string]any{"client_id": "app", "outcome": "granted", "requesting_party": "doc-1"},
			answer:   audit.TokenAnswer{GrantType: authz.GrantTypeUMATicket, Decision: audit.GrantGranted},
			decision: &decision{resource: f.Photos, outcome: "granted", granted: []string{"view"}, grantedBy: map[string]any{"view": []any{"share:" + share.ID}}, refusedBy: map[string]any{}},
		},
		{
			name: "mallory: refused by a deny", form: uma(authztest.WithClaims(ticket(f.Labs, "write"), mallory)), auth: app, status: 403,
			want:     map[string]any{"client_id": "app", "outcome": "request_denied", "code": "request_denied", "requesting_party": "mal"},
			answer:   audit.TokenAnswer{GrantType: authz.GrantTypeUMATicket, Code: oauth.RequestDenied, Decision: audit.GrantRequestDenied},
			decision: &decision{resource: f.Labs, outcome: "refused", refusedBy: map[string]any{"write": "owner_deny"}},
		},
		{
			name: "a stranger: request_denied", form: uma(authztest.WithClaims(ticket(f.Labs, "read"), stranger)), auth: app, status: 403,
			want:     map[string]any{"client_id": "app", "outcome": "request_denied", "requesting_party": "x"},
			answer:   audit.TokenAnswer{GrantType: authz.GrantTypeUMATicket, Code: oauth.RequestDenied, Decision: audit.GrantRequestDenied},
			decision: &decision{resource: f.Labs, outcome: "refused", refusedBy: map[string]any{"read": "no_match"}},
		},
		{
			name: "an insurer: the owner is asked", form: uma(authztest.WithClaims(ticket(f.Labs, "read"), insurer)), auth: app, status: 403,
			want:     map[string]any{"client_id": "app", "outcome": "request_submitted", "requesting_party": "ins-7"},
			answer:   audit.TokenAnswer{GrantType: authz.GrantTypeUMATicket, Code: oauth.RequestSubmitted, Decision: audit.GrantRequestSubmitted},
			decision: &decision{resource: f.Labs, outcome: "refused", refusedBy: map[string]any{"read": "ask_owner"}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := logs.Len()
			r := f.Do("POST", authz.PathToken, tc.form, "Authorization", tc.auth)
			if r.Status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.Status, tc.status, r.Body)
			}
			for _, k := range []string{"access_token", "refresh_token", "pct", "ticket"} {
				if v, _ := r.JSON(t)[k].(string); v != "" {
					secrets = append(secrets, v)
				}
			}
			lines := logs.All()[before:]
			if len(lines) != 1 || lines[0].Message != "token request" || lines[0].Level != zapcore.InfoLevel {
				t.Fatalf("audit lines %+v, want one \"token request\" at info", lines)
			}
			fields := lines[0].ContextMap()
			for k, v := range tc.want {
				if fields[k] != v {
					t.Errorf("audit field %s = %#v, want %#v (line %v)", k, fields[k], v, fields)
				}
			}
			if tc.answer.Code == "" {
				if _, ok := fields["code"]; ok {
					t.Errorf("audit line of a success has a code: %v", fields)
				}
			}
			if tc.want["client_id"] == nil && fields["client_id"] != nil {
				t.Errorf("audit line names client %v, want none", fields["client_id"])
			}
			got := obs.last(t)
			got.Elapsed = 0
			if got != tc.answer {
				t.Errorf("observed %+v, want %+v", got, tc.answer)
			}
			ds, _ := fields["decisions"].([]any)
			if tc.decision == nil {
				if ds != nil {
					t.Errorf("decisions %v, want none", ds)
				}
				return
			}
			if len(ds) != 1 {
				t.Fatalf("decisions %v, want one", fields["decisions"])
			}
			d := ds[0].(map[string]any)
			want := tc.decision
			if d["owner"] != "alice" || d["resource_id"] != want.resource || d["outcome"] != want.outcome {
				t.Errorf("decision %v, want alice's %s %s", d, want.resource, want.outcome)
			}
			if g := anyStrings(d["granted"]); !slices.Equal(g, want.granted) {
				t.Errorf("granted %v, want %v", g, want.granted)
			}
			if fmt.Sprint(d["granted_by"]) != fmt.Sprint(orEmpty(want.grantedBy)) || fmt.Sprint(d["refused_by"]) != fmt.Sprint(orEmpty(want.refusedBy)) {
				t.Errorf("granted_by %v, refused_by %v; want %v and %v", d["granted_by"], d["refused_by"], want.grantedBy, want.refusedBy)
			}
		})
	}

	all := fmt.Sprint(logs.All())
	for _, s := range secrets {
		if strings.Contains(all, s) {
			t.Errorf("an audit line holds a token, ticket or secret: %.12s...", s)
		}
	}
	obs.mu.Lock()
	defer obs.mu.Unlock()
	if obs.compiled == 0 || obs.evaluated < 6 || obs.evalErrs != 0 {
		t.Errorf("observed %d compilations, %d evaluations (%d failed); want some, at least 6 and none", obs.compiled, obs.evaluated, obs.evalErrs)
	}
}

// TestTokenAuditOfFailedRules: rules that fail are a request_denied
// decision, and the audit line says the rules failed.
func TestTokenAuditOfFailedRules(t *testing.T) {
	core, logs := observer.New(zapcore.InfoLevel)
	obs := &answers{}
	f := authztest.NewGrantFixture(t, func(c *authz.Config) {
		c.Audit = zap.New(core)
		c.Observer = obs
		c.PolicyTimeout = 50 * time.Millisecond
	})
	f.PutRule(f.AlicePAT, "loop", `package uma.share

allow contains "read" if {
	r := numbers.range(1, 2000)
	some a in r
	some b in r
	some c in r
	a + b + c < 0
}
`)
	r := f.Grant(authztest.WithClaims(f.LabsTicket("read"), f.IDToken(map[string]any{"sub": "doc-1", "email": "doctor@clinic.example"})))
	authztest.ExpectUMAError(t, r, "request_denied", false)
	lines := logs.FilterMessage("token request").All()
	if len(lines) != 1 {
		t.Fatalf("%d audit lines, want 1", len(lines))
	}
	ds, _ := lines[0].ContextMap()["decisions"].([]any)
	if len(ds) != 1 || ds[0].(map[string]any)["outcome"] != "failed" || ds[0].(map[string]any)["error"] == nil {
		t.Errorf("decisions %v, want one that failed", ds)
	}
	if got := obs.last(t); got.Decision != audit.GrantRequestDenied {
		t.Errorf("observed %+v, want request_denied", got)
	}
	if obs.evalErrs != 1 {
		t.Errorf("observed %d failed evaluations, want 1", obs.evalErrs)
	}
}

func anyStrings(v any) []string {
	var out []string
	for _, x := range v.([]any) {
		out = append(out, x.(string))
	}
	return out
}

func orEmpty(m map[string]any) map[string]any {
	if m == nil {
		return map[string]any{}
	}
	return m
}
