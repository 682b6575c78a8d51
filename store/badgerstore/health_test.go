package badgerstore

import (
	"errors"
	"testing"
	"time"

	"github.com/caddy-uma/caddy-uma/store"
)

// TestSpace checks what Space reports as the disk fills and empties: the
// free space measured (not more often than the check interval), and the
// low state that writes enter and that Space, like a write, leaves when
// space comes back above the minimum plus an eighth.
func TestSpace(t *testing.T) {
	s, err := Open(Options{Dir: t.TempDir(), MinFreeSpace: 8 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	disk := useFakeDisk(s, 100<<20)
	put := func() error { return s.Put(t.Context(), "ns", "k", []byte("v"), time.Time{}) }

	steps := []struct {
		name string
		do   func()
		want Space
	}{
		{"plenty of space", func() {}, Space{Free: 100 << 20, Min: 8 << 20, Known: true}},
		{"measured again only after the interval", func() { disk.mu.Lock(); disk.free = 1 << 20; disk.mu.Unlock() }, Space{Free: 100 << 20, Min: 8 << 20, Known: true}},
		{"below the minimum, before any write", func() { disk.set(1 << 20) }, Space{Free: 1 << 20, Min: 8 << 20, Known: true}},
		{"a write is refused: low", func() {
			if err := put(); !errors.Is(err, store.ErrNoSpace) {
				t.Fatalf("write below the minimum: %v", err)
			}
		}, Space{Free: 1 << 20, Min: 8 << 20, Known: true, Low: true}},
		{"above the minimum but not the eighth more: still low", func() { disk.set(8<<20 + 1<<19) }, Space{Free: 8<<20 + 1<<19, Min: 8 << 20, Known: true, Low: true}},
		{"space is back: Space leaves the low state", func() { disk.set(64 << 20) }, Space{Free: 64 << 20, Min: 8 << 20, Known: true}},
	}
	for _, step := range steps {
		step.do()
		if got := s.Space(); got != step.want {
			t.Fatalf("%s: Space() = %+v, want %+v", step.name, got, step.want)
		}
	}
	if err := put(); err != nil {
		t.Errorf("write once space is back: %v", err)
	}

	m, err := Open(Options{InMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if got := m.Space(); got != (Space{}) {
		t.Errorf("in memory: Space() = %+v, want nothing known", got)
	}
}
