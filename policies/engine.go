// Package policies decides what a requesting party may do on an owner's
// resource, from rules written in Rego: each owner's sharing rules (package
// uma.share), the operator's system rules (package uma.system) and the shares
// the owner made in the console. It is the only package of caddy-uma that
// knows OPA; its API carries no OPA types.
//
// Every owner's rules are compiled in a compiler of their own, holding only
// them and the built-in library (package uma.lib), and then, where they read
// nothing of data but their own package and the library, again with those of
// other owners in a shard, each in a package of their own (see shard.go): an
// owner's rules can neither see nor change another owner's. Rules run in a sandbox (no network,
// no clock but input.now, no randomness) under a time limit. The default is
// deny: an owner with no rules and no console shares grants nothing.
//
// See README.md for the contract between rules and the engine.
package policies

import (
	"container/list"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/topdown"
)

// Defaults of Options.
const (
	DefaultTimeout          = 250 * time.Millisecond
	DefaultMaxModuleBytes   = 64 << 10
	DefaultMaxModules       = 64
	DefaultCompileTimeout   = 2 * time.Second
	DefaultMaxRules         = 1000
	DefaultMaxTerms         = 20000
	DefaultMaxRuleExprs     = 100
	DefaultMaxDepth         = 32
	DefaultMaxClosureDepth  = 4
	DefaultMaxOwnerCompiles = 1
	DefaultMaxOwnersInForce = 256
	DefaultMaxShardsInForce = 256
)

// DefaultMaxCompiles is the default of Options.MaxCompiles: half the CPUs
// Go may use, at least one, so that compiling leaves CPU to evaluations.
func DefaultMaxCompiles() int { return max(1, runtime.GOMAXPROCS(0)/2) }

// compiledCacheSize is how many recently compiled rule sets are kept besides
// those in force, so that Check followed by SetOwnerModules compiles once
// and owners with identical rules share one compilation.
const compiledCacheSize = 32

// now is the clock used when Input.Now is zero; tests pin it.
var now = time.Now

// Options configure an Engine. Zero values mean the defaults.
type Options struct {
	// Timeout bounds one evaluation (owner and system rules together);
	// default 250ms.
	Timeout time.Duration
	// MaxModuleBytes bounds the size of one module; default 64 KiB.
	MaxModuleBytes int
	// MaxModules bounds the number of modules of one owner, and of the
	// system rules; default 64.
	MaxModules int

	// CompileTimeout bounds one compilation of a rule set; default 2s. A
	// compilation also stops when its caller's context ends (a client that
	// went away), between two stages of the compiler.
	CompileTimeout time.Duration
	// MaxRules bounds the rules of one rule set, each else counting as one;
	// default 1000.
	MaxRules int
	// MaxTerms bounds the terms (values, variables, references, calls) of
	// one rule set; default 20,000.
	MaxTerms int
	// MaxRuleExprs bounds the expressions of one rule, each function call
	// in them counting as one more; default 100.
	MaxRuleExprs int
	// MaxDepth bounds how deep terms nest (calls in calls, arrays in
	// arrays, ...); default 32.
	MaxDepth int
	// MaxClosureDepth bounds how deep comprehensions and every nest in
	// each other; default 4.
	MaxClosureDepth int
	// MaxCompiles bounds the compilations running at once; default half
	// the CPUs, at least one. Rules sent to be checked (Check,
	// EvaluateDraft) are refused with ErrBusy when none is free; rules
	// put in force wait for one, within CompileTimeout.
	MaxCompiles int
	// MaxOwnerCompiles bounds the compilations of one owner's rules running
	// at once: beyond it, that owner's rules sent to be checked are refused
	// with ErrBusy; default 1.
	MaxOwnerCompiles int
	// MaxOwnersInForce bounds the owners whose rules stay in memory
	// compiled on their own (each with its own compilation of the library,
	// about 30 KiB for a small rule); past it, those of the owner
	// evaluated longest ago are dropped, their sources kept, and Evaluate
	// answers ErrNotInForce for that owner until they are put in force
	// again. Rules in force from a shard (see shard.go), which share one
	// compilation of the library with other owners, do not count.
	// Default 256.
	MaxOwnersInForce int
	// MaxShardsInForce bounds the shards (see shard.go) whose compilation
	// stays in memory: each holds up to 64 rule sets (and every owner of
	// one) with one copy of the library, about 0.7 MiB for 64 rule sets of
	// a few lines each. A shard is compiled when one of its owners is
	// first evaluated, or by Warm; past the bound, the shard evaluated
	// longest ago is dropped, and compiled again at its next evaluation.
	// Default 256 (16,384 rule sets, and more owners when some share one).
	MaxShardsInForce int

	// Observer receives the duration and outcome of every compilation
	// and evaluation, for metrics; nil means none.
	Observer Observer
	// Checked, when not nil, remembers the rule sets compiled on their
	// own, and is read when rules are put in force: share one between
	// CheckDir and the Engine that puts the same rules in force next
	// (see checked.go).
	Checked *CheckedRules
}

// withDefaults returns o with zero values replaced by the defaults.
func (o Options) withDefaults() Options {
	orDefault := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.CompileTimeout <= 0 {
		o.CompileTimeout = DefaultCompileTimeout
	}
	orDefault(&o.MaxModuleBytes, DefaultMaxModuleBytes)
	orDefault(&o.MaxModules, DefaultMaxModules)
	orDefault(&o.MaxRules, DefaultMaxRules)
	orDefault(&o.MaxTerms, DefaultMaxTerms)
	orDefault(&o.MaxRuleExprs, DefaultMaxRuleExprs)
	orDefault(&o.MaxDepth, DefaultMaxDepth)
	orDefault(&o.MaxClosureDepth, DefaultMaxClosureDepth)
	orDefault(&o.MaxCompiles, DefaultMaxCompiles())
	orDefault(&o.MaxOwnerCompiles, DefaultMaxOwnerCompiles)
	orDefault(&o.MaxOwnersInForce, DefaultMaxOwnersInForce)
	orDefault(&o.MaxShardsInForce, DefaultMaxShardsInForce)
	if o.Observer == nil {
		o.Observer = nopObserver{}
	}
	return o
}

// bounds are the limits of Options that apply to the parsed modules.
func (o Options) bounds() bounds {
	return bounds{
		maxModules: o.MaxModules, maxModuleBytes: o.MaxModuleBytes,
		maxRules: o.MaxRules, maxTerms: o.MaxTerms, maxRuleExprs: o.MaxRuleExprs,
		maxDepth: o.MaxDepth, maxClosureDepth: o.MaxClosureDepth,
	}
}

// Engine compiles and evaluates rules. It is safe for concurrent use.
type Engine struct {
	opts   Options
	base   *program // the library alone: for owners without rules
	owners sync.Map // owner -> *ownerSlot
	system ownerSlot
	cache  compiledCache
	gate   *compileGate
	shards shards

	compiles atomic.Int64 // compilations done, for tests

	// resident are the owners whose compiled rules are in memory, at most
	// Options.MaxOwnersInForce; tick orders their last uses.
	residentMu sync.Mutex
	resident   map[string]*ownerSlot
	tick       atomic.Int64
}

// ownerSlot holds an owner's rules in force (or the system rules). Its
// mutex serializes the updates; evaluations only load the pointer, so they
// never wait for a compilation.
type ownerSlot struct {
	mu   sync.Mutex
	prog atomic.Pointer[program]

	// last is the hash of the modules last given to Load (guarded by
	// mu), and lastLoad what came of them: the same modules again are
	// not compiled again.
	last     [sha256.Size]byte
	lastLoad Load

	// used is the Engine's tick at the last evaluation (owners only).
	used atomic.Int64
}

// baseProgram is the library compiled alone, shared by every Engine.
var baseProgram = sync.OnceValues(func() (*program, error) {
	return compile(context.Background(), ownerKind, nil, bounds{})
})

// NewEngine returns an Engine with no owner rules and no system rules. It
// panics if the built-in library does not compile, which the package's tests
// rule out.
func NewEngine(opts Options) *Engine {
	opts = opts.withDefaults()
	base, err := baseProgram()
	if err != nil {
		panic(fmt.Sprintf("policies: built-in library does not compile: %v", err))
	}
	return &Engine{
		opts:     opts,
		base:     base,
		cache:    compiledCache{index: map[cacheKey]*list.Element{}},
		gate:     newCompileGate(opts.MaxCompiles, opts.MaxOwnerCompiles, opts.CompileTimeout),
		resident: map[string]*ownerSlot{},
		shards:   shards{of: map[string]*shard{}, bySet: map[string]*shard{}, live: map[*shard]struct{}{}},
	}
}

// slot returns the owner's slot, creating it.
func (e *Engine) slot(owner string) *ownerSlot {
	v, ok := e.owners.Load(owner)
	if !ok {
		v, _ = e.owners.LoadOrStore(owner, &ownerSlot{})
	}
	return v.(*ownerSlot)
}

// SetOwnerModules puts an owner's rules in force: modules maps module names
// to Rego sources, each `package uma.share`. The rules are compiled only if
// they differ from those in force, and replace them atomically: evaluations
// running meanwhile use either the old or the new rules. If they do not
// compile the error is a CompileErrors (matching ErrCompile) and the old
// rules stay in force; if the compilation could not run (ErrBusy,
// ErrCompileTimeout, ctx ended) nothing changes either. A nil or empty map
// removes the owner's rules (console shares still apply).
func (e *Engine) SetOwnerModules(ctx context.Context, owner string, modules map[string]string) error {
	if owner == "" {
		return errors.New("policies: empty owner")
	}
	slot := e.slot(owner)
	if err := e.set(ctx, slot, ownerKind, owner, modules); err != nil {
		return err
	}
	e.admit(owner, slot)
	return nil
}

// admit counts the owner's rules in force among those in memory, and
// drops the compiled rules of the owners evaluated longest ago past
// Options.MaxOwnersInForce.
func (e *Engine) admit(owner string, slot *ownerSlot) {
	p := slot.prog.Load()
	e.residentMu.Lock()
	if p == nil || p.evicted || p.refused != nil || p.shard != nil {
		delete(e.resident, owner)
		e.residentMu.Unlock()
		return
	}
	slot.used.Store(e.tick.Add(1))
	e.resident[owner] = slot
	var victims []*ownerSlot
	for len(e.resident) > e.opts.MaxOwnersInForce {
		var oldest string
		var old *ownerSlot
		for name, s := range e.resident {
			if s != slot && (old == nil || s.used.Load() < old.used.Load()) {
				oldest, old = name, s
			}
		}
		delete(e.resident, oldest)
		victims = append(victims, old)
	}
	e.residentMu.Unlock()
	for _, v := range victims {
		v.mu.Lock()
		if p := v.prog.Load(); p != nil && !p.evicted && p.refused == nil && p.shard == nil {
			v.prog.Store(p.dropped())
		}
		v.mu.Unlock()
	}
}

// SetSystemModules puts the system rules in force: modules maps module names
// to Rego sources, each `package uma.system`. They apply to every owner and
// can only take scopes away. Like SetOwnerModules, it compiles only on
// change, keeps the old rules on error, and a nil or empty map removes them.
func (e *Engine) SetSystemModules(ctx context.Context, modules map[string]string) error {
	return e.set(ctx, &e.system, systemKind, "", modules)
}

func (e *Engine) set(ctx context.Context, slot *ownerSlot, k *ruleKind, owner string, modules map[string]string) error {
	slot.mu.Lock()
	defer slot.mu.Unlock()
	h := hashModules(k, modules)
	if len(modules) == 0 {
		slot.prog.Store(nil)
	} else if cur := slot.prog.Load(); cur == nil || cur.hash != h || cur.refused != nil || cur.evicted && !e.member(owner, h) {
		p, err := e.program(ctx, k, owner, modules, true)
		if err != nil {
			return err
		}
		slot.prog.Store(p)
	}
	slot.last, slot.lastLoad = h, Load{}
	if k == ownerKind {
		e.pack(ctx, owner, slot, slot.prog.Load())
	}
	return nil
}

// Check compiles an owner's rules without putting them in force, for an API
// that answers "does it compile?". It returns nil, a CompileErrors, or, if
// the compilation could not run, ErrBusy (too many compilations at once:
// try again later), ErrCompileTimeout or ctx's error. The compiled rules
// are kept for a while, so that putting them in force next does not compile
// them again.
func (e *Engine) Check(ctx context.Context, owner string, modules map[string]string) error {
	if len(modules) == 0 {
		return nil
	}
	if v, ok := e.owners.Load(owner); ok {
		if cur := v.(*ownerSlot).prog.Load(); cur != nil && cur.refused == nil && cur.hash == hashModules(ownerKind, modules) {
			return nil
		}
	}
	_, err := e.program(ctx, ownerKind, owner, modules, false)
	return err
}

// OwnerModules returns a copy of the owner's rules in force, or nil.
func (e *Engine) OwnerModules(owner string) map[string]string {
	v, ok := e.owners.Load(owner)
	if !ok {
		return nil
	}
	return v.(*ownerSlot).prog.Load().sources()
}

// SystemModules returns a copy of the system rules in force, or nil.
func (e *Engine) SystemModules() map[string]string {
	return e.system.prog.Load().sources()
}

// Evaluate runs the owner's rules, the console shares and the system rules
// on one resource of the owner. It never runs another owner's rules. On any
// error the decision is to be treated as a deny: ErrTimeout when the time
// limit (Options.Timeout or ctx's deadline) passes, ErrEvaluation when the
// rules fail, ErrBroken when the owner's or the system's rules could not be
// put in force (see LoadOwnerModules), or ctx's error when ctx is
// cancelled.
func (e *Engine) Evaluate(ctx context.Context, owner string, in Input) (Decision, error) {
	prog := e.base
	if v, ok := e.owners.Load(owner); ok {
		slot := v.(*ownerSlot)
		if p := slot.prog.Load(); p != nil {
			if p.evicted {
				// Compiled in its shard on first use, or dropped to bound
				// memory: compile the owner's shard, if they have one.
				if err := e.compileShardOf(ctx, owner, slot); err != nil {
					return Decision{}, err
				}
				if p = slot.prog.Load(); p == nil || p.evicted {
					return Decision{}, fmt.Errorf("%w: %s", ErrNotInForce, owner)
				}
			}
			tick := e.tick.Add(1)
			slot.used.Store(tick)
			if p.shard != nil {
				p.shard.used.Store(tick)
			}
			prog = p
		}
	}
	return e.observedEvaluate(ctx, owner, prog, in)
}

// observedEvaluate is evaluate, reported to the Observer.
func (e *Engine) observedEvaluate(ctx context.Context, owner string, prog *program, in Input) (Decision, error) {
	start := time.Now()
	d, err := e.evaluate(ctx, owner, prog, in)
	e.opts.Observer.Evaluated(time.Since(start), err)
	return d, err
}

// EvaluateDraft is Evaluate with modules in place of the owner's rules in
// force: trying rules before saving them. The draft is compiled (or taken
// from the cache) like Check does, with the same errors, and not put in
// force. The system rules in force apply.
func (e *Engine) EvaluateDraft(ctx context.Context, owner string, modules map[string]string, in Input) (Decision, error) {
	prog := e.base
	if len(modules) > 0 && owner != "" {
		p, err := e.program(ctx, ownerKind, owner, modules, false)
		if err != nil {
			return Decision{}, err
		}
		prog = p
	}
	return e.observedEvaluate(ctx, owner, prog, in)
}

func (e *Engine) evaluate(ctx context.Context, owner string, prog *program, in Input) (Decision, error) {
	if owner == "" {
		return Decision{}, fmt.Errorf("%w: empty owner", ErrEvaluation)
	}
	if in.Resource.Owner != "" && in.Resource.Owner != owner {
		return Decision{}, fmt.Errorf("%w: resource %q belongs to %q, not %q",
			ErrEvaluation, in.Resource.ID, in.Resource.Owner, owner)
	}
	if prog.refused != nil {
		return Decision{}, prog.refused
	}
	sys := e.system.prog.Load()
	if sys != nil && sys.refused != nil {
		return Decision{}, fmt.Errorf("system rules: %w", sys.refused)
	}

	t := in.Now
	if t.IsZero() {
		t = now()
	}
	input, err := in.value(owner, t)
	if err != nil {
		return Decision{}, err
	}

	evalCtx, cancel := context.WithTimeout(ctx, e.opts.Timeout)
	defer cancel()

	var d Decision
	obj, err := eval(evalCtx, ctx, prog, input)
	if err != nil {
		return Decision{}, err
	}
	if err := ownerResult(obj, &d); err != nil {
		return Decision{}, err
	}
	if sys != nil {
		obj, err := eval(evalCtx, ctx, sys, input)
		if err != nil {
			return Decision{}, fmt.Errorf("system rules: %w", err)
		}
		if d.SystemDeny, err = scopeSet(obj, "deny"); err != nil {
			return Decision{}, fmt.Errorf("system rules: %w", err)
		}
	}
	d.Granted = granted(d.Allow, d.Shared, d.Deny, d.SystemDeny, in.Resource.Scopes)
	return d, nil
}

// eval runs a prepared rule set and returns its decision object. parent is
// the caller's context, to tell its cancellation from our time limit.
func eval(ctx, parent context.Context, p *program, input ast.Value) (ast.Object, error) {
	rs, err := p.query.Eval(ctx, rego.EvalParsedInput(input))
	if err != nil {
		return nil, evalError(ctx, parent, err)
	}
	if ctx.Err() != nil { // finished, but past the deadline
		return nil, evalError(ctx, parent, ctx.Err())
	}
	if len(rs) != 1 || len(rs[0].Expressions) != 1 {
		return nil, fmt.Errorf("%w: no decision", ErrEvaluation)
	}
	t, ok := rs[0].Expressions[0].Value.(*ast.Term)
	if !ok {
		return nil, fmt.Errorf("%w: decision is %T", ErrEvaluation, rs[0].Expressions[0].Value)
	}
	obj, ok := t.Value.(ast.Object)
	if !ok {
		return nil, fmt.Errorf("%w: decision is %s", ErrEvaluation, ast.ValueName(t.Value))
	}
	return obj, nil
}

func evalError(ctx, parent context.Context, err error) error {
	if topdown.IsCancel(err) || ctx.Err() != nil {
		if errors.Is(parent.Err(), context.Canceled) {
			return fmt.Errorf("policies: evaluation cancelled: %w", parent.Err())
		}
		return fmt.Errorf("%w: %w", ErrTimeout, context.DeadlineExceeded)
	}
	return fmt.Errorf("%w: %v", ErrEvaluation, err)
}

// program returns the compiled rule set for modules, from the cache or by
// compiling it under the gate: wait says whether to wait for a free
// compilation (rules put in force) or to refuse with ErrBusy (rules sent to
// be checked). A compilation stops at CompileTimeout or when ctx ends.
func (e *Engine) program(ctx context.Context, k *ruleKind, owner string, modules map[string]string, wait bool) (*program, error) {
	key := cacheKey{kind: k, hash: hashModules(k, modules)}
	if p := e.cache.get(key); p != nil {
		return p, nil
	}
	start := time.Now()
	release, err := e.gate.enter(ctx, owner, wait, e.opts.CompileTimeout)
	if err != nil {
		e.opts.Observer.Compiled(time.Since(start), err)
		return nil, err
	}
	defer release()
	if p := e.cache.get(key); p != nil { // compiled while we waited
		return p, nil
	}
	ctx, cancel := context.WithTimeout(ctx, e.opts.CompileTimeout)
	defer cancel()
	e.compiles.Add(1)
	start = time.Now()
	p, err := compile(ctx, k, modules, e.opts.bounds())
	e.opts.Observer.Compiled(time.Since(start), err)
	if err != nil {
		return nil, err
	}
	e.opts.Checked.add(k, key.hash, e.opts.bounds(), p.undefined)
	e.cache.put(key, p)
	return p, nil
}

type cacheKey struct {
	kind *ruleKind
	hash [sha256.Size]byte
}

// compiledCache keeps the most recently used compiled rule sets.
type compiledCache struct {
	mu    sync.Mutex
	order list.List // of *cacheEntry, most recent first
	index map[cacheKey]*list.Element
}

type cacheEntry struct {
	key  cacheKey
	prog *program
}

func (c *compiledCache) get(key cacheKey) *program {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.index[key]
	if !ok {
		return nil
	}
	c.order.MoveToFront(el)
	return el.Value.(*cacheEntry).prog
}

func (c *compiledCache) put(key cacheKey, p *program) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.index[key]; ok {
		c.order.MoveToFront(el)
		return
	}
	c.index[key] = c.order.PushFront(&cacheEntry{key: key, prog: p})
	for c.order.Len() > compiledCacheSize {
		last := c.order.Back()
		c.order.Remove(last)
		delete(c.index, last.Value.(*cacheEntry).key)
	}
}
