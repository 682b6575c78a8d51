package authz_test

import (
	"strings"
	"testing"
	"time"

	"github.com/caddy-uma/caddy-uma/authz"
	"github.com/caddy-uma/caddy-uma/authz/authztest"
)

func TestHistoryExplains(t *testing.T) {
	f := authztest.NewPeopleFixture(t, nil)
	// family reads the labs (rule); a stranger gets nothing; an insurer is asked about.
	family := f.IDToken(map[string]any{"sub": "kid", "groups": []string{"family"}, "email": "kid@example.org"})
	f.Grant(authztest.WithClaims(f.LabsTicket("read"), family))
	f.Clock.Advance(time.Second)
	f.Grant(authztest.WithClaims(f.LabsTicket("read", "write"), family))
	f.Clock.Advance(time.Second)
	f.Grant(authztest.WithClaims(f.LabsTicket("write"), f.IDToken(map[string]any{"sub": "m", "email": "mallory@clinic.example"})))
	hist, err := f.Server.History(t.Context(), "alice", 10)
	if err != nil || len(hist) != 3 {
		t.Fatalf("history: %+v %v", hist, err)
	}
	if hist[0].Outcome != authz.OutcomeRefused || !strings.Contains(strings.Join(hist[0].Reasons, " "), "refused by a deny in your sharing rules") {
		t.Errorf("deny: %+v", hist[0])
	}
	if hist[1].Outcome != authz.OutcomePartly || !strings.Contains(strings.Join(hist[1].Reasons, " "), `"read" was granted by your sharing rules`) {
		t.Errorf("partly: %+v", hist[1])
	}
	if hist[2].Outcome != authz.OutcomeGranted || hist[2].Who() != "kid@example.org" {
		t.Errorf("granted: %+v", hist[2])
	}
}
