package policies

import (
	"context"
	"crypto/sha256"
	"sync"

	"golang.org/x/sync/singleflight"
)

// A configuration's check (CheckDir, at a load or a reload) compiles each
// owner's rules of the operator directory on their own, and the server
// started next compiles them on their own again to put them in force,
// only to drop that compilation: owners' rules are evaluated in shards
// (shard.go), compiled later. A CheckedRules shared by the two
// (Options.Checked) remembers the rule sets that compiled on their own,
// and what they left undefined: an Engine putting one of them in force
// into a shard not yet compiled skips that second compilation. A rule set's
// compilation on its own depends only on its kind, its modules and the
// bounds (the library and the built-ins are the binary's), so what it
// remembers stays true. Nor does it depend on comments and layout (the
// parser keeps no annotations): CheckDir also remembers the rule sets
// by their parsed form, and compiles one of those that read the same (the
// rules of one template, say) for all.

// maxCheckedRules bounds the rule sets a CheckedRules remembers (about
// 150 bytes each); past it, it forgets them all and starts again.
const maxCheckedRules = 1 << 16

// CheckedRules remembers the rule sets that compiled on their own. It is
// safe for concurrent use; the zero value is not: use NewCheckedRules.
type CheckedRules struct {
	mu     sync.Mutex
	sets   map[checkedKey][]string // -> the program's undefined rules
	flight singleflight.Group      // CheckDir's compilations, by parsed form
}

type checkedKey struct {
	kind *ruleKind
	hash [sha256.Size]byte // hashModules, or with parsed parsedHash
	b    bounds
	// parsed marks a hash of the parsed form, parsedHash.
	parsed bool
}

// NewCheckedRules returns an empty CheckedRules.
func NewCheckedRules() *CheckedRules {
	return &CheckedRules{sets: map[checkedKey][]string{}}
}

// add remembers that the rule set of kind k with hash h compiled within b,
// leaving undefined undefined. A nil c remembers nothing.
func (c *CheckedRules) add(k *ruleKind, h [sha256.Size]byte, b bounds, undefined []string) {
	c.put(checkedKey{kind: k, hash: h, b: b}, undefined)
}

// get returns what add remembered of a rule set.
func (c *CheckedRules) get(k *ruleKind, h [sha256.Size]byte, b bounds) ([]string, bool) {
	return c.lookup(checkedKey{kind: k, hash: h, b: b})
}

func (c *CheckedRules) put(key checkedKey, undefined []string) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.sets) >= maxCheckedRules {
		clear(c.sets)
	}
	c.sets[key] = undefined
}

func (c *CheckedRules) lookup(key checkedKey) ([]string, bool) {
	if c == nil {
		return nil, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	u, ok := c.sets[key]
	return u, ok
}

// parsedHash returns the hash of a rule set of kind k as parsed within b
// (module names and what they print once parsed), or false if a module
// does not parse within b.
func parsedHash(k *ruleKind, modules map[string]string, b bounds) ([sha256.Size]byte, bool) {
	printed := make(map[string]string, len(modules))
	for name, src := range modules {
		mod, errs := parseModule(k, name, src, b)
		if len(errs) > 0 {
			return [sha256.Size]byte{}, false
		}
		printed[name] = mod.String()
	}
	return hashModules(k, printed), true
}

// checkOnce is how CheckDir compiles one rule set: not at all if c
// remembers it, by its sources or by its parsed form; otherwise it
// compiles it in e, and remembers it both ways if it compiled. Rule sets
// that read the same once parsed, checked at once, wait for one
// compilation; if that one did not compile, each is compiled for its own
// errors (their lines may differ). The error is the compilation's.
func (c *CheckedRules) checkOnce(ctx context.Context, e *Engine, k *ruleKind, owner string, modules map[string]string) error {
	b := e.opts.bounds()
	h := hashModules(k, modules)
	if _, ok := c.get(k, h, b); ok {
		return nil
	}
	ph, parsed := parsedHash(k, modules, b)
	if !parsed {
		_, err := e.program(ctx, k, owner, modules, true)
		return err
	}
	type outcome struct {
		undefined []string
		ok        bool
	}
	byParsed := checkedKey{kind: k, hash: ph, b: b, parsed: true}
	leader := false
	var leaderErr error
	v, _, _ := c.flight.Do(string(ph[:]), func() (any, error) {
		leader = true
		if u, ok := c.lookup(byParsed); ok {
			return outcome{u, true}, nil
		}
		p, err := e.program(ctx, k, owner, modules, true)
		if err != nil {
			leaderErr = err
			return outcome{}, nil
		}
		c.put(byParsed, p.undefined)
		return outcome{p.undefined, true}, nil
	})
	o := v.(outcome)
	switch {
	case leader:
		if o.ok {
			c.add(k, h, b, o.undefined)
		}
		return leaderErr
	case o.ok:
		c.add(k, h, b, o.undefined)
		return nil
	}
	_, err := e.program(ctx, k, owner, modules, true)
	return err
}
