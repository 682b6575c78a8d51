package authz_test

import (
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/caddy-uma/caddy-uma/authz"
	"github.com/caddy-uma/caddy-uma/authz/authztest"
	"github.com/caddy-uma/caddy-uma/store"
)

func TestEnsureResourceIsIdempotent(t *testing.T) {
	as := authztest.New(t, nil)
	ctx := t.Context()
	// Concurrent first sights create one resource.
	var wg sync.WaitGroup
	ids := make([]string, 16)
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := as.Server.EnsureResource(ctx, "rs-a", store.Resource{Owner: "alice", Name: "records/1", Scopes: []string{"read"}})
			if err != nil {
				t.Error(err)
				return
			}
			ids[i] = res.ID
		}()
	}
	wg.Wait()
	for _, id := range ids {
		if id != ids[0] {
			t.Fatalf("concurrent registrations created several resources: %v", ids)
		}
	}
	list, _ := as.Server.ResourcesOf(ctx, "rs-a")
	if len(list) != 1 {
		t.Fatalf("%d resources, want 1", len(list))
	}
	// New scopes are added to the existing resource.
	res, err := as.Server.EnsureResource(ctx, "rs-a", store.Resource{Owner: "alice", Name: "records/1", Scopes: []string{"write"}})
	if err != nil || res.ID != ids[0] || strings.Join(res.Scopes, ",") != "read,write" {
		t.Fatalf("second sight: %+v %v", res, err)
	}
	// A resource registered through the protection API under that name is found.
	pat, _ := as.Server.IssuePAT(ctx, "rs-a", "bob")
	id := as.Register(pat, `{"name":"records/2","resource_scopes":["read"]}`)
	res, err = as.Server.EnsureResource(ctx, "rs-a", store.Resource{Owner: "bob", Name: "records/2", Scopes: []string{"read"}})
	if err != nil || res.ID != id {
		t.Fatalf("protection API resource not found by name: %+v %v", res, err)
	}
	// Deleted through the protection API: registered anew.
	as.Do("DELETE", authz.PathResourceSet+"/"+id, nil, "Authorization", authztest.Bearer(pat))
	res, err = as.Server.EnsureResource(ctx, "rs-a", store.Resource{Owner: "bob", Name: "records/2", Scopes: []string{"read"}})
	if err != nil || res.ID == id || res.ID == "" {
		t.Fatalf("after delete: %+v %v", res, err)
	}
	// Request context is bounded.
	if _, err := as.Server.RequestTicket(ctx, "rs-a", []authz.PermissionRequest{{ResourceID: res.ID}}, map[string][]string{"x": {strings.Repeat("a", 4096)}}); err == nil {
		t.Fatal("oversized request context accepted")
	}
}

func TestFirstSightRegistrationsAreRateLimited(t *testing.T) {
	as := authztest.New(t, func(c *authz.Config) { c.NewResourceRate = 1 }) // bursts of 10
	ctx := t.Context()
	created := 0
	var limited error
	for i := range 30 {
		_, err := as.Server.EnsureResource(ctx, "rs-a", store.Resource{Owner: "mallory-" + strings.Repeat("x", i), Name: "r", Scopes: []string{"read"}})
		if err != nil {
			limited = err
			continue
		}
		created++
	}
	if created < 10 || created > 12 || !errors.Is(limited, authz.ErrTooManyNewResources) {
		t.Fatalf("created %d resources of 30 (last error %v), want about 10 then ErrTooManyNewResources", created, limited)
	}
	// Existing resources are still found.
	if _, err := as.Server.EnsureResource(ctx, "rs-a", store.Resource{Owner: "mallory-", Name: "r"}); err != nil {
		t.Fatalf("existing resource refused: %v", err)
	}
}
