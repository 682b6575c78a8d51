package badgerstore

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddy-uma/caddy-uma/store"
	"github.com/caddy-uma/caddy-uma/store/storetest"
)

// Full-disk test: a child process (the test binary again) opens a store on
// a small tmpfs, fills the disk until writes are refused, and checks that
// it keeps reading and recovers when space is freed; the parent checks that
// the child survived (Badger's mmapped files get SIGBUS on a full disk) and
// that every write the child acknowledged is there after a reopen.

const (
	fullDirEnv = "BADGERSTORE_FULL_DIR"
	// fullDiskSize is the tmpfs; fullDiskMin the store's minimum on it.
	fullDiskSize = 32 << 20
	fullDiskMin  = 8 << 20
)

func mustFree(t *testing.T, dir string) uint64 {
	t.Helper()
	free, _, err := freeSpace(dir)
	if err != nil {
		t.Fatal(err)
	}
	return free
}

// fullDiskValue is the value the child writes under key: 4 KiB for the
// records that fill the disk.
func fullDiskValue(key string) []byte {
	if strings.HasPrefix(key, "fill-") {
		return bytes.Repeat([]byte(key), 4096/len(key))
	}
	return []byte("v-" + key)
}

// TestFullDiskChild is the child process of TestFullDisk. It prints "ack
// <key>" for each acknowledged record, "taken <key>" for each
// acknowledged Take, and "figure ..." lines.
func TestFullDiskChild(t *testing.T) {
	dir := os.Getenv(fullDirEnv)
	if dir == "" {
		t.Skip("child process of TestFullDisk")
	}
	ctx := t.Context()
	db := filepath.Join(dir, "db")
	s, err := Open(Options{Dir: db, MinFreeSpace: fullDiskMin, GCInterval: time.Millisecond})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	put := func(key string) error {
		err := s.Put(ctx, "n", key, fullDiskValue(key), time.Time{})
		if err == nil {
			fmt.Printf("ack %s\n", key)
		}
		return err
	}
	for i := range 10 {
		must(t, "Put", put(fmt.Sprintf("before-%d", i)))
		must(t, "CreateResource", s.CreateResource(ctx, store.Resource{ID: fmt.Sprintf("r-%d", i), ResourceServer: "rs", Owner: "o"}))
	}
	fmt.Printf("figure free after open: %d\n", mustFree(t, dir))

	// A filler leaves 1 MiB more than the minimum; 4 KiB writes fill it.
	filler, err := storetest.FillDisk(dir, int64(mustFree(t, dir))-fullDiskMin-1<<20)
	must(t, "filler", err)
	fmt.Printf("figure free after the filler: %d\n", mustFree(t, dir))
	// The store sees space taken by others at its next measure, at most
	// one interval later: the part of the minimum that covers them.
	time.Sleep(spaceCheckInterval)
	refused := false
	for i := 0; i < 10000 && !refused; i++ {
		err := put(fmt.Sprintf("fill-%05d", i))
		switch {
		case errors.Is(err, store.ErrNoSpace):
			refused = true
			fmt.Printf("figure writes of 4 KiB before the refusal: %d, free then: %d\n", i, mustFree(t, dir))
		case err != nil:
			t.Fatalf("Put %d: %v", i, err)
		}
	}
	if !refused {
		t.Fatal("10000 writes of 4 KiB into 1 MiB were all accepted")
	}

	// Now take the rest of the disk, as another process would.
	_, err = storetest.FillDisk(dir, -1)
	must(t, "filling the disk", err)
	fmt.Printf("figure free when full: %d\n", mustFree(t, dir))
	writes := map[string]func() error{
		"Put":    func() error { return s.Put(ctx, "n", "x", []byte("x"), time.Time{}) },
		"Insert": func() error { return s.Insert(ctx, "n", "x", []byte("x"), time.Time{}) },
		"PutAll": func() error { return s.PutAll(ctx, []store.Write{{Namespace: "n", Key: "x", Value: []byte("x")}}) },
		"Take": func() error {
			_, err := s.Take(ctx, "n", "before-0")
			return err
		},
		"Delete":         func() error { return s.Delete(ctx, "n", "before-1") },
		"CreateResource": func() error { return s.CreateResource(ctx, store.Resource{ID: "new", Owner: "o"}) },
		"UpdateResource": func() error { return s.UpdateResource(ctx, store.Resource{ID: "r-0", Owner: "o2"}) },
		"DeleteResource": func() error { return s.DeleteResource(ctx, "r-1") },
	}
	// Several rounds, so that background work (compactions, the garbage
	// collection every millisecond) has its chance to write too.
	for round := range 20 {
		for name, write := range writes {
			if err := write(); !errors.Is(err, store.ErrNoSpace) {
				t.Fatalf("round %d: %s on a full disk = %v, want ErrNoSpace", round, name, err)
			}
		}
		if got, err := s.Get(ctx, "n", "before-0"); err != nil || string(got) != "v-before-0" {
			t.Fatalf("Get on a full disk = %q, %v", got, err)
		}
		if list, err := s.List(ctx, "n", "before-", 0); err != nil || len(list) != 10 {
			t.Fatalf("List on a full disk = %d records, %v; want 10", len(list), err)
		}
		if _, err := s.GetResource(ctx, "r-0"); err != nil {
			t.Fatalf("GetResource on a full disk: %v", err)
		}
		if list, err := s.ListResources(ctx, store.ResourceQuery{Owner: "o"}); err != nil || len(list) != 10 {
			t.Fatalf("ListResources on a full disk = %d, %v; want 10", len(list), err)
		}
		time.Sleep(10 * time.Millisecond)
	}

	// Space comes back: writes succeed again, without a reopen, once the
	// store has measured the free space again.
	must(t, "removing the filler", os.Remove(filler))
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := put("after")
		if err == nil {
			break
		}
		if !errors.Is(err, store.ErrNoSpace) || time.Now().After(deadline) {
			t.Fatalf("Put after freeing space: %v", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, err := s.Take(ctx, "n", "before-0"); err != nil {
		t.Fatalf("Take after freeing space: %v", err)
	}
	fmt.Println("taken before-0")
	must(t, "CreateResource after freeing space", s.CreateResource(ctx, store.Resource{ID: "r-after", Owner: "o"}))

	// Full again, and Close: Badger's Close would write the memtable into
	// the full disk, so the store leaves the database open.
	_, err = storetest.FillDisk(dir, -1)
	must(t, "filling the disk again", err)
	if err := s.Close(); !errors.Is(err, store.ErrNoSpace) {
		t.Fatalf("Close on a full disk = %v, want ErrNoSpace", err)
	}
	fmt.Println("done")
}

func must(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func TestFullDisk(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a child process")
	}
	dir := storetest.Tmpfs(t, fullDiskSize)
	cmd, stdout, stderr := storetest.StartChild(t, "TestFullDiskChild", fullDirEnv+"="+dir)
	acked := map[string]bool{}
	var taken []string
	var output strings.Builder
	done := false
	r := bufio.NewReader(stdout)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			break
		}
		output.WriteString(line)
		f := strings.Fields(line)
		switch {
		case len(f) == 2 && f[0] == "ack":
			acked[f[1]] = true
		case len(f) == 2 && f[0] == "taken":
			taken = append(taken, f[1])
		case strings.HasPrefix(line, "figure "):
			t.Log(strings.TrimSpace(line))
		case strings.TrimSpace(line) == "done":
			done = true
		}
	}
	_, _ = io.Copy(io.Discard, stdout)
	err := cmd.Wait()
	// Go's runtime turns the SIGBUS of a fault in mapped memory into a
	// fatal error ("unexpected fault address", exit status 2).
	if crash := stderr.String(); strings.Contains(crash, "SIGBUS") || strings.Contains(crash, "fatal error") {
		t.Fatalf("the process died on a full disk (%v) after %d acknowledged writes:\n%s",
			err, strings.Count(output.String(), "ack "), head(crash, 12))
	}
	if err != nil || !done {
		t.Fatalf("child: %v\n%s%s", err, output.String(), head(stderr.String(), 40))
	}

	// Below the minimum, Open refuses (Badger's Open replays the logs into
	// the disk) and says why.
	_, err = Open(Options{Dir: filepath.Join(dir, "db"), MinFreeSpace: fullDiskMin})
	if !errors.Is(err, store.ErrNoSpace) {
		t.Fatalf("Open on a full disk = %v, want ErrNoSpace", err)
	}
	if err := os.Remove(filepath.Join(dir, "filler")); err != nil {
		t.Fatal(err)
	}

	// Everything acknowledged is there.
	s, err := Open(Options{Dir: filepath.Join(dir, "db"), MinFreeSpace: fullDiskMin})
	if err != nil {
		t.Fatalf("reopening: %v", err)
	}
	defer s.Close()
	ctx := t.Context()
	for _, k := range taken {
		delete(acked, k)
		if _, err := s.Get(ctx, "n", k); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Get(%s), taken: %v, want ErrNotFound", k, err)
		}
	}
	if !acked["after"] || len(acked) < 20 {
		t.Fatalf("%d acknowledged writes (after: %v), want the 10 before the filler, those that filled it, and one after",
			len(acked), acked["after"])
	}
	for k := range acked {
		got, err := s.Get(ctx, "n", k)
		if err != nil || !bytes.Equal(got, fullDiskValue(k)) {
			t.Errorf("acknowledged %s: %d bytes, %v", k, len(got), err)
		}
	}
	list, err := s.ListResources(ctx, store.ResourceQuery{Owner: "o"})
	if err != nil || len(list) != 11 {
		t.Errorf("resources after reopen: %d, %v; want the 10 before and r-after", len(list), err)
	}
	t.Logf("%d acknowledged records checked after the reopen; tmpfs of %d MiB, minimum %d MiB",
		len(acked), fullDiskSize>>20, fullDiskMin>>20)
}

// head returns the first n lines of s.
func head(s string, n int) string {
	lines := strings.Split(s, "\n")
	return strings.Join(lines[:min(n, len(lines))], "\n")
}
