package storetest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/caddy-uma/caddy-uma/store"
)

// Crash test: the test binary runs itself as a child that writes to a
// store and acknowledges each write on stdout; the parent kills it with
// SIGKILL and checks that every acknowledged write survived. Besides its
// sequence of writes, the child runs crashWriters goroutines that write
// at once, so that the backend commits writes of several callers together
// and each acknowledgment must wait for the commit of its own.

// crashDirEnv names the store of the child process; set, the test that
// calls RunCrash is the child.
const crashDirEnv = "STORETEST_CRASH_DIR"

// Write kinds of the crash child, by i%4.
const (
	crashCreate = iota // CreateResource r-i
	crashPut           // Put rec-i
	crashInsert        // Insert ins-i, expiring in an hour
	crashTake          // Take rec-(i-2)
)

// crashWriters is the number of concurrent writers of the crash child.
const crashWriters = 8

// crashConcurrentKey is the key of write i of concurrent writer g: a Put
// when i is even, otherwise a PutAll that inserts it and puts its "-tok"
// record, as a grant does.
func crashConcurrentKey(g, i int) string { return fmt.Sprintf("w%d-%06d", g, i) }

func crashResourceID(i int) string { return fmt.Sprintf("r-%06d", i) }
func crashKey(prefix string, i int) string {
	return fmt.Sprintf("%s-%06d", prefix, i)
}

// RunCrash checks that no acknowledged write is lost when the process that
// writes dies of SIGKILL. The test that calls it runs twice: as the parent,
// which starts the test binary again running only that test, and as that
// child, which writes into the store of dir until it is killed (RunCrash
// never returns in the child).
//
// open is as in RunDurability: it opens the persistent store named by dir,
// the same data for the same dir in the parent and in the child. The parent
// opens and closes it once before it starts the child, and opens it again
// after the kill to check it. whileChildRuns, if not nil, is called in the
// parent while the child writes (after its first acknowledgments).
func RunCrash(t *testing.T, open func(t *testing.T, dir string) store.Store, whileChildRuns func(t *testing.T, dir string)) {
	if dir := os.Getenv(crashDirEnv); dir != "" {
		crashChild(t, open, dir)
		return
	}
	if testing.Short() {
		t.Skip("runs a child process")
	}
	const wantAcks = 300
	dir := t.TempDir()
	// The store exists before the child opens it, so that this process
	// owns (and cleans up) what open creates.
	must(t, "Close", open(t, dir).Close())

	cmd, stdout, stderr := StartChild(t, t.Name(), crashDirEnv+"="+dir)
	killed := false
	defer func() {
		if !killed {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	}()

	// Read acks until wantAcks, kill, then read the acks still in the pipe.
	acked := map[int]bool{}
	// concurrent holds the acknowledged writes of the concurrent writers.
	concurrent := map[[2]int]bool{}
	parse := func(line string) {
		var i, g int
		if _, err := fmt.Sscanf(line, "ack %d\n", &i); err == nil {
			acked[i] = true
		} else if _, err := fmt.Sscanf(line, "cack %d %d\n", &g, &i); err == nil {
			concurrent[[2]int{g, i}] = true
		}
	}
	lines := make(chan string)
	go func() {
		defer close(lines)
		r := bufio.NewReader(stdout)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				// A line cut by the kill has no newline: not an ack.
				return
			}
			lines <- line
		}
	}()
	timeout := time.After(time.Minute)
	for len(acked) < wantAcks {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatalf("child exited after %d acks; stderr:\n%s", len(acked), stderr.String())
			}
			if strings.Contains(line, "failed") {
				t.Fatalf("child: %s", line)
			}
			parse(line)
		case <-timeout:
			t.Fatalf("%d acks in a minute", len(acked))
		}
	}
	if whileChildRuns != nil {
		whileChildRuns(t, dir)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for line := range lines {
		parse(line)
	}
	_, _ = io.Copy(io.Discard, stdout)
	err := cmd.Wait()
	killed = true
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) || exitErr.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("child did not die of SIGKILL: %v; stderr:\n%s", err, stderr.String())
	}
	last := 0
	for i := range acked {
		last = max(last, i)
	}
	for i := range last + 1 {
		if !acked[i] {
			t.Fatalf("ack %d missing (last %d): acks are sequential", i, last)
		}
	}
	t.Logf("child acknowledged %d writes and %d concurrent ones before SIGKILL", len(acked), len(concurrent))
	if len(concurrent) == 0 {
		t.Fatal("no acknowledged write of the concurrent writers")
	}

	s := open(t, dir)
	defer s.Close()
	checkCrashWrites(t, s, last)
	for gi := range concurrent {
		key := crashConcurrentKey(gi[0], gi[1])
		keys := []string{key}
		if gi[1]%2 == 1 {
			keys = append(keys, key+"-tok")
		}
		for _, k := range keys {
			if got, err := s.Get(t.Context(), "c", k); err != nil || string(got) != k {
				t.Errorf("acknowledged concurrent write %s: %q, %v", k, got, err)
			}
		}
	}
}

// StartChild runs the test binary again, running only the test (or
// subtest) named name, with env added to its environment, and returns the
// started process, its standard output, and its standard error as it
// collects.
func StartChild(t *testing.T, name, env string) (cmd *exec.Cmd, stdout io.ReadCloser, stderr *bytes.Buffer) {
	t.Helper()
	cmd = exec.Command(os.Args[0], "-test.run="+runPattern(name), "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), env)
	stderr = new(bytes.Buffer)
	cmd.Stderr = stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, stdout, stderr
}

// runPattern is the -test.run pattern that selects exactly the test name.
func runPattern(name string) string {
	parts := strings.Split(name, "/")
	for i, p := range parts {
		parts[i] = "^" + regexp.QuoteMeta(p) + "$"
	}
	return strings.Join(parts, "/")
}

// crashChild writes into the store of dir and acknowledges each write on
// stdout, until it is killed (or a minute has passed).
func crashChild(t *testing.T, open func(t *testing.T, dir string) store.Store, dir string) {
	s := open(t, dir)
	ctx := t.Context()
	// Bounded, in case the parent dies without killing us.
	deadline := time.Now().Add(time.Minute)
	for g := range crashWriters {
		go func() {
			for i := 0; time.Now().Before(deadline); i++ {
				key := crashConcurrentKey(g, i)
				var err error
				if i%2 == 0 {
					err = s.Put(ctx, "c", key, []byte(key), time.Time{})
				} else {
					err = s.PutAll(ctx, []store.Write{
						{Namespace: "c", Key: key, Value: []byte(key), Insert: true},
						{Namespace: "c", Key: key + "-tok", Value: []byte(key + "-tok")},
					})
				}
				if err != nil {
					fmt.Printf("concurrent write %d %d failed: %v\n", g, i, err)
					os.Exit(2)
				}
				fmt.Printf("cack %d %d\n", g, i)
			}
		}()
	}
	for i := 0; time.Now().Before(deadline); i++ {
		var err error
		switch i % 4 {
		case crashCreate:
			r := store.Resource{ID: crashResourceID(i), ResourceServer: "rs", Owner: fmt.Sprintf("o-%d", i%3), Scopes: []string{"s"}}
			err = s.CreateResource(ctx, r)
		case crashPut:
			err = s.Put(ctx, "n", crashKey("rec", i), []byte(fmt.Sprint(i)), time.Time{})
		case crashInsert:
			err = s.Insert(ctx, "n", crashKey("ins", i), []byte(fmt.Sprint(i)), time.Now().Add(time.Hour))
		case crashTake:
			_, err = s.Take(ctx, "n", crashKey("rec", i-2))
		}
		if err != nil {
			fmt.Printf("write %d failed: %v\n", i, err)
			os.Exit(2)
		}
		fmt.Printf("ack %d\n", i)
	}
	os.Exit(3)
}

// checkCrashWrites checks that the writes 0..last of crashChild are all in
// s.
func checkCrashWrites(t *testing.T, s store.Store, last int) {
	t.Helper()
	ctx := t.Context()
	owners := map[string]int{}
	for i := range last + 1 {
		switch i % 4 {
		case crashCreate:
			owners[fmt.Sprintf("o-%d", i%3)]++
			r, err := s.GetResource(ctx, crashResourceID(i))
			if err != nil || r.Owner != fmt.Sprintf("o-%d", i%3) {
				t.Errorf("acknowledged resource %d: %+v, %v", i, r, err)
			}
		case crashPut:
			got, err := s.Get(ctx, "n", crashKey("rec", i))
			// Taken by write i+2 if that was acknowledged; perhaps taken by
			// it too when it was the write in flight at the kill (it may
			// have committed without its acknowledgement printed).
			switch {
			case i+2 <= last:
				if !errors.Is(err, store.ErrNotFound) {
					t.Errorf("record %d taken by acknowledged write %d: %q, %v", i, i+2, got, err)
				}
			case i+2 == last+1 && errors.Is(err, store.ErrNotFound):
			case err != nil || string(got) != fmt.Sprint(i):
				t.Errorf("acknowledged record %d: %q, %v", i, got, err)
			}
		case crashInsert:
			got, err := s.Get(ctx, "n", crashKey("ins", i))
			if err != nil || string(got) != fmt.Sprint(i) {
				t.Errorf("acknowledged insert %d: %q, %v", i, got, err)
			}
		}
	}
	// The indexes hold every acknowledged resource (and perhaps the one
	// write in flight).
	for owner, n := range owners {
		list, err := s.ListResources(ctx, store.ResourceQuery{ResourceServer: "rs", Owner: owner})
		if err != nil {
			t.Fatal(err)
		}
		if len(list) != n && len(list) != n+1 {
			t.Errorf("ListResources(%s) = %d resources, want %d acknowledged", owner, len(list), n)
		}
	}
}
