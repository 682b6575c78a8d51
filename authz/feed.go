package authz

import (
	"context"
	"errors"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-uma/caddy-uma/authz/bounded"
	"github.com/caddy-uma/caddy-uma/authz/owners"
	"github.com/caddy-uma/caddy-uma/authz/signing"
	"github.com/caddy-uma/caddy-uma/store"
)

// Several nodes may share one store. The AS caches what it reads often:
// each owner's compiled rules, dynamically registered clients, the signing
// keys, which RPTs are live, and resources (resource_cache.go). Another node may change any of them, and
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
var watchedNamespaces = []string{owners.NamespaceRules, nsClient, signing.Namespace, nsRPT, store.ResourcesNamespace}

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
	case c.Namespace == store.ResourcesNamespace:
		s.resources.forget(c.Key)
	}
}

// dropCaches forgets every cached answer, after changes may have been
// missed.
func (s *Server) dropCaches() {
	s.rules.ForgetAll()
	s.dynamicClients.Clear()
	s.liveRPTs.clear()
	s.resources.clear()
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

// maxLiveRPTs bounds the RPT liveness cache.
const maxLiveRPTs = 100_000

// liveRPTs caches which RPTs are live, by jti, as read from the store
// since the last change of each.
type liveRPTs = kept[bool]

// kept is answers read from the store, by key, each kept until a change
// of its key drops it (forget), at most known.Max of them (package
// bounded: past it, each new answer drops one at random).
type kept[V any] struct {
	mu    sync.Mutex
	known bounded.Map[string, V]
	// changes counts the changes dropped: an answer read while one came
	// is not kept (it may be older than the change).
	changes uint64
}

// get returns the answer kept for key, and the changes seen so far, to
// give set with an answer read now.
func (k *kept[V]) get(key string) (v V, ok bool, changes uint64) {
	k.mu.Lock()
	defer k.mu.Unlock()
	v, ok = k.known.Get(key)
	return v, ok, k.changes
}

// set keeps an answer read from the store, unless a change came since
// changes was seen.
func (k *kept[V]) set(key string, v V, changes uint64) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.changes == changes {
		k.known.Put(key, v)
	}
}

// forget drops the answer for key, after it changed.
func (k *kept[V]) forget(key string) {
	k.mu.Lock()
	k.known.Delete(key)
	k.changes++
	k.mu.Unlock()
}

// clear drops every answer, after changes may have been missed.
func (k *kept[V]) clear() {
	k.mu.Lock()
	k.known.Clear()
	k.changes++
	k.mu.Unlock()
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
