package storetest

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/caddy-uma/caddy-uma/store"
)

// RunNodes checks what several nodes on one database rely on, across two
// stores on it, for backends that several processes can open at once: the
// single-winner guarantees of Insert, Take, CreateResource, Swap and
// SwapResource, the deletes of PutAll, and the change feed (a change made
// through one store reaches the watchers of the other; the delay from a
// write's acknowledgment to its delivery is logged, and must stay below a
// second at the 99th percentile). open is as in RunDurability, and is called
// twice with the same dir: each call must return a store of its own (its
// own connections) on the same data. The suite closes them.
func RunNodes(t *testing.T, open func(t *testing.T, dir string) store.Store) {
	dir := t.TempDir()
	nodes := []store.Store{open(t, dir), open(t, dir)}
	for _, n := range nodes {
		t.Cleanup(func() { _ = n.Close() })
	}
	t.Run("SingleUse", func(t *testing.T) { testSingleUseNodes(t, nodes) })
	t.Run("Swap", func(t *testing.T) { testSwapRace(t, nodes) })
	t.Run("ConditionalPutAll", func(t *testing.T) { testConditionalPutAllRace(t, nodes) })
	t.Run("PutAllDeletes", func(t *testing.T) { testPutAllDeletesNodes(t, nodes) })
	t.Run("Watch", func(t *testing.T) { testWatch(t, nodes[0], nodes[1]) })
	t.Run("WatchBothWays", func(t *testing.T) { testWatchBothWays(t, nodes) })
	t.Run("Propagation", func(t *testing.T) { testPropagation(t, nodes[0], nodes[1]) })
}

func testSingleUseNodes(t *testing.T, nodes []store.Store) {
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

// testPutAllDeletesNodes checks that the deletes of a PutAll on one node
// are seen on the other.
func testPutAllDeletesNodes(t *testing.T, nodes []store.Store) {
	ctx := t.Context()
	a, b := nodes[0], nodes[1]
	must(t, "Put", a.Put(ctx, "index", "share/1", []byte("x"), time.Time{}))
	must(t, "Put", a.Put(ctx, "index", "share/2", []byte("x"), time.Time{}))
	must(t, "PutAll", b.PutAll(ctx, []store.Write{
		{Namespace: "index", Key: "share/1", Delete: true},
		{Namespace: "index", Key: "share/3", Value: []byte("y")},
	}))
	list, err := a.List(ctx, "index", "share/", 0)
	must(t, "List", err)
	var keys []string
	for _, r := range list {
		keys = append(keys, r.Key)
	}
	if want := []string{"share/2", "share/3"}; !slices.Equal(keys, want) {
		t.Errorf("List on the other node = %q, want %q", keys, want)
	}
}

// testWatchBothWays checks that each node's watcher gets the changes of
// both nodes.
func testWatchBothWays(t *testing.T, nodes []store.Store) {
	logs := []*changeLog{watch(t, nodes[0], "both"), watch(t, nodes[1], "both")}
	for i, n := range nodes {
		key := fmt.Sprint("from-", i)
		must(t, "Put", n.Put(t.Context(), "both", key, []byte("v"), time.Time{}))
		for _, l := range logs {
			l.expect(t, []store.Change{rec("both", key)})
		}
	}
}

// propagationWrites is how many writes the propagation delay is measured
// over.
const propagationWrites = 500

// testPropagation measures the delay from the acknowledgment of a write on
// writer to the call of fn of a watcher on watcher, and from the start of
// the write, and logs their percentiles.
func testPropagation(t *testing.T, writer, watcher store.Store) {
	ctx := t.Context()
	var mu sync.Mutex
	arrived := make(map[string]time.Time, propagationWrites)
	all := make(chan struct{})
	must(t, "Watch", watcher.Watch(ctx, func(c store.Change) {
		now := time.Now()
		mu.Lock()
		defer mu.Unlock()
		arrived[c.Key] = now
		if len(arrived) == propagationWrites {
			close(all)
		}
	}, "propagation"))
	started := make([]time.Time, propagationWrites)
	acked := make([]time.Time, propagationWrites)
	for i := range propagationWrites {
		started[i] = time.Now()
		must(t, "Put", writer.Put(ctx, "propagation", fmt.Sprint(i), []byte("v"), time.Time{}))
		acked[i] = time.Now()
	}
	select {
	case <-all:
	case <-time.After(feedTimeout):
		mu.Lock()
		n := len(arrived)
		mu.Unlock()
		t.Fatalf("%d of %d changes arrived within %v", n, propagationWrites, feedTimeout)
	}
	mu.Lock()
	defer mu.Unlock()
	fromAck := make([]time.Duration, propagationWrites)
	fromStart := make([]time.Duration, propagationWrites)
	for i := range propagationWrites {
		at := arrived[fmt.Sprint(i)]
		fromAck[i] = at.Sub(acked[i])
		fromStart[i] = at.Sub(started[i])
	}
	slices.Sort(fromAck)
	slices.Sort(fromStart)
	pct := func(d []time.Duration, p int) time.Duration { return d[(len(d)-1)*p/100] }
	t.Logf("propagation of %d writes, from acknowledgment to fn on the other store: p50 %v, p99 %v, max %v; "+
		"from the start of the write: p50 %v, p99 %v, max %v",
		propagationWrites, pct(fromAck, 50), pct(fromAck, 99), fromAck[len(fromAck)-1],
		pct(fromStart, 50), pct(fromStart, 99), fromStart[len(fromStart)-1])
	if p99 := pct(fromAck, 99); p99 > time.Second {
		t.Errorf("p99 propagation delay %v, want below 1s", p99)
	}
}
