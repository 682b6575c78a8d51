// Package policies decides what a requesting party may do on an owner's
// resource, from rules written in Rego: each owner's sharing rules (package
// uma.share), the operator's system rules (package uma.system) and the shares
// the owner made in the console. It is the only package of caddy-uma that
// knows OPA; its API carries no OPA types.
//
// Every owner's rules are compiled in a compiler of their own, holding only
// them and the built-in library (package uma.lib): an owner's rules can
// neither see nor change another owner's. Rules run in a sandbox (no network,
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
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/topdown"
)

// Defaults of Options.
const (
	DefaultTimeout        = 250 * time.Millisecond
	DefaultMaxModuleBytes = 64 << 10
	DefaultMaxModules     = 64
)

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
}

// Engine compiles and evaluates rules. It is safe for concurrent use.
type Engine struct {
	opts   Options
	base   *program // the library alone: for owners without rules
	owners sync.Map // owner -> *ownerSlot
	system atomic.Pointer[program]
	cache  compiledCache

	compiles atomic.Int64 // compilations done, for tests
}

// ownerSlot holds an owner's rules in force. Its mutex serializes the
// owner's updates; evaluations only load the pointer.
type ownerSlot struct {
	mu   sync.Mutex
	prog atomic.Pointer[program]
}

// baseProgram is the library compiled alone, shared by every Engine.
var baseProgram = sync.OnceValues(func() (*program, error) {
	return compile(ownerKind, nil, limits{})
})

// NewEngine returns an Engine with no owner rules and no system rules. It
// panics if the built-in library does not compile, which the package's tests
// rule out.
func NewEngine(opts Options) *Engine {
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.MaxModuleBytes <= 0 {
		opts.MaxModuleBytes = DefaultMaxModuleBytes
	}
	if opts.MaxModules <= 0 {
		opts.MaxModules = DefaultMaxModules
	}
	base, err := baseProgram()
	if err != nil {
		panic(fmt.Sprintf("policies: built-in library does not compile: %v", err))
	}
	return &Engine{opts: opts, base: base, cache: compiledCache{index: map[cacheKey]*list.Element{}}}
}

// SetOwnerModules puts an owner's rules in force: modules maps module names
// to Rego sources, each `package uma.share`. The rules are compiled only if
// they differ from those in force, and replace them atomically: evaluations
// running meanwhile use either the old or the new rules. If they do not
// compile the error is a CompileErrors (matching ErrCompile) and the old
// rules stay in force. A nil or empty map removes the owner's rules (console
// shares still apply).
func (e *Engine) SetOwnerModules(owner string, modules map[string]string) error {
	if owner == "" {
		return errors.New("policies: empty owner")
	}
	if len(modules) == 0 {
		if v, ok := e.owners.Load(owner); ok {
			slot := v.(*ownerSlot)
			slot.mu.Lock()
			slot.prog.Store(nil)
			slot.mu.Unlock()
		}
		return nil
	}
	v, ok := e.owners.Load(owner)
	if !ok {
		v, _ = e.owners.LoadOrStore(owner, &ownerSlot{})
	}
	slot := v.(*ownerSlot)
	slot.mu.Lock()
	defer slot.mu.Unlock()
	if cur := slot.prog.Load(); cur != nil && cur.hash == hashModules(ownerKind, modules) {
		return nil
	}
	p, err := e.program(ownerKind, modules)
	if err != nil {
		return err
	}
	slot.prog.Store(p)
	return nil
}

// SetSystemModules puts the system rules in force: modules maps module names
// to Rego sources, each `package uma.system`. They apply to every owner and
// can only take scopes away. Like SetOwnerModules, it compiles only on
// change, keeps the old rules on error, and a nil or empty map removes them.
func (e *Engine) SetSystemModules(modules map[string]string) error {
	if len(modules) == 0 {
		e.system.Store(nil)
		return nil
	}
	if cur := e.system.Load(); cur != nil && cur.hash == hashModules(systemKind, modules) {
		return nil
	}
	p, err := e.program(systemKind, modules)
	if err != nil {
		return err
	}
	e.system.Store(p)
	return nil
}

// Check compiles an owner's rules without putting them in force, for an API
// that answers "does it compile?". It returns nil or a CompileErrors. The
// compiled rules are kept for a while, so that putting them in force next
// does not compile them again.
func (e *Engine) Check(owner string, modules map[string]string) error {
	if len(modules) == 0 {
		return nil
	}
	if v, ok := e.owners.Load(owner); ok {
		if cur := v.(*ownerSlot).prog.Load(); cur != nil && cur.hash == hashModules(ownerKind, modules) {
			return nil
		}
	}
	_, err := e.program(ownerKind, modules)
	return err
}

// OwnerModules returns a copy of the owner's rules in force, or nil.
func (e *Engine) OwnerModules(owner string) map[string]string {
	v, ok := e.owners.Load(owner)
	if !ok {
		return nil
	}
	p := v.(*ownerSlot).prog.Load()
	if p == nil {
		return nil
	}
	return maps.Clone(p.modules)
}

// SystemModules returns a copy of the system rules in force, or nil.
func (e *Engine) SystemModules() map[string]string {
	p := e.system.Load()
	if p == nil {
		return nil
	}
	return maps.Clone(p.modules)
}

// Evaluate runs the owner's rules, the console shares and the system rules
// on one resource of the owner. It never runs another owner's rules. On any
// error the decision is to be treated as a deny: ErrTimeout when the time
// limit (Options.Timeout or ctx's deadline) passes, ErrEvaluation when the
// rules fail, or ctx's error when ctx is cancelled.
func (e *Engine) Evaluate(ctx context.Context, owner string, in Input) (Decision, error) {
	if owner == "" {
		return Decision{}, fmt.Errorf("%w: empty owner", ErrEvaluation)
	}
	if in.Resource.Owner != "" && in.Resource.Owner != owner {
		return Decision{}, fmt.Errorf("%w: resource %q belongs to %q, not %q",
			ErrEvaluation, in.Resource.ID, in.Resource.Owner, owner)
	}
	prog := e.base
	if v, ok := e.owners.Load(owner); ok {
		if p := v.(*ownerSlot).prog.Load(); p != nil {
			prog = p
		}
	}
	sys := e.system.Load()

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
// compiling it.
func (e *Engine) program(k *ruleKind, modules map[string]string) (*program, error) {
	key := cacheKey{kind: k, hash: hashModules(k, modules)}
	if p := e.cache.get(key); p != nil {
		return p, nil
	}
	e.compiles.Add(1)
	p, err := compile(k, modules, limits{maxModules: e.opts.MaxModules, maxModuleBytes: e.opts.MaxModuleBytes})
	if err != nil {
		return nil, err
	}
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
