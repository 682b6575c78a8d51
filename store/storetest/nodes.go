package storetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/caddy-uma/caddy-uma/store"
)

// RunNodes checks the single-winner guarantees of Insert, Take and
// CreateResource across two stores on one database, as on two nodes that
// share it, for backends that several processes can open at once. open is
// as in RunDurability, and is called twice with the same dir: each call
// must return a store of its own (its own connections) on the same data.
// The suite closes them.
func RunNodes(t *testing.T, open func(t *testing.T, dir string) store.Store) {
	dir := t.TempDir()
	nodes := []store.Store{open(t, dir), open(t, dir)}
	for _, n := range nodes {
		t.Cleanup(func() { _ = n.Close() })
	}
	// Racer i runs on node i%2.
	node := func(i int) store.Store { return nodes[i%2] }
	ctx := t.Context()
	for round := range 3 {
		key := fmt.Sprintf("ticket-%d", round)
		winner := wantOneWinner(t, race(func(i int) error {
			return node(i).Insert(ctx, "single-use", key, []byte(fmt.Sprint(i)), time.Now().Add(time.Hour))
		}), store.ErrExists)
		// Both nodes see the winner's value.
		for _, n := range nodes {
			got, err := n.Get(ctx, "single-use", key)
			if err != nil || winner >= 0 && string(got) != fmt.Sprint(winner) {
				t.Errorf("Get = %q, %v; want the winner's %d", got, err, winner)
			}
		}

		values := make([][]byte, goroutines)
		winner = wantOneWinner(t, race(func(i int) error {
			var err error
			values[i], err = node(i).Take(ctx, "single-use", key)
			return err
		}), store.ErrNotFound)
		if winner >= 0 && len(values[winner]) == 0 {
			t.Errorf("the winning Take got no value")
		}
		for _, n := range nodes {
			_, err := n.Get(ctx, "single-use", key)
			wantErr(t, "Get after Take", err, store.ErrNotFound)
		}

		wantOneWinner(t, race(func(i int) error {
			return node(i).CreateResource(ctx, resource(key, "rs", fmt.Sprintf("owner-%02d", i)))
		}), store.ErrExists)
	}
}
