package store

import "sync"

// CommitQueue gives a backend group commit: the writes of concurrent
// callers that arrive while a synced commit runs are committed together in
// the next one, so that N concurrent writers wait for about one sync each
// instead of queueing for N of them, and a lone writer waits for its own
// commit only (nothing is held back to fill a batch).
//
// There is no goroutine of its own: the caller that finds no commit
// running commits the batch it is in (it leads), and hands the lead to a
// caller of the next batch when it is done. Each caller's Do returns once
// the commit of its batch has returned, never before: a backend
// acknowledges a write only once it is durable.
//
// The zero value is not usable: make one with NewCommitQueue.
type CommitQueue[T any] struct {
	commit func(batch []T)

	mu sync.Mutex
	// next is the batch that new calls join; nil when none is waiting.
	next *commitBatch[T]
	// leading is set while some caller leads (commits, or is about to).
	leading bool
}

// commitBatch is one batch of a CommitQueue.
type commitBatch[T any] struct {
	ops []T
	// done is closed once the batch is committed.
	done chan struct{}
	// lead hands the lead to one caller of the batch.
	lead chan struct{}
}

// NewCommitQueue returns a queue whose batches are committed by commit.
// commit is called by one goroutine at a time, with the operations of the
// calls of one batch in the order of their Do; it commits them and records
// each one's outcome in the operation itself (T is typically a pointer to
// an operation with its result fields). The end of commit happens before
// the return of each of the batch's Do calls.
func NewCommitQueue[T any](commit func(batch []T)) *CommitQueue[T] {
	return &CommitQueue[T]{commit: commit}
}

// Do adds op to the next batch and returns once that batch is committed.
// A call that finds no commit running commits at once, with the calls that
// joined it meanwhile; otherwise op waits for the running commit to end
// and goes into the one after it.
func (q *CommitQueue[T]) Do(op T) {
	q.mu.Lock()
	b := q.next
	if b == nil {
		b = &commitBatch[T]{done: make(chan struct{}), lead: make(chan struct{}, 1)}
		q.next = b
	}
	b.ops = append(b.ops, op)
	if q.leading {
		q.mu.Unlock()
		select {
		case <-b.done:
			return
		case <-b.lead:
			// The previous leader is done: commit this batch.
		}
	} else {
		q.leading = true
		q.mu.Unlock()
	}
	q.run(b)
}

// run commits b, which is q.next, releases its callers and hands the lead
// to the batch that formed meanwhile, if any.
func (q *CommitQueue[T]) run(b *commitBatch[T]) {
	q.mu.Lock()
	q.next = nil // later calls form a new batch
	q.mu.Unlock()

	q.commit(b.ops)
	close(b.done)

	q.mu.Lock()
	next := q.next
	if next == nil {
		q.leading = false
	}
	q.mu.Unlock()
	if next != nil {
		next.lead <- struct{}{}
	}
}

// Waiting returns the number of calls in the batch that waits for the
// running commit to end.
func (q *CommitQueue[T]) Waiting() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.next == nil {
		return 0
	}
	return len(q.next.ops)
}
