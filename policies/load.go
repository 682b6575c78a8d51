package policies

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// Rules that do not compile, from an operator directory, are handled one
// module at a time, so that one broken file does not turn off the others.
// What must never happen is that leaving a module out grants more: a
// module that takes scopes away (deny, and every system rule) must not be
// dropped. So a module that does not compile, in order:
//
//  1. keeps the version in force, if there is one (a live edit);
//  2. is left out, if it is an owner's module that does not mention deny
//     and none of the others refers to a rule only it could define;
//  3. otherwise, the owner's rules (for system rules, everyone's) are
//     broken: every evaluation fails with ErrBroken until they compile,
//     which refuses every request, console shares included.

// Load is what LoadOwnerModules or LoadSystemModules put in force.
type Load struct {
	// Problems are what is wrong with the modules as given, with their
	// names as given; nil when they all compiled together.
	Problems CompileErrors
	// Previous are the modules (of those that may be left out) whose
	// version in force stays in force, the new one not compiling. Sorted.
	Previous []string
	// LeftOut are the modules left out: they do not compile, none was in
	// force, and nothing they could hold takes scopes away. Sorted.
	LeftOut []string
	// Broken is true when no safe subset compiles: every evaluation for
	// the owner (for system rules, for every owner) fails with ErrBroken.
	Broken bool
}

// module states in tolerate.
const (
	asGiven = iota
	previousVersion
	leftOut
)

// LoadOwnerModules puts an owner's rules in force like SetOwnerModules, but
// tolerates modules of optional that do not compile: each keeps its
// version in force, or is left out where that cannot grant more, or else
// the owner's rules are broken (see Load). fixed are modules that are
// never replaced or left out (rules the owner saved, which compiled when
// they were saved); the names of fixed and optional must differ. The same
// modules as last time are not compiled again, and the same Load is
// returned. The error is ErrBusy, ErrCompileTimeout or ctx's: then nothing
// changed.
func (e *Engine) LoadOwnerModules(ctx context.Context, owner string, fixed, optional map[string]string) (Load, error) {
	if owner == "" {
		return Load{}, errors.New("policies: empty owner")
	}
	slot := e.slot(owner)
	l, err := e.load(ctx, slot, ownerKind, owner, fixed, optional)
	if err == nil {
		e.admit(owner, slot)
	}
	return l, err
}

// LoadSystemModules puts the system rules in force like SetSystemModules,
// but a module that does not compile keeps its version in force; if it has
// none, the system rules are broken, and every evaluation fails with
// ErrBroken until they compile. System rules only take scopes away: none
// is ever left out.
func (e *Engine) LoadSystemModules(ctx context.Context, modules map[string]string) (Load, error) {
	return e.load(ctx, &e.system, systemKind, "", nil, modules)
}

func (e *Engine) load(ctx context.Context, slot *ownerSlot, k *ruleKind, owner string, fixed, optional map[string]string) (Load, error) {
	all := maps.Clone(fixed)
	if all == nil {
		all = map[string]string{}
	}
	maps.Copy(all, optional)
	h := hashModules(k, all)

	slot.mu.Lock()
	defer slot.mu.Unlock()
	if cur := slot.prog.Load(); cur != nil && slot.last == h && (!cur.evicted || e.member(owner, cur.hash)) {
		return slot.lastLoad, nil
	}
	if len(all) == 0 {
		slot.prog.Store(nil)
		slot.last, slot.lastLoad = h, Load{}
		if k == ownerKind {
			e.pack(ctx, owner, slot, nil)
		}
		return Load{}, nil
	}
	previous := slot.prog.Load().sources()
	undo := func() {}
	if k == ownerKind {
		var inForce bool
		if inForce, undo = e.checkedInForce(ctx, owner, slot, h, all); inForce {
			return Load{}, nil
		}
	}
	p, l, err := e.tolerate(ctx, k, owner, all, optional, previous)
	if err != nil {
		undo()
		return Load{}, err
	}
	slot.prog.Store(p)
	slot.last, slot.lastLoad = h, l
	if k == ownerKind {
		e.pack(ctx, owner, slot, p)
	}
	return l, nil
}

// checkedInForce puts an owner's rules (all, with hash h; slot.mu held)
// in force without compiling them on their own, when Options.Checked says
// they compiled so (they would be in force as given, Load{}) and their
// shard will compile them at its first compilation, or has (see
// checked.go): it reports true. Otherwise the caller compiles them on
// their own: meanwhile they are in force as sources, like rules dropped
// from memory, and undo puts back the rules in force before, for a
// compilation that could not run.
func (e *Engine) checkedInForce(ctx context.Context, owner string, slot *ownerSlot, h [sha256.Size]byte, all map[string]string) (inForce bool, undo func()) {
	undefined, ok := e.opts.Checked.get(ownerKind, h, e.opts.bounds())
	if !ok {
		return false, func() {}
	}
	prev, prevLast, prevLoad := slot.prog.Load(), slot.last, slot.lastLoad
	p := &program{hash: h, modules: maps.Clone(all), undefined: undefined, evicted: true}
	slot.prog.Store(p)
	slot.last, slot.lastLoad = h, Load{}
	if e.pack(ctx, owner, slot, p) {
		return true, nil
	}
	return false, func() {
		slot.prog.Store(prev)
		slot.last, slot.lastLoad = prevLast, prevLoad
		e.pack(ctx, owner, slot, prev)
	}
}

// tolerate compiles all, replacing or leaving out the modules of optional
// that do not compile, as the comment at the top of this file says.
// previous are the modules in force.
func (e *Engine) tolerate(ctx context.Context, k *ruleKind, owner string, all, optional, previous map[string]string) (*program, Load, error) {
	cur := maps.Clone(all)
	state := map[string]int{}
	var l Load
	broken := func(why string) (*program, Load, error) {
		l.Broken = true
		l.Previous, l.LeftOut = nil, nil
		var err error = l.Problems
		if why != "" {
			err = fmt.Errorf("%s: %w", why, l.Problems)
		}
		return &program{hash: hashModules(k, all), refused: fmt.Errorf("%w: %w", ErrBroken, err)}, l, nil
	}
	reverted := false
	for {
		p, err := e.program(ctx, k, owner, cur, true)
		var ce CompileErrors
		if err != nil && !errors.As(err, &ce) {
			return nil, Load{}, err
		}
		if l.Problems == nil {
			l.Problems = ce
		}
		if err == nil {
			for name, s := range state {
				switch s {
				case previousVersion:
					l.Previous = append(l.Previous, name)
				case leftOut:
					l.LeftOut = append(l.LeftOut, name)
				}
			}
			slices.Sort(l.Previous)
			slices.Sort(l.LeftOut)
			if len(l.LeftOut) > 0 && len(p.undefined) > 0 {
				return broken(fmt.Sprintf("the rules refer to %s, which modules left out may define",
					strings.Join(p.undefined, ", ")))
			}
			return p, l, nil
		}
		var names []string // the optional modules in error
		for _, e := range ce {
			if _, ok := optional[e.Module]; ok && !slices.Contains(names, e.Module) {
				names = append(names, e.Module)
			}
		}
		if len(names) == 0 {
			// The problem is in a fixed module, or in the rule set as a
			// whole: try once with every optional module as it was.
			if reverted {
				return broken("")
			}
			reverted = true
			changed := false
			for name := range optional {
				if old, ok := previous[name]; ok && state[name] == asGiven && old != cur[name] {
					cur[name], state[name] = old, previousVersion
					changed = true
				}
			}
			if !changed {
				return broken("")
			}
			continue
		}
		for _, name := range names {
			old, had := previous[name]
			switch {
			case state[name] == asGiven && had && old != cur[name]:
				cur[name], state[name] = old, previousVersion
			case k == ownerKind && mayLeaveOut(optional[name]) && (!had || mayLeaveOut(old)):
				delete(cur, name)
				state[name] = leftOut
			default:
				return broken("")
			}
		}
	}
}

// mayLeaveOut reports whether leaving out an owner's module with this
// source, which does not compile, cannot grant more: it does not mention
// deny anywhere, so it cannot define one. (It may define helpers that other
// modules use; tolerate checks that they still compile and refer to no
// rule left undefined.)
func mayLeaveOut(src string) bool { return !strings.Contains(src, "deny") }
