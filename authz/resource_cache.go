package authz

import (
	"context"
	"slices"
	"time"

	"github.com/caddy-uma/caddy-uma/authz/bounded"
	"github.com/caddy-uma/caddy-uma/store"
)

// Every permission ticket, every grant and every introspection reads the
// resources it names. On PostgreSQL that is a round trip each, which the
// tokenless request of a co-hosted enforcement point (401 + ticket) spent
// a fifth of its time on (BENCHMARKS.md). So the AS keeps the resources it
// read, by ID, as it keeps RPT liveness (see feed.go): a resource read
// once is answered from memory until the change feed says it changed, or
// this node writes it (at once, not a feed's delay later). While the feed
// is interrupted, the resources kept are trusted for at most
// Config.FeedStaleness; past that every read goes to the store, and a
// store that cannot be read fails the request. A resource that is not
// found is not kept: registering it needs no notice. And whatever the
// feed says, a resource kept for maxResourceAge is read again: a safety
// net that costs one read per resource a minute.

// maxCachedResources bounds the resource cache: past it, each resource
// read drops one kept at random. At about half a kilobyte a resource, it
// is 8 MiB at most, whatever the number of resources stored.
const maxCachedResources = 16_384

// maxResourceAge is how long a resource is kept, changed or not.
const maxResourceAge = time.Minute

// resourceCache is a store.Store whose GetResource answers from memory
// what it read before (see above). Its resource writes drop what they
// write, whether or not they succeed (a write that failed may still have
// committed).
type resourceCache struct {
	store.Store
	fresh func() bool
	now   func() time.Time
	kept  kept[keptResource]
}

// keptResource is a resource read from the store, and when.
type keptResource struct {
	res  store.Resource
	read time.Time
}

func newResourceCache(st store.Store, fresh func() bool, now func() time.Time) *resourceCache {
	return &resourceCache{Store: st, fresh: fresh, now: now, kept: kept[keptResource]{known: bounded.Map[string, keptResource]{Max: maxCachedResources}}}
}

// GetResource returns the resource with the given ID, from memory if it
// was read since its last change and the feed is fresh, or else from the
// store.
func (c *resourceCache) GetResource(ctx context.Context, id string) (store.Resource, error) {
	k, ok, changes := c.kept.get(id)
	now := c.now()
	if ok && now.Sub(k.read) < maxResourceAge && c.fresh() {
		return cloneResource(k.res), nil
	}
	res, err := c.Store.GetResource(ctx, id)
	if err != nil {
		return res, err
	}
	c.kept.set(id, keptResource{res: res, read: now}, changes)
	return cloneResource(res), nil
}

// forget drops the resource id, after it changed.
func (c *resourceCache) forget(id string) { c.kept.forget(id) }

// clear drops every resource kept, after changes may have been missed.
func (c *resourceCache) clear() { c.kept.clear() }

func (c *resourceCache) CreateResource(ctx context.Context, r store.Resource) error {
	defer c.forget(r.ID)
	return c.Store.CreateResource(ctx, r)
}

func (c *resourceCache) UpdateResource(ctx context.Context, r store.Resource) error {
	defer c.forget(r.ID)
	return c.Store.UpdateResource(ctx, r)
}

func (c *resourceCache) SwapResource(ctx context.Context, r store.Resource, prevUpdatedAt time.Time) error {
	defer c.forget(r.ID)
	return c.Store.SwapResource(ctx, r, prevUpdatedAt)
}

func (c *resourceCache) DeleteResource(ctx context.Context, id string) error {
	defer c.forget(id)
	return c.Store.DeleteResource(ctx, id)
}

// cloneResource returns res with slices of its own, so that no caller can
// change what the cache keeps.
func cloneResource(res store.Resource) store.Resource {
	res.Scopes = slices.Clone(res.Scopes)
	res.URIs = slices.Clone(res.URIs)
	return res
}
