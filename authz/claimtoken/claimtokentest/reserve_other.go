//go:build !linux

package claimtokentest

// reserve does nothing here: on Linux it keeps a closed provider's port
// from being given to another server (reserve_linux.go).
func reserve(string) (func(), error) { return func() {}, nil }
