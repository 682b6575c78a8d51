package authz_test

import (
	"fmt"
	"slices"
	"testing"

	"github.com/caddy-uma/caddy-uma/authz"
	"github.com/caddy-uma/caddy-uma/authz/authztest"
	"github.com/caddy-uma/caddy-uma/store"
)

// TestRulesInMemoryBounded: with fewer owners' compiled rules kept in
// memory than owners evaluated in turn, every decision still applies the
// owner's rules (compiled again when they were left out), never the
// shares alone.
func TestRulesInMemoryBounded(t *testing.T) {
	as := authztest.New(t, func(c *authz.Config) { c.RulesInMemory = 1 })
	ctx := t.Context()
	now := as.Clock.Now().UTC()
	owners := []string{"olga", "oscar", "otto"}
	for _, o := range owners {
		res := store.Resource{ID: "doc-" + o, ResourceServer: "rs-a", Owner: o, Name: "doc", Scopes: []string{"view", "edit"},
			CreatedAt: now, UpdatedAt: now}
		if err := as.Store.CreateResource(ctx, res); err != nil {
			t.Fatal(err)
		}
		if err := as.Server.AddShareForTest(t, o, res.ID, "bob", "view", "edit"); err != nil {
			t.Fatal(err)
		}
		// Each owner takes away what the share gives, one scope each.
		rule := fmt.Sprintf("package uma.share\n\nimport data.uma.lib\n\ndeny contains \"edit\" if lib.is_subject(\"bob\")\n\n# %s\n", o)
		if err := as.Server.PutRule(ctx, o, "main", rule); err != nil {
			t.Fatal(err)
		}
	}
	for round := range 3 {
		for _, o := range owners {
			ev, err := as.Server.Evaluate(ctx, authz.EvaluationRequest{Owner: o, ResourceID: "doc-" + o, Subject: "bob", ClientID: "app"})
			if err != nil {
				t.Fatalf("round %d, %s: %v", round, o, err)
			}
			if !slices.Equal(ev.Granted, []string{"view"}) {
				t.Errorf("round %d, %s: granted %v, want view only (edit denied by the owner's rule)", round, o, ev.Granted)
			}
		}
	}
}
