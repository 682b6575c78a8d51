package caddymodule

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/caddy-uma/caddy-uma/store"
)

// measuredStore is the store the authorization server and the login pages
// use: each call is timed and counted by operation and result
// (caddy_uma_store_*), and it remembers when writes were last refused for
// want of disk space, for the readiness probe of backends that cannot tell
// their free space themselves. Close is the pool's, not the server's: it
// passes through.
type measuredStore struct {
	store.Store
	backend string
	// noSpaceAt is the Unix nanoseconds of the last write refused with
	// ErrNoSpace, 0 when a write succeeded since.
	noSpaceAt atomic.Int64
}

func newMeasuredStore(st store.Store, backend string) *measuredStore {
	return &measuredStore{Store: st, backend: backend}
}

// storeResult is the result label of a store call.
func storeResult(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, store.ErrNotFound):
		return "not_found"
	case errors.Is(err, store.ErrExists):
		return "exists"
	case errors.Is(err, store.ErrConflict):
		return "conflict"
	case errors.Is(err, store.ErrNoSpace):
		return "no_space"
	case errors.Is(err, store.ErrClosed):
		return "closed"
	}
	return result(err)
}

// observe counts a call that started at start; a write also updates the
// no-space state.
func (s *measuredStore) observe(op string, write bool, start time.Time, err error) {
	metrics.storeOps.WithLabelValues(s.backend, op, storeResult(err)).Inc()
	metrics.storeDuration.WithLabelValues(s.backend, op).Observe(time.Since(start).Seconds())
	if !write {
		return
	}
	switch {
	case errors.Is(err, store.ErrNoSpace):
		s.noSpaceAt.Store(time.Now().UnixNano())
	case err == nil:
		s.noSpaceAt.Store(0)
	}
}

// noSpaceSince returns when writes were last refused for want of disk
// space, with no write succeeding since; zero when they were not.
func (s *measuredStore) noSpaceSince() time.Time {
	if n := s.noSpaceAt.Load(); n != 0 {
		return time.Unix(0, n)
	}
	return time.Time{}
}

func (s *measuredStore) CreateResource(ctx context.Context, r store.Resource) (err error) {
	defer func(start time.Time) { s.observe("create_resource", true, start, err) }(time.Now())
	return s.Store.CreateResource(ctx, r)
}

func (s *measuredStore) GetResource(ctx context.Context, id string) (r store.Resource, err error) {
	defer func(start time.Time) { s.observe("get_resource", false, start, err) }(time.Now())
	return s.Store.GetResource(ctx, id)
}

func (s *measuredStore) UpdateResource(ctx context.Context, r store.Resource) (err error) {
	defer func(start time.Time) { s.observe("update_resource", true, start, err) }(time.Now())
	return s.Store.UpdateResource(ctx, r)
}

func (s *measuredStore) SwapResource(ctx context.Context, r store.Resource, prevUpdatedAt time.Time) (err error) {
	defer func(start time.Time) { s.observe("swap_resource", true, start, err) }(time.Now())
	return s.Store.SwapResource(ctx, r, prevUpdatedAt)
}

func (s *measuredStore) DeleteResource(ctx context.Context, id string) (err error) {
	defer func(start time.Time) { s.observe("delete_resource", true, start, err) }(time.Now())
	return s.Store.DeleteResource(ctx, id)
}

func (s *measuredStore) ListResources(ctx context.Context, q store.ResourceQuery) (rs []store.Resource, err error) {
	defer func(start time.Time) { s.observe("list_resources", false, start, err) }(time.Now())
	return s.Store.ListResources(ctx, q)
}

func (s *measuredStore) Put(ctx context.Context, namespace, key string, value []byte, expiresAt time.Time) (err error) {
	defer func(start time.Time) { s.observe("put", true, start, err) }(time.Now())
	return s.Store.Put(ctx, namespace, key, value, expiresAt)
}

func (s *measuredStore) Insert(ctx context.Context, namespace, key string, value []byte, expiresAt time.Time) (err error) {
	defer func(start time.Time) { s.observe("insert", true, start, err) }(time.Now())
	return s.Store.Insert(ctx, namespace, key, value, expiresAt)
}

func (s *measuredStore) PutAll(ctx context.Context, writes []store.Write) (err error) {
	defer func(start time.Time) { s.observe("put_all", true, start, err) }(time.Now())
	return s.Store.PutAll(ctx, writes)
}

func (s *measuredStore) Swap(ctx context.Context, namespace, key string, old, value []byte, expiresAt time.Time) (err error) {
	defer func(start time.Time) { s.observe("swap", true, start, err) }(time.Now())
	return s.Store.Swap(ctx, namespace, key, old, value, expiresAt)
}

func (s *measuredStore) Get(ctx context.Context, namespace, key string) (v []byte, err error) {
	defer func(start time.Time) { s.observe("get", false, start, err) }(time.Now())
	return s.Store.Get(ctx, namespace, key)
}

func (s *measuredStore) Take(ctx context.Context, namespace, key string) (v []byte, err error) {
	defer func(start time.Time) { s.observe("take", true, start, err) }(time.Now())
	return s.Store.Take(ctx, namespace, key)
}

func (s *measuredStore) Delete(ctx context.Context, namespace, key string) (err error) {
	defer func(start time.Time) { s.observe("delete", true, start, err) }(time.Now())
	return s.Store.Delete(ctx, namespace, key)
}

func (s *measuredStore) List(ctx context.Context, namespace, prefix string, limit int) (rs []store.Record, err error) {
	defer func(start time.Time) { s.observe("list", false, start, err) }(time.Now())
	return s.Store.List(ctx, namespace, prefix, limit)
}

// Interface guards
var _ store.Store = (*measuredStore)(nil)
