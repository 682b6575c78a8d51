package pgstore

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/caddy-uma/caddy-uma/store"
)

// Group commit of the records.
//
// PostgreSQL flushes its write-ahead log once per commit, and a call that
// is a transaction of its own costs a round trip per statement and a
// connection of the pool while it waits for its flush. So every write of a
// record (Put, Insert, PutAll, Swap, Take, Delete) goes through a
// store.CommitQueue: the writes that arrive while a commit runs are sent
// together as one pipeline of statements on one connection, which
// PostgreSQL runs as one implicit transaction (one round trip, one flush),
// and each caller returns once that transaction has committed.
//
// Each call's statements say by themselves whether its condition held (an
// INSERT ... ON CONFLICT that inserted no row, a DELETE ... RETURNING that
// found none): a call whose condition fails changes nothing and fails
// alone. A conditional PutAll is one statement whose writes depend on its
// condition (putAllQuery), so that it too fails alone. Statements of one
// transaction see each other's writes, and conditions decide across nodes
// as before: a statement that needs a row that another transaction has
// written waits for that transaction and then checks the row again.
//
// A statement that fails aborts the whole transaction. If the error is the
// statement's own (bad data), its call is run alone, to get its own error,
// and the others again without it; a deadlock with another node's
// transaction runs the batch again; any other error (the connection lost,
// the disk full, the server shutting down) is every call's, and nothing of
// the batch is acknowledged.

// maxBatchAttempts bounds how often a batch is run again after a deadlock
// or a serialization failure.
const maxBatchAttempts = 3

// recordOp is one call of a write method of the records, waiting in the
// commit queue, with its outcome.
type recordOp struct {
	ctx context.Context
	// queue adds the call's statements to a batch; read reads their
	// results: the call's outcome (nil, or the error of a condition that
	// does not hold), or the error of a statement, which aborts the batch.
	queue func(b *pgx.Batch)
	read  func(br pgx.BatchResults) (outcome error, stmtErr error)

	value []byte // what Take took
	err   error
}

// writeRecords queues op for the next group commit and returns once its
// batch is committed (or failed).
func (s *Store) writeRecords(ctx context.Context, op *recordOp) error {
	op.ctx = ctx
	s.commits.Do(op)
	return op.err
}

// execOp is a call of one statement that changes rows: it fails with none
// (if not nil) when the statement changes no row.
func execOp(none error, query string, args ...any) *recordOp {
	return &recordOp{
		queue: func(b *pgx.Batch) { b.Queue(query, args...) },
		read: func(br pgx.BatchResults) (error, error) {
			tag, err := br.Exec()
			if err != nil {
				return nil, err
			}
			if tag.RowsAffected() == 0 && none != nil {
				return none, nil
			}
			return nil, nil
		},
	}
}

// rowOp is a call of one statement that returns the value of at most one
// row; no row is store.ErrNotFound.
func rowOp(query string, args ...any) *recordOp {
	op := &recordOp{queue: func(b *pgx.Batch) { b.Queue(query, args...) }}
	op.read = func(br pgx.BatchResults) (error, error) {
		var value []byte
		err := br.QueryRow().Scan(&value)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			return store.ErrNotFound, nil
		case err != nil:
			return nil, err
		}
		op.value = value
		return nil, nil
	}
	return op
}

// commitRecords commits one batch of the commit queue.
func (s *Store) commitRecords(ops []*recordOp) {
	live := ops[:0:0]
	for _, op := range ops {
		op.value, op.err = nil, nil
		if err := op.ctx.Err(); err != nil {
			op.err = err
			continue
		}
		live = append(live, op)
	}
	s.runBatch(live, 1)
}

// runBatch sends the statements of ops as one pipeline, one implicit
// transaction, and sets each one's outcome.
func (s *Store) runBatch(ops []*recordOp, attempt int) {
	if len(ops) == 0 {
		return
	}
	// The batch is everyone's: no caller's context ends it, the query
	// timeout does.
	ctx, cancel := context.WithTimeout(context.Background(), s.queryTimeout)
	defer cancel()
	var b pgx.Batch
	for _, op := range ops {
		op.queue(&b)
	}
	br := s.pool.SendBatch(ctx, &b)
	outcomes := make([]error, len(ops))
	failed := -1
	var err error
	for i, op := range ops {
		if outcomes[i], err = op.read(br); err != nil {
			failed = i
			break
		}
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		for i, op := range ops {
			op.err = outcomes[i]
		}
		return
	}
	for _, op := range ops {
		op.value = nil
	}
	var pgErr *pgconn.PgError
	isPg := errors.As(err, &pgErr)
	switch {
	case isPg && (pgErr.Code == codeDeadlock || pgErr.Code == codeSerialization) && attempt < maxBatchAttempts:
		s.runBatch(ops, attempt+1)
	case isPg && failed >= 0 && len(ops) > 1 && statementsOwn(pgErr.Code):
		// One call's statement failed: it fails alone.
		s.runBatch(ops[failed:failed+1], attempt)
		rest := append(ops[:failed:failed], ops[failed+1:]...)
		s.runBatch(rest, attempt)
	default:
		err = mapError(err)
		for _, op := range ops {
			op.err = err
		}
	}
}

// PostgreSQL error codes of a batch that may succeed when it runs again.
const (
	codeDeadlock      = "40P01"
	codeSerialization = "40001"
)

// statementsOwn reports whether an error of a statement is about the
// statement itself (its data, a constraint), rather than about the
// connection or the server (classes 08, 53, 57, 58, XX and the
// transaction's own 25 and 40), so that its call fails alone.
func statementsOwn(code string) bool {
	if len(code) < 2 {
		return false
	}
	switch code[:2] {
	case "08", "25", "40", "53", "57", "58", "XX":
		return false
	}
	return true
}

// putAllOp is the call of a PutAll of keys[i] (escaped), unconditional or
// with one conditional write.
func (s *Store) putAllOp(writes []store.Write, keys []string) *recordOp {
	cond := -1
	for i, w := range writes {
		if w.Conditional() {
			cond = i
		}
	}
	if cond < 0 {
		return &recordOp{
			queue: func(b *pgx.Batch) {
				for i, w := range writes {
					if w.Delete {
						b.Queue(deleteQuery, w.Namespace, keys[i])
						continue
					}
					b.Queue(putQuery, w.Namespace, keys[i], valueParam(w.Value), expiryParam(w.ExpiresAt))
				}
			},
			read: func(br pgx.BatchResults) (error, error) {
				for range writes {
					if _, err := br.Exec(); err != nil {
						return nil, err
					}
				}
				return nil, nil
			},
		}
	}
	return s.conditionalPutAllOp(writes, keys, cond)
}

// The statements of a PutAll with one conditional write: the condition's
// statement (condInsert, condUpdate or condDelete), whose RETURNING says
// whether it held, and the other writes, which only run if it did
// (putAllTail). $1 to $4 are the namespaces, keys, values and expiries of
// the puts, $5 and $6 the namespaces and keys of the deletes; then $7 and
// $8 are the conditional write's namespace and key, and the rest its value,
// expiry, the clock and its old value, as each needs them. Each key is
// written once in the statement (a statement cannot write a row twice): of
// several writes of one key, only the last.
const (
	// $9 value, $10 expiry, $11 clock.
	condInsert = `WITH c AS (INSERT INTO records AS r (namespace, key, value, expires_at) VALUES ($7, $8, $9, $10)
	ON CONFLICT (namespace, key) DO UPDATE SET value = EXCLUDED.value, expires_at = EXCLUDED.expires_at
	WHERE r.expires_at <= $11 RETURNING 1),`
	// $9 value, $10 expiry, $11 clock, $12 old value.
	condUpdate = `WITH c AS (UPDATE records SET value = $9, expires_at = $10
	WHERE namespace = $7 AND key = $8 AND (expires_at IS NULL OR expires_at > $11) AND value = $12 RETURNING 1),`
	// $9 clock, $10 old value.
	condDelete = `WITH c AS (DELETE FROM records
	WHERE namespace = $7 AND key = $8 AND (expires_at IS NULL OR expires_at > $9) AND value = $10 RETURNING 1),`
	putAllTail = `
puts AS (INSERT INTO records (namespace, key, value, expires_at)
	SELECT * FROM unnest($1::text[], $2::text[], $3::bytea[], $4::timestamptz[]) WHERE EXISTS (SELECT FROM c)
	ON CONFLICT (namespace, key) DO UPDATE SET value = EXCLUDED.value, expires_at = EXCLUDED.expires_at),
dels AS (DELETE FROM records r USING unnest($5::text[], $6::text[]) AS d (namespace, key)
	WHERE r.namespace = d.namespace COLLATE "C" AND r.key = d.key COLLATE "C" AND EXISTS (SELECT FROM c))
SELECT count(*) FROM c`
)

// conditionalPutAllOp is the call of a PutAll whose write cond is
// conditional, as one statement.
func (s *Store) conditionalPutAllOp(writes []store.Write, keys []string, cond int) *recordOp {
	// The last write of each other key.
	last := map[[2]string]int{}
	for i, w := range writes {
		if i != cond {
			last[[2]string{w.Namespace, keys[i]}] = i
		}
	}
	putNS, putKeys, delNS, delKeys := []string{}, []string{}, []string{}, []string{}
	putValues, putExpiries := [][]byte{}, []pgtype.Timestamptz{}
	for i, w := range writes {
		if i == cond || last[[2]string{w.Namespace, keys[i]}] != i {
			continue
		}
		if w.Delete {
			delNS, delKeys = append(delNS, w.Namespace), append(delKeys, keys[i])
			continue
		}
		putNS, putKeys = append(putNS, w.Namespace), append(putKeys, keys[i])
		putValues = append(putValues, valueParam(w.Value))
		putExpiries = append(putExpiries, timestamptz(w.ExpiresAt))
	}
	c, now := writes[cond], s.readTime()
	args := []any{putNS, putKeys, putValues, putExpiries, delNS, delKeys, c.Namespace, keys[cond]}
	var query string
	fail := store.ErrConflict
	switch {
	case c.Insert:
		query, fail = condInsert+putAllTail, store.ErrExists
		args = append(args, valueParam(c.Value), expiryParam(c.ExpiresAt), now)
	case c.Delete:
		query = condDelete + putAllTail
		args = append(args, now, c.Old)
	default:
		query = condUpdate + putAllTail
		args = append(args, valueParam(c.Value), expiryParam(c.ExpiresAt), now, c.Old)
	}
	return &recordOp{
		queue: func(b *pgx.Batch) { b.Queue(query, args...) },
		read: func(br pgx.BatchResults) (error, error) {
			var held int64
			if err := br.QueryRow().Scan(&held); err != nil {
				return nil, err
			}
			if held == 0 {
				return fail, nil
			}
			return nil, nil
		},
	}
}

// timestamptz is an expiry as an element of a timestamptz[] parameter:
// NULL for never, otherwise rounded up to the microsecond (expiryParam).
func timestamptz(expiresAt time.Time) pgtype.Timestamptz {
	if expiresAt.IsZero() {
		return pgtype.Timestamptz{}
	}
	return pgtype.Timestamptz{Time: expiryParam(expiresAt).(time.Time), Valid: true}
}

// putAllAlone runs a PutAll with several conditional writes in a
// transaction of its own, outside the commit queue: each condition is one
// statement whose changed rows say whether it held, and the first that
// does not hold rolls everything back.
func (s *Store) putAllAlone(ctx context.Context, writes []store.Write, keys []string) error {
	now := s.readTime()
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		for i, w := range writes {
			if !w.Conditional() {
				continue
			}
			var query string
			var args []any
			fail := store.ErrConflict
			switch {
			case w.Insert:
				query, fail = insertQuery, store.ErrExists
				args = []any{w.Namespace, keys[i], valueParam(w.Value), expiryParam(w.ExpiresAt), now}
			case w.Delete:
				query = `DELETE FROM records WHERE namespace = $1 AND key = $2 AND ` + live + ` AND value = $4`
				args = []any{w.Namespace, keys[i], now, w.Old}
			default:
				query = `UPDATE records SET value = $4, expires_at = $5 WHERE namespace = $1 AND key = $2 AND ` + live + ` AND value = $6`
				args = []any{w.Namespace, keys[i], now, valueParam(w.Value), expiryParam(w.ExpiresAt), w.Old}
			}
			tag, err := tx.Exec(ctx, query, args...)
			if err != nil {
				return err
			}
			if tag.RowsAffected() == 0 {
				return fail
			}
		}
		var batch pgx.Batch
		for i, w := range writes {
			switch {
			case w.Conditional():
			case w.Delete:
				batch.Queue(deleteQuery, w.Namespace, keys[i])
			default:
				batch.Queue(putQuery, w.Namespace, keys[i], valueParam(w.Value), expiryParam(w.ExpiresAt))
			}
		}
		if batch.Len() == 0 {
			return nil
		}
		return tx.SendBatch(ctx, &batch).Close()
	})
	if err != nil {
		return mapError(err)
	}
	return nil
}
