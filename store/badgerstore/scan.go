package badgerstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/caddy-uma/caddy-uma/store"
)

// scanCheckEvery is how many items Scan reads between two checks of its
// context.
const scanCheckEvery = 256

// Scan calls resource with every resource, sorted by ID, then record with
// every live record, sorted by namespace and key, in one read transaction:
// Badger's snapshot of the moment Scan starts (see store.Snapshots).
//
// Records are keyed by the length of their namespace first (see keys.go),
// so the namespaces are collected first, skipping from one to the next
// with a seek, sorted, and then read one prefix at a time.
func (s *Store) Scan(ctx context.Context, resource func(store.Resource) error, record func(string, store.Record) error) error {
	const op = "scanning"
	if err := s.enter(ctx); err != nil {
		return wrap(op, err)
	}
	defer s.leave()
	now := s.now()
	tick := 0
	check := func() error {
		tick++
		if tick%scanCheckEvery == 0 {
			return ctx.Err()
		}
		return nil
	}
	err := s.db.View(func(txn *badger.Txn) error {
		if resource != nil {
			if err := scanAllResources(txn, resource, check); err != nil {
				return err
			}
		}
		if record == nil {
			return nil
		}
		namespaces, err := recordNamespaces(txn, check)
		if err != nil {
			return err
		}
		for _, ns := range namespaces {
			if err := scanNamespace(txn, ns, now, record, check); err != nil {
				return err
			}
		}
		return ctx.Err()
	})
	if err != nil {
		return wrap(op, err)
	}
	return nil
}

// scanAllResources calls fn with every resource, in key order, which is ID
// order.
func scanAllResources(txn *badger.Txn, fn func(store.Resource) error, check func() error) error {
	opts := badger.DefaultIteratorOptions
	opts.Prefix = resourcePrefix()
	it := txn.NewIterator(opts)
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		if err := check(); err != nil {
			return err
		}
		var r store.Resource
		if err := it.Item().Value(func(v []byte) error { return decodeResource(v, &r) }); err != nil {
			return err
		}
		if err := fn(r); err != nil {
			return err
		}
	}
	return nil
}

// recordNamespaces returns the namespaces that hold records (live or not),
// sorted. It reads one key per namespace: after each, it seeks past every
// key of that namespace.
func recordNamespaces(txn *badger.Txn, check func() error) ([]string, error) {
	opts := badger.DefaultIteratorOptions
	opts.Prefix = []byte{kindRecord}
	opts.PrefetchValues = false
	it := txn.NewIterator(opts)
	defer it.Close()
	var namespaces []string
	for it.Rewind(); it.Valid(); {
		if err := check(); err != nil {
			return nil, err
		}
		key := it.Item().Key()
		n, size := binary.Uvarint(key[1:])
		if size <= 0 || uint64(len(key)-1-size) < n {
			return nil, fmt.Errorf("corrupt record key %q", key)
		}
		ns := string(key[1+size : 1+size+int(n)])
		namespaces = append(namespaces, ns)
		next, ok := prefixEnd(recordKey(ns, ""))
		if !ok {
			break
		}
		it.Seek(next)
	}
	slices.Sort(namespaces)
	return namespaces, nil
}

// prefixEnd returns the least key above every key that starts with prefix,
// and false if there is none (prefix is all 0xff bytes).
func prefixEnd(prefix []byte) ([]byte, bool) {
	end := bytes.Clone(prefix)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1], true
		}
	}
	return nil, false
}

// scanNamespace calls fn with every record of ns live at now, in key order.
func scanNamespace(txn *badger.Txn, ns string, now time.Time, fn func(string, store.Record) error, check func() error) error {
	prefix := recordKey(ns, "")
	opts := badger.DefaultIteratorOptions
	opts.Prefix = prefix
	it := txn.NewIterator(opts)
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		if err := check(); err != nil {
			return err
		}
		item := it.Item()
		value, expiresAt, live, err := readRecord(item, now)
		if err != nil {
			return fmt.Errorf("namespace %q: %w", ns, err)
		}
		if !live {
			continue
		}
		if err := fn(ns, store.Record{Key: string(item.Key()[len(prefix):]), Value: value, ExpiresAt: expiresAt}); err != nil {
			return err
		}
	}
	return nil
}
