package badgerstore

import (
	"context"
	"errors"
	"fmt"
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
	e := newRecordEntry(namespace, key, value, expiresAt)
	if err := s.checkSize(e.Key, e.Value); err != nil {
		return wrap(op, fmt.Errorf("namespace %q: %w", namespace, err))
	}
	if err := s.space.admit(logBytes(len(e.Key) + len(e.Value))); err != nil {
		return wrap(op, fmt.Errorf("namespace %q: %w", namespace, err))
	}
	err := s.update(func(txn *badger.Txn) error {
		// SetEntry keeps e; give each attempt its own copy.
		ec := *e
		return txn.SetEntry(&ec)
	})
	if err != nil {
		return wrap(op, fmt.Errorf("namespace %q: %w", namespace, err))
	}
	return nil
}

// PutAll stores several records in one synced transaction: all or none.
func (s *Store) PutAll(ctx context.Context, writes []store.Write) error {
	const op = "putting records"
	if err := s.enter(ctx); err != nil {
		return wrap(op, err)
	}
	defer s.leave()
	if len(writes) == 0 {
		return nil
	}
	entries := make([]*badger.Entry, 0, len(writes))
	sizes := make([]int, 0, len(writes))
	for _, w := range writes {
		e := newRecordEntry(w.Namespace, w.Key, w.Value, w.ExpiresAt)
		if err := s.checkSize(e.Key, e.Value); err != nil {
			return wrap(op, fmt.Errorf("namespace %q: %w", w.Namespace, err))
		}
		entries = append(entries, e)
		sizes = append(sizes, len(e.Key)+len(e.Value))
	}
	if err := s.space.admit(logBytes(sizes...)); err != nil {
		return wrap(op, err)
	}
	err := s.update(func(txn *badger.Txn) error {
		for _, e := range entries {
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
	e := newRecordEntry(namespace, key, value, expiresAt)
	if err := s.checkSize(e.Key, e.Value); err != nil {
		return wrap(op, fmt.Errorf("namespace %q: %w", namespace, err))
	}
	err := s.db.Update(func(txn *badger.Txn) error {
		_, err := getLive(txn, e.Key, time.Now())
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
		value, err = getLive(txn, recordKey(namespace, key), time.Now())
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
		value, err = getLive(txn, k, time.Now())
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
		if _, err := getLive(txn, k, time.Now()); err != nil {
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
	now := time.Now()
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
			raw, err := item.ValueCopy(nil)
			if err != nil {
				return err
			}
			expiresAt, value, err := decodeRecord(raw)
			if err != nil {
				return err
			}
			if expired(expiresAt, now) {
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

// newRecordEntry builds the Badger entry of a record. The value is copied.
func newRecordEntry(namespace, key string, value []byte, expiresAt time.Time) *badger.Entry {
	e := badger.NewEntry(recordKey(namespace, key), encodeRecord(value, expiresAt))
	e.ExpiresAt = badgerExpiry(expiresAt)
	return e
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
	raw, err := item.ValueCopy(nil)
	if err != nil {
		return nil, err
	}
	expiresAt, value, err := decodeRecord(raw)
	if err != nil {
		return nil, err
	}
	if expired(expiresAt, now) {
		return nil, store.ErrNotFound
	}
	return value, nil
}
