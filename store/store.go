// Package store defines everything caddy-uma persists, independent of the
// database that holds it. Backends live in sub-packages (store/badgerstore)
// and are checked by the backend-independent suite in store/storetest.
//
// Two shapes of data are stored:
//
//   - Resources, the resource descriptions registered by resource servers
//     through the protection API. They are queried by id, by resource server
//     and by owner, so they get typed methods and indexes.
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
// are Put, Insert, PutAll, Take, Delete, CreateResource, UpdateResource and
// DeleteResource: each may return ErrNoSpace when it would have written
// something, and then wrote nothing. A call that would write nothing answers
// as usual (Take of a missing key ErrNotFound, Insert over a live record
// ErrExists, ...). Get, List, GetResource and ListResources never return it.
package store

import (
	"context"
	"errors"
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
)

// Store is the whole persistence interface of caddy-uma.
type Store interface {
	Resources
	Records
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

// ResourceQuery selects resources. Empty fields match everything.
type ResourceQuery struct {
	ResourceServer string
	Owner          string
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
	// DeleteResource removes the resource, or returns ErrNotFound.
	DeleteResource(ctx context.Context, id string) error
	// ListResources returns the resources matching q, sorted by ID.
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
}

// Records is a namespaced key-value store with expiry. A record whose
// ExpiresAt has passed is invisible to every method, as if it were deleted,
// and its space is reclaimed by the backend in the background. Backends
// may round expiry up to the next whole second, never down.
type Records interface {
	// Put stores value under (namespace, key), replacing any previous value.
	// A zero expiresAt means the record never expires.
	Put(ctx context.Context, namespace, key string, value []byte, expiresAt time.Time) error
	// Insert stores value only if no live record exists under (namespace,
	// key), and returns ErrExists otherwise. Of concurrent Inserts of one
	// key, exactly one succeeds.
	Insert(ctx context.Context, namespace, key string, value []byte, expiresAt time.Time) error
	// PutAll stores several records in one durable commit: all of them, or
	// none if it fails. Each replaces any previous value under its key.
	PutAll(ctx context.Context, writes []Write) error
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
