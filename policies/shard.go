package policies

import (
	"context"
	"crypto/sha256"
	"maps"
	"slices"
	"sync"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
)

// Compiling an owner's rules in a compiler of their own compiles the
// library with them, every time: about 4 ms and 225 KiB for a rule of a
// few lines, of which the owner's own rules are a tenth. So the rules of
// many owners, once they compiled on their own (which checks them and
// gives their errors), are compiled again together with one copy of the
// library, shardSize owners at a time: a shard. In a shard each owner's
// modules are moved to a package of their own, data.uma.owners[<owner>],
// and the shard's one query reads the package of the owner of the input's
// resource (input.resource.owner, which Engine.evaluate sets to the owner
// evaluated, never to what the caller says) as the decision module does.
// The compiler indexes the packages by their constant keys: the query
// finds the owner's among shardSize at the cost of a map lookup. An owner
// whose modules refer to data anywhere but their own package (data.uma.share)
// and the library (data.uma.lib) stays compiled on their own: in a shard,
// nothing an owner writes can reach another owner's rules.
//
// A shard is compiled again, by the caller putting rules in force, once
// half of it changed since it was last compiled (owners added, changed or
// removed): each compilation of a shard is shared by at least
// shardSize/2 changes. Until then, an owner's new rules are in force
// compiled on their own, and the shard keeps the owner's old rules unused.
// A shard keeps of its members only their sources, which the programs in
// force keep anyway: each compilation of it parses them again.

// shardSize is the number of owners whose rules share one compilation.
const shardSize = 64

var (
	sharePath  = ast.MustParseRef("data.uma.share")
	libPath    = ast.MustParseRef("data.uma.lib")
	ownersPath = ast.MustParseRef("data.uma.owners")
)

// shardQuery is the decision of the owner of the input's resource, from
// the owner's package in a shard, as the owner's decision module
// (ruleKind.decision) makes it: each output is the set the owner's rules
// make, or the empty set.
const shardQuery = `{
	"allow": {x | data.uma.owners[input.resource.owner].allow[x]},
	"deny": {x | data.uma.owners[input.resource.owner].deny[x]},
	"ask_owner": {x | data.uma.owners[input.resource.owner].ask_owner[x]},
	"required_claims": {x | data.uma.owners[input.resource.owner].required_claims[x]},
	"shared": data.uma.lib.shared_scopes,
}`

// shards are the shards of an Engine's owners.
type shards struct {
	mu   sync.Mutex
	of   map[string]*shard // owner -> the shard holding their rules
	open *shard            // the shard new owners join, nil when full
}

// shard is the rules of up to shardSize owners compiled together.
type shard struct {
	mu      sync.Mutex // serializes compilations; guards the fields
	members map[string]*member
	changed int // members added, changed or removed since the last compilation
}

// member is an owner's rules in a shard: hash, sources and undefined are
// those of the owner's rules compiled on their own, which the shard's
// compilation replaces.
type member struct {
	slot      *ownerSlot
	hash      [sha256.Size]byte
	sources   map[string]string
	undefined []string
}

// pack puts an owner's rules in force compiled on their own (p) in a
// shard, or takes them out of it if p is nil or cannot be shared, and
// compiles the shard again if half of it changed. It returns with p, or
// the shard's compilation of the same rules, in force.
func (e *Engine) pack(ctx context.Context, owner string, slot *ownerSlot, p *program) {
	if p != nil && p.shard {
		return // in force from a shard already
	}
	var m *member
	if p != nil && p.refused == nil && !p.evicted {
		if _, ok := confined(owner, p.modules); ok {
			m = &member{slot: slot, hash: p.hash, sources: p.modules, undefined: p.undefined}
		}
	}
	e.shards.mu.Lock()
	s := e.shards.of[owner]
	if s == nil && m == nil {
		e.shards.mu.Unlock()
		return
	}
	if s == nil {
		if e.shards.open == nil {
			e.shards.open = &shard{members: map[string]*member{}}
		}
		s = e.shards.open
		e.shards.of[owner] = s
	}
	if m == nil {
		delete(e.shards.of, owner)
	}
	e.shards.mu.Unlock()

	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.members[owner]
	switch {
	case m == nil && old == nil:
		return
	case m != nil && old != nil && old.hash == m.hash:
		old.slot = slot
		return // the same rules again
	case m == nil:
		delete(s.members, owner)
	default:
		s.members[owner] = m
	}
	s.changed++
	e.shards.mu.Lock()
	if s == e.shards.open && len(s.members) >= shardSize {
		e.shards.open = nil
	}
	e.shards.mu.Unlock()
	if s.changed < shardSize/2 || len(s.members) == 0 {
		return
	}
	e.compileShard(ctx, s)
}

// compileShard compiles the shard s (s.mu held) and puts each member's
// rules from it in force, where the member's rules in force are still
// those it holds. If the compilation cannot run or fails, nothing changes:
// the members' rules stay in force compiled on their own. It is counted
// neither in Engine.compiles nor by the Observer, which see the rule sets
// compiled on their own.
func (e *Engine) compileShard(ctx context.Context, s *shard) {
	release, err := e.gate.enter(ctx, "", true, e.opts.CompileTimeout)
	if err != nil {
		return
	}
	defer release()
	ctx, cancel := context.WithTimeout(ctx, e.opts.CompileTimeout)
	defer cancel()

	lib, _ := library()
	parsed := maps.Clone(lib)
	members := make(map[string]*member, len(s.members))
	for owner, m := range s.members {
		modules, ok := confined(owner, m.sources)
		if !ok {
			continue // cannot happen: it was confined when it joined
		}
		for name, mod := range modules {
			parsed[userPrefix+owner+"/"+name] = mod
		}
		members[owner] = m
	}
	c := withDeadline(ctx, ast.NewCompiler().
		WithCapabilities(capabilities).
		WithEnablePrintStatements(false).
		WithDefaultRegoVersion(ast.RegoV1))
	c.Compile(parsed)
	if ctx.Err() != nil {
		return
	}
	if c.Failed() {
		// Cannot happen with rules that compiled on their own; should it,
		// try again only after as many changes.
		s.changed = 0
		return
	}
	c.Graph = nil // only the compilation needs it (rule order, recursion)
	query, err := rego.New(
		rego.Compiler(c),
		rego.Query(shardQuery),
		rego.GenerateJSON(func(t *ast.Term, _ *rego.EvalContext) (any, error) { return t, nil }),
	).PrepareForEval(ctx)
	if err != nil {
		return
	}
	s.changed = 0
	for owner, m := range members {
		cur := m.slot.prog.Load()
		if cur == nil || cur.refused != nil || cur.hash != m.hash {
			continue // changed meanwhile: the next pack of it counts it
		}
		p := &program{hash: m.hash, modules: m.sources, query: query, undefined: m.undefined, shard: true}
		if m.slot.prog.CompareAndSwap(cur, p) {
			e.residentMu.Lock()
			if e.resident[owner] == m.slot {
				delete(e.resident, owner)
			}
			e.residentMu.Unlock()
		}
	}
}

// confined returns an owner's modules (which compiled on their own),
// parsed, resolved (every reference to data made whole) and moved to the
// owner's package in a shard, data.uma.owners[<owner>]; or false if a
// module refers to data outside its own package and the library, which a
// shard would resolve differently. What it returns refers to data only in
// the owner's package in the shard and in the library: each module is
// checked before and after it is moved.
func confined(owner string, sources map[string]string) (map[string]*ast.Module, bool) {
	resolved, err := resolve(sources)
	if err != nil {
		return nil, false
	}
	own := ownersPath.Append(ast.StringTerm(owner))
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
