package policies

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/tester"
)

// Owners (and operators) may keep Rego tests beside their rules, as `opa
// test` runs them: modules named *_test.rego whose rules named test_* must
// hold. RunTests runs them with the built-in library, the same sandbox as
// the rules (a test that calls http.send does not compile either) and the
// same bounds on the modules, each test within a time limit. The console
// runs an owner's tests whenever they save a rule or a test, and `caddy uma
// policy test` runs those of a directory: both through RunTests.

// TestSuffix ends the name of every Rego test module.
const TestSuffix = "_test.rego"

// IsTestModule reports whether a module name is that of a Rego test
// module (*_test.rego): it is run by RunTests, never put in force.
func IsTestModule(name string) bool { return strings.HasSuffix(name, TestSuffix) }

// ErrNoTests means that the modules given to RunTests hold no test rule.
var ErrNoTests = errors.New("policies: no tests: a test module (*_test.rego) must define rules named test_*")

// TestResult is the outcome of one Rego test.
type TestResult struct {
	// Module is the name of the module that defines the test.
	Module string `json:"module"`
	// Line is the line of the test rule in its module.
	Line int `json:"line,omitempty"`
	// Package is the test's package, without "data.".
	Package string `json:"package"`
	// Name is the name of the test rule.
	Name string `json:"name"`
	// Passed is true when the test held.
	Passed bool `json:"passed"`
	// Skipped is true for a test named todo_test_*, which is not run.
	Skipped bool `json:"skipped,omitempty"`
	// Error is why the test could not be run to its end (a time limit, a
	// built-in that failed); such a test did not pass.
	Error string `json:"error,omitempty"`
	// Duration is how long the test took.
	Duration time.Duration `json:"duration_ns"`
}

// TestReport is the outcome of a run of Rego tests.
type TestReport struct {
	// Results are the tests, sorted by module and line.
	Results []TestResult `json:"results"`
	// Passed and Failed count the results; a test with an Error counts as
	// failed, a skipped one as neither.
	Passed int `json:"passed"`
	Failed int `json:"failed"`
}

// OK reports whether every test that ran passed.
func (r TestReport) OK() bool { return r.Failed == 0 }

// RunTests runs the Rego tests among modules (see IsTestModule) against the
// other modules, the rules, compiled with the built-in library. The rules
// are owner rules (package uma.share) unless all of them are system rules
// (package uma.system); they are checked as PutRule or the operator
// directory would check them, and the test modules may declare any package
// but those of the library and the rules.
//
// It returns a CompileErrors (matching ErrCompile) when the rules or the
// tests do not compile, ErrNoTests when there is no test, or ctx's error;
// otherwise the report, whose failures are not an error. Each test is
// bounded by opts.Timeout (default 250ms, at least a second here, since a
// test may evaluate the rules many times), the whole compilation by
// opts.CompileTimeout.
func RunTests(ctx context.Context, modules map[string]string, opts Options) (TestReport, error) {
	opts = opts.withDefaults()
	var report TestReport
	rules, tests := map[string]string{}, map[string]string{}
	for name, src := range modules {
		if IsTestModule(name) {
			tests[name] = src
		} else {
			rules[name] = src
		}
	}
	if len(tests) == 0 {
		return report, ErrNoTests
	}
	kind := ownerKind
	if len(rules) > 0 && allSystem(rules) {
		kind = systemKind
	}
	ctx, cancel := context.WithTimeout(ctx, opts.CompileTimeout+opts.Timeout*time.Duration(1+len(tests)))
	defer cancel()

	parsed, err := parseForTests(kind, rules, tests, opts.bounds())
	if err != nil {
		return report, err
	}
	store := inmem.New()
	txn, err := store.NewTransaction(ctx)
	if err != nil {
		return report, fmt.Errorf("policies: running tests: %w", err)
	}
	defer store.Abort(ctx, txn)
	ch, err := tester.NewRunner().
		SetCompiler(newCompiler(capabilities)).
		SetStore(store).
		SetModules(parsed).
		SetTimeout(max(opts.Timeout, time.Second)).
		CapturePrintOutput(true).
		RunTests(ctx, txn)
	if err != nil {
		if ctx.Err() != nil {
			return report, compileStopped(ctx)
		}
		return report, sortErrors(fromOPA("", err))
	}
	for r := range ch {
		if r.Location == nil || tests[r.Location.File] == "" {
			continue // the library's or the rules' own (they define no test_)
		}
		res := TestResult{Module: r.Location.File, Line: r.Location.Row, Package: strings.TrimPrefix(r.Package, "data."),
			Name: r.Name, Skipped: r.Skip, Duration: r.Duration}
		switch {
		case r.Skip:
		case r.Error != nil:
			res.Error = r.Error.Error()
			report.Failed++
		case r.Fail:
			report.Failed++
		default:
			res.Passed = true
			report.Passed++
		}
		report.Results = append(report.Results, res)
	}
	if err := ctx.Err(); err != nil {
		return report, fmt.Errorf("policies: running tests: %w", err)
	}
	if len(report.Results) == 0 {
		return report, ErrNoTests
	}
	slices.SortFunc(report.Results, func(a, b TestResult) int {
		if c := strings.Compare(a.Module, b.Module); c != 0 {
			return c
		}
		return a.Line - b.Line
	})
	return report, nil
}

// allSystem reports whether every module declares package uma.system.
func allSystem(modules map[string]string) bool {
	for _, src := range modules {
		mod, err := ast.ParseModuleWithOpts("", src, parserOptions)
		if err != nil || mod == nil || strings.TrimPrefix(mod.Package.Path.String(), "data.") != systemKind.pkg {
			return false
		}
	}
	return true
}

// parseForTests parses and checks the rules and tests of a test run, with
// the library and the decision module of kind.
func parseForTests(k *ruleKind, rules, tests map[string]string, b bounds) (map[string]*ast.Module, error) {
	var errs CompileErrors
	all := maps.Clone(rules)
	maps.Copy(all, tests)
	if b.maxModules > 0 && len(all) > 2*b.maxModules {
		return nil, CompileErrors{{Code: codeLimit, Message: fmt.Sprintf("%d modules, the limit is %d", len(all), 2*b.maxModules)}}
	}
	parsed := map[string]*ast.Module{}
	var count tally
	for _, name := range slices.Sorted(maps.Keys(all)) {
		mod, e := parseModule(k, name, all[name], b)
		if len(e) > 0 {
			errs = append(errs, e...)
			continue
		}
		if _, isTest := tests[name]; isTest {
			pkg := strings.TrimPrefix(mod.Package.Path.String(), "data.")
			if pkg == "uma.lib" || pkg == "uma.decision" || pkg == k.pkg {
				errs = append(errs, located(name, mod.Package.Location, codePackage, fmt.Sprintf(
					"a test module may not declare package %s: name it after the rules it tests, such as `package %s_test`", pkg, k.pkg)))
				continue
			}
		} else if e := checkModule(k, name, mod); len(e) > 0 {
			errs = append(errs, e...)
			continue
		}
		if e := b.measure(name, mod, &count); len(e) > 0 {
			errs = append(errs, e...)
			continue
		}
		parsed[name] = mod
	}
	if len(errs) > 0 {
		return nil, sortErrors(errs)
	}
	lib, _ := library()
	maps.Copy(parsed, lib)
	decision, err := ast.ParseModuleWithOpts(decisionModule, k.decision, parserOptions)
	if err != nil {
		panic(fmt.Sprintf("policies: decision module: %v", err))
	}
	parsed[decisionModule] = decision
	return parsed, nil
}

// RunTests is the package's RunTests with the engine's limits, admitted by
// its compile gate like Check: refused with ErrBusy when too many
// compilations run, or when one of the owner's runs already.
func (e *Engine) RunTests(ctx context.Context, owner string, modules map[string]string) (TestReport, error) {
	release, err := e.gate.enter(ctx, owner, false, 0)
	if err != nil {
		return TestReport{}, err
	}
	defer release()
	return RunTests(ctx, modules, e.opts)
}

// LoadModules reads the rule modules and the Rego test modules
// (*_test.rego) of one directory, by file name: rules as LoadDir reads an
// owner's, and the tests LoadDir leaves out. A missing directory has
// neither.
func LoadModules(dir string) (rules, tests map[string]string, err error) {
	if rules, err = loadModules(dir); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil, nil
		}
		return nil, nil, fmt.Errorf("loading rules: %w", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("loading tests: %w", err)
	}
	for _, entry := range entries {
		name := entry.Name()
		if strings.HasPrefix(name, ".") || !IsTestModule(name) {
			continue
		}
		path := filepath.Join(dir, name)
		if info, err := os.Stat(path); err != nil || !info.Mode().IsRegular() {
			continue
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return nil, nil, fmt.Errorf("loading tests: %w", err)
		}
		if tests == nil {
			tests = map[string]string{}
		}
		tests[name] = string(src)
	}
	return rules, tests, nil
}
