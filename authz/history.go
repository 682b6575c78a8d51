package authz

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
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

// nsDecision is the Records namespace of the access history.
const nsDecision = "decision"

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

// ownedDecision is a decision to record in its owner's history.
type ownedDecision struct {
	owner string
	rec   DecisionRecord
}

// When the decisions of a request reach the store. The decisions of a
// grant that issues tokens are written in the grant's own commit
// (decisionWrites, from issueGrant): the owner's record of every access
// granted is durable before the tokens are handed out, at no extra commit.
// All other decisions (refusals, need_info, request_submitted, failures,
// the ticketless decision and permissions modes) grant nothing, so the
// answer does not wait for them: they go to the history queue, which
// writes them in the background, in batches (historyQueue). A crash loses
// at most the decisions of the batch being written; History flushes the
// queue first, so that the console of this node shows every decision
// already answered.

// decisionWrites returns the writes that add decisions to their owners'
// histories: those that the anonymous filter keeps.
func (s *Server) decisionWrites(decisions []ownedDecision) []store.Write {
	decisions = s.anonymous.keep(decisions)
	writes := make([]store.Write, 0, len(decisions))
	for _, d := range decisions {
		val, err := json.Marshal(d.rec)
		if err != nil {
			s.log.Warn("encoding an access decision", ownerField(d.owner), zap.Error(err))
			continue
		}
		writes = append(writes, store.Write{Namespace: nsDecision, Key: decisionKey(d.owner, d.rec.At), Value: val, ExpiresAt: d.rec.At.Add(decisionTTL)})
	}
	return writes
}

// decisionsWritten counts decisions that reached the store, and has the
// history queue prune an owner's history now and then.
func (s *Server) decisionsWritten(writes []store.Write) {
	for _, w := range writes {
		if w.Namespace == nsDecision && s.decisionCount.Add(1)%pruneEvery == 0 {
			owner, _, _ := strings.Cut(w.Key, sep)
			s.history.prune(owner)
		}
	}
}

// queueDecisions hands the decisions of a request that granted nothing to
// the history queue.
func (s *Server) queueDecisions(decisions []ownedDecision) {
	if writes := s.decisionWrites(decisions); len(writes) > 0 {
		s.history.add(writes)
	}
}

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
	s *Server

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

// start readies the queue for s.
func (q *historyQueue) start(s *Server) { q.s = s }

// add queues writes (synchronously written when the queue is full or
// closed).
func (q *historyQueue) add(writes []store.Write) {
	q.mu.Lock()
	if q.closed || q.s == nil || len(q.pending)+len(writes) > maxQueuedDecisions {
		q.mu.Unlock()
		q.s.writeDecisions(writes)
		return
	}
	q.pending = append(q.pending, writes...)
	q.runLocked()
	q.mu.Unlock()
}

// prune asks the goroutine to prune owner's history.
func (q *historyQueue) prune(owner string) {
	q.mu.Lock()
	if q.closed || q.s == nil {
		q.mu.Unlock()
		q.s.pruneDecisions(context.Background(), owner)
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
		q.s.writeDecisions(batch)
	}
	for owner := range prunes {
		q.s.pruneDecisions(context.Background(), owner)
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
func (s *Server) writeDecisions(writes []store.Write) {
	if err := s.store.PutAll(context.Background(), writes); err != nil {
		s.log.Warn("recording access decisions", zap.Int("decisions", len(writes)), zap.Error(err))
		return
	}
	s.decisionsWritten(writes)
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
func (a *anonymousDecisions) keep(decisions []ownedDecision) []ownedDecision {
	now := a.now()
	a.mu.Lock()
	defer a.mu.Unlock()
	out := decisions[:0:0]
	for _, d := range decisions {
		if identified := d.rec.Subject != "" && d.rec.Subject != d.rec.ClientID; identified || d.rec.Outcome != OutcomeRefused && d.rec.Outcome != OutcomeAsked {
			out = append(out, d)
			continue
		}
		// Refused or asked who it is: one record per window either way.
		key := d.owner + sep + d.rec.ResourceID + sep + d.rec.ClientID
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
func (s *Server) pruneDecisions(ctx context.Context, owner string) {
	recs, err := s.store.List(ctx, nsDecision, owner+sep, 0)
	if err != nil {
		s.log.Warn("listing the access history", ownerField(owner), zap.Error(err))
		return
	}
	for i := maxDecisionsPerOwner; i < len(recs); i++ {
		_ = s.store.Delete(ctx, nsDecision, recs[i].Key)
	}
}

// History returns an owner's newest access decisions, at most limit,
// including those still in the history queue.
func (s *Server) History(ctx context.Context, owner string, limit int) ([]DecisionRecord, error) {
	for s.history.flush() {
	}
	return listJSON[DecisionRecord](ctx, s.store, nsDecision, owner+sep, limit)
}

// newDecisionRecord describes one evaluation (ev, or the failure err) of
// an owner's rules in plain words.
func newDecisionRecord(p requestedPermission, clientID string, proc process, ev evaluation, err error) DecisionRecord {
	now := ev.now
	rec := DecisionRecord{
		At: now.UTC(), ResourceID: p.res.ID, ResourceName: p.res.Name, ClientID: clientID,
		Subject: proc.Subject, Issuer: proc.RqPIssuer, Requested: p.scopes, Granted: ev.granted,
	}
	rec.Email, _ = proc.Claims["email"].(string)
	rec.Name, _ = proc.Claims["name"].(string)
	rec.Outcome = decisionOutcome(ev, err)
	if err != nil {
		rec.Reasons = []string{"Your rules could not be evaluated (they failed or took too long), so nothing was granted."}
		return rec
	}
	matching := matchingShares(ev.shares, proc, clientID, now)
	for _, sc := range ev.granted {
		shares, rules := grantedBy(sc, ev, matching)
		var by []string
		for _, sh := range shares {
			by = append(by, "your share with "+shareWho(sh))
		}
		if rules {
			by = append(by, "your sharing rules")
		}
		rec.Reasons = append(rec.Reasons, fmt.Sprintf("%q was granted by %s.", sc, strings.Join(by, " and ")))
	}
	for _, sc := range ev.missing {
		switch refusedBy(sc, ev, proc, clientID) {
		case refusedBySystem:
			rec.Reasons = append(rec.Reasons, fmt.Sprintf("%q was refused by the server's rules, which apply to everyone.", sc))
		case refusedByDeny:
			rec.Reasons = append(rec.Reasons, fmt.Sprintf("%q was refused by a deny in your sharing rules.", sc))
		case refusedAskOwner:
			rec.Reasons = append(rec.Reasons, fmt.Sprintf("%q needs your approval: the request was sent to you.", sc))
		case refusedUnidentified:
			rec.Reasons = append(rec.Reasons, fmt.Sprintf("%q was not granted: the requester was not identified, and nothing shares it with anyone unidentified.", sc))
		default:
			rec.Reasons = append(rec.Reasons, fmt.Sprintf("%q was not granted: no share or rule gives it to this person.", sc))
		}
	}
	if len(ev.granted) == 0 && len(ev.dec.RequiredClaims) > 0 {
		rec.Reasons = append(rec.Reasons, "Your rules asked for more information about the requester.")
	}
	return rec
}

// decisionOutcome is the outcome of one evaluation (ev, or the failure
// err) of an owner's rules: OutcomeError, OutcomeGranted, OutcomePartly or
// OutcomeRefused.
func decisionOutcome(ev evaluation, err error) string {
	switch {
	case err != nil:
		return OutcomeError
	case len(ev.missing) == 0:
		return OutcomeGranted
	case len(ev.granted) > 0:
		return OutcomePartly
	}
	return OutcomeRefused
}

// grantedBy says what granted the scope sc: the matching shares that hold
// it, and whether the owner's rules did (they did when no share did).
func grantedBy(sc string, ev evaluation, matching []Share) (shares []Share, rules bool) {
	for _, sh := range matching {
		if slices.Contains(sh.Scopes, sc) {
			shares = append(shares, sh)
		}
	}
	return shares, len(shares) == 0 || slices.Contains(ev.dec.Allow, sc)
}

// refusal says why a scope was not granted: a value of the audit trail's
// refused_by.
type refusal string

// Refusals.
const (
	// refusedBySystem: the server's system rules deny it, to everyone.
	refusedBySystem refusal = "system_rules"
	// refusedByDeny: a deny in the owner's rules.
	refusedByDeny refusal = "owner_deny"
	// refusedAskOwner: the owner's rules ask the owner to approve it.
	refusedAskOwner refusal = "ask_owner"
	// refusedUnidentified: the requesting party was not identified, and
	// nothing shares it with anyone unidentified.
	refusedUnidentified refusal = "unidentified"
	// refusedNoMatch: no share or rule gives it to this requesting party.
	refusedNoMatch refusal = "no_match"
)

// refusedBy says why the scope sc was not granted.
func refusedBy(sc string, ev evaluation, proc process, clientID string) refusal {
	switch {
	case slices.Contains(ev.dec.SystemDeny, sc):
		return refusedBySystem
	case slices.Contains(ev.dec.Deny, sc):
		return refusedByDeny
	case slices.Contains(ev.dec.AskOwner, sc):
		return refusedAskOwner
	case proc.Subject == "" || proc.Subject == clientID:
		return refusedUnidentified
	}
	return refusedNoMatch
}

// markAskedForClaims marks the decisions of a request that was answered
// need_info: nothing is decided until the requester answers.
func markAskedForClaims(decisions []ownedDecision) {
	for i := range decisions {
		rec := &decisions[i].rec
		if rec.Outcome != OutcomeRefused {
			continue
		}
		rec.Outcome = OutcomeAsked
		if rec.Subject == "" || rec.Subject == rec.ClientID {
			rec.Reasons = []string{"The requester was not identified yet, so they were asked who they are; nothing is decided until they answer."}
		} else {
			rec.Reasons = []string{"Your rules asked for more information about the requester; nothing is decided until they answer."}
		}
	}
}

// shareWho names the person of a share.
func shareWho(sh Share) string {
	if sh.Email != "" {
		return sh.Email
	}
	return sh.Subject
}

// matchingShares returns the shares that apply to the requesting party of
// proc through client at now: the same test as the rules' library
// (data.uma.lib.shared_scopes), used here only to explain decisions.
func matchingShares(shares []Share, proc process, client string, now time.Time) []Share {
	email := verifiedEmail(proc.Claims)
	var out []Share
	for _, sh := range shares {
		if !sh.ExpiresAt.IsZero() && !now.Before(sh.ExpiresAt) {
			continue
		}
		if sh.Client != "" && sh.Client != client {
			continue
		}
		if (sh.Subject != "" && proc.Subject != "" && sh.Subject == proc.Subject) ||
			(sh.Email != "" && email != "" && NormalizeEmail(sh.Email) == email) {
			out = append(out, sh)
		}
	}
	return out
}
