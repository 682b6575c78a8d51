package badgerstore

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"math"
	"time"

	"github.com/caddy-uma/caddy-uma/store"
)

// Key layout. Every key starts with one byte naming its kind. Inner
// components are length-prefixed (uvarint length, then the bytes), so no
// component can run into the next whatever characters it holds; only the
// last component of a key is written raw, which keeps prefix scans and the
// byte order of ids and record keys.
//
//	'm' "version"                                 -> format version
//	'r' id                                        -> JSON of store.Resource
//	's' len(rs) rs id                             -> empty (by resource server)
//	'o' len(owner) owner id                       -> empty (by owner)
//	'b' len(rs) rs len(owner) owner id            -> empty (by both)
//	'n' len(rs) rs hash(name) id                  -> empty (by name, format 2)
//	'a' len(rs) rs len(owner) owner hash(name) id -> empty (by owner and name, format 2)
//	'k' len(namespace) namespace key              -> record header + value
//
// hash(name) is the first nameHashLen bytes of the SHA-256 of the name:
// index keys stay small whatever the name's length, and a lookup compares
// the names of the resources it finds (two names may share a hash).
// Resources without a name have no name index entries.
const (
	kindMeta        = 'm'
	kindResource    = 'r'
	kindByServer    = 's'
	kindByOwner     = 'o'
	kindByBoth      = 'b'
	kindByName      = 'n'
	kindByOwnerName = 'a'
	kindRecord      = 'k'

	// formatVersion is stored under versionKey; Open refuses other
	// versions, and upgrades a database of formatVersion1 (which lacks the
	// name indexes) in place.
	formatVersion  = "2"
	formatVersion1 = "1"

	nameHashLen = 16
)

// versionKey holds the on-disk format version.
var versionKey = []byte{kindMeta, 'v', 'e', 'r', 's', 'i', 'o', 'n'}

func appendComponent(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func resourceKey(id string) []byte {
	return append([]byte{kindResource}, id...)
}

// resourcePrefix is the prefix of every resource key.
func resourcePrefix() []byte {
	return []byte{kindResource}
}

// serverIndexPrefix is the prefix of the index keys of one resource server;
// the id follows it.
func serverIndexPrefix(resourceServer string) []byte {
	return appendComponent([]byte{kindByServer}, resourceServer)
}

func ownerIndexPrefix(owner string) []byte {
	return appendComponent([]byte{kindByOwner}, owner)
}

func bothIndexPrefix(resourceServer, owner string) []byte {
	return appendComponent(appendComponent([]byte{kindByBoth}, resourceServer), owner)
}

// nameIndexPrefix is the prefix of the index keys of the resources of one
// name at a resource server; the id follows it.
func nameIndexPrefix(resourceServer, name string) []byte {
	return appendNameHash(appendComponent([]byte{kindByName}, resourceServer), name)
}

// ownerNameIndexPrefix is nameIndexPrefix for one owner's resources.
func ownerNameIndexPrefix(resourceServer, owner, name string) []byte {
	return appendNameHash(appendComponent(appendComponent([]byte{kindByOwnerName}, resourceServer), owner), name)
}

func appendNameHash(b []byte, name string) []byte {
	sum := sha256.Sum256([]byte(name))
	return append(b, sum[:nameHashLen]...)
}

// indexKeys returns the index keys of a resource: three, and two more when
// it has a name.
func indexKeys(r store.Resource) [][]byte {
	keys := [][]byte{
		append(serverIndexPrefix(r.ResourceServer), r.ID...),
		append(ownerIndexPrefix(r.Owner), r.ID...),
		append(bothIndexPrefix(r.ResourceServer, r.Owner), r.ID...),
	}
	if r.Name != "" {
		keys = append(keys,
			append(nameIndexPrefix(r.ResourceServer, r.Name), r.ID...),
			append(ownerNameIndexPrefix(r.ResourceServer, r.Owner, r.Name), r.ID...))
	}
	return keys
}

// sameIndexes reports whether two versions of a resource have the same
// index keys.
func sameIndexes(a, b store.Resource) bool {
	return a.ResourceServer == b.ResourceServer && a.Owner == b.Owner && a.Name == b.Name
}

// recordKey returns the key of a record; with a key prefix instead of a
// whole key it returns the scan prefix of List.
func recordKey(namespace, key string) []byte {
	b := make([]byte, 0, 1+binary.MaxVarintLen64+len(namespace)+len(key))
	b = appendComponent(append(b, kindRecord), namespace)
	return append(b, key...)
}

// Record values start with a header: one byte 0 (never expires), or one
// byte 1 followed by the expiry as big-endian Unix seconds (8 bytes) and
// nanoseconds (4 bytes). The caller's value follows.
const (
	headerNever   = 0
	headerExpires = 1
	headerLen     = 1 + 8 + 4
)

var errCorruptRecord = errors.New("corrupt record header")

func encodeRecord(value []byte, expiresAt time.Time) []byte {
	if expiresAt.IsZero() {
		b := make([]byte, 0, 1+len(value))
		return append(append(b, headerNever), value...)
	}
	b := make([]byte, headerLen, headerLen+len(value))
	b[0] = headerExpires
	binary.BigEndian.PutUint64(b[1:9], uint64(expiresAt.Unix()))
	binary.BigEndian.PutUint32(b[9:13], uint32(expiresAt.Nanosecond()))
	return append(b, value...)
}

// decodeRecord splits a stored record into its expiry (zero: never) and
// value. The value aliases b.
func decodeRecord(b []byte) (expiresAt time.Time, value []byte, err error) {
	if len(b) == 0 {
		return time.Time{}, nil, errCorruptRecord
	}
	switch b[0] {
	case headerNever:
		return time.Time{}, b[1:], nil
	case headerExpires:
		if len(b) < headerLen {
			return time.Time{}, nil, errCorruptRecord
		}
		sec := int64(binary.BigEndian.Uint64(b[1:9]))
		nsec := int64(binary.BigEndian.Uint32(b[9:13]))
		return time.Unix(sec, nsec), b[headerLen:], nil
	default:
		return time.Time{}, nil, errCorruptRecord
	}
}

// badgerExpiry converts an expiry to Badger's TTL field: Unix seconds,
// rounded up so that Badger never drops a record early. Zero means never.
func badgerExpiry(expiresAt time.Time) uint64 {
	if expiresAt.IsZero() {
		return 0
	}
	sec := expiresAt.Unix()
	if expiresAt.Nanosecond() > 0 && sec < math.MaxInt64 {
		sec++
	}
	if sec < 1 {
		// Badger reads 0 as "never"; 1 is long past.
		return 1
	}
	return uint64(sec)
}

// expired reports whether a record with the given expiry is dead at now.
func expired(expiresAt, now time.Time) bool {
	return !expiresAt.IsZero() && !now.Before(expiresAt)
}
