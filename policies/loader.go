package policies

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
)

// SystemDir is the directory of the system rules in an operator directory.
const SystemDir = "_system"

// LoadDir reads an operator directory of rules:
//
//	<dir>/<owner>/*.rego    the rules of owner <owner> (package uma.share)
//	<dir>/_system/*.rego    the system rules (package uma.system)
//
// Module names are file names. Files named *_test.rego (Rego tests, run with
// `opa test`), hidden files and directories, and other directories whose name
// starts with "_" are skipped; so are owner directories without rules.
// Symbolic links are followed, so a directory mounted from a Kubernetes
// ConfigMap works. LoadDir does not compile anything: pass the result to
// Engine.SetOwnerModules and Engine.SetSystemModules.
func LoadDir(dir string) (owners map[string]map[string]string, system map[string]string, err error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("loading rules: %w", err)
	}
	owners = map[string]map[string]string{}
	for _, entry := range entries {
		name := entry.Name()
		if strings.HasPrefix(name, ".") || (strings.HasPrefix(name, "_") && name != SystemDir) {
			continue
		}
		path := filepath.Join(dir, name)
		info, err := os.Stat(path)
		if err != nil {
			return nil, nil, fmt.Errorf("loading rules: %w", err)
		}
		if !info.IsDir() {
			continue
		}
		modules, err := loadModules(path)
		if err != nil {
			return nil, nil, fmt.Errorf("loading rules: %w", err)
		}
		switch {
		case name == SystemDir:
			system = modules
		case len(modules) > 0:
			owners[name] = modules
		}
	}
	return owners, system, nil
}

// DirModulePrefix starts the names of an owner's modules from an operator
// directory, "dir/<file>", as CheckDir compiles them and the authorization
// server puts them in force, apart from the rules owners save themselves.
const DirModulePrefix = "dir/"

// CheckDir compiles the rules of an operator directory (see LoadDir) as
// they are on disk (an owner's modules named DirModulePrefix+file), each
// owner's and the system's in a compiler of their own, with the limits of opts, and puts nothing in force: the check of a
// configuration. The owners' rules are compiled on every CPU at once; a
// rule set opts.Checked says compiled already, or one that reads as such
// once parsed, is not compiled again, and those that compile are added
// to it (see checked.go). It returns nil, LoadDir's error,
// ctx's, or a CompileErrors whose modules are the paths of the files.
func CheckDir(ctx context.Context, dir string, opts Options) error {
	owners, system, err := LoadDir(dir)
	if err != nil {
		return err
	}
	workers := runtime.GOMAXPROCS(0)
	opts.MaxCompiles = workers
	if opts.Checked == nil {
		opts.Checked = NewCheckedRules()
	}
	e := NewEngine(opts)
	type job struct {
		k          *ruleKind
		owner, sub string
		modules    map[string]string
		problems   CompileErrors
		err        error
	}
	var jobs []*job
	if len(system) > 0 {
		jobs = append(jobs, &job{k: systemKind, sub: SystemDir, modules: system})
	}
	for _, owner := range slices.Sorted(maps.Keys(owners)) {
		modules := make(map[string]string, len(owners[owner]))
		for name, src := range owners[owner] {
			modules[DirModulePrefix+name] = src
		}
		jobs = append(jobs, &job{k: ownerKind, owner: owner, sub: owner, modules: modules})
	}
	next := make(chan *job)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for j := range next {
				err := opts.Checked.checkOnce(ctx, e, j.k, j.owner, j.modules)
				if !errors.As(err, &j.problems) {
					j.err = err
				}
			}
		})
	}
	for _, j := range jobs {
		if ctx.Err() != nil {
			break
		}
		next <- j
	}
	close(next)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return err
	}
	var all CompileErrors
	for _, j := range jobs {
		if j.err != nil {
			return j.err
		}
		for _, c := range j.problems {
			named := *c
			named.Module = filepath.Join(dir, j.sub, strings.TrimPrefix(c.Module, DirModulePrefix))
			all = append(all, &named)
		}
	}
	if len(all) > 0 {
		return sortErrors(all)
	}
	return nil
}

// loadModules reads the rule files of one directory, or returns nil.
func loadModules(dir string) (map[string]string, error) {
	files, err := ruleFiles(dir)
	if err != nil {
		return nil, err
	}
	var modules map[string]string
	for _, f := range files {
		src, err := os.ReadFile(f.path)
		if err != nil {
			return nil, err
		}
		if modules == nil {
			modules = map[string]string{}
		}
		modules[filepath.Base(f.path)] = string(src)
	}
	return modules, nil
}

// ruleFile is a rule file found in a directory, with what the watcher
// compares.
type ruleFile struct {
	path    string
	size    int64
	modTime time.Time
}

// ruleFiles lists the rule files of one directory, sorted by name.
func ruleFiles(dir string) ([]ruleFile, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var files []ruleFile
	for _, entry := range entries {
		name := entry.Name()
		if strings.HasPrefix(name, ".") || !strings.HasSuffix(name, ".rego") || strings.HasSuffix(name, "_test.rego") {
			continue
		}
		path := filepath.Join(dir, name)
		info, err := os.Stat(path)
		if errors.Is(err, fs.ErrNotExist) {
			continue // a dangling link, or removed meanwhile
		}
		if err != nil {
			return nil, err
		}
		if !info.Mode().IsRegular() {
			continue
		}
		files = append(files, ruleFile{path: path, size: info.Size(), modTime: info.ModTime()})
	}
	return files, nil
}

// Watcher watches an operator directory (see LoadDir) and reports the rules
// whenever they change, so that new rules apply without a restart. Where
// the file system notifies changes (inotify on Linux, kqueue, ...), it
// watches the directory and each owner's directory, and reads them again
// only after a change: nothing is read while nothing changes, however many
// owners there are. Where it cannot (no notifications, or too many
// directories for the system's limit), and after losing the directory
// itself (removed or renamed), it polls: it compares the names, sizes and
// modification times of the rule files at each poll. Either way, on a
// difference it reads the files and compares their contents.
type Watcher struct {
	dir      string
	interval time.Duration
	onChange func(owners map[string]map[string]string, system map[string]string)
	onError  func(error)

	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}

	// polling serializes polls (the background one and Reload), and
	// guards stamp and sum.
	polling sync.Mutex
	stamp   string            // names, sizes and times last seen
	sum     [sha256.Size]byte // contents last reported

	// notified is true while changes are notified, and reads counts the
	// reads of the directory (for tests).
	notified atomic.Bool
	reads    atomic.Int64
}

// settle is how long the watcher waits after a first notification before
// reading the directory, so that a burst of changes (an editor's temporary
// file and rename, a deployment of many files) is read once.
const settle = 50 * time.Millisecond

// NewWatcher returns a Watcher of dir that polls every interval (5 seconds
// if zero or less) when changes are not notified. onChange receives every
// owner's rules and the system rules, whole, each time they change; an
// owner missing from owners has no rules any more. onError, if not nil,
// receives the errors of later reads (the rules in force stay as they
// were); onChange and onError are called from one goroutine at a time.
func NewWatcher(dir string, interval time.Duration,
	onChange func(owners map[string]map[string]string, system map[string]string),
	onError func(error),
) *Watcher {
	if interval <= 0 {
		interval = 5 * time.Second
	}
	return &Watcher{dir: dir, interval: interval, onChange: onChange, onError: onError}
}

// Start loads the directory, calls onChange with its rules, and then
// watches it in the background until ctx is done or Stop is called. It
// returns the error of the first load, and then starts nothing.
func (w *Watcher) Start(ctx context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done != nil {
		return errors.New("policies: watcher already started")
	}
	notes := w.notifier()
	if _, err := w.poll(true); err != nil {
		if notes != nil {
			notes.Close()
		}
		return err
	}
	ctx, w.cancel = context.WithCancel(ctx)
	w.done = make(chan struct{})
	w.notified.Store(notes != nil)
	go w.run(ctx, w.done, notes)
	return nil
}

// Stop stops watching and waits for a read in progress to end. It is safe
// to call more than once, and before Start.
func (w *Watcher) Stop() {
	w.mu.Lock()
	cancel, done := w.cancel, w.done
	w.mu.Unlock()
	if cancel == nil {
		return
	}
	cancel()
	<-done
}

// notifier returns a notifier watching the directory and each of its
// owners' directories, or nil when changes cannot be notified: then the
// watcher polls.
func (w *Watcher) notifier() *fsnotify.Watcher {
	notes, err := fsnotify.NewWatcher()
	if err != nil {
		return nil
	}
	if err := w.watchAll(notes); err != nil {
		notes.Close()
		return nil
	}
	return notes
}

// watchAll adds the directory and each of its subdirectories that LoadDir
// reads to notes. Watching one again is harmless.
func (w *Watcher) watchAll(notes *fsnotify.Watcher) error {
	if err := notes.Add(w.dir); err != nil {
		return err
	}
	entries, err := os.ReadDir(w.dir)
	if err != nil {
		return err
	}
	for _, entry := range entries {
		if err := w.watchSub(notes, entry.Name()); err != nil {
			return err
		}
	}
	return nil
}

// watchSub adds the subdirectory name of the directory to notes, if
// LoadDir reads it. A name that is not a directory, or is gone, is not an
// error; running out of watches (the system's limit) is.
func (w *Watcher) watchSub(notes *fsnotify.Watcher, name string) error {
	if strings.HasPrefix(name, ".") || (strings.HasPrefix(name, "_") && name != SystemDir) {
		return nil
	}
	path := filepath.Join(w.dir, name)
	info, err := os.Stat(path) // follows a symbolic link, as LoadDir does
	if err != nil || !info.IsDir() {
		return nil
	}
	// A name replaced by another directory (a symbolic link pointed
	// elsewhere) is watched anew: Add alone would keep the old one.
	_ = notes.Remove(path)
	if err := notes.Add(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// run watches until ctx is done: on notifications while notes is not nil,
// else by polling, trying at each poll to be notified again.
func (w *Watcher) run(ctx context.Context, done chan struct{}, notes *fsnotify.Watcher) {
	defer close(done)
	var ticker *time.Ticker
	var tick, fire <-chan time.Time
	var events <-chan fsnotify.Event
	var errs <-chan error
	retry := false // whether polls try to be notified again
	notify := func(n *fsnotify.Watcher) {
		notes = n
		w.notified.Store(n != nil)
		if n == nil {
			events, errs = nil, nil
			if ticker == nil {
				ticker = time.NewTicker(w.interval)
				tick = ticker.C
			}
			return
		}
		events, errs = n.Events, n.Errors
		if ticker != nil {
			ticker.Stop()
			ticker, tick = nil, nil
		}
	}
	// lose turns to polling; again says whether to try notifications at
	// each poll (the directory is gone, not the watches exhausted).
	lose := func(again bool) {
		if notes != nil {
			notes.Close()
		}
		notify(nil)
		retry = again
	}
	defer lose(false)
	notify(notes)
	read := func() {
		if _, err := w.poll(false); err != nil && w.onError != nil {
			w.onError(err)
		}
	}
	soon := func() {
		if fire == nil {
			fire = time.After(settle)
		}
	}
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-events:
			if !ok {
				lose(false)
				continue
			}
			if filepath.Clean(ev.Name) == filepath.Clean(w.dir) && ev.Has(fsnotify.Remove|fsnotify.Rename) {
				lose(true) // the directory itself is gone: poll until it is back
				read()
				continue
			}
			if filepath.Dir(ev.Name) == filepath.Clean(w.dir) && ev.Has(fsnotify.Create|fsnotify.Rename) {
				if err := w.watchSub(notes, filepath.Base(ev.Name)); err != nil {
					lose(false) // out of watches: poll
				}
			}
			soon()
		case _, ok := <-errs:
			if !ok {
				lose(false)
				continue
			}
			soon() // events were lost (a queue overflow): read everything
		case <-fire:
			fire = nil
			read()
		case <-tick:
			read()
			if !retry {
				continue
			}
			if n := w.notifier(); n != nil {
				notify(n)
				read() // what changed before the watches were added
			}
		}
	}
}

// Reload reads the directory now and reports its rules to onChange, even
// if they did not change: an operator's "reload the rules". It returns the
// error of reading the directory, and then reports nothing (the rules in
// force stay as they were).
func (w *Watcher) Reload() error {
	_, err := w.poll(true)
	return err
}

// poll reads the directory if its files changed, and reports the rules if
// their contents changed or first is true. It tells whether it reported.
func (w *Watcher) poll(first bool) (bool, error) {
	w.polling.Lock()
	defer w.polling.Unlock()
	w.reads.Add(1)
	stamp, err := w.fingerprint()
	if err != nil {
		return false, err
	}
	if !first && stamp == w.stamp {
		return false, nil
	}
	owners, system, err := LoadDir(w.dir)
	if err != nil {
		return false, err
	}
	// Files that changed while being read are read again at the next poll,
	// whose fingerprint will differ from stamp. The first load reports
	// anyway: Start promises rules.
	if again, err := w.fingerprint(); !first && (err != nil || again != stamp) {
		return false, err
	}
	w.stamp = stamp
	sum := sumRules(owners, system)
	if !first && sum == w.sum {
		return false, nil
	}
	w.sum = sum
	if w.onChange != nil {
		w.onChange(owners, system)
	}
	return true, nil
}

// fingerprint lists the rule files of the directory with their sizes and
// modification times.
func (w *Watcher) fingerprint() (string, error) {
	entries, err := os.ReadDir(w.dir)
	if err != nil {
		return "", fmt.Errorf("loading rules: %w", err)
	}
	var b strings.Builder
	for _, entry := range entries {
		name := entry.Name()
		if strings.HasPrefix(name, ".") || (strings.HasPrefix(name, "_") && name != SystemDir) {
			continue
		}
		path := filepath.Join(w.dir, name)
		info, err := os.Stat(path)
		if errors.Is(err, fs.ErrNotExist) {
			continue // removed meanwhile
		}
		if err != nil {
			return "", fmt.Errorf("loading rules: %w", err)
		}
		if !info.IsDir() {
			continue
		}
		files, err := ruleFiles(path)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return "", fmt.Errorf("loading rules: %w", err)
		}
		for _, f := range files {
			fmt.Fprintf(&b, "%s\x00%d\x00%d\n", f.path, f.size, f.modTime.UnixNano())
		}
	}
	return b.String(), nil
}

// sumRules hashes a loaded directory, independent of map order.
func sumRules(owners map[string]map[string]string, system map[string]string) [sha256.Size]byte {
	h := sha256.New()
	names := slices.Sorted(maps.Keys(owners))
	for _, owner := range names {
		sum := hashModules(ownerKind, owners[owner])
		fmt.Fprintf(h, "%d:%s", len(owner), owner)
		h.Write(sum[:])
	}
	sum := hashModules(systemKind, system)
	h.Write([]byte("system"))
	h.Write(sum[:])
	var out [sha256.Size]byte
	h.Sum(out[:0])
	return out
}
