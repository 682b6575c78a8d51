package badgerstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/caddy-uma/caddy-uma/store"
)

// Put stores value under (namespace, key), replacing any previous value.
// A zero expiresAt means the record never expires.
func (s *Store) Put(ctx context.Context, namespace, key string, value []byte, expiresAt time.Time) error {
	const op = "putting record"
	if err := s.enter(ctx); err != nil {
		return wrap(op, err)
	}
	defer s.leave()
	e, err := s.newRecordEntry(namespace, key, value, expiresAt)
	if err != nil {
		return wrap(op, fmt.Errorf("namespace %q: %w", namespace, err))
	}
	if err := s.space.admit(logBytes(len(e.Key) + len(e.Value))); err != nil {
		return wrap(op, fmt.Errorf("namespace %q: %w", namespace, err))
	}
	err = s.update(func(txn *badger.Txn) error {
		// SetEntry keeps e; give each attempt its own copy.
		ec := *e
		return txn.SetEntry(&ec)
	})
	if err != nil {
		return wrap(op, fmt.Errorf("namespace %q: %w", namespace, err))
	}
	s.feed.Publish(store.Change{Namespace: namespace, Key: key})
	return nil
}

// PutAll stores and deletes several records in one synced transaction: all
// or none. A delete of a missing record writes a tombstone (and is
// reported to the watchers).
func (s *Store) PutAll(ctx context.Context, writes []store.Write) error {
	const op = "putting records"
	if err := s.enter(ctx); err != nil {
		return wrap(op, err)
	}
	defer s.leave()
	if len(writes) == 0 {
		return nil
	}
	// entries[i] is nil for a delete of keys[i].
	entries := make([]*badger.Entry, len(writes))
	keys := make([][]byte, len(writes))
	sizes := make([]int, 0, len(writes))
	changes := make([]store.Change, len(writes))
	for i, w := range writes {
		changes[i] = store.Change{Namespace: w.Namespace, Key: w.Key}
		if w.Delete {
			keys[i] = recordKey(w.Namespace, w.Key)
			if err := s.checkSize(keys[i], nil); err != nil {
				return wrap(op, fmt.Errorf("namespace %q: %w", w.Namespace, err))
			}
			sizes = append(sizes, len(keys[i]))
			continue
		}
		e, err := s.newRecordEntry(w.Namespace, w.Key, w.Value, w.ExpiresAt)
		if err != nil {
			return wrap(op, fmt.Errorf("namespace %q: %w", w.Namespace, err))
		}
		entries[i] = e
		sizes = append(sizes, len(e.Key)+len(e.Value))
	}
	if err := s.space.admit(logBytes(sizes...)); err != nil {
		return wrap(op, err)
	}
	err := s.update(func(txn *badger.Txn) error {
		for i, e := range entries {
			if e == nil {
				if err := txn.Delete(keys[i]); err != nil {
					return err
				}
				continue
			}
			// SetEntry keeps e; give each attempt its own copy.
			ec := *e
			if err := txn.SetEntry(&ec); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return wrap(op, err)
	}
	s.feed.Publish(changes...)
	return nil
}

// Swap replaces the live value under (namespace, key) with value only if
// the live value equals old (nil: none may be live), and returns
// store.ErrConflict otherwise; a nil value deletes. The read and the write
// are one transaction: a concurrent writer of the key makes Badger abort
// it, and the retry reads again, so a Swap that lost the race returns
// store.ErrConflict.
func (s *Store) Swap(ctx context.Context, namespace, key string, old, value []byte, expiresAt time.Time) error {
	const op = "swapping record"
	if err := s.enter(ctx); err != nil {
		return wrap(op, err)
	}
	defer s.leave()
	k := recordKey(namespace, key)
	var e *badger.Entry // nil: delete
	if value != nil {
		var err error
		if e, err = s.newRecordEntry(namespace, key, value, expiresAt); err != nil {
			return wrap(op, fmt.Errorf("namespace %q: %w", namespace, err))
		}
	}
	var wrote bool
	err := s.update(func(txn *badger.Txn) error {
		wrote = false
		cur, err := getLive(txn, k, s.now())
		switch {
		case errors.Is(err, store.ErrNotFound):
			if old != nil {
				return store.ErrConflict
			}
			if e == nil {
				return nil // nothing to delete: a check only
			}
		case err != nil:
			return err
		case old == nil || !bytes.Equal(cur, old):
			return store.ErrConflict
		}
		if e == nil {
			if err := s.space.admit(logBytes(len(k))); err != nil {
				return err
			}
			wrote = true
			return txn.Delete(k)
		}
		if err := s.space.admit(logBytes(len(e.Key) + len(e.Value))); err != nil {
			return err
		}
		ec := *e
		wrote = true
		return txn.SetEntry(&ec)
	})
	if errors.Is(err, badger.ErrConflict) {
		// Still colliding after the retries: the value keeps changing.
		err = fmt.Errorf("%w: %w", store.ErrConflict, err)
	}
	if err != nil {
		return wrap(op, fmt.Errorf("namespace %q: %w", namespace, err))
	}
	if wrote {
		s.feed.Publish(store.Change{Namespace: namespace, Key: key})
	}
	return nil
}

// Insert stores value only if no live record exists under (namespace, key),
// and returns store.ErrExists otherwise. A conflict with a concurrent writer
// of the same key is reported as store.ErrExists, without retry, so that of
// concurrent Inserts exactly one succeeds.
func (s *Store) Insert(ctx context.Context, namespace, key string, value []byte, expiresAt time.Time) error {
	const op = "inserting record"
	if err := s.enter(ctx); err != nil {
		return wrap(op, err)
	}
	defer s.leave()
	e, err := s.newRecordEntry(namespace, key, value, expiresAt)
	if err != nil {
		return wrap(op, fmt.Errorf("namespace %q: %w", namespace, err))
	}
	err = s.db.Update(func(txn *badger.Txn) error {
		_, err := getLive(txn, e.Key, s.now())
		if err == nil {
			return store.ErrExists
		}
		if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		if err := s.space.admit(logBytes(len(e.Key) + len(e.Value))); err != nil {
			return err
		}
		return txn.SetEntry(e)
	})
	if errors.Is(err, badger.ErrConflict) {
		err = store.ErrExists
	}
	if err != nil {
		return wrap(op, fmt.Errorf("namespace %q: %w", namespace, err))
	}
	s.feed.Publish(store.Change{Namespace: namespace, Key: key})
	return nil
}

// Get returns the live value under (namespace, key), or store.ErrNotFound.
func (s *Store) Get(ctx context.Context, namespace, key string) ([]byte, error) {
	const op = "getting record"
	if err := s.enter(ctx); err != nil {
		return nil, wrap(op, err)
	}
	defer s.leave()
	var value []byte
	err := s.db.View(func(txn *badger.Txn) error {
		var err error
		value, err = getLive(txn, recordKey(namespace, key), s.now())
		return err
	})
	if err != nil {
		return nil, wrap(op, fmt.Errorf("namespace %q: %w", namespace, err))
	}
	return value, nil
}

// Take returns the live value under (namespace, key) and deletes it in one
// transaction, or returns store.ErrNotFound. A conflict with a concurrent
// writer of the same key is reported as store.ErrNotFound, without retry,
// so that of concurrent Takes exactly one gets the value.
func (s *Store) Take(ctx context.Context, namespace, key string) ([]byte, error) {
	const op = "taking record"
	if err := s.enter(ctx); err != nil {
		return nil, wrap(op, err)
	}
	defer s.leave()
	k := recordKey(namespace, key)
	var value []byte
	err := s.db.Update(func(txn *badger.Txn) error {
		var err error
		value, err = getLive(txn, k, s.now())
		if err != nil {
			return err
		}
		if err := s.space.admit(logBytes(len(k))); err != nil {
			return err
		}
		return txn.Delete(k)
	})
	if errors.Is(err, badger.ErrConflict) {
		err = store.ErrNotFound
	}
	if err != nil {
		return nil, wrap(op, fmt.Errorf("namespace %q: %w", namespace, err))
	}
	s.feed.Publish(store.Change{Namespace: namespace, Key: key})
	return value, nil
}

// Delete removes the record, or returns store.ErrNotFound if none is live.
func (s *Store) Delete(ctx context.Context, namespace, key string) error {
	const op = "deleting record"
	if err := s.enter(ctx); err != nil {
		return wrap(op, err)
	}
	defer s.leave()
	k := recordKey(namespace, key)
	err := s.update(func(txn *badger.Txn) error {
		if _, err := getLive(txn, k, s.now()); err != nil {
			return err
		}
		if err := s.space.admit(logBytes(len(k))); err != nil {
			return err
		}
		return txn.Delete(k)
	})
	if err != nil {
		return wrap(op, fmt.Errorf("namespace %q: %w", namespace, err))
	}
	s.feed.Publish(store.Change{Namespace: namespace, Key: key})
	return nil
}

// List returns the live records of a namespace whose keys start with
// prefix, sorted by key in byte order, at most limit of them (limit <= 0:
// all).
func (s *Store) List(ctx context.Context, namespace, prefix string, limit int) ([]store.Record, error) {
	const op = "listing records"
	if err := s.enter(ctx); err != nil {
		return nil, wrap(op, err)
	}
	defer s.leave()
	scan := recordKey(namespace, prefix)
	keyStart := len(scan) - len(prefix)
	now := s.now()
	var list []store.Record
	err := s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = scan
		if limit > 0 && limit < opts.PrefetchSize {
			opts.PrefetchSize = limit
		}
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			value, expiresAt, live, err := readRecord(item, now)
			if err != nil {
				return err
			}
			if !live {
				continue
			}
			list = append(list, store.Record{
				Key:       string(item.Key()[keyStart:]),
				Value:     value,
				ExpiresAt: expiresAt,
			})
			if limit > 0 && len(list) == limit {
				return nil
			}
		}
		return nil
	})
	if err != nil {
		return nil, wrap(op, fmt.Errorf("namespace %q: %w", namespace, err))
	}
	return list, nil
}

// errReservedNamespace refuses a record namespace that starts with NUL,
// such as store.ResourcesNamespace.
var errReservedNamespace = errors.New("record namespaces must not start with a NUL byte")

// newRecordEntry builds the Badger entry of a record written now, checking
// its namespace and size. The value is copied.
func (s *Store) newRecordEntry(namespace, key string, value []byte, expiresAt time.Time) (*badger.Entry, error) {
	if strings.HasPrefix(namespace, "\x00") {
		return nil, errReservedNamespace
	}
	e := badger.NewEntry(recordKey(namespace, key), encodeRecord(value, expiresAt))
	if err := s.checkSize(e.Key, e.Value); err != nil {
		return nil, err
	}
	e.ExpiresAt = badgerExpiry(s.ttlExpiry(expiresAt))
	return e, nil
}

// ttlExpiry is when Badger may drop a record that expires at expiresAt by
// the store's clock: expiresAt, moved later by how far a clock of its own
// runs behind the real one, by which Badger drops entries.
func (s *Store) ttlExpiry(expiresAt time.Time) time.Time {
	if !s.ownClock || expiresAt.IsZero() {
		return expiresAt
	}
	if lag := time.Since(s.now()); lag > 0 {
		return expiresAt.Add(lag)
	}
	return expiresAt
}

// getLive reads the record under k and returns a copy of its value, or
// store.ErrNotFound if it is missing or expired at now. Badger hides a
// record once its TTL (rounded up to a second) has passed; the stored
// expiry hides it within that second.
func getLive(txn *badger.Txn, k []byte, now time.Time) ([]byte, error) {
	item, err := txn.Get(k)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, store.ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	value, _, live, err := readRecord(item, now)
	if err != nil {
		return nil, err
	}
	if !live {
		return nil, store.ErrNotFound
	}
	return value, nil
}

// readRecord returns a copy of the value of a record's item, its expiry
// (zero: never), and whether it is live at now.
func readRecord(item *badger.Item, now time.Time) (value []byte, expiresAt time.Time, live bool, err error) {
	raw, err := item.ValueCopy(nil)
	if err != nil {
		return nil, time.Time{}, false, err
	}
	expiresAt, value, err = decodeRecord(raw)
	if err != nil {
		return nil, time.Time{}, false, err
	}
	return value, expiresAt, !expired(expiresAt, now), nil
}
