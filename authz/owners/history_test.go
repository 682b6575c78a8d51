package owners

import (
	"testing"
	"time"
)

func TestHistoryBounded(t *testing.T) {
	st, opts, c := newTestStore(t)
	h := NewHistory(opts)
	defer h.Close()
	ctx := t.Context()
	for i := 0; i < maxDecisionsPerOwner+pruneEvery+1; i++ {
		h.Queue([]HistoryEntry{{Owner: "zoe", Record: DecisionRecord{At: c.now().Add(time.Duration(i) * time.Second), ResourceID: "r", ClientID: "c", Outcome: OutcomeGranted}}})
	}
	for h.queue.flush() {
	}
	h.queue.close()
	recs, err := st.List(ctx, nsDecision, "zoe"+sep, 0)
	if err != nil || len(recs) > maxDecisionsPerOwner+pruneEvery {
		t.Fatalf("history of zoe: %d records, %v", len(recs), err)
	}
	hist, _ := h.History(ctx, "zoe", 1)
	if len(hist) != 1 || !hist[0].At.Equal(c.now().Add(time.Duration(maxDecisionsPerOwner+pruneEvery)*time.Second).UTC()) {
		t.Fatalf("newest first: %+v", hist)
	}
}

func TestHistoryRecordsAnonymousRefusalsOncePerWindow(t *testing.T) {
	_, opts, c := newTestStore(t)
	h := NewHistory(opts)
	defer h.Close()
	refused := HistoryEntry{Owner: "alice", Record: DecisionRecord{At: c.now(), ResourceID: "photos", ClientID: "app", Outcome: OutcomeRefused}}
	asked := refused
	asked.Record.Outcome = OutcomeAsked
	identified := refused
	identified.Record.Subject = "bob"
	if n := len(h.Writes([]HistoryEntry{refused, asked, identified})); n != 2 {
		t.Errorf("first refusal of an unidentified party, the need_info after it and an identified one: %d writes, want 2", n)
	}
	if n := len(h.Writes([]HistoryEntry{refused, identified})); n != 1 {
		t.Errorf("within the window: %d writes, want only the identified party's", n)
	}
	other := refused
	other.Record.ClientID = "other-app"
	if n := len(h.Writes([]HistoryEntry{other})); n != 1 {
		t.Errorf("another client: %d writes, want 1", n)
	}
	c.advance(anonymousWindow)
	if n := len(h.Writes([]HistoryEntry{refused})); n != 1 {
		t.Errorf("after the window: %d writes, want 1", n)
	}
}

func TestHistoryFlushesTheQueueBeforeListing(t *testing.T) {
	_, opts, c := newTestStore(t)
	h := NewHistory(opts)
	defer h.Close()
	for i := range 10 {
		h.Queue([]HistoryEntry{{Owner: "alice", Record: DecisionRecord{At: c.now().Add(time.Duration(i) * time.Second), ResourceID: "photos", ClientID: "app", Subject: "bob", Outcome: OutcomeGranted}}})
	}
	hist, err := h.History(t.Context(), "alice", 0)
	if err != nil || len(hist) != 10 {
		t.Fatalf("history: %d records, %v; want the 10 queued", len(hist), err)
	}
	if other, _ := h.History(t.Context(), "al", 0); len(other) != 0 {
		t.Errorf("an owner whose name is a prefix of another's sees %d records of the other's", len(other))
	}
}
