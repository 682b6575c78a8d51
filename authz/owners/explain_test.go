package owners

import (
	"errors"
	"testing"
	"time"

	"github.com/caddy-uma/caddy-uma/policies"
)

func TestEvaluationExplained(t *testing.T) {
	at := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	ev := Evaluation{
		Requested: []string{"view", "edit", "delete", "print", "share"}, ClientID: "app",
		Subject: "bob", Claims: map[string]any{"email": "Bob@Example.org"},
		Shares: []Share{
			{ID: "by-mail", Email: "bob@example.org", Scopes: []string{"view"}},
			{ID: "expired", Subject: "bob", Scopes: []string{"view"}, ExpiresAt: at},
			{ID: "other-client", Subject: "bob", Client: "other", Scopes: []string{"view"}},
		},
		Decision: policies.Decision{SystemDeny: []string{"delete"}, Deny: []string{"print", "delete"}, AskOwner: []string{"share", "print"}},
		Granted:  []string{"view", "edit"},
		Missing:  []string{"delete", "print", "share"},
		At:       at,
	}
	matching := ev.MatchingShares()
	if len(matching) != 1 || matching[0].ID != "by-mail" {
		t.Fatalf("matching shares: %+v", matching)
	}
	if shares, rules := ev.GrantedBy("view", matching); len(shares) != 1 || rules {
		t.Errorf("view granted by %+v, rules %v; want the share alone", shares, rules)
	}
	if shares, rules := ev.GrantedBy("edit", matching); len(shares) != 0 || !rules {
		t.Errorf("edit granted by %+v, rules %v; want the rules", shares, rules)
	}
	for sc, want := range map[string]Refusal{"delete": RefusedBySystem, "print": RefusedByDeny, "share": RefusedAskOwner} {
		if got := ev.RefusedBy(sc); got != want {
			t.Errorf("%s refused by %s, want %s", sc, got, want)
		}
	}
	anonymous := ev
	anonymous.Subject = "app"
	if got := anonymous.RefusedBy("other"); got != RefusedUnidentified {
		t.Errorf("the client as its own party: %s", got)
	}
	if got := ev.RefusedBy("other"); got != RefusedNoMatch {
		t.Errorf("an identified party: %s", got)
	}
	if rec := ev.Record(nil); rec.Outcome != OutcomePartly || len(rec.Reasons) != 5 || rec.Email != "Bob@Example.org" {
		t.Errorf("record: %+v", rec)
	}
	if rec := ev.Record(errors.New("timeout")); rec.Outcome != OutcomeError || len(rec.Reasons) != 1 {
		t.Errorf("record of a failure: %+v", rec)
	}
	entries := []HistoryEntry{{Record: ev.Record(nil)}, {Record: DecisionRecord{Outcome: OutcomeRefused, ClientID: "app"}}}
	MarkAskedForClaims(entries)
	if entries[0].Record.Outcome != OutcomePartly || entries[1].Record.Outcome != OutcomeAsked {
		t.Errorf("marked asked: %+v", entries)
	}
}
