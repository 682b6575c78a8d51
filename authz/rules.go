package authz

import (
	"context"
	"errors"
	"fmt"
	"maps"
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

	mu        sync.Mutex
	dirOwners map[string]map[string]string // from the operator directory
	loaded    map[string]bool              // owners whose rules are in the engine
}

// storedRules returns the rules an owner wrote through the API.
func (s *Server) storedRules(ctx context.Context, owner string) (map[string]string, error) {
	recs, err := s.store.List(ctx, nsPolicy, owner+sep, 0)
	if err != nil {
		return nil, fmt.Errorf("listing rules: %w", err)
	}
	out := make(map[string]string, len(recs))
	for _, r := range recs {
		out[r.Key[len(owner)+1:]] = string(r.Value)
	}
	return out, nil
}

// ownerRules returns all of an owner's rules: the directory's and the API's.
func (s *Server) ownerRules(ctx context.Context, owner string) (map[string]string, error) {
	mods, err := s.storedRules(ctx, owner)
	if err != nil {
		return nil, err
	}
	s.rules.mu.Lock()
	for name, src := range s.rules.dirOwners[owner] {
		mods[dirModulePrefix+name] = src
	}
	s.rules.mu.Unlock()
	return mods, nil
}

// ensureRules puts an owner's rules in force in the engine if they are not
// yet.
func (s *Server) ensureRules(ctx context.Context, owner string) error {
	s.rules.mu.Lock()
	done := s.rules.loaded[owner]
	s.rules.mu.Unlock()
	if done {
		return nil
	}
	return s.reloadRules(ctx, owner)
}

// reloadRules recompiles an owner's rules from their sources.
func (s *Server) reloadRules(ctx context.Context, owner string) error {
	mods, err := s.ownerRules(ctx, owner)
	if err != nil {
		return err
	}
	err = s.rules.engine.SetOwnerModules(owner, mods)
	if err != nil && errors.Is(err, policies.ErrCompile) {
		// Rules that no longer compile (an operator's file): the previous
		// rules, or none, stay in force. Deny by default.
		s.log.Warn("an owner's rules do not compile", ownerField(owner), zap.Error(err))
		err = nil
	}
	if err != nil {
		return err
	}
	s.rules.mu.Lock()
	s.rules.loaded[owner] = true
	s.rules.mu.Unlock()
	return nil
}

// setDirRules takes the operator directory's rules, from the watcher.
func (s *Server) setDirRules(owners map[string]map[string]string, system map[string]string) {
	if err := s.rules.engine.SetSystemModules(system); err != nil {
		s.log.Error("the system rules do not compile; the previous ones stay in force", zap.Error(err))
	}
	s.rules.mu.Lock()
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
	ctx := context.Background()
	for o := range changed {
		if err := s.reloadRules(ctx, o); err != nil {
			s.log.Error("loading an owner's rules", ownerField(o), zap.Error(err))
		}
	}
}

// PutRule stores (or replaces) one of an owner's rule modules, after
// checking that the owner's rules still compile with it. A CompileErrors
// (matching policies.ErrCompile) says where they do not.
func (s *Server) PutRule(ctx context.Context, owner, name, source string) error {
	if !validRuleName(name) {
		return fmt.Errorf("%w: rule names are 1 to 64 letters, digits, '.', '-' or '_'", ErrBadRuleName)
	}
	mods, err := s.ownerRules(ctx, owner)
	if err != nil {
		return err
	}
	mods[name] = source
	if err := s.rules.engine.Check(owner, mods); err != nil {
		return err
	}
	if err := s.store.Put(ctx, nsPolicy, owner+sep+name, []byte(source), time.Time{}); err != nil {
		return fmt.Errorf("storing a rule: %w", err)
	}
	s.log.Info("owner rule saved", ownerField(owner))
	return s.reloadRules(ctx, owner)
}

// DeleteRule removes one of an owner's rule modules.
func (s *Server) DeleteRule(ctx context.Context, owner, name string) error {
	if err := s.store.Delete(ctx, nsPolicy, owner+sep+name); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return ErrNoSuchRule
		}
		return fmt.Errorf("deleting a rule: %w", err)
	}
	return s.reloadRules(ctx, owner)
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
