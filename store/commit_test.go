package store_test

import (
	"runtime"
	"slices"
	"sync"
	"testing"

	"github.com/caddy-uma/caddy-uma/store"
)

// TestCommitQueue checks the batches of a CommitQueue: a lone call commits
// at once and alone; the calls that arrive while a commit runs are all
// committed together in the next one, which none of them returns before.
func TestCommitQueue(t *testing.T) {
	var (
		mu      sync.Mutex
		batches [][]int
	)
	// The first commit blocks until release is closed, so that the
	// calls made meanwhile queue behind it.
	started, release := make(chan struct{}), make(chan struct{})
	committed := map[int]bool{}
	q := store.NewCommitQueue(func(batch []int) {
		mu.Lock()
		first := len(batches) == 0
		batches = append(batches, slices.Clone(batch))
		mu.Unlock()
		if first {
			close(started)
			<-release
		}
		mu.Lock()
		for _, op := range batch {
			committed[op] = true
		}
		mu.Unlock()
	})

	const waiting = 10
	var wg sync.WaitGroup
	wg.Go(func() { q.Do(0) })
	<-started
	returned := make(chan int, waiting)
	for i := 1; i <= waiting; i++ {
		wg.Go(func() {
			q.Do(i)
			mu.Lock()
			ok := committed[i]
			mu.Unlock()
			if !ok {
				t.Errorf("Do(%d) returned before its commit", i)
			}
			returned <- i
		})
	}
	// None of them can return while the first commit runs.
	select {
	case i := <-returned:
		t.Fatalf("Do(%d) returned while the commit before it ran", i)
	default:
	}
	// Wait until all of them have joined the next batch.
	for q.Waiting() < waiting {
		runtime.Gosched()
	}
	close(release)
	wg.Wait()

	if len(batches) != 2 || !slices.Equal(batches[0], []int{0}) || len(batches[1]) != waiting {
		t.Fatalf("batches = %v, want [[0] [the %d others]]", batches, waiting)
	}
	slices.Sort(batches[1])
	if !slices.Equal(batches[1], []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}) {
		t.Errorf("second batch = %v", batches[1])
	}

	// A lone call afterwards commits at once, alone.
	q.Do(11)
	if last := batches[len(batches)-1]; len(batches) != 3 || !slices.Equal(last, []int{11}) {
		t.Errorf("batches = %v, want a third batch [11]", batches)
	}
}
