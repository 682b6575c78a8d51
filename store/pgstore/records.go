package pgstore

import (
	"context"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"

	"github.com/caddy-uma/caddy-uma/store"
)

// maxIndexedSize bounds the bytes of the columns of one B-tree index entry
// (a record's namespace and key; a resource's resource server, owner and
// id): PostgreSQL refuses entries above about 2700 bytes with 8 KiB pages,
// so longer ones are refused before they are sent.
const maxIndexedSize = 2600

// Errors of values that PostgreSQL cannot store; they never quote the
// value.
var (
	errTooLarge    = errors.New("too large")
	errInvalidText = errors.New("not valid UTF-8 or holds a NUL byte")
)

// checkText checks that PostgreSQL text can hold s.
func checkText(what, s string) error {
	if !utf8.ValidString(s) || containsNUL(s) {
		return fmt.Errorf("%s: %w", what, errInvalidText)
	}
	return nil
}

func containsNUL(s string) bool {
	for i := range len(s) {
		if s[i] == 0 {
			return true
		}
	}
	return false
}

// checkIndexed checks the texts of one index entry and their total size.
func checkIndexed(what string, parts ...string) error {
	n := 0
	for _, p := range parts {
		if err := checkText(what, p); err != nil {
			return err
		}
		n += len(p)
	}
	if n > maxIndexedSize {
		return fmt.Errorf("%s of %d bytes: %w (limit %d)", what, n, errTooLarge, maxIndexedSize)
	}
	return nil
}

// checkRecord checks a record's namespace and key (or key prefix).
func checkRecord(namespace, key string) error {
	return checkIndexed("namespace and key", namespace, key)
}

// valueParam is a value as a bytea parameter: pgx sends a nil slice as
// NULL.
func valueParam(v []byte) []byte {
	if v == nil {
		return []byte{}
	}
	return v
}

// live is the condition of a live record at the clock $3.
const live = `(expires_at IS NULL OR expires_at > $3)`

const putQuery = `INSERT INTO records (namespace, key, value, expires_at) VALUES ($1, $2, $3, $4)
	ON CONFLICT (namespace, key) DO UPDATE SET value = EXCLUDED.value, expires_at = EXCLUDED.expires_at`

// Put stores value under (namespace, key), replacing any previous value.
// A zero expiresAt means the record never expires.
func (s *Store) Put(ctx context.Context, namespace, key string, value []byte, expiresAt time.Time) error {
	key = escapeKey(key)
	return s.writeRecord(ctx, "putting record", namespace, key,
		execOp(nil, putQuery, namespace, key, valueParam(value), expiryParam(expiresAt)))
}

// deleteQuery deletes a record, live or not.
const deleteQuery = `DELETE FROM records WHERE namespace = $1 AND key = $2`

// PutAll stores and deletes several records in one transaction: all or
// none. Its conditional writes are checked in the same transaction.
func (s *Store) PutAll(ctx context.Context, writes []store.Write) error {
	const op = "putting records"
	if err := store.CheckWrites(writes); err != nil {
		return wrap(op, err)
	}
	keys := make([]string, len(writes))
	conditional := 0
	for i, w := range writes {
		keys[i] = escapeKey(w.Key)
		if err := checkRecord(w.Namespace, keys[i]); err != nil {
			return wrap(op, fmt.Errorf("namespace %q: %w", w.Namespace, err))
		}
		if w.Conditional() {
			conditional++
		}
	}
	ctx, leave, err := s.enter(ctx)
	if err != nil {
		return wrap(op, err)
	}
	defer leave()
	if len(writes) == 0 {
		return nil
	}
	if conditional > 1 {
		err = s.putAllAlone(ctx, writes, keys)
	} else {
		err = s.writeRecords(ctx, s.putAllOp(writes, keys))
	}
	if err != nil {
		return wrap(op, err)
	}
	return nil
}

// insertQuery inserts a record, or replaces an expired one ($5 is the
// clock). Of concurrent inserts of one key, the first to commit wins; the
// others then find its row live and change nothing.
const insertQuery = `INSERT INTO records AS r (namespace, key, value, expires_at) VALUES ($1, $2, $3, $4)
	ON CONFLICT (namespace, key) DO UPDATE SET value = EXCLUDED.value, expires_at = EXCLUDED.expires_at
	WHERE r.expires_at <= $5`

// Insert stores value only if no live record exists under (namespace, key),
// and returns store.ErrExists otherwise. Of concurrent Inserts of one key,
// on any nodes, exactly one succeeds.
func (s *Store) Insert(ctx context.Context, namespace, key string, value []byte, expiresAt time.Time) error {
	key = escapeKey(key)
	return s.writeRecord(ctx, "inserting record", namespace, key, execOp(store.ErrExists, insertQuery, namespace, key,
		valueParam(value), expiryParam(expiresAt), s.readTime()))
}

// Swap replaces the live value under (namespace, key) with value only if
// the live value equals old (nil: none may be live), and returns
// store.ErrConflict otherwise; a nil value deletes. Each case is one
// statement (an insert as Insert's, an UPDATE or a DELETE that compares
// the value in its WHERE), so of concurrent Swaps from one value, on any
// nodes, the first to commit wins: the others wait for its row lock, find
// the new value and change nothing.
func (s *Store) Swap(ctx context.Context, namespace, key string, old, value []byte, expiresAt time.Time) error {
	key = escapeKey(key)
	const op = "swapping record"
	switch {
	case old == nil && value == nil:
		_, err := s.readOne(ctx, op,
			`SELECT NULL::bytea FROM records WHERE namespace = $1 AND key = $2 AND `+live, namespace, key)
		switch {
		case err == nil:
			return wrap(op, fmt.Errorf("namespace %q: %w", namespace, store.ErrConflict))
		case errors.Is(err, store.ErrNotFound):
			return nil
		}
		return err
	case old == nil:
		return s.writeRecord(ctx, op, namespace, key, execOp(store.ErrConflict, insertQuery, namespace, key,
			value, expiryParam(expiresAt), s.readTime()))
	case value == nil:
		return s.writeRecord(ctx, op, namespace, key, execOp(store.ErrConflict,
			`DELETE FROM records WHERE namespace = $1 AND key = $2 AND `+live+` AND value = $4`,
			namespace, key, s.readTime(), old))
	default:
		return s.writeRecord(ctx, op, namespace, key, execOp(store.ErrConflict,
			`UPDATE records SET value = $4, expires_at = $5
			WHERE namespace = $1 AND key = $2 AND `+live+` AND value = $6`,
			namespace, key, s.readTime(), value, expiryParam(expiresAt), old))
	}
}

// Get returns the live value under (namespace, key), or store.ErrNotFound.
func (s *Store) Get(ctx context.Context, namespace, key string) ([]byte, error) {
	key = escapeKey(key)
	return s.readOne(ctx, "getting record",
		`SELECT value FROM records WHERE namespace = $1 AND key = $2 AND `+live, namespace, key)
}

// Take returns the live value under (namespace, key) and deletes it in one
// statement, or returns store.ErrNotFound. Of concurrent Takes of one key,
// on any nodes, exactly one gets the value: the others wait for its delete
// and then find nothing.
func (s *Store) Take(ctx context.Context, namespace, key string) ([]byte, error) {
	key = escapeKey(key)
	op := rowOp(`DELETE FROM records WHERE namespace = $1 AND key = $2 AND `+live+` RETURNING value`,
		namespace, key, s.readTime())
	if err := s.writeRecord(ctx, "taking record", namespace, key, op); err != nil {
		return nil, err
	}
	return op.value, nil
}

// readOne runs query, which reads the value of the live record (namespace,
// key) at the clock $3, or no row.
func (s *Store) readOne(ctx context.Context, op string, query, namespace, key string) ([]byte, error) {
	if err := checkRecord(namespace, key); err != nil {
		return nil, wrap(op, err)
	}
	ctx, leave, err := s.enter(ctx)
	if err != nil {
		return nil, wrap(op, err)
	}
	defer leave()
	var value []byte
	err = s.pool.QueryRow(ctx, query, namespace, key, s.readTime()).Scan(&value)
	if errors.Is(err, pgx.ErrNoRows) {
		err = store.ErrNotFound
	}
	if err != nil {
		return nil, wrap(op, fmt.Errorf("namespace %q: %w", namespace, err))
	}
	return value, nil
}

// Delete removes the record, or returns store.ErrNotFound if none is live.
func (s *Store) Delete(ctx context.Context, namespace, key string) error {
	key = escapeKey(key)
	return s.writeRecord(ctx, "deleting record", namespace, key, execOp(store.ErrNotFound,
		`DELETE FROM records WHERE namespace = $1 AND key = $2 AND `+live, namespace, key, s.readTime()))
}

// writeRecord runs the write of one record (namespace, key) through the
// commit queue.
func (s *Store) writeRecord(ctx context.Context, op, namespace, key string, rop *recordOp) error {
	if err := checkRecord(namespace, key); err != nil {
		return wrap(op, err)
	}
	ctx, leave, err := s.enter(ctx)
	if err != nil {
		return wrap(op, err)
	}
	defer leave()
	if err := s.writeRecords(ctx, rop); err != nil {
		return wrap(op, fmt.Errorf("namespace %q: %w", namespace, err))
	}
	return nil
}

// List returns the live records of a namespace whose keys start with
// prefix, sorted by key in byte order, at most limit of them (limit <= 0:
// all). The prefix is a range of the index (key >= prefix AND key < the
// prefix's successor), not a LIKE pattern, so no character of it is
// special.
func (s *Store) List(ctx context.Context, namespace, prefix string, limit int) ([]store.Record, error) {
	prefix = escapeKey(prefix)
	const op = "listing records"
	if err := checkRecord(namespace, prefix); err != nil {
		return nil, wrap(op, err)
	}
	ctx, leave, err := s.enter(ctx)
	if err != nil {
		return nil, wrap(op, err)
	}
	defer leave()
	var lim any // NULL: no limit
	if limit > 0 {
		lim = limit
	}
	// Two statements, so that each is one range of the primary key in
	// its plan: with the upper bound, and (no successor) without.
	var rows pgx.Rows
	if upper, ok := prefixSuccessor(prefix); ok {
		rows, err = s.pool.Query(ctx, `SELECT key, value, expires_at FROM records
			WHERE namespace = $1 AND key >= $2 AND key < $5 AND `+live+`
			ORDER BY key LIMIT $4`, namespace, prefix, s.readTime(), lim, upper)
	} else {
		rows, err = s.pool.Query(ctx, `SELECT key, value, expires_at FROM records
			WHERE namespace = $1 AND key >= $2 AND `+live+`
			ORDER BY key LIMIT $4`, namespace, prefix, s.readTime(), lim)
	}
	if err != nil {
		return nil, wrap(op, fmt.Errorf("namespace %q: %w", namespace, err))
	}
	list, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.Record, error) {
		var r store.Record
		var exp *time.Time
		if err := row.Scan(&r.Key, &r.Value, &exp); err != nil {
			return r, err
		}
		r.Key = unescapeKey(r.Key)
		if exp != nil {
			r.ExpiresAt = *exp
		}
		return r, nil
	})
	if err != nil {
		return nil, wrap(op, fmt.Errorf("namespace %q: %w", namespace, err))
	}
	return list, nil
}

// prefixSuccessor returns the least string above every string that starts
// with prefix, in byte order, and false if there is none (an empty prefix,
// or one of only U+10FFFF). UTF-8 orders as code points do, so the
// successor is the prefix with its last code point incremented (skipping
// the surrogates, which UTF-8 cannot hold), after dropping trailing
// U+10FFFF: always valid UTF-8, as a text parameter must be.
func prefixSuccessor(prefix string) (string, bool) {
	runes := []rune(prefix)
	for len(runes) > 0 {
		last := runes[len(runes)-1]
		if last == utf8.MaxRune {
			runes = runes[:len(runes)-1]
			continue
		}
		last++
		if last >= 0xd800 && last <= 0xdfff {
			last = 0xe000
		}
		runes[len(runes)-1] = last
		return string(runes), true
	}
	return "", false
}
