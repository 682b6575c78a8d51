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
	"slices"
	"strings"
	"sync"
	"time"
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

// CheckDir compiles the rules of an operator directory (see LoadDir) as
// they are on disk, each owner's and the system's in a compiler of their
// own, with the limits of opts, and puts nothing in force: the check of a
// configuration. It returns nil, LoadDir's error, ctx's, or a
// CompileErrors whose modules are the paths of the files.
func CheckDir(ctx context.Context, dir string, opts Options) error {
	owners, system, err := LoadDir(dir)
	if err != nil {
		return err
	}
	e := NewEngine(opts)
	var all CompileErrors
	check := func(k *ruleKind, owner, sub string, modules map[string]string) error {
		_, err := e.program(ctx, k, owner, modules, true)
		var ce CompileErrors
		if !errors.As(err, &ce) {
			return err
		}
		for _, c := range ce {
			named := *c
			named.Module = filepath.Join(dir, sub, c.Module)
			all = append(all, &named)
		}
		return nil
	}
	if len(system) > 0 {
		if err := check(systemKind, "", SystemDir, system); err != nil {
			return err
		}
	}
	for _, owner := range slices.Sorted(maps.Keys(owners)) {
		if err := check(ownerKind, owner, owner, owners[owner]); err != nil {
			return err
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

// Watcher polls an operator directory (see LoadDir) and reports the rules
// whenever they change, so that new rules apply without a restart. It needs
// no file system notifications: it compares the names, sizes and
// modification times of the rule files at each poll, and on a difference
// reads them and compares their contents.
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
}

// NewWatcher returns a Watcher of dir that polls every interval (5 seconds
// if zero or less). onChange receives every owner's rules and the system
// rules, whole, each time they change; an owner missing from owners has no
// rules any more. onError, if not nil, receives the errors of later polls
// (the rules in force stay as they were); onChange and onError are called
// from one goroutine at a time.
func NewWatcher(dir string, interval time.Duration,
	onChange func(owners map[string]map[string]string, system map[string]string),
	onError func(error),
) *Watcher {
	if interval <= 0 {
		interval = 5 * time.Second
	}
	return &Watcher{dir: dir, interval: interval, onChange: onChange, onError: onError}
}

// Start loads the directory, calls onChange with its rules, and then polls
// in the background until ctx is done or Stop is called. It returns the
// error of the first load, and then starts nothing.
func (w *Watcher) Start(ctx context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done != nil {
		return errors.New("policies: watcher already started")
	}
	if _, err := w.poll(true); err != nil {
		return err
	}
	ctx, w.cancel = context.WithCancel(ctx)
	w.done = make(chan struct{})
	go w.run(ctx, w.done)
	return nil
}

// Stop stops polling and waits for a poll in progress to end. It is safe to
// call more than once, and before Start.
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

func (w *Watcher) run(ctx context.Context, done chan struct{}) {
	defer close(done)
	ticker := time.NewTicker(w.interval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
			if _, err := w.poll(false); err != nil && w.onError != nil {
				w.onError(err)
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
