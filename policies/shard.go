package policies

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
)

// Compiling an owner's rules in a compiler of their own compiles the
// library with them, every time: about 3 ms and 30 KiB for a rule of a
// few lines, of which the owner's own rules are a fraction. So the rules
// of many owners, once they compiled on their own (which checks them and
// gives their errors), are compiled again together with one copy of the
// library, shardSize rule sets at a time: a shard. Owners whose rules are
// the same once parsed (comments and layout aside: the rules of one
// template, say) have one rule set, compiled once, in one shard. In a
// shard each rule set's modules are moved to a package of their own,
// data.uma.rulesets[<set>], and the shard's one query reads the package of
// the rule set of the owner of the input's resource (input.resource.owner,
// which Engine.evaluate sets to the owner evaluated, never to what the
// caller says), which the shard's data maps to it
// (data.uma.ruleset_of[<owner>]), as the decision module does. The
// compiler indexes the packages by their constant keys: the query finds
// the owner's among shardSize at the cost of two map lookups; an owner
// the shard does not know has no rules there, and gets nothing from it.
// An owner whose modules refer to data anywhere but their own package
// (data.uma.share) and the library (data.uma.lib) stays compiled on their
// own: in a shard, nothing an owner writes can reach another rule set.
//
// A shard is compiled when one of its owners is first evaluated (until
// then its owners' rules are in force as sources only, evicted), and kept
// while it is among the Options.MaxShardsInForce shards evaluated most
// recently; a shard dropped is compiled again at its next evaluation.
// Warm compiles the shards waiting for their first evaluation ahead of it,
// which the authorization server does in the background once the operator
// directory's rules were put in force: so the first requests after a
// start do not wait for a compilation of 64 owners' rules.
//
// A shard in memory is compiled again, by the caller putting rules in
// force, once half of it changed since it was last compiled (owners
// added, changed or removed): each compilation of a shard is shared by at
// least shardSize/2 changes. Until then, an owner's new rules are in
// force compiled on their own, and the shard keeps the owner's old rules
// unused. A shard keeps of its members only their sources, which the
// programs in force keep anyway: each compilation of it parses them
// again.

// shardSize is the number of rule sets that share one compilation.
const shardSize = 64

var (
	sharePath    = ast.MustParseRef("data.uma.share")
	libPath      = ast.MustParseRef("data.uma.lib")
	rulesetsPath = ast.MustParseRef("data.uma.rulesets")
)

// shardQuery returns the decision of the owner of the input's resource,
// from the package of the owner's rule set in a shard, as the owner's
// decision module (ruleKind.decision) makes it: each output is the set the
// owner's rules make, or the empty set. An output that no rule set of the
// shard defines (defined) is the empty set without a look: each look costs
// an evaluation about 7 µs, and most owners write only allow rules.
func shardQuery(defined func(output string) bool) string {
	var b strings.Builder
	b.WriteString("{\n")
	for _, out := range ownerKind.outputs {
		if defined(out) {
			fmt.Fprintf(&b, "\t%q: {x | data.uma.rulesets[data.uma.ruleset_of[input.resource.owner]].%s[x]},\n", out, out)
		} else {
			fmt.Fprintf(&b, "\t%q: set(),\n", out)
		}
	}
	b.WriteString("\t\"shared\": data.uma.lib.shared_scopes,\n}")
	return b.String()
}

// placeholderSet is the rule set's package of confined modules that are
// only hashed (ruleSet).
const placeholderSet = "-"

// shards are the shards of an Engine's owners.
type shards struct {
	mu    sync.Mutex
	of    map[string]*shard   // owner -> the shard holding their rules
	bySet map[string]*shard   // rule set -> the shard an owner with it joins
	open  *shard              // the shard owners of a new rule set join, nil when full
	live  map[*shard]struct{} // the shards compiled, in memory
}

// shard is up to shardSize rule sets compiled together, and their owners.
type shard struct {
	mu      sync.Mutex // serializes compilations; guards the fields
	members map[string]*member
	sets    map[string]int // rule set -> its members; guarded by shards.mu too
	changed int            // members added, changed or removed since the last compilation
	// compiled is the shard's compilation in memory, nil if none.
	compiled *compiledShard

	// used is the Engine's tick at the last evaluation from this
	// shard's compilation.
	used atomic.Int64
}

// member is an owner's rules in a shard: hash, sources and undefined are
// those of the owner's rules compiled on their own, which the shard's
// compilation replaces; set names their rule set (ruleSet).
type member struct {
	slot      *ownerSlot
	hash      [sha256.Size]byte
	set       string
	sources   map[string]string
	undefined []string
}

// compiledShard is a shard's compilation: its query, the data mapping its
// owners to their rule sets (data.uma.ruleset_of), and the rule sets it
// compiled.
type compiledShard struct {
	query rego.PreparedEvalQuery
	data  storage.Store
	sets  map[string]bool
}

// join puts an owner's rules (m) in force from the shard's compilation,
// which compiled their rule set already (s.mu held): the shard's data maps
// the owner to it. It reports false if it could not.
func (e *Engine) join(ctx context.Context, s *shard, owner string, m *member, p *program) bool {
	c := s.compiled
	if c == nil || !c.sets[m.set] {
		return false
	}
	if err := storage.WriteOne(ctx, c.data, storage.AddOp, storage.Path{"uma", "ruleset_of", owner}, m.set); err != nil {
		return false
	}
	return e.inForceFrom(s, owner, m, p, c.query)
}

// inForceFrom puts an owner's rules (m) in force from the shard's query,
// in place of cur, their rules in force (s.mu held); false if those
// changed meanwhile.
func (e *Engine) inForceFrom(s *shard, owner string, m *member, cur *program, query rego.PreparedEvalQuery) bool {
	if cur == nil || cur.refused != nil || cur.hash != m.hash {
		return false
	}
	p := &program{hash: m.hash, modules: m.sources, query: query, undefined: m.undefined, shard: s}
	if !m.slot.prog.CompareAndSwap(cur, p) {
		return false
	}
	e.residentMu.Lock()
	if e.resident[owner] == m.slot {
		delete(e.resident, owner)
	}
	e.residentMu.Unlock()
	return true
}

// newShard returns an empty shard.
func newShard() *shard {
	return &shard{members: map[string]*member{}, sets: map[string]int{}}
}

// count adds n members (1 or -1) of rule set set to the shard s (s.mu and
// shards.mu held): a rule set without members leaves it.
func (sh *shards) count(s *shard, set string, n int) {
	s.sets[set] += n
	switch {
	case s.sets[set] <= 0:
		delete(s.sets, set)
		if sh.bySet[set] == s {
			delete(sh.bySet, set)
		}
	case sh.bySet[set] == nil:
		sh.bySet[set] = s
	}
}

// pack puts an owner's rules in force compiled on their own (p) in a
// shard, or takes them out of it if p is nil or cannot be shared (slot.mu
// held). If the shard is not in memory, the owner's rules are left in
// force as sources only, compiled with their shard at their next
// evaluation; if it is and compiled their rule set already, they are in
// force from it at once (join); else it is compiled again once half of it
// changed. It reports whether the owner's rules are in force from a
// shard, or will be from their shard's first compilation: so that rules
// not compiled on their own (checkedInForce) may stay so.
func (e *Engine) pack(ctx context.Context, owner string, slot *ownerSlot, p *program) bool {
	if p != nil && p.shard != nil {
		return true // in force from a shard already
	}
	var m *member
	if p != nil && p.refused == nil {
		if set, ok := ruleSet(p.modules); ok {
			m = &member{slot: slot, hash: p.hash, set: set, sources: p.modules, undefined: p.undefined}
		}
	}
	e.shards.mu.Lock()
	s := e.shards.of[owner]
	if s == nil && m == nil {
		e.shards.mu.Unlock()
		return false
	}
	if s == nil {
		if s = e.shards.bySet[m.set]; s == nil {
			if e.shards.open == nil {
				e.shards.open = newShard()
			}
			s = e.shards.open
		}
		e.shards.of[owner] = s
	}
	if m == nil {
		delete(e.shards.of, owner)
	}
	e.shards.mu.Unlock()

	s.mu.Lock()
	old := s.members[owner]
	switch {
	case m == nil && old == nil:
		s.mu.Unlock()
		return false
	case m != nil && old != nil && old.hash == m.hash:
		old.slot = slot
		s.mu.Unlock()
		return false // the same rules again
	case m == nil:
		delete(s.members, owner)
	default:
		s.members[owner] = m
	}
	joined := m != nil && e.join(ctx, s, owner, m, p)
	if !joined {
		s.changed++
	}
	e.shards.mu.Lock()
	if old != nil {
		e.shards.count(s, old.set, -1)
	}
	if m != nil {
		e.shards.count(s, m.set, 1)
	}
	if s == e.shards.open && len(s.sets) >= shardSize {
		e.shards.open = nil
	}
	_, live := e.shards.live[s]
	if live && len(s.members) == 0 {
		delete(e.shards.live, s)
		s.compiled = nil
		live = false
	}
	e.shards.mu.Unlock()
	var victims []*shard
	inForce := joined
	switch {
	case joined:
	case m != nil && !live:
		// Compiled with the shard when first evaluated.
		if slot.prog.Load() == p && !p.evicted {
			slot.prog.Store(p.dropped())
		}
		inForce = true
	case live && s.changed >= shardSize/2:
		victims, _ = e.compileShard(ctx, s)
		cur := slot.prog.Load()
		inForce = m != nil && cur != nil && cur.shard == s && !cur.evicted
	}
	s.mu.Unlock()
	e.dropShards(victims)
	return inForce
}

// member reports whether the owner's rules with hash h are in a shard.
func (e *Engine) member(owner string, h [sha256.Size]byte) bool {
	e.shards.mu.Lock()
	s := e.shards.of[owner]
	e.shards.mu.Unlock()
	if s == nil {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.members[owner]
	return m != nil && m.hash == h
}

// compileShardOf compiles the shard of an owner whose rules in force
// (slot) are not compiled, unless another evaluation did meanwhile. An
// owner without a shard is left as they are.
func (e *Engine) compileShardOf(ctx context.Context, owner string, slot *ownerSlot) error {
	e.shards.mu.Lock()
	s := e.shards.of[owner]
	e.shards.mu.Unlock()
	if s == nil {
		return nil
	}
	var victims []*shard
	var err error
	s.mu.Lock()
	if p := slot.prog.Load(); p != nil && p.evicted {
		victims, err = e.compileShard(ctx, s)
	}
	s.mu.Unlock()
	e.dropShards(victims)
	return err
}

// compileShard compiles the shard s (s.mu held) and puts each member's
// rules from it in force, where the member's rules in force are still
// those it holds. It returns the shards evaluated longest ago, past
// Options.MaxShardsInForce, for the caller to drop (dropShards) once it
// released s.mu. If the compilation cannot run, the error says why
// (ErrBusy, ErrCompileTimeout, ctx's) and nothing changes; if it fails,
// which rules that compiled on their own cannot, the members leave the
// shard, to be compiled on their own. It is counted neither in
// Engine.compiles nor by the Observer, which see the rule sets compiled
// on their own.
func (e *Engine) compileShard(ctx context.Context, s *shard) ([]*shard, error) {
	release, err := e.gate.enter(ctx, "", true, e.opts.CompileTimeout)
	if err != nil {
		return nil, err
	}
	defer release()
	return e.compileShardInSlot(ctx, s)
}

// compileShardInSlot is compileShard in a compilation slot its caller
// holds.
func (e *Engine) compileShardInSlot(ctx context.Context, s *shard) ([]*shard, error) {
	ctx, cancel := context.WithTimeout(ctx, e.opts.CompileTimeout)
	defer cancel()

	lib, _ := library()
	parsed := maps.Clone(lib)
	sets := map[string]*member{}                  // rule set -> one of its members
	setOf := make(map[string]any, len(s.members)) // owner -> rule set
	for owner, m := range s.members {
		setOf[owner] = m.set
		if sets[m.set] == nil {
			sets[m.set] = m
		}
	}
	for set, m := range sets {
		modules, ok := confined(set, m.sources)
		if !ok {
			continue // cannot happen: it was confined when it joined
		}
		for name, mod := range modules {
			parsed[userPrefix+set+"/"+name] = mod
		}
	}
	c := withDeadline(ctx, ast.NewCompiler().
		WithCapabilities(capabilitiesFor(parsed)).
		WithEnablePrintStatements(false).
		WithDefaultRegoVersion(ast.RegoV1))
	c.Compile(parsed)
	if ctx.Err() != nil {
		return nil, compileStopped(ctx)
	}
	if c.Failed() {
		e.shards.mu.Lock()
		for owner, m := range s.members {
			delete(e.shards.of, owner)
			e.shards.count(s, m.set, -1)
		}
		if e.shards.open == s {
			e.shards.open = nil
		}
		delete(e.shards.live, s)
		e.shards.mu.Unlock()
		s.members, s.compiled = map[string]*member{}, nil
		return nil, nil
	}
	c.Graph = nil // only the compilation needs it (rule order, recursion)
	data := inmem.NewFromObjectWithOpts(map[string]any{"uma": map[string]any{"ruleset_of": setOf}},
		inmem.OptRoundTripOnWrite(false))
	query, err := rego.New(
		rego.Compiler(c),
		rego.Store(data),
		rego.Query(shardQuery(func(out string) bool {
			for set := range sets {
				if len(c.GetRulesExact(rulesetsPath.Append(ast.StringTerm(set)).Append(ast.StringTerm(out)))) > 0 {
					return true
				}
			}
			return false
		})),
		rego.GenerateJSON(func(t *ast.Term, _ *rego.EvalContext) (any, error) { return t, nil }),
	).PrepareForEval(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil, compileStopped(ctx)
		}
		return nil, fmt.Errorf("%w: %v", ErrEvaluation, err)
	}
	s.changed = 0
	s.compiled = &compiledShard{query: query, data: data, sets: make(map[string]bool, len(sets))}
	for set := range sets {
		s.compiled.sets[set] = true
	}
	for owner, m := range s.members {
		// Those changed meanwhile stay as they are: the next pack of
		// them counts them.
		e.inForceFrom(s, owner, m, m.slot.prog.Load(), query)
	}
	var victims []*shard
	e.shards.mu.Lock()
	e.shards.live[s] = struct{}{}
	s.used.Store(e.tick.Add(1))
	for len(e.shards.live) > e.opts.MaxShardsInForce {
		var old *shard
		for v := range e.shards.live {
			if v != s && (old == nil || v.used.Load() < old.used.Load()) {
				old = v
			}
		}
		delete(e.shards.live, old)
		victims = append(victims, old)
	}
	e.shards.mu.Unlock()
	return victims, nil
}

// Warm compiles the shards whose owners' rules wait, as sources only, for
// their shard's first compilation (put in force since it was last in
// memory, or never evaluated), one at a time, while fewer than
// Options.MaxShardsInForce shards are in memory: so that the first
// evaluations after a start or a reload of many owners' rules do not
// wait for them. A shard dropped to bound memory stays dropped (its
// owners were evaluated longest ago). It returns the number of shards it
// compiled; an error says why it stopped early (ctx's, ErrCompileTimeout):
// the shards left are compiled at their first evaluation, as without
// Warm. Its compilations run in the background: each waits for a free
// compilation slot, and never makes another compilation refused (one that
// would be waits for it, see compileGate). Warm never drops a shard to make room, and
// compiles a shard whether or not it is full: call it once the rules of
// many owners were put in force, not between each. A shard someone else
// holds meanwhile (an evaluation compiling it, a change) is left to them.
func (e *Engine) Warm(ctx context.Context) (int, error) {
	e.shards.mu.Lock()
	seen := map[*shard]bool{}
	var waiting []*shard
	for _, s := range e.shards.of {
		if _, live := e.shards.live[s]; !live && !seen[s] {
			seen[s] = true
			waiting = append(waiting, s)
		}
	}
	e.shards.mu.Unlock()
	n := 0
	for _, s := range waiting {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		e.shards.mu.Lock()
		_, live := e.shards.live[s]
		full := len(e.shards.live) >= e.opts.MaxShardsInForce
		e.shards.mu.Unlock()
		if full {
			return n, nil
		}
		if live {
			continue
		}
		// The slot first, so that s stays free for evaluations and
		// changes meanwhile; then s only if no one holds it: whoever does
		// (an evaluation compiling it, a change) may be waiting for a
		// slot, this one, with s held.
		release, err := e.gate.enterBackground(ctx)
		if err != nil {
			return n, err
		}
		if !s.mu.TryLock() {
			release()
			continue
		}
		var victims []*shard
		if s.waiting() {
			victims, err = e.compileShardInSlot(ctx, s)
			if err == nil {
				n++
			}
		}
		s.mu.Unlock()
		release()
		e.dropShards(victims)
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// waiting reports whether one of the shard's members has their rules in
// force as sources only, waiting for the shard's compilation (s.mu held).
func (s *shard) waiting() bool {
	for _, m := range s.members {
		if p := m.slot.prog.Load(); p != nil && p.evicted && p.hash == m.hash {
			return true
		}
	}
	return false
}

// dropShards drops the compilations of shards no longer in memory: their
// members' rules stay in force as sources only, and their next evaluation
// compiles the shard again. A shard compiled again meanwhile is kept.
func (e *Engine) dropShards(victims []*shard) {
	for _, v := range victims {
		v.mu.Lock()
		e.shards.mu.Lock()
		_, live := e.shards.live[v]
		e.shards.mu.Unlock()
		if !live {
			v.compiled = nil
			for _, m := range v.members {
				if cur := m.slot.prog.Load(); cur != nil && cur.shard == v {
					m.slot.prog.CompareAndSwap(cur, cur.dropped())
				}
			}
		}
		v.mu.Unlock()
	}
}

// ruleSet returns the name of the rule set of an owner's modules (which
// compiled on their own): the hash of the modules confined (comments and
// layout gone), sorted; or false if they cannot be confined.
func ruleSet(sources map[string]string) (string, bool) {
	modules, ok := confined(placeholderSet, sources)
	if !ok {
		return "", false
	}
	texts := make([]string, 0, len(modules))
	for _, mod := range modules {
		texts = append(texts, mod.String())
	}
	slices.Sort(texts)
	h := sha256.New()
	for _, t := range texts {
		fmt.Fprintf(h, "%d:%s", len(t), t)
	}
	return hex.EncodeToString(h.Sum(nil)[:16]), true
}

// confined returns an owner's modules (which compiled on their own),
// parsed, resolved (every reference to data made whole) and moved to the
// package of rule set set in a shard, data.uma.rulesets[<set>]; or false
// if a module refers to data outside its own package and the library,
// which a shard would resolve differently. What it returns refers to data
// only in that package and in the library: each module is checked before
// and after it is moved.
func confined(set string, sources map[string]string) (map[string]*ast.Module, bool) {
	resolved, err := resolve(sources)
	if err != nil {
		return nil, false
	}
	own := rulesetsPath.Append(ast.StringTerm(set))
	out := make(map[string]*ast.Module, len(resolved))
	for _, name := range slices.Sorted(maps.Keys(resolved)) {
		mod := resolved[name]
		if !refersOnlyTo(mod.Rules, sharePath, libPath) {
			return nil, false
		}
		mod.Imports, mod.Comments, mod.Annotations = nil, nil, nil
		mod.Package = &ast.Package{Path: own.Copy(), Location: mod.Package.Location}
		if moveRules(mod, own); !refersOnlyTo(mod.Rules, own, libPath) {
			return nil, false
		}
		out[name] = mod
	}
	return out, true
}

// refersOnlyTo reports whether every reference to data in rules starts
// with one of the prefixes.
func refersOnlyTo(rules []*ast.Rule, prefixes ...ast.Ref) bool {
	ok := true
	for _, r := range rules {
		ast.WalkRefs(r, func(ref ast.Ref) bool {
			if ref.HasPrefix(ast.DefaultRootRef) && !slices.ContainsFunc(prefixes, ref.HasPrefix) {
				ok = false
			}
			return !ok
		})
	}
	return ok
}

// moveRules rewrites the references of mod's rules (not its package) to
// data.uma.share into the owner's package own, and gives every term and
// expression of a rule the rule's location: a shard keeps one location
// per rule rather than one per term (a tenth of its memory); the rules
// compiled, so only an evaluation error can show one, at the rule's line
// in a shard. It writes only the terms holding such a reference or a
// location: the others may be shared with other modules (OPA interns
// small terms, without a location).
func moveRules(mod *ast.Module, own ast.Ref) {
	for _, r := range mod.Rules {
		ast.WalkTerms(r, func(t *ast.Term) bool {
			if ref, ok := t.Value.(ast.Ref); ok && ref.HasPrefix(sharePath) {
				t.Value = own.Concat(ref[len(sharePath):])
			}
			if t.Location != nil {
				t.Location = r.Location
			}
			return false
		})
		ast.WalkExprs(r, func(x *ast.Expr) bool {
			if x.Location != nil {
				x.Location = r.Location
			}
			return false
		})
		r.Module = mod
	}
}
