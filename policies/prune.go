package policies

import (
	"slices"
	"strings"
	"sync"

	"github.com/open-policy-agent/opa/v1/ast"
)

// A rule set compiled on its own (compile) was compiled with the whole
// library, of which an owner's rules call a few functions: the
// compiler's stages walk every rule it holds, so most of the work was the
// library's (BenchmarkCompileSmall). Now, once the compiler has resolved
// every reference (its first stage), the library's rules that neither the
// rule set nor the decision module reaches, directly or through other
// library rules, are left out. What is left compiles and decides as the
// whole library would: a rule left out is one no evaluation can reach,
// the types of those kept come from their own bodies (which reach only
// rules kept), and a reference to a rule the library does not define is
// undefined either way. A module that refers to the library as a whole
// (data.uma.lib, data.uma.lib[x], data.uma, data[x]) keeps all of it.
// Shards (shard.go) hold the whole library once for shardSize rule sets.

// withLibraryPruned returns c leaving out, after it resolved references,
// the library's rules that its other modules do not reach.
func withLibraryPruned(c *ast.Compiler) *ast.Compiler {
	return c.WithStageAfterID(ast.StageResolveRefs, ast.CompilerStageDefinition{
		Name:       "uma_prune_library",
		MetricName: "uma_prune_library",
		Stage: func(c *ast.Compiler) *ast.Error {
			pruneLibrary(c.Modules)
			return nil
		},
	})
}

// pruneLibrary removes from the library's modules (resolved) the rules
// that the other modules (resolved) do not reach.
func pruneLibrary(modules map[string]*ast.Module) {
	reached := map[string]bool{}
	for name, mod := range modules {
		if !strings.HasPrefix(name, libPrefix) && !libraryReached(mod.Rules, reached) {
			return // the library as a whole
		}
	}
	deps := libraryDeps()
	if deps == nil {
		return
	}
	pending := make([]string, 0, len(reached))
	for name := range reached {
		pending = append(pending, name)
	}
	for len(pending) > 0 {
		name := pending[len(pending)-1]
		pending = pending[:len(pending)-1]
		for _, dep := range deps[name] {
			if !reached[dep] {
				reached[dep] = true
				pending = append(pending, dep)
			}
		}
	}
	for name, mod := range modules {
		if strings.HasPrefix(name, libPrefix) {
			mod.Rules = slices.DeleteFunc(mod.Rules, func(r *ast.Rule) bool {
				n, ok := libRuleName(r)
				return ok && !reached[n]
			})
		}
	}
}

// libraryReached adds to reached the names of the library's rules that
// rules (resolved) refer to, and reports false if they refer to the
// library as a whole, or may (a reference to data with a variable before
// the rule's name).
func libraryReached(rules []*ast.Rule, reached map[string]bool) bool {
	whole := false
	for _, r := range rules {
		ast.WalkRefs(r, func(ref ast.Ref) bool {
			if whole || !ref.HasPrefix(ast.DefaultRootRef) {
				return whole
			}
			for i := 1; i < len(libPath); i++ {
				if i >= len(ref) {
					whole = true // data, data.uma
					return true
				}
				s, ok := ref[i].Value.(ast.String)
				if !ok {
					whole = true // data[x]...
					return true
				}
				if s != libPath[i].Value {
					return false // elsewhere in data
				}
			}
			if len(ref) == len(libPath) {
				whole = true
				return true
			}
			s, ok := ref[len(libPath)].Value.(ast.String)
			if !ok {
				whole = true
				return true
			}
			reached[string(s)] = true
			return false
		})
		if whole {
			return false
		}
	}
	return true
}

// libRuleName returns the name a library rule defines (the first term of
// its head's reference).
func libRuleName(r *ast.Rule) (string, bool) {
	ref := r.Head.Ref()
	if len(ref) == 0 {
		return "", false
	}
	v, ok := ref[0].Value.(ast.Var)
	return string(v), ok
}

// libraryDeps maps each of the library's rules to the library rules it
// refers to, once resolved; nil (keep the whole library) if a rule refers
// to the library as a whole, or if it cannot be resolved.
var libraryDeps = sync.OnceValue(func() map[string][]string {
	resolved, err := resolve(LibraryModules())
	if err != nil {
		return nil
	}
	deps := map[string][]string{}
	for _, mod := range resolved {
		for _, r := range mod.Rules {
			name, ok := libRuleName(r)
			if !ok {
				return nil
			}
			reached := map[string]bool{}
			if !libraryReached([]*ast.Rule{r}, reached) {
				return nil
			}
			for dep := range reached {
				if !slices.Contains(deps[name], dep) {
					deps[name] = append(deps[name], dep)
				}
			}
			if deps[name] == nil {
				deps[name] = []string{}
			}
		}
	}
	return deps
})
