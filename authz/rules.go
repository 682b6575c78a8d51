package authz

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
// API (stored under the policy namespace, named as the owner chose). Both
// apply together. Owners' rules are compiled on first use and whenever
// they change.

// nsPolicy is the Records namespace of rules written through the owner
// API, keyed by <owner> \x00 <name>.
const nsPolicy = "policy"

// dirModulePrefix names modules that come from the operator directory.
const dirModulePrefix = "dir/"

// ruleBook tracks which owners' rules are compiled in the engine.
type ruleBook struct {
	engine *policies.Engine
	// dir is the operator directory, to name its files in messages.
	dir string

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
	problems map[string]PolicyProblem
	dirError string
}

// storedRules returns the rules an owner wrote through the API, without
// their Rego tests.
func (s *Server) storedRules(ctx context.Context, owner string) (map[string]string, error) {
	rules, _, err := s.storedModules(ctx, owner)
	return rules, err
}

// storedModules returns the rule modules and the Rego test modules
// (policies.IsTestModule) an owner wrote through the API.
func (s *Server) storedModules(ctx context.Context, owner string) (rules, tests map[string]string, err error) {
	recs, err := s.store.List(ctx, nsPolicy, owner+sep, 0)
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
func (s *Server) dirTests(owner string) (map[string]string, error) {
	s.rules.mu.Lock()
	_, known := s.rules.dirOwners[owner]
	s.rules.mu.Unlock()
	out := map[string]string{}
	if !known || s.rules.dir == "" {
		return out, nil
	}
	_, tests, err := policies.LoadModules(filepath.Join(s.rules.dir, owner))
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
func (s *Server) RuleTests(ctx context.Context, owner string) (policies.TestReport, error) {
	rules, tests, err := s.storedModules(ctx, owner)
	if err != nil {
		return policies.TestReport{}, err
	}
	return s.runRuleTests(ctx, owner, rules, tests)
}

func (s *Server) runRuleTests(ctx context.Context, owner string, rules, tests map[string]string) (policies.TestReport, error) {
	mods := maps.Clone(rules)
	maps.Copy(mods, tests)
	maps.Copy(mods, s.dirRules(owner, true))
	dir, err := s.dirTests(owner)
	if err != nil {
		return policies.TestReport{}, err
	}
	maps.Copy(mods, dir)
	return s.rules.engine.RunTests(ctx, owner, mods)
}

// dirRules returns an owner's rules from the operator directory, named
// "dir/<file>": as on disk, or, with inForce, as in force when some of
// them do not compile (an old version kept, a file left out).
func (s *Server) dirRules(owner string, inForce bool) map[string]string {
	s.rules.mu.Lock()
	files, degraded := s.rules.dirOwners[owner], s.rules.degraded[owner]
	s.rules.mu.Unlock()
	mods := map[string]string{}
	if inForce && degraded {
		if cur := s.rules.engine.OwnerModules(owner); cur != nil {
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
func (s *Server) ownerRules(ctx context.Context, owner string) (map[string]string, error) {
	mods, tests, err := s.storedModules(ctx, owner)
	if err != nil {
		return nil, err
	}
	maps.Copy(mods, tests)
	maps.Copy(mods, s.dirRules(owner, false))
	dir, err := s.dirTests(owner)
	maps.Copy(mods, dir)
	return mods, err
}

// ensureRules puts the system rules and an owner's rules in force in the
// engine if they are not yet. Evaluations of rules in force never wait
// here. While the change feed is interrupted past FeedStaleness, the
// owner's rules are read from the store on each use (and compiled again
// only if they changed): another node may have changed them.
func (s *Server) ensureRules(ctx context.Context, owner string) error {
	s.rules.mu.Lock()
	system, done := s.rules.system, s.rules.loaded[owner]
	s.rules.mu.Unlock()
	if !system {
		if err := s.reloadSystemRules(ctx); err != nil {
			return err
		}
	}
	if done && s.feed.fresh() {
		return nil
	}
	return s.reloadRules(ctx, owner)
}

// reloadRules recompiles an owner's rules from their sources. The rules
// saved through the API must all compile (they did when saved); a file of
// the operator directory that does not compile keeps its old version, or
// is left out if that cannot grant more, or else the owner's rules are
// broken and refuse everything (policies.LoadOwnerModules). An error means
// that compiling could not run (too busy, too slow, the caller gone):
// nothing changed, and the next use tries again.
func (s *Server) reloadRules(ctx context.Context, owner string) error {
	stored, err := s.storedRules(ctx, owner)
	if err != nil {
		return err
	}
	load, err := s.rules.engine.LoadOwnerModules(ctx, owner, stored, s.dirRules(owner, false))
	if err != nil {
		return err
	}
	s.reportLoad(owner, load)
	s.rules.mu.Lock()
	s.rules.loaded[owner] = true
	s.rules.mu.Unlock()
	return nil
}

// reloadSystemRules recompiles the system rules of the operator directory.
// A file that does not compile keeps its old version; without one, every
// request is refused until it compiles: system rules only take away, and
// none may be dropped.
func (s *Server) reloadSystemRules(ctx context.Context) error {
	s.rules.mu.Lock()
	system := s.rules.dirSystem
	s.rules.mu.Unlock()
	load, err := s.rules.engine.LoadSystemModules(ctx, system)
	if err != nil {
		return err
	}
	s.reportLoad("", load)
	s.rules.mu.Lock()
	s.rules.system = true
	s.rules.mu.Unlock()
	return nil
}

// reportLoad logs what a load of rules did, naming the files on disk: an
// error when something does not compile, and, once everything compiles
// again, that it does.
func (s *Server) reportLoad(owner string, l policies.Load) {
	who := ownerField(owner)
	if owner == "" {
		who = zap.String("rules", "system")
	}
	problems := make(policies.CompileErrors, len(l.Problems))
	var files []string
	for i, p := range l.Problems {
		c := *p
		c.Module = s.ruleFile(owner, p.Module)
		problems[i] = &c
		if c.Module != "" && !slices.Contains(files, c.Module) {
			files = append(files, c.Module)
		}
	}
	s.rules.mu.Lock()
	was := s.rules.degraded[owner]
	if len(l.Problems) > 0 {
		s.rules.degraded[owner] = true
		s.rules.problems[owner] = PolicyProblem{Owner: owner, Broken: l.Broken, Files: files, Problems: problems,
			OldVersionInForce: s.ruleFiles(owner, l.Previous), LeftOut: s.ruleFiles(owner, l.LeftOut)}
	} else {
		delete(s.rules.degraded, owner)
		delete(s.rules.problems, owner)
	}
	s.rules.mu.Unlock()
	if len(l.Problems) == 0 {
		if was {
			s.log.Info("rules compile again: all of them are in force", who)
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
			zap.Strings("old_version_in_force", s.ruleFiles(owner, l.Previous)),
			zap.Strings("left_out", s.ruleFiles(owner, l.LeftOut)))
	}
	s.log.Error(msg, fields...)
}

// ruleFile names a module of an owner's rules (of the system rules when
// owner is empty) for the operator: the path of its file in the operator
// directory, or the name the owner saved it under.
func (s *Server) ruleFile(owner, module string) string {
	if owner == "" {
		if module == "" {
			return ""
		}
		return filepath.Join(s.rules.dir, policies.SystemDir, module)
	}
	if name, ok := strings.CutPrefix(module, dirModulePrefix); ok {
		return filepath.Join(s.rules.dir, owner, name)
	}
	return module
}

func (s *Server) ruleFiles(owner string, modules []string) []string {
	out := make([]string, len(modules))
	for i, m := range modules {
		out[i] = s.ruleFile(owner, m)
	}
	return out
}

// setDirRules takes the operator directory's rules, from the watcher.
func (s *Server) setDirRules(owners map[string]map[string]string, system map[string]string) {
	ctx := context.Background()
	s.rules.mu.Lock()
	s.rules.dirError = ""
	s.rules.dirSystem = maps.Clone(system)
	changed := map[string]bool{}
	for o := range s.rules.dirOwners {
		changed[o] = true
	}
	for o := range owners {
		changed[o] = true
	}
	s.rules.dirOwners = maps.Clone(owners)
	for o := range changed {
		delete(s.rules.loaded, o)
	}
	s.rules.mu.Unlock()
	if err := s.reloadSystemRules(ctx); err != nil {
		s.rules.mu.Lock()
		s.rules.system = false // the next request tries again
		s.rules.mu.Unlock()
		s.log.Error("loading the system rules; trying again at the next request", zap.Error(err))
	}
	for o := range changed {
		if err := s.reloadRules(ctx, o); err != nil {
			s.log.Error("loading an owner's rules; trying again at the next request", ownerField(o), zap.Error(err))
		}
	}
}

// PutRule stores (or replaces) one of an owner's rule modules, after
// checking that the owner's rules still compile with it. A CompileErrors
// (matching policies.ErrCompile) says where they do not; policies.ErrBusy
// and policies.ErrCompileTimeout that they could not be compiled now.
//
// A module named *_test.rego is a Rego test of the rules (RuleTests): it
// is stored if it compiles with the rules, failing tests or not, and never
// put in force.
func (s *Server) PutRule(ctx context.Context, owner, name, source string) error {
	if !validRuleName(name) {
		return fmt.Errorf("%w: rule names are 1 to 64 letters, digits, '.', '-' or '_'", ErrBadRuleName)
	}
	mods, tests, err := s.storedModules(ctx, owner)
	if err != nil {
		return err
	}
	if policies.IsTestModule(name) {
		tests[name] = source
		if _, err := s.runRuleTests(ctx, owner, mods, tests); err != nil && !errors.Is(err, policies.ErrNoTests) {
			return err
		}
		if err := s.store.Put(ctx, nsPolicy, owner+sep+name, []byte(source), time.Time{}); err != nil {
			return fmt.Errorf("storing a rule test: %w", err)
		}
		s.log.Info("owner rule test saved", ownerField(owner))
		return nil
	}
	mods[name] = source
	if err := s.checkRules(ctx, owner, mods); err != nil {
		return err
	}
	if err := s.store.Put(ctx, nsPolicy, owner+sep+name, []byte(source), time.Time{}); err != nil {
		return fmt.Errorf("storing a rule: %w", err)
	}
	s.log.Info("owner rule saved", ownerField(owner))
	return s.reloadRules(ctx, owner)
}

// DeleteRule removes one of an owner's rule modules, after checking that
// the others still compile without it (the same errors as PutRule).
func (s *Server) DeleteRule(ctx context.Context, owner, name string) error {
	mods, tests, err := s.storedModules(ctx, owner)
	if err != nil {
		return err
	}
	if _, ok := tests[name]; ok {
		// A test: nothing in force depends on it.
		if err := s.store.Delete(ctx, nsPolicy, owner+sep+name); err != nil && !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("deleting a rule test: %w", err)
		}
		return nil
	}
	if _, ok := mods[name]; !ok {
		return ErrNoSuchRule
	}
	delete(mods, name)
	if err := s.checkRules(ctx, owner, mods); err != nil {
		return err
	}
	if err := s.store.Delete(ctx, nsPolicy, owner+sep+name); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return ErrNoSuchRule
		}
		return fmt.Errorf("deleting a rule: %w", err)
	}
	return s.reloadRules(ctx, owner)
}

// checkRules compiles the rules an owner saved through the API, with the
// directory's rules in force, as the owner asks to change them. It is a
// compilation an owner asked for: refused with policies.ErrBusy when too
// many run.
func (s *Server) checkRules(ctx context.Context, owner string, stored map[string]string) error {
	mods := maps.Clone(stored)
	maps.Copy(mods, s.dirRules(owner, true))
	return s.rules.engine.Check(ctx, owner, mods)
}

// Rules returns an owner's rule modules, those from the operator directory
// included (named "dir/<file>", read-only).
func (s *Server) Rules(ctx context.Context, owner string) (map[string]string, error) {
	return s.ownerRules(ctx, owner)
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
