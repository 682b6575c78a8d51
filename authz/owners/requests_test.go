package owners

import (
	"errors"
	"testing"
)

func TestRequestsFiledOnceAndDecidedOnce(t *testing.T) {
	_, opts, _ := newTestStore(t)
	shares := NewShares(opts)
	q := NewRequests(opts, shares)
	ctx := t.Context()
	ask := AccessRequest{Owner: "alice", ResourceID: "photos", Scopes: []string{"view", "edit"}, ClientID: "app", Subject: "bob"}
	first, err := q.FileRequest(ctx, ask)
	if err != nil || first.Status != RequestPending {
		t.Fatalf("filing: %+v %v", first, err)
	}
	ask.Scopes = []string{"edit", "view"}
	if again, err := q.FileRequest(ctx, ask); err != nil || again.ID != first.ID {
		t.Fatalf("the same request filed again: %+v %v; want %s", again, err, first.ID)
	}
	if all, _ := q.Requests(ctx, "alice"); len(all) != 1 {
		t.Fatalf("requests: %+v", all)
	}
	decided, err := q.DecideRequest(ctx, "alice", first.ID, true)
	if err != nil || decided.Status != RequestApproved || decided.DecidedAt.IsZero() {
		t.Fatalf("approving: %+v %v", decided, err)
	}
	got, _ := shares.ResourceShares(ctx, "alice", "photos")
	if len(got) != 1 || got[0].Subject != "bob" || got[0].Client != "app" || got[0].Request != first.ID {
		t.Fatalf("the approval's share: %+v", got)
	}
	if _, err := q.DecideRequest(ctx, "alice", first.ID, false); !errors.Is(err, ErrRequestDecided) {
		t.Errorf("deciding again: %v", err)
	}
	if _, err := q.DecideRequest(ctx, "mallory", first.ID, true); !errors.Is(err, ErrNoSuchRequest) {
		t.Errorf("another owner deciding: %v", err)
	}
	if again, _ := q.FileRequest(ctx, ask); again.Status != RequestApproved {
		t.Errorf("filing a decided request again: %+v", again)
	}
}
