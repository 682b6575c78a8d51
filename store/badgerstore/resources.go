package badgerstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"

	"github.com/caddy-uma/caddy-uma/store"
)

// errEmptyID is returned for a resource without an ID.
var errEmptyID = errors.New("resource id is empty")

// CreateResource stores a new resource and its indexes. It returns
// store.ErrExists if a resource with the same ID exists.
func (s *Store) CreateResource(ctx context.Context, r store.Resource) error {
	const op = "creating resource"
	if err := s.enter(ctx); err != nil {
		return wrap(op, err)
	}
	defer s.leave()
	value, err := s.encodeResource(r)
	if err != nil {
		return wrap(op, err)
	}
	defer s.lockResource(r.ID)()
	err = s.update(func(txn *badger.Txn) error {
		_, err := txn.Get(resourceKey(r.ID))
		if err == nil {
			return store.ErrExists
		}
		if !errors.Is(err, badger.ErrKeyNotFound) {
			return err
		}
		if err := s.space.admit(resourceLogBytes(value, r)); err != nil {
			return err
		}
		return putResource(txn, r, value)
	})
	if err != nil {
		return wrap(op, fmt.Errorf("%q: %w", r.ID, err))
	}
	return nil
}

// GetResource returns the resource with the given ID, or store.ErrNotFound.
func (s *Store) GetResource(ctx context.Context, id string) (store.Resource, error) {
	const op = "getting resource"
	if err := s.enter(ctx); err != nil {
		return store.Resource{}, wrap(op, err)
	}
	defer s.leave()
	var r store.Resource
	err := s.db.View(func(txn *badger.Txn) error {
		var err error
		r, err = getResource(txn, id)
		return err
	})
	if err != nil {
		return store.Resource{}, wrap(op, fmt.Errorf("%q: %w", id, err))
	}
	return r, nil
}

// UpdateResource replaces the resource with r.ID, moving its index entries
// if its resource server or owner changed, or returns store.ErrNotFound.
func (s *Store) UpdateResource(ctx context.Context, r store.Resource) error {
	const op = "updating resource"
	if err := s.enter(ctx); err != nil {
		return wrap(op, err)
	}
	defer s.leave()
	value, err := s.encodeResource(r)
	if err != nil {
		return wrap(op, err)
	}
	defer s.lockResource(r.ID)()
	err = s.update(func(txn *badger.Txn) error {
		old, err := getResource(txn, r.ID)
		if err != nil {
			return err
		}
		changed := []store.Resource{r}
		moved := old.ResourceServer != r.ResourceServer || old.Owner != r.Owner
		if moved {
			changed = append(changed, old)
		}
		if err := s.space.admit(resourceLogBytes(value, changed...)); err != nil {
			return err
		}
		if moved {
			if err := deleteIndexes(txn, old); err != nil {
				return err
			}
		}
		return putResource(txn, r, value)
	})
	if err != nil {
		return wrap(op, fmt.Errorf("%q: %w", r.ID, err))
	}
	return nil
}

// DeleteResource removes the resource and its indexes, or returns
// store.ErrNotFound.
func (s *Store) DeleteResource(ctx context.Context, id string) error {
	const op = "deleting resource"
	if err := s.enter(ctx); err != nil {
		return wrap(op, err)
	}
	defer s.leave()
	defer s.lockResource(id)()
	err := s.update(func(txn *badger.Txn) error {
		old, err := getResource(txn, id)
		if err != nil {
			return err
		}
		if err := s.space.admit(resourceLogBytes(nil, old)); err != nil {
			return err
		}
		if err := deleteIndexes(txn, old); err != nil {
			return err
		}
		return txn.Delete(resourceKey(id))
	})
	if err != nil {
		return wrap(op, fmt.Errorf("%q: %w", id, err))
	}
	return nil
}

// ListResources returns the resources matching q, sorted by ID in byte
// order. It reads one index (or all resources for an empty query), in one
// consistent snapshot.
func (s *Store) ListResources(ctx context.Context, q store.ResourceQuery) ([]store.Resource, error) {
	const op = "listing resources"
	if err := s.enter(ctx); err != nil {
		return nil, wrap(op, err)
	}
	defer s.leave()
	var list []store.Resource
	err := s.db.View(func(txn *badger.Txn) error {
		if q.ResourceServer == "" && q.Owner == "" {
			return scanResources(txn, &list)
		}
		var prefix []byte
		switch {
		case q.Owner == "":
			prefix = serverIndexPrefix(q.ResourceServer)
		case q.ResourceServer == "":
			prefix = ownerIndexPrefix(q.Owner)
		default:
			prefix = bothIndexPrefix(q.ResourceServer, q.Owner)
		}
		return scanIndex(txn, prefix, &list)
	})
	if err != nil {
		return nil, wrap(op, err)
	}
	return list, nil
}

// scanResources appends every resource to list.
func scanResources(txn *badger.Txn, list *[]store.Resource) error {
	opts := badger.DefaultIteratorOptions
	opts.Prefix = resourcePrefix()
	it := txn.NewIterator(opts)
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		var r store.Resource
		if err := it.Item().Value(func(v []byte) error { return decodeResource(v, &r) }); err != nil {
			return err
		}
		*list = append(*list, r)
	}
	return nil
}

// scanIndex appends the resources of one index prefix to list.
func scanIndex(txn *badger.Txn, prefix []byte, list *[]store.Resource) error {
	opts := badger.DefaultIteratorOptions
	opts.Prefix = prefix
	opts.PrefetchValues = false
	it := txn.NewIterator(opts)
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		id := string(it.Item().Key()[len(prefix):])
		r, err := getResource(txn, id)
		if err != nil {
			// An index entry always has its resource (same transaction).
			return fmt.Errorf("index entry for %q: %w", id, err)
		}
		*list = append(*list, r)
	}
	return nil
}

// encodeResource encodes r and checks its size against the largest of its
// keys.
func (s *Store) encodeResource(r store.Resource) ([]byte, error) {
	if r.ID == "" {
		return nil, errEmptyID
	}
	value, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("encoding %q: %w", r.ID, err)
	}
	keys := indexKeys(r.ID, r.ResourceServer, r.Owner)
	if err := s.checkSize(keys[2], value); err != nil {
		return nil, fmt.Errorf("%q: %w", r.ID, err)
	}
	return value, nil
}

// resourceLogBytes is what one commit adds to Badger's log that writes (or
// deletes) a resource's key with value, and writes or deletes the index
// entries of each of rs (the new and the old version of a moved resource).
func resourceLogBytes(value []byte, rs ...store.Resource) uint64 {
	sizes := []int{len(resourceKey(rs[0].ID)) + len(value)}
	for _, r := range rs {
		for _, k := range indexKeys(r.ID, r.ResourceServer, r.Owner) {
			sizes = append(sizes, len(k))
		}
	}
	return logBytes(sizes...)
}

// getResource reads one resource, or returns store.ErrNotFound.
func getResource(txn *badger.Txn, id string) (store.Resource, error) {
	var r store.Resource
	item, err := txn.Get(resourceKey(id))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return r, store.ErrNotFound
	}
	if err != nil {
		return r, err
	}
	err = item.Value(func(v []byte) error { return decodeResource(v, &r) })
	return r, err
}

func decodeResource(v []byte, r *store.Resource) error {
	if err := json.Unmarshal(v, r); err != nil {
		return fmt.Errorf("decoding resource: %w", err)
	}
	return nil
}

// putResource writes a resource (already encoded as value) and its index
// entries.
func putResource(txn *badger.Txn, r store.Resource, value []byte) error {
	if err := txn.Set(resourceKey(r.ID), value); err != nil {
		return err
	}
	for _, k := range indexKeys(r.ID, r.ResourceServer, r.Owner) {
		if err := txn.Set(k, nil); err != nil {
			return err
		}
	}
	return nil
}

// deleteIndexes removes the index entries of r.
func deleteIndexes(txn *badger.Txn, r store.Resource) error {
	for _, k := range indexKeys(r.ID, r.ResourceServer, r.Owner) {
		if err := txn.Delete(k); err != nil {
			return err
		}
	}
	return nil
}
