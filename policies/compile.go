package policies

import (
	"cmp"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"path"
	"slices"
	"strings"
	"sync"
	"unicode"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
)

// The library, embedded from lib/. Files named *_test.rego are its Rego
// tests: they are run by the Go tests, never compiled into a rule set.
//
//go:embed lib/*.rego
var libFS embed.FS

// ruleKind describes one of the two kinds of rule sets: owners' sharing rules
// and the operator's system rules.
type ruleKind struct {
	// name is used in hashes and messages.
	name string
	// pkg is the one package the modules may declare, as written in Rego.
	pkg string
	// outputs are the rules the engine reads. Each must be a multi-value
	// (partial set) rule: `allow contains scope if { ... }`.
	outputs []string
	// refused are rule names that make no sense for this kind.
	refused map[string]string
	// decision is the internal module that gathers the outputs into one
	// object, data.uma.decision.result.
	decision string
}

var (
	ownerKind = &ruleKind{
		name:    "owner",
		pkg:     "uma.share",
		outputs: []string{"allow", "deny", "ask_owner", "required_claims"},
		decision: `package uma.decision

default allow := set()

allow := data.uma.share.allow

default deny := set()

deny := data.uma.share.deny

default ask_owner := set()

ask_owner := data.uma.share.ask_owner

default required_claims := set()

required_claims := data.uma.share.required_claims

result := {
	"allow": allow,
	"deny": deny,
	"ask_owner": ask_owner,
	"required_claims": required_claims,
	"shared": data.uma.lib.shared_scopes,
}
`,
	}
	systemKind = &ruleKind{
		name:    "system",
		pkg:     "uma.system",
		outputs: []string{"deny"},
		refused: map[string]string{
			"allow":           "system rules can only deny: allow is not read",
			"ask_owner":       "system rules can only deny: ask_owner is not read",
			"required_claims": "system rules can only deny: required_claims is not read",
		},
		decision: `package uma.decision

default deny := set()

deny := data.uma.system.deny

result := {"deny": deny}
`,
	}
)

// decisionQuery is the one query of every prepared rule set.
const decisionQuery = "data.uma.decision.result"

// Module names reserved for the library and the decision module. Owner
// module names live in their own namespace, so they can never collide.
const (
	libPrefix      = "uma.lib/"
	decisionModule = "uma.decision/decision.rego"
	userPrefix     = "rules/"
)

// sandbox is the set of refused built-in functions, with the reason given to
// the author. Every non-deterministic built-in is refused (they reach the
// network, the clock, randomness or the host), and so is every net.*
// built-in, trace, and the schema validators (they may fetch remote $refs).
// print is not refused: the compiler erases print calls, so they do nothing.
var sandbox = func() map[string]string {
	refused := map[string]string{
		"trace":              "it writes to the host's trace",
		"json.match_schema":  "a JSON schema may fetch remote references",
		"json.verify_schema": "a JSON schema may fetch remote references",
		"time.now_ns":        "sharing rules read the time of the request from input.now",
		"opa.runtime":        "it exposes the host's environment and configuration",
		"http.send":          "sharing rules may not reach the network",
	}
	for _, b := range ast.CapabilitiesForThisVersion().Builtins {
		switch {
		case refused[b.Name] != "":
		case strings.HasPrefix(b.Name, "net."):
			refused[b.Name] = "sharing rules may not use network built-ins"
		case b.Nondeterministic:
			refused[b.Name] = "it is non-deterministic"
		}
	}
	return refused
}()

// capabilities are OPA's capabilities less the sandbox, and with no network
// access for the type checker (remote JSON schemas).
var capabilities = func() *ast.Capabilities {
	c := ast.CapabilitiesForThisVersion()
	c.Builtins = slices.DeleteFunc(c.Builtins, func(b *ast.Builtin) bool {
		return sandbox[b.Name] != ""
	})
	c.AllowNet = []string{}
	return c
}()

// alwaysBuiltins are the built-ins the compiler may add to rules that do
// not name them (unification, printing, template strings, membership).
var alwaysBuiltins = []string{ast.Equality.Name, ast.Assign.Name, ast.Print.Name}

// capabilitiesFor returns capabilities less the built-ins that none of the
// modules names. The result is the same compilation (a
// built-in a module calls, mocks or shadows is in it, as are those the
// compiler adds), for a fraction of the work and memory: every compiler
// types each built-in of its capabilities, about 200 of them, and keeps the
// types for as long as its rules are in force (BenchmarkCompileSmall,
// BenchmarkShardMemory). The library's modules among them are not walked
// again: their names are libraryNames'.
func capabilitiesFor(modules map[string]*ast.Module) *ast.Capabilities {
	named := map[string]bool{}
	for _, b := range alwaysBuiltins {
		named[b] = true
	}
	for name, mod := range modules {
		if strings.HasPrefix(name, libPrefix) {
			maps.Copy(named, libraryNames())
		} else {
			nameBuiltins(named, mod)
		}
	}
	c := *capabilities
	c.Builtins = slices.DeleteFunc(slices.Clone(capabilities.Builtins), func(b *ast.Builtin) bool {
		return !named[b.Name] && !strings.HasPrefix(b.Name, "internal.")
	})
	return &c
}

// libraryNames are the names the library's modules use (nameBuiltins).
var libraryNames = sync.OnceValue(func() map[string]bool {
	named := map[string]bool{}
	lib, _ := library()
	for _, mod := range lib {
		nameBuiltins(named, mod)
	}
	return named
})

// nameBuiltins adds to named every name mod uses that may be a built-in's:
// its variables, and the prefixes of its references made of a variable
// and strings (time, time.parse_rfc3339_ns).
func nameBuiltins(named map[string]bool, mod *ast.Module) {
	name := func(ref ast.Ref) {
		if len(ref) == 0 {
			return
		}
		if _, ok := ref[0].Value.(ast.Var); !ok {
			return
		}
		for i := 1; i <= len(ref); i++ {
			if i > 1 {
				if _, ok := ref[i-1].Value.(ast.String); !ok {
					return
				}
			}
			named[ref[:i].String()] = true
		}
	}
	vis := ast.NewGenericVisitor(func(x any) bool {
		switch x := x.(type) {
		case ast.Var:
			named[string(x)] = true
		case ast.Ref:
			name(x)
		case *ast.Head:
			name(x.Reference)
		}
		return false
	})
	vis.Walk(mod)
}

// RefusedBuiltins returns the names of the built-in functions that sharing
// and system rules may not call, sorted.
func RefusedBuiltins() []string {
	names := make([]string, 0, len(sandbox))
	for name := range sandbox {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

var parserOptions = ast.ParserOptions{
	RegoVersion:  ast.RegoV1,
	Capabilities: capabilities,
}

// newCompiler returns a compiler with caps (the sandbox's capabilities, or
// those of capabilitiesFor) and strict mode. Settings
// given to rego.New are ignored when a compiler is passed in, so they all go
// here.
func newCompiler(caps *ast.Capabilities) *ast.Compiler {
	return ast.NewCompiler().
		WithCapabilities(caps).
		WithStrict(true).
		WithEnablePrintStatements(false).
		WithDefaultRegoVersion(ast.RegoV1)
}

// library holds the parsed library modules and their Rego tests.
var library = sync.OnceValues(func() (lib, tests map[string]*ast.Module) {
	lib, tests = map[string]*ast.Module{}, map[string]*ast.Module{}
	files, err := fs.Glob(libFS, "lib/*.rego")
	if err != nil {
		panic(err)
	}
	for _, file := range files {
		src, err := libFS.ReadFile(file)
		if err != nil {
			panic(err)
		}
		name := libPrefix + path.Base(file)
		mod, err := ast.ParseModuleWithOpts(name, string(src), parserOptions)
		if err != nil {
			panic(fmt.Sprintf("policies: built-in library: %v", err))
		}
		if strings.HasSuffix(file, "_test.rego") {
			tests[name] = mod
		} else {
			lib[name] = mod
		}
	}
	return lib, tests
})

// LibraryModules returns the sources of the built-in library (package
// uma.lib) by file name, for showing to rule authors and for running their
// tests with `opa test`.
func LibraryModules() map[string]string {
	out := map[string]string{}
	files, _ := fs.Glob(libFS, "lib/*.rego")
	for _, file := range files {
		if strings.HasSuffix(file, "_test.rego") {
			continue
		}
		src, _ := libFS.ReadFile(file)
		out[path.Base(file)] = string(src)
	}
	return out
}

// program is a compiled and prepared rule set, or the refusal of one.
type program struct {
	hash    [sha256.Size]byte
	modules map[string]string // private copy of the sources
	query   rego.PreparedEvalQuery
	// undefined are the rules of the package that the modules refer to
	// (data.uma.share.x) and none of them defines, sorted.
	undefined []string
	// refused, when not nil, is the error (matching ErrBroken) of every
	// evaluation: the rules could not be put in force.
	refused error
	// evicted marks rules whose compilation is not in memory: dropped to
	// bound memory (Engine.admit, a shard dropped), or waiting for their
	// shard's compilation (see shard.go). They keep their sources;
	// Evaluate compiles their shard, if they have one, or else answers
	// ErrNotInForce.
	evicted bool
	// shard, when not nil, is the shard these rules were compiled in (see
	// shard.go): query is the shard's, shared by its members, and decides
	// for the owner of the input's resource.
	shard *shard
}

// dropped returns p without its compilation.
func (p *program) dropped() *program {
	return &program{hash: p.hash, modules: p.modules, undefined: p.undefined, evicted: true}
}

// sources returns a copy of the modules in force, or nil.
func (p *program) sources() map[string]string {
	if p == nil || p.refused != nil {
		return nil
	}
	return maps.Clone(p.modules)
}

// hashModules returns the SHA-256 of a rule set of kind k, independent of map
// order.
func hashModules(k *ruleKind, modules map[string]string) [sha256.Size]byte {
	h := sha256.New()
	var n [8]byte
	write := func(s string) {
		binary.BigEndian.PutUint64(n[:], uint64(len(s)))
		h.Write(n[:])
		h.Write([]byte(s))
	}
	write(k.name)
	for _, name := range slices.Sorted(maps.Keys(modules)) {
		write(name)
		write(modules[name])
	}
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return sum
}

// compile parses, checks, compiles and prepares a rule set of kind k in a
// compiler of its own, holding only these modules, the library and the
// decision module. The modules are measured against b once parsed, before
// the compiler runs. It stops when ctx ends: between two modules, between
// two stages of the compiler, or while preparing the query.
func compile(ctx context.Context, k *ruleKind, modules map[string]string, b bounds) (*program, error) {
	var errs CompileErrors
	if b.maxModules > 0 && len(modules) > b.maxModules {
		errs = append(errs, &CompileError{Code: codeLimit,
			Message: fmt.Sprintf("%d modules, the limit is %d", len(modules), b.maxModules)})
	}
	parsed := make(map[string]*ast.Module, len(modules)+4)
	var count tally
	for _, name := range slices.Sorted(maps.Keys(modules)) {
		if err := ctx.Err(); err != nil {
			return nil, compileStopped(ctx)
		}
		if b.maxTerms > 0 && count.terms > b.maxTerms {
			break // reported already; the other modules cannot help
		}
		mod, e := parseModule(k, name, modules[name], b)
		if len(e) > 0 {
			errs = append(errs, e...)
			continue
		}
		if e := checkModule(k, name, mod); len(e) > 0 {
			errs = append(errs, e...)
			continue
		}
		if e := b.measure(name, mod, &count); len(e) > 0 {
			errs = append(errs, e...)
			continue
		}
		parsed[userPrefix+name] = mod
	}
	if len(errs) > 0 {
		return nil, sortErrors(errs)
	}

	lib, _ := library()
	for name, mod := range lib {
		parsed[name] = mod
	}
	parsed[decisionModule] = parsedDecision(k)

	c := withDeadline(ctx, withLibraryPruned(newCompiler(capabilitiesFor(parsed))))
	c.Compile(parsed)
	if ctx.Err() != nil {
		return nil, compileStopped(ctx)
	}
	if c.Failed() {
		return nil, sortErrors(fromOPA("", c.Errors))
	}
	query, err := rego.New(
		rego.Compiler(c),
		rego.Query(decisionQuery),
		// Results stay AST terms: no JSON round trip, sets stay sets.
		rego.GenerateJSON(func(t *ast.Term, _ *rego.EvalContext) (any, error) { return t, nil }),
	).PrepareForEval(ctx)
	if ctx.Err() != nil {
		return nil, compileStopped(ctx)
	}
	if err != nil {
		return nil, CompileErrors{{Code: "rego_compile_error", Message: err.Error()}}
	}
	return &program{
		hash:      hashModules(k, modules),
		modules:   maps.Clone(modules),
		query:     query,
		undefined: undefinedRules(k, c),
	}, nil
}

// errResolved stops a compilation after its first stage, in resolve.
var errResolved = ast.NewError(ast.CompileErr, nil, "references resolved")

// resolve parses an owner's modules, which compiled before, and returns
// them as the compiler's first stage makes them: every reference made
// whole (lib.x is data.uma.lib.x, a rule of the package is
// data.uma.share.rule), nothing else changed. It is that stage alone,
// without the library: it costs a parse.
func resolve(modules map[string]string) (map[string]*ast.Module, error) {
	parsed := make(map[string]*ast.Module, len(modules))
	for name, src := range modules {
		mod, err := ast.ParseModuleWithOpts(name, src, parserOptions)
		if err != nil {
			return nil, err
		}
		if mod == nil {
			return nil, fmt.Errorf("policies: module %s is empty", name)
		}
		parsed[userPrefix+name] = mod
	}
	var resolved map[string]*ast.Module
	c := ast.NewCompiler().
		WithCapabilities(capabilitiesFor(parsed)).
		WithDefaultRegoVersion(ast.RegoV1).
		WithStageAfterID(ast.StageResolveRefs, ast.CompilerStageDefinition{
			Name:       "uma_resolved",
			MetricName: "uma_resolved",
			Stage: func(c *ast.Compiler) *ast.Error {
				if len(c.Errors) > 0 {
					return nil
				}
				resolved = make(map[string]*ast.Module, len(modules))
				for name, mod := range c.Modules {
					resolved[strings.TrimPrefix(name, userPrefix)] = mod
				}
				return errResolved
			},
		})
	c.Compile(parsed)
	if resolved == nil {
		return nil, fromOPA("", c.Errors)
	}
	return resolved, nil
}

// withDeadline returns c stopping between two stages once ctx ends: OPA
// cannot stop a stage half way; measure keeps each stage short.
func withDeadline(ctx context.Context, c *ast.Compiler) *ast.Compiler {
	for _, stage := range c.StagesToRun() {
		c = c.WithStageAfterID(stage, ast.CompilerStageDefinition{
			Name:       "uma_deadline_" + string(stage),
			MetricName: "uma_deadline",
			Stage: func(*ast.Compiler) *ast.Error {
				if ctx.Err() != nil {
					return ast.NewError(ast.CompileErr, nil, "compilation stopped")
				}
				return nil
			},
		})
	}
	return c
}

// parseModule checks a module's name and size against b and parses it, for
// a rule set of kind k.
func parseModule(k *ruleKind, name, src string, b bounds) (*ast.Module, CompileErrors) {
	if msg := checkModuleName(name); msg != "" {
		return nil, CompileErrors{{Module: name, Code: codeName, Message: msg}}
	}
	if b.maxModuleBytes > 0 && len(src) > b.maxModuleBytes {
		return nil, CompileErrors{{Module: name, Code: codeLimit,
			Message: fmt.Sprintf("module is %d bytes, the limit is %d", len(src), b.maxModuleBytes)}}
	}
	mod, err := ast.ParseModuleWithOpts(name, src, parserOptions)
	if err == nil && mod == nil {
		err = ast.Errors{ast.NewError(ast.ParseErr, nil, "empty module")}
	}
	if err != nil {
		errs := fromOPA(name, err)
		for _, e := range errs {
			if e.Message == "empty module" { // only comments, or nothing
				e.Line, e.Column = 1, 1
				e.Message = fmt.Sprintf("empty module: it must start with `package %s`", k.pkg)
			}
		}
		return nil, errs
	}
	return mod, nil
}

// compileStopped is the error of a compilation that ctx stopped.
func compileStopped(ctx context.Context) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("%w: %w", ErrCompileTimeout, context.DeadlineExceeded)
	}
	return fmt.Errorf("policies: compilation cancelled: %w", ctx.Err())
}

// undefinedRules lists the rules of k's package that the compiled user
// modules refer to and do not define. The compiler has resolved every
// reference to a full data reference by then.
func undefinedRules(k *ruleKind, c *ast.Compiler) []string {
	pkg := ast.MustParseRef("data." + k.pkg)
	defined, used := map[string]bool{}, map[string]bool{}
	for name, mod := range c.Modules {
		if !strings.HasPrefix(name, userPrefix) {
			continue
		}
		for _, rule := range mod.Rules {
			if ref := rule.Head.Ref(); len(ref) > 0 {
				if v, ok := ref[0].Value.(ast.Var); ok {
					defined[string(v)] = true
				}
			}
		}
		ast.WalkRefs(mod, func(ref ast.Ref) bool {
			if len(ref) > len(pkg) && ref.HasPrefix(pkg) {
				if s, ok := ref[len(pkg)].Value.(ast.String); ok {
					used[string(s)] = true
				}
			}
			return false
		})
	}
	var out []string
	for name := range used {
		if !defined[name] {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// checkModuleName returns why name cannot name a module, or "".
func checkModuleName(name string) string {
	if name == "" {
		return "module name is empty"
	}
	if len(name) > 255 {
		return "module name is longer than 255 bytes"
	}
	for _, r := range name {
		if !unicode.IsPrint(r) {
			return "module name has unprintable characters"
		}
	}
	return ""
}

// checkModule enforces the contract on one parsed module: its package, and
// the shape of the output rules.
func checkModule(k *ruleKind, name string, mod *ast.Module) CompileErrors {
	var errs CompileErrors
	pkg := strings.TrimPrefix(mod.Package.Path.String(), "data.")
	if pkg != k.pkg {
		msg := fmt.Sprintf("package %s is not allowed: %s rules must be `package %s`", pkg, k.name, k.pkg)
		if pkg == "uma.lib" {
			msg = "package uma.lib is the built-in library and cannot be replaced: " + k.name + " rules must be `package " + k.pkg + "`"
		}
		errs = append(errs, located(name, mod.Package.Location, codePackage, msg))
		return errs
	}
	for _, rule := range mod.Rules {
		ref := rule.Head.Ref()
		if len(ref) == 0 {
			continue
		}
		v, ok := ref[0].Value.(ast.Var)
		if !ok {
			continue
		}
		ruleName := string(v)
		if msg, ok := k.refused[ruleName]; ok {
			errs = append(errs, located(name, rule.Location, codeRule, msg))
			continue
		}
		if !slices.Contains(k.outputs, ruleName) {
			continue
		}
		if len(ref) != 1 || rule.Head.RuleKind() != ast.MultiValue || len(rule.Head.Args) > 0 {
			errs = append(errs, located(name, rule.Location, codeRule, fmt.Sprintf(
				"%s must be a set rule: write `%s contains ... if { ... }`", ruleName, ruleName)))
		}
	}
	return errs
}

func located(module string, loc *ast.Location, code, msg string) *CompileError {
	e := &CompileError{Module: module, Code: code, Message: msg}
	if loc != nil {
		e.Line, e.Column = loc.Row, loc.Col
	}
	return e
}

// fromOPA converts OPA's errors. Library and decision module problems cannot
// be the author's fault, yet they are reported rather than hidden.
func fromOPA(module string, err error) CompileErrors {
	var astErrs ast.Errors
	switch e := err.(type) {
	case ast.Errors:
		astErrs = e
	case *ast.Error:
		astErrs = ast.Errors{e}
	default:
		return CompileErrors{{Module: module, Code: "rego_compile_error", Message: err.Error()}}
	}
	out := make(CompileErrors, 0, len(astErrs))
	for _, e := range astErrs {
		ce := &CompileError{Module: module, Code: e.Code, Message: e.Message}
		if e.Location != nil {
			if e.Location.File != "" {
				ce.Module = strings.TrimPrefix(e.Location.File, userPrefix)
			}
			ce.Line, ce.Column = e.Location.Row, e.Location.Col
		}
		if fn, ok := strings.CutPrefix(e.Message, "undefined function "); ok {
			if reason, refused := sandbox[fn]; refused {
				ce.Code = codeSandbox
				ce.Message = fmt.Sprintf("built-in function %s is not allowed in sharing rules: %s", fn, reason)
			}
		}
		out = append(out, ce)
	}
	return out
}

// sortErrors sorts errs by place, and drops an error when the next one at
// the same place says the same and more (OPA's parser reports "unexpected eof
// token" and then "unexpected eof token: expected rule key term ...").
func sortErrors(errs CompileErrors) CompileErrors {
	slices.SortStableFunc(errs, func(a, b *CompileError) int {
		return cmp.Or(
			cmp.Compare(a.Module, b.Module),
			cmp.Compare(a.Line, b.Line),
			cmp.Compare(a.Column, b.Column),
		)
	})
	out := errs[:0]
	for i, e := range errs {
		if i+1 < len(errs) {
			next := errs[i+1]
			if next.Module == e.Module && next.Line == e.Line && next.Column == e.Column &&
				next.Code == e.Code && strings.HasPrefix(next.Message, e.Message) {
				continue
			}
		}
		out = append(out, e)
	}
	return out
}

// parsedDecision returns the decision module of kind k, parsed once.
func parsedDecision(k *ruleKind) *ast.Module {
	decisionOnce.Do(func() {
		decisions = map[*ruleKind]*ast.Module{}
		for _, k := range []*ruleKind{ownerKind, systemKind} {
			mod, err := ast.ParseModuleWithOpts(decisionModule, k.decision, parserOptions)
			if err != nil {
				panic(fmt.Sprintf("policies: decision module: %v", err))
			}
			decisions[k] = mod
		}
	})
	return decisions[k]
}

var (
	decisionOnce sync.Once
	decisions    map[*ruleKind]*ast.Module
)
