package policies

import (
	"errors"
	"fmt"
	"strings"
)

// Errors of Evaluate and of the rule setters. Callers match them with
// errors.Is; none of them needs string matching.
var (
	// ErrCompile means that a rule set was refused: it does not parse, does
	// not compile, breaks a rule of the contract (package name, output rule
	// shapes) or of the sandbox (refused built-ins), or exceeds a limit. The
	// error is a CompileErrors that lists every problem found.
	ErrCompile = errors.New("policies: rules refused")
	// ErrTimeout means that an evaluation ran past Options.Timeout or past
	// the caller's deadline. It also matches context.DeadlineExceeded.
	ErrTimeout = errors.New("policies: evaluation timed out")
	// ErrEvaluation means that the rules failed at evaluation time: a
	// conflict between complete rules, an output of the wrong type, or input
	// that cannot be converted. The decision must be treated as a deny.
	ErrEvaluation = errors.New("policies: evaluation failed")
	// ErrBroken means that an owner's rules (or the system rules) do not
	// compile and could not safely be left out (see LoadOwnerModules):
	// every evaluation for that owner (for the system rules, for every
	// owner) fails with it until they compile. The error also holds the
	// CompileErrors.
	ErrBroken = errors.New("policies: rules broken")
	// ErrBusy means that a compilation was refused because too many run
	// already: one of the owner's (Options.MaxOwnerCompiles) or in all
	// (Options.MaxCompiles). Nothing was compiled; try again shortly.
	ErrBusy = errors.New("policies: too many compilations at once")
	// ErrCompileTimeout means that a compilation ran past
	// Options.CompileTimeout or the caller's deadline, and was stopped.
	// It also matches context.DeadlineExceeded.
	ErrCompileTimeout = errors.New("policies: compilation timed out")
	// ErrNotInForce means that an owner's compiled rules were dropped to
	// bound memory (Options.MaxOwnersInForce): put them in force again
	// (LoadOwnerModules, SetOwnerModules) and evaluate again. Their
	// sources are kept (OwnerModules); nothing was evaluated.
	ErrNotInForce = errors.New("policies: the owner's compiled rules are not in memory")
)

// Codes of the CompileErrors found by this package. OPA's own codes
// (rego_parse_error, rego_compile_error, rego_type_error,
// rego_unsafe_var_error, rego_recursion_error, ...) pass through unchanged.
const (
	codeName    = "uma_module_name_error" // a module name is empty or unprintable
	codeLimit   = "uma_limit_error"       // too many modules, a module too large, too many rules or terms, too deep
	codePackage = "uma_package_error"     // a module declares the wrong package
	codeRule    = "uma_rule_error"        // an output rule has the wrong shape
	codeSandbox = "uma_sandbox_error"     // a refused built-in function is called
)

// CompileError is one problem found in a rule set.
type CompileError struct {
	// Module is the name of the module the problem is in; empty when the
	// problem is about the rule set as a whole (too many modules).
	Module string `json:"module,omitempty"`
	// Line and Column locate the problem in the module, from 1; zero when
	// unknown.
	Line   int `json:"line,omitempty"`
	Column int `json:"column,omitempty"`
	// Code classifies the problem: one of OPA's codes (rego_parse_error,
	// rego_compile_error, rego_type_error, ...) or one of this package's
	// (uma_module_name_error, uma_limit_error, uma_package_error,
	// uma_rule_error, uma_sandbox_error).
	Code string `json:"code"`
	// Message describes the problem for the author of the rules.
	Message string `json:"message"`
}

// Error formats the problem as "module:line:column: code: message", leaving
// out the parts that are unknown.
func (e *CompileError) Error() string {
	var b strings.Builder
	if e.Module != "" {
		b.WriteString(e.Module)
		if e.Line > 0 {
			fmt.Fprintf(&b, ":%d", e.Line)
			if e.Column > 0 {
				fmt.Fprintf(&b, ":%d", e.Column)
			}
		}
		b.WriteString(": ")
	}
	if e.Code != "" {
		b.WriteString(e.Code)
		b.WriteString(": ")
	}
	b.WriteString(e.Message)
	return b.String()
}

// CompileErrors lists every problem found in a rule set, sorted by module,
// line and column. It matches ErrCompile with errors.Is, and errors.As finds
// each *CompileError in it.
type CompileErrors []*CompileError

// Error formats the problems one per line.
func (es CompileErrors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Is reports whether target is ErrCompile.
func (es CompileErrors) Is(target error) bool { return target == ErrCompile }

// Unwrap returns the problems, for errors.As.
func (es CompileErrors) Unwrap() []error {
	errs := make([]error, len(es))
	for i, e := range es {
		errs[i] = e
	}
	return errs
}
