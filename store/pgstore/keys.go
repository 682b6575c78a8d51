package pgstore

import "strings"

// Record keys may hold any byte, NUL included (the AS separates the parts
// of its keys with NUL), but PostgreSQL text cannot hold NUL. Keys are
// therefore stored escaped: 0x00 as 0x01 0x01 and 0x01 as 0x01 0x02. The
// escape keeps byte order (so List's ranges and order hold) and prefixes
// (the escape of a prefix is a prefix of the escape), and is undone when
// keys are read back and in the change feed.

var (
	keyEscaper   = strings.NewReplacer("\x00", "\x01\x01", "\x01", "\x01\x02")
	keyUnescaper = strings.NewReplacer("\x01\x01", "\x00", "\x01\x02", "\x01")
)

// escapeKey returns the stored form of a record key.
func escapeKey(key string) string {
	if strings.IndexByte(key, 0) < 0 && strings.IndexByte(key, 1) < 0 {
		return key
	}
	return keyEscaper.Replace(key)
}

// unescapeKey returns the record key of its stored form.
func unescapeKey(stored string) string {
	if strings.IndexByte(stored, 1) < 0 {
		return stored
	}
	return keyUnescaper.Replace(stored)
}
