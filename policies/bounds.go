package policies

import (
	"fmt"

	"github.com/open-policy-agent/opa/v1/ast"
)

// The compiler's work grows faster than the source: a body of n
// expressions costs about n² in the safety check (a 30 KB chain of 15,000
// additions took 4-28 s), and each comprehension nested in another doubles
// the type check (15 levels took 10 s in 191 bytes). OPA cannot stop a
// compiler stage half way, so the parsed modules are measured first, and a
// rule set that could keep a stage busy for long is refused before the
// compiler sees it.

// bounds are the limits on one rule set.
type bounds struct {
	maxModules      int
	maxModuleBytes  int
	maxRules        int
	maxTerms        int
	maxRuleExprs    int
	maxDepth        int
	maxClosureDepth int
}

// tally counts what the modules of one rule set hold so far.
type tally struct {
	rules, terms int
}

// measure walks one parsed module, adds its rules and terms to t, and
// returns what exceeds the bounds: at most one problem of each kind, at the
// place where the bound was first exceeded.
func (b bounds) measure(name string, mod *ast.Module, t *tally) CompileErrors {
	var errs CompileErrors
	reported := map[string]bool{}
	report := func(kind string, loc *ast.Location, msg string) {
		if !reported[kind] {
			reported[kind] = true
			errs = append(errs, located(name, loc, codeLimit, msg))
		}
	}
	var (
		depth, closures int
		last            *ast.Location // of the last term seen, for closures
		exprs           []int         // expressions and calls of each rule being walked (else branches nest)
		rules           []*ast.Rule
	)
	count := func() {
		if len(exprs) == 0 {
			return
		}
		i := len(exprs) - 1
		if exprs[i]++; b.maxRuleExprs > 0 && exprs[i] > b.maxRuleExprs {
			report("exprs", rules[i].Location, fmt.Sprintf(
				"this rule has more than %d expressions and function calls (each call counts): the limit is %d; split it into smaller rules",
				b.maxRuleExprs, b.maxRuleExprs))
		}
	}
	vis := ast.NewBeforeAfterVisitor(func(x any) bool {
		switch x := x.(type) {
		case *ast.Rule:
			if t.rules++; b.maxRules > 0 && t.rules > b.maxRules {
				report("rules", x.Location, fmt.Sprintf("more than %d rules in all (each else counts): the limit is %d", b.maxRules, b.maxRules))
			}
			rules = append(rules, x)
			exprs = append(exprs, 0)
		case *ast.Expr:
			count()
		case *ast.Term:
			depth++
			if x.Location != nil {
				last = x.Location
			}
			if t.terms++; b.maxTerms > 0 && t.terms > b.maxTerms {
				report("terms", x.Location, fmt.Sprintf(
					"more than %d terms in all (values, variables, references and calls): the limit is %d", b.maxTerms, b.maxTerms))
				return true
			}
			if b.maxDepth > 0 && depth > b.maxDepth {
				report("depth", x.Location, fmt.Sprintf("terms nested more than %d deep: the limit is %d", b.maxDepth, b.maxDepth))
				return true
			}
			if _, ok := x.Value.(ast.Call); ok {
				count()
			}
		case *ast.ArrayComprehension, *ast.SetComprehension, *ast.ObjectComprehension, *ast.Every:
			closures++
			if b.maxClosureDepth > 0 && closures > b.maxClosureDepth {
				loc := last
				if e, ok := x.(*ast.Every); ok && e.Location != nil {
					loc = e.Location
				}
				report("closures", loc, fmt.Sprintf(
					"comprehensions and every nested more than %d deep: the limit is %d", b.maxClosureDepth, b.maxClosureDepth))
				return true
			}
		}
		return false
	}, func(x any) {
		switch x.(type) {
		case *ast.Rule:
			rules = rules[:len(rules)-1]
			exprs = exprs[:len(exprs)-1]
		case *ast.Term:
			depth--
		case *ast.ArrayComprehension, *ast.SetComprehension, *ast.ObjectComprehension, *ast.Every:
			closures--
		}
	})
	vis.Walk(mod)
	return errs
}
