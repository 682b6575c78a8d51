package badgerstore

import (
	"bytes"
	"context"
	"errors"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/caddy-uma/caddy-uma/store"
)

// Group commit of the records.
//
// With SyncWrites, Badger syncs its write-ahead log once per transaction:
// its write loop (doWrites) collects the transactions that arrive while the
// previous write runs, but writeToLSM syncs the log after each of them, so
// 64 concurrent one-key transactions still cost 64 syncs. The store
// therefore groups before Badger: every write of a record (Put, Insert,
// PutAll, Swap, Take, Delete) goes through a store.CommitQueue, and the
// writes that arrive while a commit runs are applied, in order, to one
// transaction, committed with one sync (of the log, and of the value log
// when it holds a value). Each caller returns once that commit has
// returned: nothing is acknowledged before it is durable, and nothing is
// visible to readers before it is durable either (Badger publishes a
// transaction after its write).
//
// A write's conditions (Insert: no live record; Swap and conditional
// PutAll writes: the live value; Take and Delete: a live record) are
// checked in the shared transaction, which sees the writes of the members
// before it: of two Inserts of one key in one batch the first wins, the
// second fails with store.ErrExists, and the rest of the batch commits. A
// member that fails writes nothing. No other transaction writes records
// (resources have keys of their own), so the shared transaction never
// conflicts; if Badger reports a conflict all the same, the batch is
// applied again.
//
// Keeping SyncWrites, rather than committing without it and syncing once
// per batch with DB.Sync, keeps a write invisible until it is durable,
// covers a memtable that fills up and rotates within a batch, and keeps the
// resources' own transactions durable as they were.

// Bounds of one shared transaction, well under Badger's own limits (a
// transaction holds at most 15% of a memtable, 2.4 MB with memTableSize): a batch
// that would exceed them is committed in several transactions. A member
// above them alone gets a transaction of its own, and Badger's limit.
const (
	maxTxnBytes  = 2 << 20
	maxTxnWrites = 10000
)

// condition is what a write needs of the live record under its key.
type condition int

const (
	condNone    condition = iota
	condAbsent            // no live record (Insert, Swap from nil)
	condPresent           // a live record (Take, Delete)
	condEquals            // a live record whose value is old (Swap, Write.Old)
)

// recordWrite is one write of a recordOp.
type recordWrite struct {
	key []byte
	// entry is the record to set; nil deletes the key, unless none is set.
	entry *badger.Entry
	// none writes nothing: the write is a check only (Swap from and to nil).
	none bool
	cond condition
	old  []byte // condEquals
	// fail is the error of the call when cond does not hold.
	fail   error
	change store.Change
}

// size is what w counts against the bounds of a transaction, as Badger
// estimates it (a value at or above the value threshold is a pointer).
func (w *recordWrite) size(valueThreshold int64) int {
	n := len(w.key) + 12
	if w.entry != nil {
		if v := len(w.entry.Value); int64(v) < valueThreshold {
			n += v
		} else {
			n += 14
		}
	}
	return n
}

// recordOp is one call of a write method of the records, waiting in the
// commit queue, with its outcome.
type recordOp struct {
	ctx    context.Context
	writes []recordWrite
	// take returns the live value that writes[0] found (Take).
	take bool

	value []byte
	wrote bool
	err   error
}

// reset clears the outcome of an attempt.
func (op *recordOp) reset() { op.value, op.wrote, op.err = nil, false, nil }

// logBytes is what op adds to the log, for the free-space guard; zero when
// it writes nothing.
func (op *recordOp) logBytes() uint64 {
	sizes := make([]int, 0, len(op.writes))
	for _, w := range op.writes {
		switch {
		case w.none:
		case w.entry != nil:
			sizes = append(sizes, len(w.entry.Key)+len(w.entry.Value))
		default:
			sizes = append(sizes, len(w.key))
		}
	}
	if len(sizes) == 0 {
		return 0
	}
	return logBytes(sizes...)
}

// failure is the error of op when the store keeps conflicting: the error
// of its first condition, as if a concurrent writer had won.
func (op *recordOp) failure() error {
	for _, w := range op.writes {
		if w.cond != condNone {
			return w.fail
		}
	}
	return nil
}

// writeRecords queues the writes of one call for the next group commit and
// returns once it is durable (or failed): the value taken, for take.
func (s *Store) writeRecords(ctx context.Context, take bool, writes ...recordWrite) ([]byte, error) {
	op := &recordOp{ctx: ctx, writes: writes, take: take}
	s.commits.Do(op)
	return op.value, op.err
}

// commitRecords commits one batch of the commit queue, in as few
// transactions as the bounds allow: usually one.
func (s *Store) commitRecords(ops []*recordOp) {
	for len(ops) > 0 {
		n := s.commitTxn(ops)
		ops = ops[n:]
	}
}

// errSplit says that a transaction must end before the operation that did
// not fit in it.
var errSplit = errors.New("the transaction is full")

// commitTxn commits a prefix of ops, at least one, in one transaction, and
// returns its length. Each operation's outcome is set; if the commit fails,
// every operation of the transaction gets its error.
func (s *Store) commitTxn(ops []*recordOp) int {
	limit := len(ops)
	for conflicts := 0; ; {
		n, err := s.tryTxn(ops[:limit])
		switch {
		case errors.Is(err, errSplit):
			limit = n
			continue
		case errors.Is(err, badger.ErrConflict) && conflicts < maxConflictRetries:
			conflicts++
			continue
		case errors.Is(err, badger.ErrConflict):
			for _, op := range ops[:n] {
				op.reset()
				op.err = err
				if f := op.failure(); f != nil {
					op.err = errors.Join(f, err)
				}
			}
		case err != nil:
			for _, op := range ops[:n] {
				op.reset()
				op.err = err
			}
		}
		return n
	}
}

// tryTxn applies a prefix of ops to a new transaction and commits it. It
// returns the length of the prefix and the commit's error; errSplit (and
// the length that fits) when an operation did not fit after others that
// write; badger.ErrConflict to try again.
func (s *Store) tryTxn(ops []*recordOp) (int, error) {
	txn := s.db.NewTransaction(true)
	defer txn.Discard()
	threshold := s.db.Opts().ValueThreshold
	now := s.now()
	size, count, writers := 0, 0, 0
	n := 0
	for _, op := range ops {
		opSize := 0
		for i := range op.writes {
			opSize += op.writes[i].size(threshold)
		}
		if n > 0 && (size+opSize > maxTxnBytes || count+len(op.writes) > maxTxnWrites) {
			break
		}
		op.reset()
		if err := s.applyOp(txn, op, now); err != nil {
			if writers > 0 {
				return n, errSplit
			}
			// Alone in the transaction, which is discarded: it fails alone.
			op.err = err
			return n + 1, nil
		}
		size, count, n = size+opSize, count+len(op.writes), n+1
		if op.wrote {
			writers++
		}
	}
	if writers == 0 {
		return n, nil
	}
	if err := txn.Commit(); err != nil {
		return n, err
	}
	var changes []store.Change
	for _, op := range ops[:n] {
		if !op.wrote {
			continue
		}
		for _, w := range op.writes {
			if !w.none {
				changes = append(changes, w.change)
			}
		}
	}
	s.feed.Publish(changes...)
	return n, nil
}

// applyOp checks op's conditions in txn and, if they hold and the disk has
// room, adds its writes. An operation that fails (a condition, the
// free-space guard, its context) gets its error and writes nothing; the
// error returned is the transaction's (it is too large), and op's writes
// may be partly in it.
func (s *Store) applyOp(txn *badger.Txn, op *recordOp, now time.Time) error {
	if err := op.ctx.Err(); err != nil {
		op.err = err
		return nil
	}
	for i, w := range op.writes {
		if w.cond == condNone {
			continue
		}
		cur, err := getLive(txn, w.key, now)
		live := err == nil
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			op.err = err
			return nil
		}
		holds := false
		switch w.cond {
		case condAbsent:
			holds = !live
		case condPresent:
			holds = live
		case condEquals:
			holds = live && bytes.Equal(cur, w.old)
		}
		if !holds {
			op.err = w.fail
			return nil
		}
		if op.take && i == 0 {
			op.value = cur
		}
	}
	if n := op.logBytes(); n > 0 {
		if err := s.space.admit(n); err != nil {
			op.err = err
			return nil
		}
	}
	for _, w := range op.writes {
		var err error
		switch {
		case w.none:
			continue
		case w.entry == nil:
			err = txn.Delete(w.key)
		default:
			// SetEntry keeps the entry; give each attempt its own copy.
			e := *w.entry
			err = txn.SetEntry(&e)
		}
		if err != nil {
			return err
		}
		op.wrote = true
	}
	return nil
}
