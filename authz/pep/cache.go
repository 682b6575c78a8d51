package pep

import (
	"container/list"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
)

// lru is a bounded least-recently-used cache whose entries also expire.
// It is safe for concurrent use.
type lru[K comparable, V any] struct {
	mu    sync.Mutex
	max   int
	ll    *list.List // front: most recently used
	items map[K]*list.Element
}

type lruEntry[K comparable, V any] struct {
	key     K
	val     V
	expires time.Time // zero: never
}

func newLRU[K comparable, V any](max int) *lru[K, V] {
	if max < 1 {
		max = 1
	}
	return &lru[K, V]{max: max, ll: list.New(), items: make(map[K]*list.Element)}
}

// get returns the live value under key at now. An expired entry is
// removed.
func (c *lru[K, V]) get(key K, now time.Time) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.items[key]
	if !ok {
		var zero V
		return zero, false
	}
	e := el.Value.(*lruEntry[K, V])
	if !e.expires.IsZero() && !now.Before(e.expires) {
		c.ll.Remove(el)
		delete(c.items, key)
		var zero V
		return zero, false
	}
	c.ll.MoveToFront(el)
	return e.val, true
}

// put stores val under key until expires (zero: no expiry), evicting the
// least recently used entry when full.
func (c *lru[K, V]) put(key K, val V, expires time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[key]; ok {
		e := el.Value.(*lruEntry[K, V])
		e.val, e.expires = val, expires
		c.ll.MoveToFront(el)
		return
	}
	for c.ll.Len() >= c.max {
		oldest := c.ll.Back()
		c.ll.Remove(oldest)
		delete(c.items, oldest.Value.(*lruEntry[K, V]).key)
	}
	c.items[key] = c.ll.PushFront(&lruEntry[K, V]{key: key, val: val, expires: expires})
}

// remove deletes key.
func (c *lru[K, V]) remove(key K) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[key]; ok {
		c.ll.Remove(el)
		delete(c.items, key)
	}
}

// len returns the number of entries, live or expired.
func (c *lru[K, V]) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ll.Len()
}

// flightGroup runs one call per key at a time; concurrent callers of the
// same key wait for it and share its result. It is a singleflight.Group
// with typed results.
type flightGroup[V any] struct {
	g singleflight.Group
}

// do runs fn once for concurrent callers of key.
func (g *flightGroup[V]) do(key string, fn func() (V, error)) (V, error) {
	v, err, _ := g.g.Do(key, func() (any, error) { return fn() })
	val, _ := v.(V)
	return val, err
}
