// Package store defines everything caddy-uma persists, independent of the
// database that holds it. Backends live in sub-packages (store/badgerstore,
// store/pgstore) and are checked by the backend-independent suite in
// store/storetest.
//
// Two shapes of data are stored:
//
//   - Resources, the resource descriptions registered by resource servers
//     through the protection API. They are queried by id, by resource
//     server, by owner and by name, so they get typed methods and indexes.
//   - Records, everything else (issued tokens, replay records of single-use
//     tickets, signing keys, pending requests, owners' rules, ...): opaque
//     values under a namespace and a key, with an optional expiry. Callers
//     encode their own values; a backend only has to keep bytes.
//
// Every write is durable when it returns: an acknowledged write survives a
// crash of the process.
//
// A store whose disk is (nearly) full refuses writes with ErrNoSpace instead
// of failing in a way that takes the process down, keeps answering reads,
// and accepts writes again by itself once space is freed. The write methods
// are Put, Insert, PutAll, Swap, Take, Delete, CreateResource,
// UpdateResource, SwapResource and DeleteResource: each may return
// ErrNoSpace when it would have written something, and then wrote nothing.
// A call that would write nothing answers as usual (Take of a missing key
// ErrNotFound, Insert over a live record ErrExists, Swap from a value that
// is not the live one ErrConflict, ...). Get, List, GetResource and
// ListResources never return it.
//
// Several stores may share one database (several nodes on PostgreSQL).
// What one of them writes, every other one reads at once: there is no cache
// between a method and the database. Conditional writes (Insert, Take, Swap,
// SwapResource, CreateResource) decide across all of them, and the change
// feed (Changes) tells each store's watchers what any of them wrote, for the
// caches of the caller.
//
// Scan (Snapshots) reads everything a store holds as of one moment, whatever
// its namespaces: the enumeration that copies a store (package store/dump)
// rests on.
package store

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Errors returned by every backend. Callers match them with errors.Is.
var (
	// ErrNotFound means that no live value exists under the given id or key.
	ErrNotFound = errors.New("store: not found")
	// ErrExists means that a live value already exists under the given id or
	// key, or that a concurrent writer took it first (single-use records).
	ErrExists = errors.New("store: already exists")
	// ErrClosed means that the store was closed.
	ErrClosed = errors.New("store: closed")
	// ErrNoSpace means that a write was refused because the disk that holds
	// the store has less free space than the store needs to write safely.
	// Nothing was written. It is temporary: the store accepts writes again
	// by itself once space is freed, without a restart, and reads keep
	// working meanwhile. Callers should answer "try again later" (a 503 or
	// 507 with Retry-After), not treat the request as wrong.
	ErrNoSpace = errors.New("store: not enough free disk space to write")
	// ErrConflict means that a conditional write (Swap, SwapResource) found
	// another live value than the one it was told to replace, and wrote
	// nothing. The caller reads the value again, redoes its change on it
	// and tries again, or gives up.
	ErrConflict = errors.New("store: conflict: the value changed")
	// ErrUnchangedVersion means that SwapResource was given a resource
	// whose UpdatedAt is not after the version it replaces: a mistake of
	// the caller, never a race. Nothing was written.
	ErrUnchangedVersion = errors.New("store: the new UpdatedAt is not after the one it replaces")
)

// ResourcesNamespace is the namespace that stands for the resources in the
// change feed (Changes.Watch, Change.Namespace): the change of a resource
// comes as Change{Namespace: ResourcesNamespace, Key: its ID}. No record
// can live in it: record namespaces that start with a NUL byte are
// refused by every backend.
const ResourcesNamespace = "\x00resources"

// Store is the whole persistence interface of caddy-uma.
type Store interface {
	Resources
	Records
	Changes
	Snapshots
	// Close releases the database. It is safe to call more than once.
	Close() error
}

// Resource is a resource description registered by a resource server
// (UMA Federated Authorization, section 3), with what the AS adds to it.
type Resource struct {
	// ID is the AS-assigned identifier (`_id` on the wire).
	ID string `json:"id"`
	// ResourceServer is the client id of the resource server that registered it.
	ResourceServer string `json:"resource_server"`
	// Owner is the resource owner's subject.
	Owner string `json:"owner"`
	// Name, Type, Description and IconURI are the optional members of a
	// resource description.
	Name        string `json:"name,omitempty"`
	Type        string `json:"type,omitempty"`
	Description string `json:"description,omitempty"`
	IconURI     string `json:"icon_uri,omitempty"`
	// Scopes are the resource scopes available on the resource.
	Scopes []string `json:"scopes"`
	// URIs are optional path patterns, used by enforcement points to map
	// requests to this resource.
	URIs []string `json:"uris,omitempty"`
	// CreatedAt and UpdatedAt are set by the caller.
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// ResourceQuery selects resources: those that match every field that is
// not empty (empty fields match everything), in the order of their IDs
// (byte order), after After, at most Limit of them.
//
// Each query is answered through an index, at a cost that grows with the
// resources it returns, not with the resources stored: ResourceServer,
// Owner, both, ResourceServer with Name, and all three. Name without a
// ResourceServer is the exception: Owner with Name reads the owner's
// resources, Name alone reads every resource.
type ResourceQuery struct {
	ResourceServer string
	Owner          string
	// Name selects the resources of that name, exactly (names are not
	// unique: several owners, or one owner through the protection API,
	// may have resources of one name).
	Name string
	// After, when not empty, leaves out the resources whose ID is not
	// after it (byte order): a page starts after the last ID of the page
	// before. The order is stable: a resource created or deleted meanwhile
	// moves no other one between pages.
	After string
	// Limit bounds the resources returned; zero or less means no bound.
	Limit int
}

// Resources stores resource descriptions.
type Resources interface {
	// CreateResource stores a new resource. It returns ErrExists if a
	// resource with the same ID exists.
	CreateResource(ctx context.Context, r Resource) error
	// GetResource returns the resource with the given ID, or ErrNotFound.
	GetResource(ctx context.Context, id string) (Resource, error)
	// UpdateResource replaces the resource with r.ID, or returns ErrNotFound.
	// Changing ResourceServer or Owner moves it between their indexes.
	UpdateResource(ctx context.Context, r Resource) error
	// SwapResource replaces the resource with r.ID, as UpdateResource does,
	// only if the stored resource's UpdatedAt equals prevUpdatedAt: a
	// compare-and-swap on the last update, for a read-modify-write that no
	// concurrent writer (on any store of the database) can undo. It returns
	// ErrNotFound if no resource has that ID, and ErrConflict, writing
	// nothing, if its UpdatedAt is another.
	//
	// Times are compared at the precision the backend keeps (Badger: the
	// nanosecond; PostgreSQL: the microsecond, dropping the nanoseconds of
	// both times), so prevUpdatedAt may be the UpdatedAt the caller wrote or
	// the one it read back. r.UpdatedAt is the new version and must be
	// after prevUpdatedAt at that precision: set it to the later of now and
	// prevUpdatedAt plus a microsecond. Otherwise SwapResource fails with
	// ErrUnchangedVersion without writing: an unchanged version would let a
	// second writer from the same version win too.
	//
	// Of concurrent SwapResource calls from the same prevUpdatedAt, on any
	// stores of the database, exactly one succeeds and the others return
	// ErrConflict. UpdateResource and DeleteResource do not check the
	// version: a caller that needs the check uses SwapResource throughout.
	SwapResource(ctx context.Context, r Resource, prevUpdatedAt time.Time) error
	// DeleteResource removes the resource, or returns ErrNotFound.
	DeleteResource(ctx context.Context, id string) error
	// ListResources returns the resources matching q (see ResourceQuery),
	// sorted by ID, or none (a nil slice).
	ListResources(ctx context.Context, q ResourceQuery) ([]Resource, error)
}

// Record is one value of the Records store.
type Record struct {
	Key   string
	Value []byte
	// ExpiresAt is when the record stops being visible; zero means never.
	ExpiresAt time.Time
}

// Write is one record of a PutAll.
type Write struct {
	Namespace string
	Key       string
	Value     []byte
	// ExpiresAt is when the record stops being visible; zero means never.
	ExpiresAt time.Time
	// Delete makes the write remove the record (Value and ExpiresAt are
	// ignored). A missing record is not an error: the write then does
	// nothing (unless Old makes it conditional).
	Delete bool

	// A conditional write makes its whole PutAll conditional: if its
	// condition does not hold, the PutAll writes nothing and fails. The
	// conditions decide across stores as Insert and Swap do: of concurrent
	// PutAlls (and Inserts, Swaps, Takes) whose conditions need one key in
	// one state, exactly one succeeds. The key of a conditional write must
	// not be written by another write of the same PutAll.

	// Insert makes the write conditional as Insert is: no live record may
	// exist under the key, or the PutAll fails with ErrExists. It cannot
	// be combined with Delete or Old.
	Insert bool
	// Old, when not nil, makes the write conditional as Swap is: the live
	// value under the key must equal Old, byte for byte (an empty, non-nil
	// Old is an empty value), or the PutAll fails with ErrConflict. With
	// Delete, the write removes that value (a Take that checks what it
	// takes); otherwise it replaces it.
	Old []byte
}

// Conditional reports whether w makes its PutAll conditional.
func (w Write) Conditional() bool { return w.Insert || w.Old != nil }

// CheckWrites checks the conditional writes of a PutAll: each is either
// an Insert of a value or a write from an Old value, and no other write of
// the PutAll has its key. Backends call it before they write anything; it
// refuses the mistakes of a caller, never a state of the store.
func CheckWrites(writes []Write) error {
	conditional := map[[2]string]bool{}
	for _, w := range writes {
		if w.Insert && (w.Delete || w.Old != nil) {
			return fmt.Errorf("store: a write of namespace %q is an Insert with Delete or Old", w.Namespace)
		}
		if w.Conditional() {
			conditional[[2]string{w.Namespace, w.Key}] = false
		}
	}
	if len(conditional) == 0 {
		return nil
	}
	for _, w := range writes {
		k := [2]string{w.Namespace, w.Key}
		seen, ok := conditional[k]
		if !ok {
			continue
		}
		if seen {
			return fmt.Errorf("store: a PutAll writes a key of namespace %q twice, once conditionally", w.Namespace)
		}
		conditional[k] = true
	}
	return nil
}

// Records is a namespaced key-value store with expiry. A record whose
// ExpiresAt has passed is invisible to every method, as if it were deleted,
// and its space is reclaimed by the backend in the background. Backends
// may round expiry up to the next whole second, never down. Whether a
// record has expired is decided by the store's clock (each backend takes
// one in its options, time.Now by default): give it the caller's clock, so
// that both agree.
//
// A live record's value, as Get, Take and List return it, is never nil:
// an empty value is an empty, non-nil slice, so that a value read can be
// passed back to Swap as the old one.
//
// Record namespaces must not start with a NUL byte (see
// ResourcesNamespace).
type Records interface {
	// Put stores value under (namespace, key), replacing any previous value.
	// A zero expiresAt means the record never expires.
	Put(ctx context.Context, namespace, key string, value []byte, expiresAt time.Time) error
	// Insert stores value only if no live record exists under (namespace,
	// key), and returns ErrExists otherwise. Of concurrent Inserts of one
	// key, exactly one succeeds.
	Insert(ctx context.Context, namespace, key string, value []byte, expiresAt time.Time) error
	// PutAll stores several records in one durable commit: all of them, or
	// none if it fails. Each replaces any previous value under its key, or,
	// with Delete, removes it. Writes are applied in order: of two writes
	// of one key, the later wins. Conditional writes (Write.Insert,
	// Write.Old) make it fail, writing nothing, with ErrExists or
	// ErrConflict when their condition does not hold.
	PutAll(ctx context.Context, writes []Write) error
	// Swap replaces the live value under (namespace, key) with value only
	// if the live value equals old, byte for byte: a compare-and-swap. A
	// nil old means that no live record may exist (an expired one counts
	// as none): Swap then inserts. A nil value deletes the record (an
	// empty, non-nil value stores an empty value); expiresAt is the new
	// record's, zero for never. With both nil, Swap writes nothing and
	// only checks that no live record exists.
	//
	// If the live value is another (or a record exists where old is nil,
	// or none where old is not), Swap writes nothing and returns
	// ErrConflict: never ErrExists or ErrNotFound. Of concurrent Swaps from
	// the same old value, on any stores of the database, exactly one
	// succeeds; the others return ErrConflict.
	Swap(ctx context.Context, namespace, key string, old, value []byte, expiresAt time.Time) error
	// Get returns the live value under (namespace, key), or ErrNotFound.
	Get(ctx context.Context, namespace, key string) ([]byte, error)
	// Take returns the live value under (namespace, key) and deletes it in
	// one step, or returns ErrNotFound. Of concurrent Takes of one key,
	// exactly one gets the value.
	Take(ctx context.Context, namespace, key string) ([]byte, error)
	// Delete removes the record, or returns ErrNotFound if none is live.
	Delete(ctx context.Context, namespace, key string) error
	// List returns the live records of a namespace whose keys start with
	// prefix, sorted by key, at most limit of them (limit <= 0: all).
	List(ctx context.Context, namespace, prefix string, limit int) ([]Record, error)
}

// Snapshots reads the whole content of a store, for copies of it (export,
// backup).
type Snapshots interface {
	// Scan calls resource with every resource, sorted by ID, and then
	// record with every live record of every namespace, sorted by namespace
	// and then by key (byte order), all read in one consistent snapshot:
	// Scan sees every write committed, through any store of the database,
	// before it started, and none committed after, so a PutAll is seen
	// whole or not at all. Whether a record is live is decided by the
	// store's clock when Scan starts. A nil resource or record skips that
	// kind.
	//
	// The snapshot keeps no writer waiting (Badger: a read transaction;
	// PostgreSQL: a REPEATABLE READ, READ ONLY transaction on one
	// connection of the pool), and the callbacks may call the store, which
	// answers with its current state, not the snapshot's; Close waits for
	// a Scan in progress. The values given to record are copies the
	// callback may keep; an empty value is empty, not nil. Scan stops at
	// the first error a callback returns and returns it (wrapped: match
	// it with errors.Is), and ends with ctx's error when ctx ends.
	//
	// The scan as a whole is bounded only by ctx, not by a backend's query
	// timeout: a large store takes as long as it takes. Each wait for the
	// database is bounded (pgstore: by Options.QueryTimeout, the time spent
	// in the callbacks excluded), so an unreachable database makes Scan
	// fail, never hang.
	Scan(ctx context.Context, resource func(Resource) error, record func(namespace string, r Record) error) error
}

// Changes is the change feed of a store: it tells callers that cache what
// the store holds which records and resources changed, whoever changed
// them.
type Changes interface {
	// Watch calls fn with every change of a record in one of namespaces,
	// and of a resource when namespaces holds ResourcesNamespace, made
	// through any store on the same database (on PostgreSQL: by every
	// process and node that shares it), this one included, until ctx ends
	// or the store is closed.
	//
	// A change is a committed write of a record or resource: Put, Insert,
	// Swap, Take, Delete, every write of PutAll (deletes too),
	// CreateResource, UpdateResource, SwapResource and DeleteResource. A
	// call that fails (ErrExists, ErrConflict, ErrNotFound, ErrNoSpace,
	// ...) wrote nothing and is not reported. Expiry is not a change: a
	// record that expires is not reported, nor is the backend's removal
	// of expired records. A change may be reported that left the value as
	// it was (a Put of the same value, a PutAll delete of a missing
	// record), and a key written several times in one commit may be
	// reported once. Change carries no value: the watcher reads it.
	//
	// Watch returns once the subscription is established, so that every
	// change committed after Watch returns is delivered, or else fn gets a
	// Resync after that change was committed. It returns an error, and fn
	// is never called, if the subscription cannot be established: ctx
	// ended, the store is closed, the database cannot be reached within the
	// store's query timeout, or namespaces is empty.
	//
	// Delivery: fn is called from one goroutine per Watch, one call at a
	// time, with each change after it is visible to reads on every store of
	// the database (a Get made in fn sees it or something later), in commit
	// order for each key. Changes wait for fn in a queue of at most
	// FeedQueueSize: fn must not block for long (it may read the store;
	// hand anything slower to another goroutine). A queue that overflows is
	// emptied and replaced by one Resync, so that writers never wait for
	// watchers. fn is not called after ctx has ended (a call in progress
	// finishes).
	//
	// Resync means that changes may have been missed (the queue overflowed,
	// or the connection to the database was lost and is back): reload
	// everything cached from the watched namespaces. A reload that starts
	// after fn got the Resync sees every change committed before it, and
	// every change committed after the Resync was queued is delivered
	// after it. A Resync may come without a cause the watcher can see
	// (pgstore sends one a minute after the first Watch of a namespace on
	// a database): it is always safe to follow.
	//
	// Interrupted means that the feed has stopped (the connection to the
	// database is lost): changes committed from then on are not delivered
	// until a Resync comes. A cache that must bound its staleness counts it
	// from the moment of the Interrupted, less the time the backend takes
	// to notice the loss (pgstore: 2 × Options.FeedCheckInterval). A
	// backend in one process (Badger) is never interrupted.
	Watch(ctx context.Context, fn func(Change), namespaces ...string) error
}

// Change is one event of the change feed (see Changes.Watch): a change of
// the record (Namespace, Key) or of the resource Key (Namespace is
// ResourcesNamespace), or, with an empty Namespace and Key, a Resync or an
// Interrupted.
type Change struct {
	Namespace string
	Key       string
	// Resync means that changes may have been missed: reload everything
	// cached from the watched namespaces.
	Resync bool
	// Interrupted means that the feed has stopped until a Resync comes.
	Interrupted bool
}
