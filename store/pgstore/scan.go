package pgstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/caddy-uma/caddy-uma/store"
)

// Scan calls resource with every resource, sorted by ID, then record with
// every live record, sorted by namespace and key, in one REPEATABLE READ,
// READ ONLY transaction: PostgreSQL's snapshot of its first statement (see
// store.Snapshots). Rows stream from the server while the callbacks run.
// Keys come back unescaped (see keys.go); the escape keeps their order.
//
// Each wait for the database is bounded by the query timeout (the time in
// the callbacks does not count), the scan as a whole only by ctx.
func (s *Store) Scan(ctx context.Context, resource func(store.Resource) error, record func(string, store.Record) error) error {
	const op = "scanning"
	if err := s.gate.Enter(ctx); err != nil {
		return wrap(op, err)
	}
	defer s.gate.Leave()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stall := newStallTimer(s.queryTimeout, cancel)
	defer stall.stop()

	err := s.scan(ctx, stall, resource, record)
	if cause := context.Cause(ctx); err != nil && errors.Is(cause, errStalled) {
		err = fmt.Errorf("%w (%w)", cause, err)
	}
	if err != nil {
		return wrap(op, err)
	}
	return nil
}

func (s *Store) scan(ctx context.Context, stall *stallTimer, resource func(store.Resource) error, record func(string, store.Record) error) error {
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return err
	}
	defer func() {
		// A read-only transaction has nothing to keep: end it, even after
		// ctx ended.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.queryTimeout)
		defer cancel()
		_ = tx.Rollback(rctx)
	}()
	now := s.readTime()

	if resource != nil {
		rows, err := tx.Query(ctx, `SELECT `+resourceColumns+` FROM resources ORDER BY id`)
		if err != nil {
			return err
		}
		err = eachRow(rows, stall, func(row pgx.Rows) error {
			r, err := scanResource(row)
			if err != nil {
				return err
			}
			return resource(r)
		})
		if err != nil {
			return err
		}
	}
	if record != nil {
		rows, err := tx.Query(ctx, `SELECT namespace, key, value, expires_at FROM records
			WHERE expires_at IS NULL OR expires_at > $1 ORDER BY namespace, key`, now)
		if err != nil {
			return err
		}
		err = eachRow(rows, stall, func(row pgx.Rows) error {
			var ns string
			var r store.Record
			var exp *time.Time
			if err := row.Scan(&ns, &r.Key, &r.Value, &exp); err != nil {
				return err
			}
			r.Key = unescapeKey(r.Key)
			if exp != nil {
				r.ExpiresAt = *exp
			}
			if r.Value == nil {
				r.Value = []byte{}
			}
			return record(ns, r)
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// eachRow calls fn with each row, with the stall timer stopped while fn
// runs, and closes rows. An error of fn cancels the query, so that
// closing does not wait for the rows left.
func eachRow(rows pgx.Rows, stall *stallTimer, fn func(pgx.Rows) error) error {
	defer rows.Close()
	for rows.Next() {
		stall.pause()
		err := fn(rows)
		stall.resume()
		if err != nil {
			stall.abort()
			return err
		}
	}
	return rows.Err()
}

// errStalled is the cause of a Scan that the database kept waiting past
// the query timeout.
var errStalled = fmt.Errorf("the database did not answer within the query timeout: %w", context.DeadlineExceeded)

// stallTimer cancels the context of a Scan with errStalled when it runs
// for limit without a pause: armed while the Scan waits for the database,
// paused while a callback runs.
type stallTimer struct {
	limit  time.Duration
	timer  *time.Timer
	cancel context.CancelCauseFunc
}

func newStallTimer(limit time.Duration, cancel context.CancelCauseFunc) *stallTimer {
	return &stallTimer{limit: limit, cancel: cancel, timer: time.AfterFunc(limit, func() { cancel(errStalled) })}
}

func (st *stallTimer) pause()  { st.timer.Stop() }
func (st *stallTimer) resume() { st.timer.Reset(st.limit) }
func (st *stallTimer) stop()   { st.timer.Stop() }

// abort cancels the context of the Scan now.
func (st *stallTimer) abort() {
	st.timer.Stop()
	st.cancel(nil)
}
