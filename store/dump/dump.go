// Package dump copies everything a store holds into a stream of JSON lines,
// and such a stream into another store, whatever the backends: the format
// of `caddy uma export` and `caddy uma import`.
//
// A dump is UTF-8 text, one JSON object per line:
//
//	{"caddy-uma-dump":1,"created_at":"2026-12-01T10:00:00.123456Z","source":"uma.storage.badger /var/lib/caddy/uma"}
//	{"resource":{"id":"...","resource_server":"rs-api","owner":"alice","name":"photos","scopes":["read"],"created_at":"...","updated_at":"..."}}
//	{"record":{"namespace":"signing_key","key":"...","value":"<base64>"}}
//	{"record":{"namespace":"token","key":"...","value":"<base64>","expires_at":"2026-12-01T11:00:00.5Z"}}
//	{"end":{"resources":1,"records":2}}
//
// The header comes first: "caddy-uma-dump" is the format version (Version),
// created_at the moment of the snapshot, source the store it was taken from
// (for people; never a secret). Then every resource, sorted by id, in the
// JSON of store.Resource, and every live record, sorted by namespace and
// key: value is the record's bytes in standard base64 with padding,
// expires_at its expiry in RFC 3339, absent for a record that never
// expires. Records that had expired when the snapshot was taken are not in
// the dump. The end line counts the resources and records, so that a
// truncated dump is recognized: a dump without it is refused.
//
// Times are kept to the microsecond, the precision every backend keeps, in
// UTC: expiries rounded up (a record never lives shorter than in its
// store), the times of resources truncated, as PostgreSQL keeps them. A
// dump taken from a store into which another dump was imported is
// therefore the same as that dump, line for line, but for its header.
//
// A dump holds everything, secrets included: the private signing keys,
// the key that seals permission tickets, hashes of issued tokens, login
// sessions. It is as secret as the database it comes from.
package dump

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"
	"unicode/utf8"

	"github.com/caddy-uma/caddy-uma/store"
)

// Version is the format version this package writes, and the only one it
// reads.
const Version = 1

// Header is the first line of a dump.
type Header struct {
	// Version is the format version; its key, "caddy-uma-dump", marks a
	// dump.
	Version int `json:"caddy-uma-dump"`
	// CreatedAt is when the snapshot was taken.
	CreatedAt time.Time `json:"created_at"`
	// Source names the store the dump was taken from, such as the storage
	// module and its database; empty when unknown. It must not hold
	// secrets.
	Source string `json:"source,omitempty"`
}

// Counts are the numbers of resources and records of a dump, as its end
// line gives them.
type Counts struct {
	Resources int `json:"resources"`
	Records   int `json:"records"`
}

// line is any line of a dump after the header: exactly one field is set.
type line struct {
	Resource *store.Resource `json:"resource,omitempty"`
	Record   *recordLine     `json:"record,omitempty"`
	End      *Counts         `json:"end,omitempty"`
}

// recordLine is a record of a dump.
type recordLine struct {
	Namespace string `json:"namespace"`
	Key       string `json:"key"`
	// Value is encoded by encoding/json in standard base64.
	Value     []byte     `json:"value"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
}

// now is the clock of the header and of expiry at import; tests pin it.
var now = time.Now

// Export writes a dump of everything st holds to w, from one snapshot
// (store.Snapshots.Scan), and returns its counts. source names st in the
// header (see Header.Source). w receives the dump as it is read: on an
// error, what w holds is incomplete (it has no end line).
func Export(ctx context.Context, w io.Writer, st store.Snapshots, source string) (Counts, error) {
	bw := bufio.NewWriterSize(w, 64<<10)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	var n Counts
	err := enc.Encode(Header{Version: Version, CreatedAt: dumpTime(now()), Source: source})
	if err != nil {
		return n, fmt.Errorf("dump: writing the header: %w", err)
	}
	err = st.Scan(ctx, func(r store.Resource) error {
		r = dumpResource(r)
		if err := enc.Encode(line{Resource: &r}); err != nil {
			return fmt.Errorf("writing resource %q: %w", r.ID, err)
		}
		n.Resources++
		return nil
	}, func(ns string, r store.Record) error {
		if !utf8.ValidString(ns) || !utf8.ValidString(r.Key) {
			// JSON strings would not keep the bytes.
			return fmt.Errorf("a record of namespace %q has a namespace or key that is not valid UTF-8: a dump cannot hold it", ns)
		}
		rec := recordLine{Namespace: ns, Key: r.Key, Value: r.Value, ExpiresAt: dumpExpiry(r.ExpiresAt)}
		if err := enc.Encode(line{Record: &rec}); err != nil {
			return fmt.Errorf("writing a record of namespace %q: %w", ns, err)
		}
		n.Records++
		return nil
	})
	if err != nil {
		return n, fmt.Errorf("dump: %w", err)
	}
	if err := enc.Encode(line{End: &n}); err != nil {
		return n, fmt.Errorf("dump: writing the end line: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return n, fmt.Errorf("dump: writing: %w", err)
	}
	return n, nil
}

// dumpTime is t as a dump keeps it: UTC, truncated to the microsecond.
func dumpTime(t time.Time) time.Time {
	return t.UTC().Truncate(time.Microsecond)
}

// dumpExpiry is an expiry as a dump keeps it: nil for never, otherwise in
// UTC, rounded up to the microsecond.
func dumpExpiry(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := dumpTime(t)
	if u.Before(t) {
		u = u.Add(time.Microsecond)
	}
	return &u
}

// dumpResource is r as a dump keeps it: times as dumpTime, and no scopes
// as an empty list (which backends may return as nil or empty).
func dumpResource(r store.Resource) store.Resource {
	r.CreatedAt = dumpTime(r.CreatedAt)
	r.UpdatedAt = dumpTime(r.UpdatedAt)
	if r.Scopes == nil {
		r.Scopes = []string{}
	}
	return r
}

// Errors of reading a dump. Import and Check wrap them with the line.
var (
	// ErrFormat means that the input is not a dump, or a dump of another
	// format version, or that a line is not what the format allows.
	ErrFormat = errors.New("dump: not a valid caddy-uma dump")
	// ErrTruncated means that the dump ends without its end line, or that
	// the end line's counts are not what the dump holds.
	ErrTruncated = errors.New("dump: the dump is incomplete")
	// ErrNotEmpty means that Import was given a store that holds data,
	// without Options.Force.
	ErrNotEmpty = errors.New("dump: the target store is not empty")
	// ErrMismatch means that the store does not hold, after Import, what
	// the dump holds.
	ErrMismatch = errors.New("dump: the store does not hold what was imported")
)
