package badgerstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

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
	s.publishResource(r.ID)
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
// if its resource server, owner or name changed, or returns
// store.ErrNotFound.
func (s *Store) UpdateResource(ctx context.Context, r store.Resource) error {
	return s.replaceResource(ctx, "updating resource", r, nil)
}

// SwapResource replaces the resource with r.ID as UpdateResource does, only
// if its stored UpdatedAt equals prevUpdatedAt to the nanosecond (the
// store keeps the nanoseconds), and returns store.ErrConflict otherwise.
// r.UpdatedAt must be after prevUpdatedAt.
func (s *Store) SwapResource(ctx context.Context, r store.Resource, prevUpdatedAt time.Time) error {
	const op = "swapping resource"
	if !r.UpdatedAt.After(prevUpdatedAt) {
		return wrap(op, fmt.Errorf("%q: %w", r.ID, store.ErrUnchangedVersion))
	}
	return s.replaceResource(ctx, op, r, func(old store.Resource) error {
		if !old.UpdatedAt.Equal(prevUpdatedAt) {
			return store.ErrConflict
		}
		return nil
	})
}

// replaceResource replaces the resource with r.ID if check, when not nil,
// accepts the stored one, or returns store.ErrNotFound.
func (s *Store) replaceResource(ctx context.Context, op string, r store.Resource, check func(old store.Resource) error) error {
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
		if check != nil {
			if err := check(old); err != nil {
				return err
			}
		}
		changed := []store.Resource{r}
		moved := !sameIndexes(old, r)
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
	s.publishResource(r.ID)
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
	s.publishResource(id)
	return nil
}

// publishResource tells the watchers of store.ResourcesNamespace that the
// resource id changed.
func (s *Store) publishResource(id string) {
	s.feed.Publish(store.Change{Namespace: store.ResourcesNamespace, Key: id})
}

// ListResources returns the resources matching q, sorted by ID in byte
// order, from the index that q selects (see store.ResourceQuery), in one
// consistent snapshot. An index scan starts at q.After and stops at
// q.Limit, so its cost is that of the page it returns (and of the
// resources it reads but leaves out: other names of the same hash, or, for
// a name without a resource server, the owner's or every resource).
func (s *Store) ListResources(ctx context.Context, q store.ResourceQuery) ([]store.Resource, error) {
	const op = "listing resources"
	if err := s.enter(ctx); err != nil {
		return nil, wrap(op, err)
	}
	defer s.leave()
	var list []store.Resource
	err := s.db.View(func(txn *badger.Txn) error {
		prefix, indexed := queryPrefix(q)
		return scan(txn, prefix, indexed, q, &list)
	})
	if err != nil {
		return nil, wrap(op, err)
	}
	return list, nil
}

// queryPrefix returns the key prefix that holds q's resources: that of an
// index (indexed), or that of the resources themselves.
func queryPrefix(q store.ResourceQuery) (prefix []byte, indexed bool) {
	switch rs, owner, name := q.ResourceServer, q.Owner, q.Name; {
	case rs != "" && owner != "" && name != "":
		return ownerNameIndexPrefix(rs, owner, name), true
	case rs != "" && name != "":
		return nameIndexPrefix(rs, name), true
	case rs != "" && owner != "":
		return bothIndexPrefix(rs, owner), true
	case rs != "":
		return serverIndexPrefix(rs), true
	case owner != "":
		return ownerIndexPrefix(owner), true
	}
	return resourcePrefix(), false
}

// matches reports whether r has every field that q asks for.
func matches(q store.ResourceQuery, r store.Resource) bool {
	return (q.ResourceServer == "" || r.ResourceServer == q.ResourceServer) &&
		(q.Owner == "" || r.Owner == q.Owner) &&
		(q.Name == "" || r.Name == q.Name)
}

// scan appends to list the resources under prefix (index entries when
// indexed, the resources themselves otherwise) whose ID is after q.After
// and that match q, at most q.Limit of them. Keys end with the ID, raw:
// they sort by it.
func scan(txn *badger.Txn, prefix []byte, indexed bool, q store.ResourceQuery, list *[]store.Resource) error {
	opts := badger.DefaultIteratorOptions
	opts.Prefix = prefix
	opts.PrefetchValues = !indexed
	if q.Limit > 0 && q.Limit < opts.PrefetchSize {
		opts.PrefetchSize = q.Limit
	}
	it := txn.NewIterator(opts)
	defer it.Close()
	start := prefix
	if q.After != "" {
		start = append(slices.Clip(prefix), q.After...)
	}
	for it.Seek(start); it.Valid(); it.Next() {
		if q.Limit > 0 && len(*list) >= q.Limit {
			return nil
		}
		id := string(it.Item().Key()[len(prefix):])
		if id <= q.After {
			continue // After itself
		}
		var r store.Resource
		if indexed {
			var err error
			if r, err = getResource(txn, id); err != nil {
				// An index entry always has its resource (same transaction).
				return fmt.Errorf("index entry for %q: %w", id, err)
			}
		} else if err := it.Item().Value(func(v []byte) error { return decodeResource(v, &r) }); err != nil {
			return err
		}
		if matches(q, r) {
			*list = append(*list, r)
		}
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
	longest := resourceKey(r.ID)
	for _, k := range indexKeys(r) {
		if len(k) > len(longest) {
			longest = k
		}
	}
	if err := s.checkSize(longest, value); err != nil {
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
		for _, k := range indexKeys(r) {
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
	for _, k := range indexKeys(r) {
		if err := txn.Set(k, nil); err != nil {
			return err
		}
	}
	return nil
}

// deleteIndexes removes the index entries of r.
func deleteIndexes(txn *badger.Txn, r store.Resource) error {
	for _, k := range indexKeys(r) {
		if err := txn.Delete(k); err != nil {
			return err
		}
	}
	return nil
}
