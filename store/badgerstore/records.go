package badgerstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/caddy-uma/caddy-uma/store"
)

// The write methods of the records go through the store's commit queue:
// concurrent writes share one synced commit (see commit.go).

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
	_, err = s.writeRecords(ctx, false, recordWrite{key: e.Key, entry: e, change: store.Change{Namespace: namespace, Key: key}})
	if err != nil {
		return wrap(op, fmt.Errorf("namespace %q: %w", namespace, err))
	}
	return nil
}

// PutAll stores and deletes several records in one synced transaction: all
// or none. A delete of a missing record writes a tombstone (and is
// reported to the watchers). Conditional writes are checked in the same
// transaction.
func (s *Store) PutAll(ctx context.Context, writes []store.Write) error {
	const op = "putting records"
	if err := s.enter(ctx); err != nil {
		return wrap(op, err)
	}
	defer s.leave()
	if len(writes) == 0 {
		return nil
	}
	if err := store.CheckWrites(writes); err != nil {
		return wrap(op, err)
	}
	rws := make([]recordWrite, len(writes))
	for i, w := range writes {
		rw := &rws[i]
		rw.change = store.Change{Namespace: w.Namespace, Key: w.Key}
		switch {
		case w.Insert:
			rw.cond, rw.fail = condAbsent, store.ErrExists
		case w.Old != nil:
			rw.cond, rw.fail, rw.old = condEquals, store.ErrConflict, w.Old
		}
		if w.Delete {
			if strings.HasPrefix(w.Namespace, "\x00") {
				return wrap(op, fmt.Errorf("namespace %q: %w", w.Namespace, errReservedNamespace))
			}
			rw.key = recordKey(w.Namespace, w.Key)
			if err := s.checkSize(rw.key, nil); err != nil {
				return wrap(op, fmt.Errorf("namespace %q: %w", w.Namespace, err))
			}
			continue
		}
		e, err := s.newRecordEntry(w.Namespace, w.Key, w.Value, w.ExpiresAt)
		if err != nil {
			return wrap(op, fmt.Errorf("namespace %q: %w", w.Namespace, err))
		}
		rw.key, rw.entry = e.Key, e
	}
	if _, err := s.writeRecords(ctx, false, rws...); err != nil {
		return wrap(op, err)
	}
	return nil
}

// Swap replaces the live value under (namespace, key) with value only if
// the live value equals old (nil: none may be live), and returns
// store.ErrConflict otherwise; a nil value deletes. The check and the
// write are in one transaction, in which every concurrent write of the key
// is either before or after it.
func (s *Store) Swap(ctx context.Context, namespace, key string, old, value []byte, expiresAt time.Time) error {
	const op = "swapping record"
	if err := s.enter(ctx); err != nil {
		return wrap(op, err)
	}
	defer s.leave()
	if strings.HasPrefix(namespace, "\x00") {
		return wrap(op, fmt.Errorf("namespace %q: %w", namespace, errReservedNamespace))
	}
	w := recordWrite{key: recordKey(namespace, key), cond: condEquals, old: old, fail: store.ErrConflict,
		change: store.Change{Namespace: namespace, Key: key}}
	if old == nil {
		w.cond = condAbsent
	}
	switch {
	case value != nil:
		e, err := s.newRecordEntry(namespace, key, value, expiresAt)
		if err != nil {
			return wrap(op, fmt.Errorf("namespace %q: %w", namespace, err))
		}
		w.entry = e
	case old == nil:
		w.none = true // nothing to delete: a check only
	}
	if err := s.checkSize(w.key, nil); err != nil {
		return wrap(op, fmt.Errorf("namespace %q: %w", namespace, err))
	}
	if _, err := s.writeRecords(ctx, false, w); err != nil {
		return wrap(op, fmt.Errorf("namespace %q: %w", namespace, err))
	}
	return nil
}

// Insert stores value only if no live record exists under (namespace, key),
// and returns store.ErrExists otherwise: of concurrent Inserts, the first
// in the commit order wins.
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
	_, err = s.writeRecords(ctx, false, recordWrite{key: e.Key, entry: e, cond: condAbsent, fail: store.ErrExists,
		change: store.Change{Namespace: namespace, Key: key}})
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
		value, err = getLive(txn, recordKey(namespace, key), s.now())
		return err
	})
	if err != nil {
		return nil, wrap(op, fmt.Errorf("namespace %q: %w", namespace, err))
	}
	return value, nil
}

// Take returns the live value under (namespace, key) and deletes it in one
// transaction, or returns store.ErrNotFound: of concurrent Takes, the
// first in the commit order gets the value.
func (s *Store) Take(ctx context.Context, namespace, key string) ([]byte, error) {
	const op = "taking record"
	if err := s.enter(ctx); err != nil {
		return nil, wrap(op, err)
	}
	defer s.leave()
	value, err := s.writeRecords(ctx, true, s.deleteLive(namespace, key))
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
	if _, err := s.writeRecords(ctx, false, s.deleteLive(namespace, key)); err != nil {
		return wrap(op, fmt.Errorf("namespace %q: %w", namespace, err))
	}
	return nil
}

// deleteLive is the write of Take and Delete: the live record's delete, or
// store.ErrNotFound.
func (s *Store) deleteLive(namespace, key string) recordWrite {
	return recordWrite{key: recordKey(namespace, key), cond: condPresent, fail: store.ErrNotFound,
		change: store.Change{Namespace: namespace, Key: key}}
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
