package audit_test

import (
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/caddy-uma/caddy-uma/authz/audit"
	"github.com/caddy-uma/caddy-uma/authz/oauth"
)

// TestWrite checks the fields of audit lines written from records: the
// outcome (the decision, else the code, else issued), the scope only when
// sent once, the requesting party's issuer only with the party, and no
// line at all below info level.
func TestWrite(t *testing.T) {
	tests := []struct {
		name   string
		rec    audit.Record
		want   map[string]any
		absent []string
	}{
		{
			name:   "issued",
			rec:    audit.Record{TokenAnswer: audit.TokenAnswer{GrantType: "client_credentials"}, ClientID: "rs", Status: 200},
			want:   map[string]any{"grant_type": "client_credentials", "client_id": "rs", "outcome": audit.Issued, "status": int64(200)},
			absent: []string{"code", "scope", "requesting_party", "decisions"},
		},
		{
			name:   "an error without a decision",
			rec:    audit.Record{TokenAnswer: audit.TokenAnswer{GrantType: "none", Code: oauth.InvalidRequest}, Scope: []string{"a", "b"}, Status: 400},
			want:   map[string]any{"outcome": "invalid_request", "code": "invalid_request"},
			absent: []string{"client_id", "scope"},
		},
		{
			name: "a decision, an empty scope sent",
			rec: audit.Record{TokenAnswer: audit.TokenAnswer{Code: oauth.RequestDenied, Decision: audit.GrantRequestSubmitted},
				Scope: []string{""}, RequestingParty: "bob", RequestingPartyIssuer: "https://idp.example"},
			want: map[string]any{"outcome": "request_submitted", "code": "request_denied", "scope": "", "requesting_party": "bob", "requesting_party_issuer": "https://idp.example"},
		},
		{
			name:   "an issuer without a party",
			rec:    audit.Record{RequestingPartyIssuer: "https://idp.example"},
			absent: []string{"requesting_party", "requesting_party_issuer"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			core, logs := observer.New(zapcore.InfoLevel)
			audit.Write(zap.New(core), tc.rec)
			if logs.Len() != 1 || logs.All()[0].Message != audit.Message {
				t.Fatalf("lines %v, want one %q", logs.All(), audit.Message)
			}
			fields := logs.All()[0].ContextMap()
			for k, v := range tc.want {
				if fields[k] != v {
					t.Errorf("%s = %#v, want %#v", k, fields[k], v)
				}
			}
			for _, k := range tc.absent {
				if _, ok := fields[k]; ok {
					t.Errorf("%s present: %v", k, fields)
				}
			}
		})
	}
	core, logs := observer.New(zapcore.WarnLevel)
	audit.Write(zap.New(core), audit.Record{})
	if logs.Len() != 0 {
		t.Errorf("a logger at warn level got %v", logs.All())
	}
}

func TestDecisionOf(t *testing.T) {
	for code, want := range map[oauth.Code]audit.GrantDecision{
		"": audit.GrantGranted, oauth.NeedInfo: audit.GrantNeedInfo, oauth.RequestSubmitted: audit.GrantRequestSubmitted,
		oauth.RequestDenied: audit.GrantRequestDenied, oauth.AccessDenied: audit.GrantRequestDenied, oauth.InvalidGrant: "",
	} {
		if got := audit.DecisionOf(code); got != want {
			t.Errorf("DecisionOf(%q) = %q, want %q", code, got, want)
		}
	}
}
