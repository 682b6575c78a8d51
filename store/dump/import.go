package dump

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/caddy-uma/caddy-uma/store"
)

// MaxLineBytes bounds one line of a dump: above what a record of either
// backend can hold (a value of 1 GiB in base64), so that every dump Export
// writes can be read, while a file that is not a dump cannot make the
// reader take all memory.
const MaxLineBytes = 1536 << 20

// Batch limits of Import: one PutAll holds at most this many records, or
// about this many bytes of values.
const (
	batchRecords = 1000
	batchBytes   = 4 << 20
)

// verifyMargin is how far past the end of an import the records are
// counted that its verification compares: records that expire sooner may
// vanish from the store while it is read, and are left out of the count
// on both sides.
const verifyMargin = time.Minute

// Options configures Import.
type Options struct {
	// Force imports into a store that already holds data. The dump's
	// resources and records then replace those with the same id or key,
	// and everything else the store holds stays: the result is a mix of
	// both stores, in which the store's own signing keys stay valid and
	// its own tokens, sessions and shares stay live beside the dump's.
	// Without Force, Import refuses a store that is not empty
	// (ErrNotEmpty).
	Force bool
}

// Result is what Import did.
type Result struct {
	// Header is the dump's header.
	Header Header
	// Written are the resources and records written into the store.
	Written Counts
	// Expired are the records of the dump that had expired by the time
	// they were read, and were not written.
	Expired int
}

// Check reads a whole dump from r and checks it, line by line, without
// writing anything: its header, every line, its end line and its counts.
func Check(r io.Reader) (Header, Counts, error) {
	d := newReader(r)
	h, err := d.header()
	if err != nil {
		return h, Counts{}, err
	}
	for {
		ln, err := d.next()
		if err != nil {
			return h, d.seen, err
		}
		if ln.End != nil {
			return h, d.seen, nil
		}
	}
}

// Import reads a dump from r into st: each resource with CreateResource
// (UpdateResource over an existing one, with Options.Force), the records in
// batches of one PutAll each, leaving out those that have expired. Then it
// reads st again (one Scan) and checks that it holds what was written:
// the same number of resources, and of records in each namespace (at
// least as many, with Force).
//
// Without Options.Force the store must be empty: nothing else may write
// to it during the import, or the check fails with ErrMismatch.
//
// Import writes as it reads. If the dump turns out to be broken or
// truncated, or a write fails, the store holds the part written until
// then; Result tells how much. Check a dump first to find a broken one
// before anything is written; an import of the same dump with Force
// completes a partial one.
func Import(ctx context.Context, r io.Reader, st store.Store, opts Options) (Result, error) {
	var res Result
	if !opts.Force {
		if err := checkEmpty(ctx, st); err != nil {
			return res, err
		}
	}
	d := newReader(r)
	h, err := d.header()
	res.Header = h
	if err != nil {
		return res, err
	}

	want := newTally()
	var batch []store.Write
	var size, firstLine int
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		if err := st.PutAll(ctx, batch); err != nil {
			return fmt.Errorf("dump: writing the records of lines %d to %d: %w", firstLine, d.line, err)
		}
		res.Written.Records += len(batch)
		batch, size = batch[:0], 0
		return nil
	}
	for {
		ln, err := d.next()
		if err != nil {
			return res, err
		}
		switch {
		case ln.Resource != nil:
			if err := putResource(ctx, st, *ln.Resource, opts.Force); err != nil {
				return res, fmt.Errorf("dump: line %d: %w", d.line, err)
			}
			res.Written.Resources++
		case ln.Record != nil:
			rec := ln.Record
			var exp time.Time
			if rec.ExpiresAt != nil {
				exp = *rec.ExpiresAt
				if !exp.After(now()) {
					res.Expired++
					continue
				}
			}
			if len(batch) == 0 {
				firstLine = d.line
			}
			batch = append(batch, store.Write{Namespace: rec.Namespace, Key: rec.Key, Value: rec.Value, ExpiresAt: exp})
			want.add(rec.Namespace, exp)
			if size += len(rec.Key) + len(rec.Value); len(batch) >= batchRecords || size >= batchBytes {
				if err := flush(); err != nil {
					return res, err
				}
			}
		}
		if ln.End != nil {
			break
		}
	}
	if err := flush(); err != nil {
		return res, err
	}
	return res, verify(ctx, st, res.Written.Resources, want, opts.Force)
}

// errFound stops the Scan of checkEmpty at the first item.
var errFound = errors.New("found")

// checkEmpty returns ErrNotEmpty, naming what it found first, unless st
// holds nothing.
func checkEmpty(ctx context.Context, st store.Store) error {
	var found string
	err := st.Scan(ctx, func(r store.Resource) error {
		found = fmt.Sprintf("resource %q", r.ID)
		return errFound
	}, func(ns string, _ store.Record) error {
		found = fmt.Sprintf("records of namespace %q", ns)
		return errFound
	})
	switch {
	case errors.Is(err, errFound):
		return fmt.Errorf("%w: it holds %s", ErrNotEmpty, found)
	case err != nil:
		return fmt.Errorf("dump: reading the target store: %w", err)
	}
	return nil
}

// putResource creates r, or with force replaces the resource of its id.
func putResource(ctx context.Context, st store.Store, r store.Resource, force bool) error {
	err := st.CreateResource(ctx, r)
	if force && errors.Is(err, store.ErrExists) {
		err = st.UpdateResource(ctx, r)
	}
	if err != nil {
		return fmt.Errorf("writing resource %q: %w", r.ID, err)
	}
	return nil
}

// tally counts records per namespace, with their expiries, so that the
// records live at any time can be counted.
type tally struct {
	forever  map[string]int
	expiring map[string][]time.Time
}

func newTally() *tally {
	return &tally{forever: map[string]int{}, expiring: map[string][]time.Time{}}
}

// add counts a record of ns that expires at exp (zero: never).
func (t *tally) add(ns string, exp time.Time) {
	if exp.IsZero() {
		t.forever[ns]++
		return
	}
	t.expiring[ns] = append(t.expiring[ns], exp)
}

// liveAt returns, per namespace, the records live at at.
func (t *tally) liveAt(at time.Time) map[string]int {
	live := map[string]int{}
	for ns, n := range t.forever {
		live[ns] += n
	}
	for ns, exps := range t.expiring {
		for _, exp := range exps {
			if exp.After(at) {
				live[ns]++
			}
		}
	}
	return live
}

// verify reads st and checks that it holds resources resources and, per
// namespace, the records of want that are live a margin after now: as
// many, or with atLeast at least as many.
func verify(ctx context.Context, st store.Store, resources int, want *tally, atLeast bool) error {
	at := now().Add(verifyMargin)
	got := newTally()
	var gotResources int
	err := st.Scan(ctx, func(store.Resource) error {
		gotResources++
		return nil
	}, func(ns string, r store.Record) error {
		got.add(ns, r.ExpiresAt)
		return nil
	})
	if err != nil {
		return fmt.Errorf("dump: reading the store back: %w", err)
	}
	differ := func(got, want int) bool { return got != want && !(atLeast && got > want) }
	var problems []string
	if differ(gotResources, resources) {
		problems = append(problems, fmt.Sprintf("%d resources, the dump %d", gotResources, resources))
	}
	gotLive, wantLive := got.liveAt(at), want.liveAt(at)
	for _, ns := range sortedKeys(gotLive, wantLive) {
		if differ(gotLive[ns], wantLive[ns]) {
			problems = append(problems, fmt.Sprintf("%d records of namespace %q, the dump %d", gotLive[ns], ns, wantLive[ns]))
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w: it holds %s (something else wrote to it during the import, or it lost writes)", ErrMismatch, strings.Join(problems, "; "))
	}
	return nil
}

// sortedKeys returns the keys of the maps, sorted, once each.
func sortedKeys(maps ...map[string]int) []string {
	seen := map[string]bool{}
	var keys []string
	for _, m := range maps {
		for k := range m {
			if !seen[k] {
				seen[k] = true
				keys = append(keys, k)
			}
		}
	}
	slices.Sort(keys)
	return keys
}

// reader reads the lines of a dump and keeps count of them.
type reader struct {
	br *bufio.Reader
	// line is the number of the last line read (1: the header).
	line int
	seen Counts
	done bool
}

func newReader(r io.Reader) *reader {
	return &reader{br: bufio.NewReaderSize(r, 64<<10)}
}

// header reads the first line.
func (d *reader) header() (Header, error) {
	var h Header
	b, err := d.readLine()
	if errors.Is(err, io.EOF) {
		return h, fmt.Errorf("%w: the input is empty", ErrFormat)
	}
	if err != nil {
		return h, err
	}
	// The version first, alone, so that a newer format is named as such
	// rather than refused for a field it adds.
	var v struct {
		Version *int `json:"caddy-uma-dump"`
	}
	if json.Unmarshal(b, &v) != nil || v.Version == nil {
		return h, fmt.Errorf("%w: line 1 is not the header of a caddy-uma dump", ErrFormat)
	}
	if *v.Version != Version {
		return h, fmt.Errorf("%w: line 1: it is a dump of format version %d; this caddy-uma reads version %d", ErrFormat, *v.Version, Version)
	}
	if err := strictUnmarshal(b, &h); err != nil {
		return h, fmt.Errorf("%w: line 1 (the header): %v", ErrFormat, err)
	}
	return h, nil
}

// next reads the next line after the header, checked: one resource, one
// record or the end line, whose counts must match the lines before it.
// After the end line, it checks that nothing follows. A dump that ends
// without its end line is ErrTruncated.
func (d *reader) next() (line, error) {
	var ln line
	b, err := d.readLine()
	if errors.Is(err, io.EOF) {
		return ln, fmt.Errorf("%w: it ends after line %d without its end line (%d resources and %d records before it): "+
			"it was cut short, or its export failed", ErrTruncated, d.line, d.seen.Resources, d.seen.Records)
	}
	if err != nil {
		return ln, err
	}
	bad := func(format string, args ...any) (line, error) {
		return line{}, fmt.Errorf("%w: line %d: %s", ErrFormat, d.line, fmt.Sprintf(format, args...))
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return bad("an empty line")
	}
	if err := strictUnmarshal(b, &ln); err != nil {
		return bad("%v", err)
	}
	set := 0
	for _, is := range []bool{ln.Resource != nil, ln.Record != nil, ln.End != nil} {
		if is {
			set++
		}
	}
	if set != 1 {
		return bad(`want one of "resource", "record" or "end"`)
	}
	switch {
	case ln.Resource != nil:
		if ln.Resource.ID == "" {
			return bad("a resource without an id")
		}
		d.seen.Resources++
	case ln.Record != nil:
		if ln.Record.Value == nil {
			return bad("a record without a value")
		}
		if strings.HasPrefix(ln.Record.Namespace, "\x00") {
			return bad("a record namespace that starts with a NUL byte")
		}
		d.seen.Records++
	case ln.End != nil:
		if *ln.End != d.seen {
			return line{}, fmt.Errorf("%w: its end line counts %d resources and %d records, but it holds %d and %d",
				ErrTruncated, ln.End.Resources, ln.End.Records, d.seen.Resources, d.seen.Records)
		}
		if _, err := d.readLine(); !errors.Is(err, io.EOF) {
			if err == nil {
				return bad("more lines after the end line")
			}
			return line{}, err
		}
	}
	return ln, nil
}

// readLine returns the next line without its newline, or io.EOF at the
// end of the input. A last line without a newline counts.
func (d *reader) readLine() ([]byte, error) {
	var buf []byte
	for {
		chunk, err := d.br.ReadSlice('\n')
		if len(buf)+len(chunk) > MaxLineBytes {
			return nil, fmt.Errorf("%w: line %d is longer than %d bytes", ErrFormat, d.line+1, MaxLineBytes)
		}
		buf = append(buf, chunk...)
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF) && len(buf) == 0:
			return nil, io.EOF
		case err != nil && !errors.Is(err, io.EOF):
			return nil, fmt.Errorf("dump: reading line %d: %w", d.line+1, err)
		}
		d.line++
		return bytes.TrimSuffix(buf, []byte("\n")), nil
	}
}

// strictUnmarshal decodes one JSON object, refusing unknown fields and
// anything after it.
func strictUnmarshal(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("more than one JSON value")
	}
	return nil
}
