package owners

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/caddy-uma/caddy-uma/policies"
	"github.com/caddy-uma/caddy-uma/store"
	"go.uber.org/zap"
)

// An owner's rules come from two places: the operator directory
// (<dir>/<owner>/*.rego, read-only here, named "dir/<file>") and the owner
// API (stored under NamespaceRules, named as the owner chose). Both apply
// together. Owners' rules are compiled on first use and whenever they
// change.

// dirModulePrefix names modules that come from the operator directory.
const dirModulePrefix = policies.DirModulePrefix

// LoadProblem is what the last load of one owner's rules from the
// operator directory (or of the system rules) found wrong.
type LoadProblem struct {
	// Owner is the owner whose rules these are; empty for the system
	// rules.
	Owner string `json:"owner,omitempty"`
	// Broken is true when no safe part of the rules compiles: every
	// request for the owner's resources (for the system rules, every
	// request) is refused until they compile.
	Broken bool `json:"broken"`
	// Files are the files that do not compile.
	Files []string `json:"files"`
	// Problems are the compile errors, by file, line and column.
	Problems policies.CompileErrors `json:"problems"`
	// OldVersionInForce are the files whose previous version stays in
	// force; LeftOut those left out.
	OldVersionInForce []string `json:"old_version_in_force,omitempty"`
	LeftOut           []string `json:"left_out,omitempty"`
}

// RulesOptions are where the rules come from and where they are put in
// force.
type RulesOptions struct {
	// Engine compiles and evaluates the rules.
	Engine *policies.Engine
	// Dir is the operator directory; empty when there is none.
	Dir string
	// Fresh reports whether the store's change feed is fresh enough for
	// the rules in force to be trusted; when it is not, an owner's rules
	// are read from the store on each use (another node may have changed
	// them). Nil means always.
	Fresh func() bool
}

// Rules are the owners' rules and which of them are in force in the
// engine. They are safe for concurrent use.
type Rules struct {
	opts   Options
	engine *policies.Engine
	// dir is the operator directory, to name its files in messages.
	dir   string
	fresh func() bool

	mu        sync.Mutex
	dirOwners map[string]map[string]string // from the operator directory
	dirSystem map[string]string            // the system rules, from the operator directory
	system    bool                         // the system rules are in the engine
	loaded    map[string]bool              // owners whose rules are in the engine
	// degraded are the owners (and "" for the system rules) whose last
	// load left something out or kept an old version, to say when they
	// load whole again.
	degraded map[string]bool
	// problems are what the last load of each owner's rules (and "" for
	// the system rules) found, for the operator; dirError is the error of
	// the last read of the operator directory, "" after one succeeds.
	problems map[string]LoadProblem
	dirError string

	warming warming
}

// warming runs policies.Engine.Warm in the background after the operator
// directory's rules were put in force, one run at a time; Close stops it.
type warming struct {
	mu      sync.Mutex
	ctx     context.Context
	stop    context.CancelFunc
	done    sync.WaitGroup
	running bool // a run is under way
	again   bool // rules were put in force during the run: run once more
}

// NewRules returns the rules kept in opts.Store and in the operator
// directory of ropts, put in force in ropts.Engine.
func NewRules(opts Options, ropts RulesOptions) *Rules {
	b := &Rules{
		opts:      opts.withDefaults(),
		engine:    ropts.Engine,
		dir:       ropts.Dir,
		fresh:     ropts.Fresh,
		dirOwners: map[string]map[string]string{},
		system:    ropts.Dir == "",
		loaded:    map[string]bool{},
		degraded:  map[string]bool{},
		problems:  map[string]LoadProblem{},
	}
	if b.fresh == nil {
		b.fresh = func() bool { return true }
	}
	b.warming.ctx, b.warming.stop = context.WithCancel(context.Background())
	return b
}

// Close stops compiling shards in the background (warm) and waits for the
// compilation under way, if any.
func (b *Rules) Close() {
	b.warming.stop()
	b.warming.done.Wait()
}

// warm compiles in the background the shards of the owners' rules put in
// force as sources only (policies.Engine.Warm), so that the first requests
// after a start or a reload of the operator directory do not wait for
// their compilation. One run at a time: a call during a run makes it run
// once more.
func (b *Rules) warm() {
	w := &b.warming
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.ctx.Err() != nil {
		return
	}
	if w.running {
		w.again = true
		return
	}
	w.running = true
	w.done.Add(1)
	go func() {
		defer w.done.Done()
		for {
			start := time.Now()
			n, err := b.engine.Warm(w.ctx)
			if err != nil && w.ctx.Err() == nil {
				b.opts.Log.Warn("compiling owners' rules in the background; the others are compiled at their first request",
					zap.Int("shards", n), zap.Error(err))
			} else if n > 0 {
				b.opts.Log.Info("owners' rules compiled in the background",
					zap.Int("shards", n), zap.Duration("took", time.Since(start)))
			}
			w.mu.Lock()
			if !w.again || w.ctx.Err() != nil {
				w.running = false
				w.mu.Unlock()
				return
			}
			w.again = false
			w.mu.Unlock()
		}
	}()
}

// storedRules returns the rules an owner wrote through the API, without
// their Rego tests.
func (b *Rules) storedRules(ctx context.Context, owner string) (map[string]string, error) {
	rules, _, err := b.storedModules(ctx, owner)
	return rules, err
}

// storedModules returns the rule modules and the Rego test modules
// (policies.IsTestModule) an owner wrote through the API.
func (b *Rules) storedModules(ctx context.Context, owner string) (rules, tests map[string]string, err error) {
	recs, err := b.opts.Store.List(ctx, NamespaceRules, owner+sep, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("listing rules: %w", err)
	}
	rules, tests = make(map[string]string, len(recs)), map[string]string{}
	for _, r := range recs {
		name := r.Key[len(owner)+1:]
		if policies.IsTestModule(name) {
			tests[name] = string(r.Value)
		} else {
			rules[name] = string(r.Value)
		}
	}
	return rules, tests, nil
}

// dirTests returns the Rego tests beside an owner's rules in the operator
// directory, named "dir/<file>". Only the directory of an owner the
// watcher found is read.
func (b *Rules) dirTests(owner string) (map[string]string, error) {
	b.mu.Lock()
	_, known := b.dirOwners[owner]
	b.mu.Unlock()
	out := map[string]string{}
	if !known || b.dir == "" {
		return out, nil
	}
	_, tests, err := policies.LoadModules(filepath.Join(b.dir, owner))
	for name, src := range tests {
		out[dirModulePrefix+name] = src
	}
	return out, err
}

// RuleTests runs an owner's Rego tests (modules named *_test.rego, saved
// through the owner API or the console, or kept beside the owner's rules
// in the operator directory) against the owner's rules, with the library
// and the sandbox of the rules (policies.RunTests). It returns
// policies.ErrNoTests when the owner has none, a CompileErrors when the
// rules or tests do not compile, policies.ErrBusy when too many
// compilations run; failed tests are in the report, not an error.
func (b *Rules) RuleTests(ctx context.Context, owner string) (policies.TestReport, error) {
	rules, tests, err := b.storedModules(ctx, owner)
	if err != nil {
		return policies.TestReport{}, err
	}
	return b.runRuleTests(ctx, owner, rules, tests)
}

func (b *Rules) runRuleTests(ctx context.Context, owner string, rules, tests map[string]string) (policies.TestReport, error) {
	mods := maps.Clone(rules)
	maps.Copy(mods, tests)
	maps.Copy(mods, b.dirRules(owner, true))
	dir, err := b.dirTests(owner)
	if err != nil {
		return policies.TestReport{}, err
	}
	maps.Copy(mods, dir)
	return b.engine.RunTests(ctx, owner, mods)
}

// dirRules returns an owner's rules from the operator directory, named
// "dir/<file>": as on disk, or, with inForce, as in force when some of
// them do not compile (an old version kept, a file left out).
func (b *Rules) dirRules(owner string, inForce bool) map[string]string {
	b.mu.Lock()
	files, degraded := b.dirOwners[owner], b.degraded[owner]
	b.mu.Unlock()
	mods := map[string]string{}
	if inForce && degraded {
		if cur := b.engine.OwnerModules(owner); cur != nil {
			for name, src := range cur {
				if IsDirectoryRule(name) {
					mods[name] = src
				}
			}
			return mods
		}
	}
	for name, src := range files {
		mods[dirModulePrefix+name] = src
	}
	return mods
}

// ownerRules returns all of an owner's modules: the directory's and the
// API's, rules and tests.
func (b *Rules) ownerRules(ctx context.Context, owner string) (map[string]string, error) {
	mods, tests, err := b.storedModules(ctx, owner)
	if err != nil {
		return nil, err
	}
	maps.Copy(mods, tests)
	maps.Copy(mods, b.dirRules(owner, false))
	dir, err := b.dirTests(owner)
	maps.Copy(mods, dir)
	return mods, err
}

// InForce puts the system rules and an owner's rules in force in the
// engine if they are not yet. Evaluations of rules in force never wait
// here. While the change feed is not fresh (RulesOptions.Fresh), the
// owner's rules are read from the store on each use (and compiled again
// only if they changed): another node may have changed them.
func (b *Rules) InForce(ctx context.Context, owner string) error {
	b.mu.Lock()
	system, done := b.system, b.loaded[owner]
	b.mu.Unlock()
	if !system {
		if err := b.reloadSystemRules(ctx); err != nil {
			return err
		}
	}
	if done && b.fresh() {
		return nil
	}
	return b.Reload(ctx, owner)
}

// Reload recompiles an owner's rules from their sources. The rules
// saved through the API must all compile (they did when saved); a file of
// the operator directory that does not compile keeps its old version, or
// is left out if that cannot grant more, or else the owner's rules are
// broken and refuse everything (policies.LoadOwnerModules). An error means
// that compiling could not run (too busy, too slow, the caller gone):
// nothing changed, and the next use tries again.
func (b *Rules) Reload(ctx context.Context, owner string) error {
	stored, err := b.storedRules(ctx, owner)
	if err != nil {
		return err
	}
	load, err := b.engine.LoadOwnerModules(ctx, owner, stored, b.dirRules(owner, false))
	if err != nil {
		return err
	}
	b.reportLoad(owner, load)
	b.mu.Lock()
	b.loaded[owner] = true
	b.mu.Unlock()
	return nil
}

// reloadSystemRules recompiles the system rules of the operator directory.
// A file that does not compile keeps its old version; without one, every
// request is refused until it compiles: system rules only take away, and
// none may be dropped.
func (b *Rules) reloadSystemRules(ctx context.Context) error {
	b.mu.Lock()
	system := b.dirSystem
	b.mu.Unlock()
	load, err := b.engine.LoadSystemModules(ctx, system)
	if err != nil {
		return err
	}
	b.reportLoad("", load)
	b.mu.Lock()
	b.system = true
	b.mu.Unlock()
	return nil
}

// reportLoad logs what a load of rules did, naming the files on disk: an
// error when something does not compile, and, once everything compiles
// again, that it does.
func (b *Rules) reportLoad(owner string, l policies.Load) {
	who := ownerField(owner)
	if owner == "" {
		who = zap.String("rules", "system")
	}
	problems := make(policies.CompileErrors, len(l.Problems))
	var files []string
	for i, p := range l.Problems {
		c := *p
		c.Module = b.ruleFile(owner, p.Module)
		problems[i] = &c
		if c.Module != "" && !slices.Contains(files, c.Module) {
			files = append(files, c.Module)
		}
	}
	b.mu.Lock()
	was := b.degraded[owner]
	if len(l.Problems) > 0 {
		b.degraded[owner] = true
		b.problems[owner] = LoadProblem{Owner: owner, Broken: l.Broken, Files: files, Problems: problems,
			OldVersionInForce: b.ruleFiles(owner, l.Previous), LeftOut: b.ruleFiles(owner, l.LeftOut)}
	} else {
		delete(b.degraded, owner)
		delete(b.problems, owner)
	}
	b.mu.Unlock()
	if len(l.Problems) == 0 {
		if was {
			b.opts.Log.Info("rules compile again: all of them are in force", who)
		}
		return
	}
	fields := []zap.Field{who, zap.Strings("files", files), zap.String("problems", problems.Error())}
	var msg string
	switch {
	case l.Broken && owner == "":
		msg = "system rules do not compile and none may be left out: every request is refused until they compile"
	case l.Broken:
		msg = "an owner's rules do not compile and cannot safely be left out: every request for this owner's resources is refused until they compile"
	default:
		msg = "rules do not compile: the others are in force"
		fields = append(fields,
			zap.Strings("old_version_in_force", b.ruleFiles(owner, l.Previous)),
			zap.Strings("left_out", b.ruleFiles(owner, l.LeftOut)))
	}
	b.opts.Log.Error(msg, fields...)
}

// ruleFile names a module of an owner's rules (of the system rules when
// owner is empty) for the operator: the path of its file in the operator
// directory, or the name the owner saved it under.
func (b *Rules) ruleFile(owner, module string) string {
	if owner == "" {
		if module == "" {
			return ""
		}
		return filepath.Join(b.dir, policies.SystemDir, module)
	}
	if name, ok := strings.CutPrefix(module, dirModulePrefix); ok {
		return filepath.Join(b.dir, owner, name)
	}
	return module
}

func (b *Rules) ruleFiles(owner string, modules []string) []string {
	out := make([]string, len(modules))
	for i, m := range modules {
		out[i] = b.ruleFile(owner, m)
	}
	return out
}

// SetDirectory takes the operator directory's rules, from the watcher
// (policies.Watcher), and puts them in force.
func (b *Rules) SetDirectory(owners map[string]map[string]string, system map[string]string) {
	ctx := context.Background()
	b.mu.Lock()
	b.dirError = ""
	b.dirSystem = maps.Clone(system)
	changed := map[string]bool{}
	for o := range b.dirOwners {
		changed[o] = true
	}
	for o := range owners {
		changed[o] = true
	}
	b.dirOwners = maps.Clone(owners)
	for o := range changed {
		delete(b.loaded, o)
	}
	b.mu.Unlock()
	if err := b.reloadSystemRules(ctx); err != nil {
		b.mu.Lock()
		b.system = false // the next request tries again
		b.mu.Unlock()
		b.opts.Log.Error("loading the system rules; trying again at the next request", zap.Error(err))
	}
	for o := range changed {
		if err := b.Reload(ctx, o); err != nil {
			b.opts.Log.Error("loading an owner's rules; trying again at the next request", ownerField(o), zap.Error(err))
		}
	}
	b.warm()
}

// PutRule stores (or replaces) one of an owner's rule modules, after
// checking that the owner's rules still compile with it. A CompileErrors
// (matching policies.ErrCompile) says where they do not; policies.ErrBusy
// and policies.ErrCompileTimeout that they could not be compiled now.
//
// A module named *_test.rego is a Rego test of the rules (RuleTests): it
// is stored if it compiles with the rules, failing tests or not, and never
// put in force.
func (b *Rules) PutRule(ctx context.Context, owner, name, source string) error {
	if !validRuleName(name) {
		return fmt.Errorf("%w: rule names are 1 to 64 letters, digits, '.', '-' or '_'", ErrBadRuleName)
	}
	mods, tests, err := b.storedModules(ctx, owner)
	if err != nil {
		return err
	}
	if policies.IsTestModule(name) {
		tests[name] = source
		if _, err := b.runRuleTests(ctx, owner, mods, tests); err != nil && !errors.Is(err, policies.ErrNoTests) {
			return err
		}
		if err := b.opts.Store.Put(ctx, NamespaceRules, owner+sep+name, []byte(source), time.Time{}); err != nil {
			return fmt.Errorf("storing a rule test: %w", err)
		}
		b.opts.Log.Info("owner rule test saved", ownerField(owner))
		return nil
	}
	mods[name] = source
	if err := b.checkRules(ctx, owner, mods); err != nil {
		return err
	}
	if err := b.opts.Store.Put(ctx, NamespaceRules, owner+sep+name, []byte(source), time.Time{}); err != nil {
		return fmt.Errorf("storing a rule: %w", err)
	}
	b.opts.Log.Info("owner rule saved", ownerField(owner))
	return b.Reload(ctx, owner)
}

// DeleteRule removes one of an owner's rule modules, after checking that
// the others still compile without it (the same errors as PutRule).
func (b *Rules) DeleteRule(ctx context.Context, owner, name string) error {
	mods, tests, err := b.storedModules(ctx, owner)
	if err != nil {
		return err
	}
	if _, ok := tests[name]; ok {
		// A test: nothing in force depends on it.
		if err := b.opts.Store.Delete(ctx, NamespaceRules, owner+sep+name); err != nil && !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("deleting a rule test: %w", err)
		}
		return nil
	}
	if _, ok := mods[name]; !ok {
		return ErrNoSuchRule
	}
	delete(mods, name)
	if err := b.checkRules(ctx, owner, mods); err != nil {
		return err
	}
	if err := b.opts.Store.Delete(ctx, NamespaceRules, owner+sep+name); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return ErrNoSuchRule
		}
		return fmt.Errorf("deleting a rule: %w", err)
	}
	return b.Reload(ctx, owner)
}

// checkRules compiles the rules an owner saved through the API, with the
// directory's rules in force, as the owner asks to change them. It is a
// compilation an owner asked for: refused with policies.ErrBusy when too
// many run.
func (b *Rules) checkRules(ctx context.Context, owner string, stored map[string]string) error {
	mods := maps.Clone(stored)
	maps.Copy(mods, b.dirRules(owner, true))
	return b.engine.Check(ctx, owner, mods)
}

// Rules returns an owner's rule modules, those from the operator directory
// included (named "dir/<file>", read-only).
func (b *Rules) Rules(ctx context.Context, owner string) (map[string]string, error) {
	return b.ownerRules(ctx, owner)
}

// Errors of the rule setters.
var (
	// ErrBadRuleName means that a rule module's name is not 1 to 64
	// letters, digits, '.', '-' or '_'.
	ErrBadRuleName = errors.New("invalid rule name")
	// ErrNoSuchRule means that the owner has no rule module of that name.
	ErrNoSuchRule = errors.New("no such rule")
)

// IsDirectoryRule reports whether a rule module of an owner comes from the
// operator directory: read-only through the owner API and the console.
func IsDirectoryRule(name string) bool { return strings.HasPrefix(name, dirModulePrefix) }

func validRuleName(name string) bool {
	if name == "" || len(name) > 64 {
		return false
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// DirectoryFailed records that the operator directory could not be read:
// the rules in force stay, and Status says why.
func (b *Rules) DirectoryFailed(err error) {
	b.mu.Lock()
	b.dirError = err.Error()
	b.mu.Unlock()
}

// Changed makes the next use of the rules of the owner of a changed
// record of NamespaceRules (another node saved or deleted it) compile them
// again from the store.
func (b *Rules) Changed(key string) {
	owner, _, _ := strings.Cut(key, sep)
	b.mu.Lock()
	delete(b.loaded, owner)
	b.mu.Unlock()
}

// ForgetAll makes the next use of every owner's rules compile them again
// from the store, after changes may have been missed.
func (b *Rules) ForgetAll() {
	b.mu.Lock()
	clear(b.loaded)
	b.mu.Unlock()
}

// Directory returns the operator directory; "" when there is none.
func (b *Rules) Directory() string { return b.dir }

// Status returns what the last load of the rules found: the error of the
// last read of the operator directory ("" after one succeeded), and the
// rules that did not compile, the system rules first and then by owner.
func (b *Rules) Status() (dirError string, problems []LoadProblem) {
	b.mu.Lock()
	defer b.mu.Unlock()
	problems = []LoadProblem{}
	for _, owner := range slices.Sorted(maps.Keys(b.problems)) {
		problems = append(problems, b.problems[owner])
	}
	return b.dirError, problems
}

// Degraded counts the owners whose rules in the operator directory did not
// all compile at their last load, and says whether the system rules did
// not.
func (b *Rules) Degraded() (owners int, system bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for owner := range b.degraded {
		if owner == "" {
			system = true
		} else {
			owners++
		}
	}
	return owners, system
}
