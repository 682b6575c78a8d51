package badgerstore

// Space is the free-space state of a store's filesystem, for a readiness
// probe.
type Space struct {
	// Free is the space available on the filesystem of the database, as
	// measured at most 100 ms ago, less what the store wrote since.
	Free uint64
	// Min is the minimum free space (Options.MinFreeSpace).
	Min uint64
	// Known says that the filesystem reports its size; when it does not
	// (or the store is in memory) nothing is refused for want of space.
	Known bool
	// Low says that writes are refused with store.ErrNoSpace until the
	// free space is back above the minimum, plus an eighth.
	Low bool
}

// Space returns the free-space state of the store's filesystem, measuring
// it again when the last measure is older than 100 ms. Like a write, it may
// find that space came back and accept writes again; it never refuses
// them itself (the next write does, if it does not fit).
func (s *Store) Space() Space {
	g := s.space
	if g == nil {
		return Space{}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.measureIfStaleLocked()
	return Space{Free: g.free, Min: g.minFree, Known: g.known, Low: g.low}
}
