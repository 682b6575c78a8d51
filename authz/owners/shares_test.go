package owners

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/caddy-uma/caddy-uma/store"
)

func TestAddShareRefusals(t *testing.T) {
	_, opts, _ := newTestStore(t)
	s := NewShares(opts)
	long := string(make([]byte, 300))
	for name, sh := range map[string]Share{
		"no person":           {Owner: "alice", ResourceID: "photos", Scopes: []string{"view"}},
		"no scopes":           {Owner: "alice", ResourceID: "photos", Subject: "bob"},
		"another owner's":     {Owner: "mallory", ResourceID: "photos", Subject: "bob", Scopes: []string{"view"}},
		"no such resource":    {Owner: "alice", ResourceID: "labs", Subject: "bob", Scopes: []string{"view"}},
		"a scope it lacks":    {Owner: "alice", ResourceID: "photos", Subject: "bob", Scopes: []string{"delete"}},
		"a malformed subject": {Owner: "alice", ResourceID: "photos", Subject: long, Scopes: []string{"view"}},
		"a malformed client":  {Owner: "alice", ResourceID: "photos", Subject: "bob", Client: long, Scopes: []string{"view"}},
		"a malformed address": {Owner: "alice", ResourceID: "photos", Email: long, Scopes: []string{"view"}},
	} {
		if _, err := s.AddShare(t.Context(), sh); err == nil {
			t.Errorf("%s: stored", name)
		}
	}
	if all, _ := s.Shares(t.Context(), "alice"); len(all) != 0 {
		t.Errorf("shares stored by refused calls: %+v", all)
	}
}

func TestSharesIndexedByPerson(t *testing.T) {
	_, opts, c := newTestStore(t)
	s := NewShares(opts)
	ctx := t.Context()
	bySub, err := s.AddShare(ctx, Share{Owner: "alice", ResourceID: "photos", Subject: "bob", Scopes: []string{"view"}})
	if err != nil {
		t.Fatal(err)
	}
	c.advance(1)
	byEmail, err := s.AddShare(ctx, Share{Owner: "alice", ResourceID: "photos", Email: " Bob@Example.org", Scopes: []string{"edit"}})
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.SharedWith(ctx, "bob", "bob@example.ORG ")
	if err != nil || len(got) != 2 || got[0].ID != byEmail.ID || got[1].ID != bySub.ID {
		t.Fatalf("shared with bob, by subject and address, newest first: %+v %v", got, err)
	}
	if got, _ := s.SharedWith(ctx, "bo", ""); len(got) != 0 {
		t.Errorf("a prefix of the subject finds %+v", got)
	}
	if got, _ := s.ResourceShares(ctx, "alice", "photos"); len(got) != 2 {
		t.Errorf("the resource's shares: %+v", got)
	}
}

func TestRevokeShareRevokesTheTokensOfTheHoldersItNames(t *testing.T) {
	st, opts, c := newTestStore(t)
	s := NewShares(opts)
	ctx := t.Context()
	sh, err := s.AddShare(ctx, Share{Owner: "alice", ResourceID: "photos", Email: "bob@example.org", Client: "app", Scopes: []string{"view"}})
	if err != nil {
		t.Fatal(err)
	}
	until := c.now().Add(time.Hour)
	var writes []store.Write
	for _, h := range []TokenHolder{
		{RPT: "bob-app", Subject: "b", Email: "bob@example.org", ClientID: "app"},
		{RPT: "bob-other", Subject: "b", Email: "bob@example.org", ClientID: "other"},
		{RPT: "carol-app", Subject: "c", Email: "carol@example.org", ClientID: "app"},
	} {
		writes = append(writes, HolderWrites([]string{"photos"}, h, "refresh-"+h.RPT, until)...)
	}
	if err := st.PutAll(ctx, writes); err != nil {
		t.Fatal(err)
	}
	if h, ok := s.HolderOfRefresh(ctx, []string{"labs", "photos"}, "refresh-bob-app"); !ok || h.RPT != "bob-app" || h.Refresh != "refresh-bob-app" {
		t.Fatalf("holder of bob's refresh token: %+v %v", h, ok)
	}
	var revoked []string
	_, tried, n, err := s.RevokeShare(ctx, "alice", "photos", sh.ID, func(h TokenHolder) []store.Write {
		revoked = append(revoked, h.RPT)
		return nil
	})
	if err != nil || n != 1 || !slices.Equal(revoked, []string{"bob-app"}) {
		t.Fatalf("revoked %v (%d holders), %v; want bob's through app only", revoked, n, err)
	}
	if len(tried) == 0 {
		t.Error("no writes returned")
	}
	if _, ok := s.HolderOfRefresh(ctx, []string{"photos"}, "refresh-bob-app"); ok {
		t.Error("the holder record outlived the revocation")
	}
	if _, ok := s.HolderOfRefresh(ctx, []string{"photos"}, "refresh-bob-other"); !ok {
		t.Error("the holder through another client was revoked")
	}
	if got, _ := s.SharedWith(ctx, "", "bob@example.org"); len(got) != 0 {
		t.Errorf("the index still names the share: %+v", got)
	}
	if _, _, _, err := s.RevokeShare(ctx, "alice", "photos", sh.ID, nil); !errors.Is(err, ErrNoSuchShare) {
		t.Errorf("revoking again: %v", err)
	}
}
