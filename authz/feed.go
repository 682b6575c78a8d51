package authz

import (
	"context"
	"errors"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-uma/caddy-uma/authz/owners"
	"github.com/caddy-uma/caddy-uma/authz/signing"
	"github.com/caddy-uma/caddy-uma/store"
)

// Several nodes may share one store. The AS caches what it reads often:
// each owner's compiled rules, dynamically registered clients, the signing
// keys, and which RPTs are live. Another node may change any of them, and
// the store's change feed says so: each change drops what it concerns
// (within about a millisecond on PostgreSQL), a Resync drops everything.
//
// RPT liveness is the one cache a request relies on: a co-hosted
// enforcement point asks it on every request. A jti is read from the store
// once, and the answer is kept until a change of that RPT arrives, or this
// node revokes it (forgetRevoked: at once, not a feed's delay later). While
// the feed is interrupted, the answers kept are trusted for at most
// Config.FeedStaleness (default 5 s); past that every request reads the
// store, and a store that cannot be read refuses (fail closed). An owner's
// compiled rules are bounded the same way: past FeedStaleness, each use
// reads them from the store (owners.Rules.InForce). Clients are never changed once
// registered, and keys are read again for a token they do not verify.

// DefaultFeedStaleness is how long RPT liveness answers are trusted while
// the change feed is interrupted.
const DefaultFeedStaleness = 5 * time.Second

// watchedNamespaces are the namespaces whose changes drop a cache.
var watchedNamespaces = []string{owners.NamespaceRules, nsClient, signing.Namespace, nsRPT}

// feedState is what the AS knows of its change feed.
type feedState struct {
	now       func() time.Time
	staleness time.Duration

	mu        sync.Mutex
	downSince time.Time // zero while the feed works
}

// fresh reports whether cached answers may be trusted now.
func (f *feedState) fresh() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.downSince.IsZero() || f.now().Sub(f.downSince) < f.staleness
}

func (f *feedState) down() {
	f.mu.Lock()
	if f.downSince.IsZero() {
		f.downSince = f.now()
	}
	f.mu.Unlock()
}

func (f *feedState) up() {
	f.mu.Lock()
	f.downSince = time.Time{}
	f.mu.Unlock()
}

// watchChanges subscribes to the change feed until ctx ends.
func (s *Server) watchChanges(ctx context.Context) error {
	return s.store.Watch(ctx, s.onChange, watchedNamespaces...)
}

// onChange drops what a change concerns. It runs on the feed's goroutine,
// one change at a time.
func (s *Server) onChange(c store.Change) {
	switch {
	case c.Interrupted:
		s.feed.down()
		s.log.Warn("the store's change feed is interrupted: RPT checks read the store once cached answers are stale",
			zap.Duration("staleness", s.feed.staleness))
	case c.Resync:
		s.dropCaches()
		s.feed.up()
	case c.Namespace == owners.NamespaceRules:
		s.rules.Changed(c.Key)
	case c.Namespace == nsClient:
		s.dynamicClients.Delete(c.Key)
	case c.Namespace == signing.Namespace:
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := s.keys.Load(ctx); err != nil {
			s.log.Error("reading the signing keys another node changed", zap.Error(err))
		}
		cancel()
	case c.Namespace == nsRPT:
		s.liveRPTs.forget(c.Key)
	}
}

// dropCaches forgets every cached answer, after changes may have been
// missed.
func (s *Server) dropCaches() {
	s.rules.ForgetAll()
	s.dynamicClients.Clear()
	s.liveRPTs.clear()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.keys.Load(ctx); err != nil {
		s.log.Error("reading the signing keys again", zap.Error(err))
	}
}

// forgetRevoked drops the liveness answers of the RPTs whose records
// writes delete, once the writes have been tried (a write that failed may
// still have committed). The change feed tells every node, but not at once
// (on PostgreSQL about a millisecond after the commit, this node included):
// without this, the node that revoked an RPT could let the next request
// through its co-hosted enforcement point.
func (s *Server) forgetRevoked(writes []store.Write) {
	for _, w := range writes {
		if w.Namespace == nsRPT && w.Delete {
			s.liveRPTs.forget(w.Key)
		}
	}
}

// maxLiveRPTs bounds the RPT liveness cache; past it, it starts over.
const maxLiveRPTs = 100_000

// liveRPTs caches which RPTs are live, by jti, as read from the store
// since the last change of each.
type liveRPTs struct {
	mu    sync.Mutex
	known map[string]bool
	// changes counts the changes dropped: an answer read while one came
	// is not kept (it may be older than the change).
	changes uint64
}

func (l *liveRPTs) get(jti string) (live, ok bool, changes uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	live, ok = l.known[jti]
	return live, ok, l.changes
}

// set keeps an answer read from the store, unless a change came since
// changes was seen.
func (l *liveRPTs) set(jti string, live bool, changes uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.changes != changes {
		return
	}
	if l.known == nil || len(l.known) >= maxLiveRPTs {
		l.known = make(map[string]bool)
	}
	l.known[jti] = live
}

func (l *liveRPTs) forget(jti string) {
	l.mu.Lock()
	delete(l.known, jti)
	l.changes++
	l.mu.Unlock()
}

func (l *liveRPTs) clear() {
	l.mu.Lock()
	l.known = nil
	l.changes++
	l.mu.Unlock()
}

// RPTLive reports whether the RPT with id jti is still live: not revoked
// and not expired. A co-hosted enforcement point that caches verified RPTs
// asks this on each request, so that a revocation applies at once; the
// answer comes from memory, kept fresh by the change feed (see above). An
// error means the answer cannot be had: refuse.
func (s *Server) RPTLive(ctx context.Context, jti string) (bool, error) {
	live, ok, changes := s.liveRPTs.get(jti)
	if ok && s.feed.fresh() {
		return live, nil
	}
	_, err := s.store.Get(ctx, nsRPT, jti)
	switch {
	case errors.Is(err, store.ErrNotFound):
		live = false
	case err != nil:
		return false, err
	default:
		live = true
	}
	s.liveRPTs.set(jti, live, changes)
	return live, nil
}
