package owners

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddy-uma/caddy-uma/authz/secret"
	"github.com/caddy-uma/caddy-uma/store"
	"go.uber.org/zap"
)

// Every access decision of the UMA grant on an owner's resource is kept in
// the owner's history, for the console: who asked, through which client,
// for which scopes, what was granted, and why, in plain words. The history
// is bounded twice: each record lives decisionTTL, and an owner keeps at
// most maxDecisionsPerOwner records (the oldest are pruned now and then).
//
//	decision <owner> \x00 <reverse timestamp> \x00 <random>
//
// The reverse timestamp makes a prefix listing return the newest first.

const (
	decisionTTL          = 30 * 24 * time.Hour
	maxDecisionsPerOwner = 500
	// pruneEvery is how many recorded decisions pass between two prunings
	// (of the owner of the decision that comes next).
	pruneEvery = 64
)

// Decision outcomes.
const (
	OutcomeGranted = "granted"
	OutcomePartly  = "partly granted"
	OutcomeRefused = "refused"
	OutcomeError   = "failed"
	// OutcomeAsked is the usual first step of a requester not identified
	// yet (or of rules that want more claims): nothing was granted, and
	// the answer was need_info, which asks who is requesting.
	OutcomeAsked = "asked who is requesting"
)

// DecisionRecord is one access decision on one resource.
type DecisionRecord struct {
	At           time.Time `json:"at"`
	ResourceID   string    `json:"resource_id"`
	ResourceName string    `json:"resource_name,omitempty"`
	ClientID     string    `json:"client_id"`
	// Subject, Issuer, Email and Name describe the requesting party, as far
	// as known.
	Subject   string   `json:"sub,omitempty"`
	Issuer    string   `json:"iss,omitempty"`
	Email     string   `json:"email,omitempty"`
	Name      string   `json:"name,omitempty"`
	Requested []string `json:"requested"`
	Granted   []string `json:"granted,omitempty"`
	Outcome   string   `json:"outcome"`
	// Reasons say, one sentence each, what decided.
	Reasons []string `json:"reasons"`
}

// Who describes the requesting party for people.
func (d DecisionRecord) Who() string {
	switch {
	case d.Name != "" && d.Email != "":
		return d.Name + " <" + d.Email + ">"
	case d.Email != "":
		return d.Email
	case d.Name != "":
		return d.Name
	case d.Subject != "" && d.Subject != d.ClientID:
		return d.Subject
	}
	return "someone not identified"
}

// decisionKey is the key of a decision at t.
func decisionKey(owner string, t time.Time) string {
	return owner + sep + fmt.Sprintf("%016x", uint64(math.MaxInt64-t.UnixNano())) + sep + secret.New(6)
}

// HistoryEntry is a decision to record in its owner's history.
type HistoryEntry struct {
	Owner  string
	Record DecisionRecord
}

// History is the owners' histories of decisions. It is safe for
// concurrent use.
type History struct {
	opts Options
	// anonymous bounds how often refusals of unidentified parties reach
	// the owners' histories.
	anonymous anonymousDecisions
	// count counts access decisions recorded, to prune the history now
	// and then.
	count atomic.Uint64
	// queue writes the decisions of requests that grant nothing off the
	// request path.
	queue historyQueue
}

// NewHistory returns the histories kept in opts.Store. Close it to write
// what is still queued.
func NewHistory(opts Options) *History {
	h := &History{opts: opts.withDefaults()}
	h.anonymous.now = h.opts.Now
	h.queue.h = h
	return h
}

// When the decisions of a request reach the store. The decisions of a
// grant that issues tokens are written in the grant's own commit
// (Writes, from the grant): the owner's record of every access
// granted is durable before the tokens are handed out, at no extra commit.
// All other decisions (refusals, need_info, request_submitted, failures,
// the ticketless decision and permissions modes) grant nothing, so the
// answer does not wait for them: they go to the history queue, which
// writes them in the background, in batches (historyQueue). A crash loses
// at most the decisions of the batch being written; History flushes the
// queue first, so that the console of this node shows every decision
// already answered.

// Writes returns the writes that add decisions to their owners'
// histories: those that the anonymous filter keeps. Once committed, pass
// them to Written.
func (h *History) Writes(decisions []HistoryEntry) []store.Write {
	decisions = h.anonymous.keep(decisions)
	writes := make([]store.Write, 0, len(decisions))
	for _, d := range decisions {
		val, err := json.Marshal(d.Record)
		if err != nil {
			h.opts.Log.Warn("encoding an access decision", ownerField(d.Owner), zap.Error(err))
			continue
		}
		writes = append(writes, store.Write{Namespace: nsDecision, Key: decisionKey(d.Owner, d.Record.At), Value: val, ExpiresAt: d.Record.At.Add(decisionTTL)})
	}
	return writes
}

// Written counts decisions that reached the store, and has the history
// queue prune an owner's history now and then.
func (h *History) Written(writes []store.Write) {
	for _, w := range writes {
		if w.Namespace == nsDecision && h.count.Add(1)%pruneEvery == 0 {
			owner, _, _ := strings.Cut(w.Key, sep)
			h.queue.prune(owner)
		}
	}
}

// Queue hands the decisions of a request that granted nothing to the
// history queue.
func (h *History) Queue(decisions []HistoryEntry) {
	if writes := h.Writes(decisions); len(writes) > 0 {
		h.queue.add(writes)
	}
}

// QueueWrites hands writes of Writes that could not be committed with a
// grant to the history queue.
func (h *History) QueueWrites(writes []store.Write) { h.queue.add(writes) }

// Bounds of the history queue: the decisions that may wait, and the
// writes of one commit.
const (
	maxQueuedDecisions = 4096
	maxDecisionBatch   = 512
)

// historyQueue writes access decisions off the request path: a goroutine
// commits what is queued, in batches of at most maxDecisionBatch writes,
// while more decisions queue for the next batch, and ends when the queue
// is empty (the next decision starts another). When maxQueuedDecisions
// are waiting, or once the queue is closed, add writes synchronously
// instead: a decision is never dropped. Pruning an owner's history (a
// listing and deletes) runs on the same goroutine.
type historyQueue struct {
	h *History

	mu      sync.Mutex
	pending []store.Write
	prunes  map[string]bool
	closed  bool
	// running is set while the goroutine runs; wg waits for it.
	running bool
	wg      sync.WaitGroup
	// writing is held while a batch taken from pending is written, so
	// that flush returns only once everything queued before it is
	// written.
	writing sync.Mutex
}

// add queues writes (synchronously written when the queue is full or
// closed).
func (q *historyQueue) add(writes []store.Write) {
	q.mu.Lock()
	if q.closed || len(q.pending)+len(writes) > maxQueuedDecisions {
		q.mu.Unlock()
		q.h.writeDecisions(writes)
		return
	}
	q.pending = append(q.pending, writes...)
	q.runLocked()
	q.mu.Unlock()
}

// prune asks the goroutine to prune owner's history.
func (q *historyQueue) prune(owner string) {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		q.h.pruneDecisions(context.Background(), owner)
		return
	}
	if q.prunes == nil {
		q.prunes = map[string]bool{}
	}
	q.prunes[owner] = true
	q.runLocked()
	q.mu.Unlock()
}

// runLocked starts the goroutine unless it runs; q.mu is held.
func (q *historyQueue) runLocked() {
	if q.running {
		return
	}
	q.running = true
	q.wg.Add(1)
	go q.run()
}

// run writes what is queued until the queue is empty.
func (q *historyQueue) run() {
	defer q.wg.Done()
	for {
		q.flush()
		q.mu.Lock()
		if len(q.pending) == 0 && len(q.prunes) == 0 {
			q.running = false
			q.mu.Unlock()
			return
		}
		q.mu.Unlock()
	}
}

// flush writes one batch of what is queued, and the prunings asked for;
// it reports whether more is queued.
func (q *historyQueue) flush() bool {
	q.writing.Lock()
	defer q.writing.Unlock()
	q.mu.Lock()
	n := min(len(q.pending), maxDecisionBatch)
	batch := q.pending[:n:n]
	q.pending = q.pending[n:]
	if len(q.pending) == 0 {
		q.pending = nil
	}
	prunes := q.prunes
	q.prunes = nil
	more := len(q.pending) > 0
	q.mu.Unlock()
	if len(batch) > 0 {
		q.h.writeDecisions(batch)
	}
	for owner := range prunes {
		q.h.pruneDecisions(context.Background(), owner)
	}
	return more
}

// close waits for the goroutine to write what is queued; later decisions
// are written synchronously.
func (q *historyQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.wg.Wait()
}

// writeDecisions commits decisions. Failing to record is logged, never an
// error of a grant.
func (h *History) writeDecisions(writes []store.Write) {
	if err := h.opts.Store.PutAll(context.Background(), writes); err != nil {
		h.opts.Log.Warn("recording access decisions", zap.Int("decisions", len(writes)), zap.Error(err))
		return
	}
	h.Written(writes)
}

// Anyone can make the AS refuse an unidentified requesting party (an
// anonymous request at an enforcement point gives a ticket; any client may
// ask ticketless): such refusals, and the need_info answers that ask who
// is requesting (OutcomeAsked), would flood the owners' histories and push
// the real entries out. One of them is recorded per anonymousWindow for
// the same owner, resource and client.
const (
	anonymousWindow  = 10 * time.Minute
	maxAnonymousKeys = 10000
)

// anonymousDecisions remembers which refusals of unidentified parties were
// recorded lately.
type anonymousDecisions struct {
	now func() time.Time

	mu   sync.Mutex
	seen map[string]time.Time
}

// keep returns the decisions to record: all but the refusals of
// unidentified parties, and the need_info answers asking who they are,
// recorded within the window.
func (a *anonymousDecisions) keep(decisions []HistoryEntry) []HistoryEntry {
	now := a.now()
	a.mu.Lock()
	defer a.mu.Unlock()
	out := decisions[:0:0]
	for _, d := range decisions {
		if identified := d.Record.Subject != "" && d.Record.Subject != d.Record.ClientID; identified || d.Record.Outcome != OutcomeRefused && d.Record.Outcome != OutcomeAsked {
			out = append(out, d)
			continue
		}
		// Refused or asked who it is: one record per window either way.
		key := d.Owner + sep + d.Record.ResourceID + sep + d.Record.ClientID
		if at, ok := a.seen[key]; ok && now.Sub(at) < anonymousWindow {
			continue
		}
		if a.seen == nil || len(a.seen) >= maxAnonymousKeys {
			a.seen = map[string]time.Time{} // bounded; the worst case is a few more records
		}
		a.seen[key] = now
		out = append(out, d)
	}
	return out
}

// pruneDecisions keeps the newest maxDecisionsPerOwner records of owner.
func (h *History) pruneDecisions(ctx context.Context, owner string) {
	recs, err := h.opts.Store.List(ctx, nsDecision, owner+sep, 0)
	if err != nil {
		h.opts.Log.Warn("listing the access history", ownerField(owner), zap.Error(err))
		return
	}
	for i := maxDecisionsPerOwner; i < len(recs); i++ {
		_ = h.opts.Store.Delete(ctx, nsDecision, recs[i].Key)
	}
}

// History returns an owner's newest access decisions, at most limit,
// including those still in the history queue.
func (h *History) History(ctx context.Context, owner string, limit int) ([]DecisionRecord, error) {
	for h.queue.flush() {
	}
	return listJSON[DecisionRecord](ctx, h.opts.Store, nsDecision, owner+sep, limit)
}

// Close waits for the history queue to write what is queued; later
// decisions are written synchronously.
func (h *History) Close() { h.queue.close() }
