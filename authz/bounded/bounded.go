// Package bounded is a map with a bound on its size, for the caches of the
// authorization server: past the bound, each new key drops one at random
// (no order to keep, nothing to do on a read, and a random victim cannot
// be steered by whoever chooses the keys). It is not safe for concurrent
// use: its users hold their own lock.
package bounded

// Map is a map of at most Max keys. The zero value is ready (and bounded
// only once Max is set).
type Map[K comparable, V any] struct {
	Max int
	m   map[K]V
}

// Get returns the value of k.
func (b *Map[K, V]) Get(k K) (V, bool) {
	v, ok := b.m[k]
	return v, ok
}

// Put sets the value of k; a new key drops one at random when the map
// already holds Max.
func (b *Map[K, V]) Put(k K, v V) {
	if b.m == nil {
		b.m = make(map[K]V)
	}
	if _, ok := b.m[k]; !ok && b.Max > 0 && len(b.m) >= b.Max {
		for old := range b.m { // Go starts a map's range at random
			delete(b.m, old)
			break
		}
	}
	b.m[k] = v
}

// Delete drops k.
func (b *Map[K, V]) Delete(k K) { delete(b.m, k) }

// Clear drops every key.
func (b *Map[K, V]) Clear() { clear(b.m) }

// Len is the number of keys.
func (b *Map[K, V]) Len() int { return len(b.m) }
