package owners

import (
	"fmt"
	"testing"
	"time"

	"github.com/caddy-uma/caddy-uma/policies"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// TestDirectoryRulesWarmedInBackground: once the operator directory's
// rules are put in force, their shards are compiled in the background (all
// three of 130 owners': 64, 64 and 2) and the log says so; the owners'
// rules decide from them.
func TestDirectoryRulesWarmedInBackground(t *testing.T) {
	_, opts, c := newTestStore(t)
	core, logs := observer.New(zap.InfoLevel)
	opts.Log = zap.New(core)
	engine := policies.NewEngine(policies.Options{})
	b := NewRules(opts, RulesOptions{Engine: engine, Dir: t.TempDir()})
	defer b.Close()
	owners := map[string]map[string]string{}
	for i := range 130 {
		owners[fmt.Sprintf("owner-%d", i)] = map[string]string{"rules.rego": fmt.Sprintf(
			"package uma.share\n\nallow contains \"view\" if input.requesting_party.sub == \"bob-%d\"\n", i)}
	}
	b.SetDirectory(owners, nil)
	deadline := time.Now().Add(10 * time.Second)
	var warmed []observer.LoggedEntry
	for len(warmed) == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
		warmed = logs.FilterMessage("owners' rules compiled in the background").All()
	}
	if len(warmed) != 1 {
		t.Fatalf("background compilations logged: %v, want one", logs.All())
	}
	if n := warmed[0].ContextMap()["shards"]; n != int64(3) {
		t.Errorf("shards compiled in the background: %v, want 3", n)
	}
	for _, i := range []int{0, 77, 129} {
		in := policies.Input{
			Resource: policies.Resource{ID: "photos", Owner: fmt.Sprintf("owner-%d", i), Scopes: []string{"view"}},
			Scopes:   []string{"view"}, Subject: fmt.Sprintf("bob-%d", i), Now: c.now(),
		}
		d, err := engine.Evaluate(t.Context(), in.Resource.Owner, in)
		if err != nil || len(d.Granted) != 1 {
			t.Errorf("owner-%d grants %v, %v", i, d.Granted, err)
		}
	}
}
