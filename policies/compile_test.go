package policies

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
)

func TestCompileErrors(t *testing.T) {
	type want struct {
		module       string
		line, column int
		code         string
		message      string // a substring of the message
	}
	tests := []struct {
		name    string
		modules map[string]string
		want    []want
	}{
		{
			name:    "parse error",
			modules: map[string]string{"rules.rego": "package uma.share\n\nallow contains \"read\" if {\n  x := \n}\n"},
			want:    []want{{"rules.rego", 5, 1, "rego_parse_error", "unexpected }"}},
		},
		{
			name:    "duplicate parse errors are merged",
			modules: map[string]string{"rules.rego": "package uma.share\n\nallow contains\n"},
			want:    []want{{"rules.rego", 4, 0, "rego_parse_error", "unexpected eof token: expected rule key term"}},
		},
		{
			name:    "unsafe variable",
			modules: map[string]string{"rules.rego": "package uma.share\n\nallow contains \"read\" if {\n\tinput.scopes[_] == y\n}\n"},
			want:    []want{{"rules.rego", 4, 2, "rego_unsafe_var_error", "var y is unsafe"}},
		},
		{
			name:    "type error",
			modules: map[string]string{"rules.rego": "package uma.share\n\nallow contains \"read\" if count(5) > 1\n"},
			want:    []want{{"rules.rego", 3, 26, "rego_type_error", "count"}},
		},
		{
			name:    "strict mode: unused variable",
			modules: map[string]string{"rules.rego": "package uma.share\n\nallow contains \"read\" if {\n\tunused := 1\n}\n"},
			want:    []want{{"rules.rego", 4, 2, "rego_compile_error", "assigned var unused unused"}},
		},
		{
			name: "complete rules in conflict across modules",
			modules: map[string]string{
				"a.rego": "package uma.share\n\nlevel := 1\n",
				"b.rego": "package uma.share\n\nlevel contains 2\n",
			},
			want: []want{{"a.rego", 3, 1, "rego_type_error", "conflicting rules data.uma.share.level found"}},
		},
		{
			name: "errors in several modules are all listed",
			modules: map[string]string{
				"b.rego": "package uma.share\n\nallow contains x if {\n",
				"a.rego": "package uma.lib\n",
			},
			want: []want{
				{"a.rego", 1, 1, "uma_package_error", "built-in library"},
				{"b.rego", 4, 0, "rego_parse_error", "unexpected eof"},
			},
		},
		{
			name:    "allow as a boolean",
			modules: map[string]string{"rules.rego": "package uma.share\n\nallow if input.client.id == \"app\"\n"},
			want:    []want{{"rules.rego", 3, 1, "uma_rule_error", "allow must be a set rule"}},
		},
		{
			name:    "allow as a complete set",
			modules: map[string]string{"rules.rego": "package uma.share\n\nallow := {\"read\"}\n"},
			want:    []want{{"rules.rego", 3, 1, "uma_rule_error", "allow must be a set rule"}},
		},
		{
			name:    "deny as an object",
			modules: map[string]string{"rules.rego": "package uma.share\n\ndeny[s] := true if some s in input.scopes\n"},
			want:    []want{{"rules.rego", 3, 1, "uma_rule_error", "deny must be a set rule"}},
		},
		{
			name:    "ask_owner with a default",
			modules: map[string]string{"rules.rego": "package uma.share\n\ndefault ask_owner := set()\n"},
			want:    []want{{"rules.rego", 3, 1, "uma_rule_error", "ask_owner must be a set rule"}},
		},
		{
			name:    "required_claims as a ref head",
			modules: map[string]string{"rules.rego": "package uma.share\n\nrequired_claims.email := true\n"},
			want:    []want{{"rules.rego", 3, 1, "uma_rule_error", "required_claims must be a set rule"}},
		},
		{
			name:    "comments only",
			modules: map[string]string{"rules.rego": "# nothing yet\n"},
			want:    []want{{"rules.rego", 1, 1, "rego_parse_error", "empty module: it must start with `package uma.share`"}},
		},
		{
			name:    "empty module name",
			modules: map[string]string{"": "package uma.share\n"},
			want:    []want{{"", 0, 0, codeName, "module name is empty"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newTestEngine(Options{})
			err := e.Check(context.Background(), "alice", tt.modules)
			var errs CompileErrors
			if !errors.As(err, &errs) {
				t.Fatalf("got %v, want CompileErrors", err)
			}
			if !errors.Is(err, ErrCompile) {
				t.Errorf("errors.Is(err, ErrCompile) = false")
			}
			if len(errs) != len(tt.want) {
				t.Fatalf("got %d errors, want %d:\n%v", len(errs), len(tt.want), err)
			}
			for i, w := range tt.want {
				g := errs[i]
				if g.Module != w.module || g.Line != w.line || g.Column != w.column || g.Code != w.code ||
					!strings.Contains(g.Message, w.message) {
					t.Errorf("error %d = %+v, want %+v", i, *g, w)
				}
			}
			if e.SetOwnerModules(context.Background(), "alice", tt.modules) == nil {
				t.Error("SetOwnerModules accepted what Check refused")
			}
		})
	}
}

func TestCompileErrorFormat(t *testing.T) {
	tests := []struct {
		err  CompileError
		want string
	}{
		{CompileError{Module: "rules.rego", Line: 3, Column: 5, Code: "rego_parse_error", Message: "unexpected }"},
			"rules.rego:3:5: rego_parse_error: unexpected }"},
		{CompileError{Module: "rules.rego", Line: 3, Code: "rego_parse_error", Message: "m"}, "rules.rego:3: rego_parse_error: m"},
		{CompileError{Module: "rules.rego", Code: "uma_limit_error", Message: "m"}, "rules.rego: uma_limit_error: m"},
		{CompileError{Code: "uma_limit_error", Message: "65 modules"}, "uma_limit_error: 65 modules"},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
	}
	errs := CompileErrors{&tests[0].err, &tests[3].err}
	if got, want := errs.Error(), tests[0].want+"\n"+tests[3].want; got != want {
		t.Errorf("CompileErrors.Error() = %q, want %q", got, want)
	}
	var ce *CompileError
	if !errors.As(error(errs), &ce) || ce != &tests[0].err {
		t.Errorf("errors.As did not find the first CompileError")
	}
}

func TestRefusedPackages(t *testing.T) {
	for _, pkg := range []string{"uma.lib", "uma.system", "uma.decision", "uma.share.sub", "uma", "policy", "system.authz"} {
		t.Run(pkg, func(t *testing.T) {
			e := newTestEngine(Options{})
			err := e.SetOwnerModules(context.Background(), "alice", map[string]string{"rules.rego": "package " + pkg + "\n\nallow contains \"read\"\n"})
			var ce *CompileError
			if !errors.As(err, &ce) {
				t.Fatalf("got %v, want a CompileError", err)
			}
			if ce.Code != codePackage || ce.Line != 1 || ce.Column != 1 || !strings.Contains(ce.Message, "package "+pkg+" ") {
				t.Errorf("got %v", ce)
			}
		})
	}
	t.Run("system rules must be uma.system", func(t *testing.T) {
		e := newTestEngine(Options{})
		err := e.SetSystemModules(context.Background(), map[string]string{"sys.rego": "package uma.share\n\ndeny contains \"x\"\n"})
		var ce *CompileError
		if !errors.As(err, &ce) || ce.Code != codePackage || !strings.Contains(ce.Message, "`package uma.system`") {
			t.Errorf("got %v", err)
		}
	})
	t.Run("system rules cannot allow", func(t *testing.T) {
		e := newTestEngine(Options{})
		err := e.SetSystemModules(context.Background(), map[string]string{"sys.rego": "package uma.system\n\nallow contains \"x\"\n"})
		var ce *CompileError
		if !errors.As(err, &ce) || ce.Code != codeRule || ce.Line != 3 || !strings.Contains(ce.Message, "can only deny") {
			t.Errorf("got %v", err)
		}
	})
}

func TestRefusedBuiltins(t *testing.T) {
	tests := []struct {
		builtin string
		call    string
	}{
		{"http.send", `http.send({"method": "GET", "url": "https://attacker.example/"}).status_code == 200`},
		{"net.lookup_ip_addr", `count(net.lookup_ip_addr("attacker.example")) > 0`},
		{"net.cidr_contains", `net.cidr_contains("10.0.0.0/8", "10.1.2.3")`},
		{"opa.runtime", `opa.runtime().env.HOME != ""`},
		{"time.now_ns", `time.now_ns() > 0`},
		{"rand.intn", `rand.intn("x", 10) == 1`},
		{"uuid.rfc4122", `uuid.rfc4122("x") != ""`},
		{"trace", `trace("hello")`},
		{"json.match_schema", `json.match_schema({}, {"$ref": "https://attacker.example/s.json"})[0]`},
	}
	for _, tt := range tests {
		t.Run(tt.builtin, func(t *testing.T) {
			e := newTestEngine(Options{})
			src := "package uma.share\n\nallow contains \"read\" if {\n\t" + tt.call + "\n}\n"
			err := e.SetOwnerModules(context.Background(), "alice", map[string]string{"rules.rego": src})
			var errs CompileErrors
			if !errors.As(err, &errs) {
				t.Fatalf("got %v, want CompileErrors", err)
			}
			ce := errs[0]
			if ce.Module != "rules.rego" || ce.Line != 4 || ce.Code != codeSandbox ||
				!strings.Contains(ce.Message, "built-in function "+tt.builtin+" is not allowed") {
				t.Errorf("got %v", err)
			}
			if e.SetSystemModules(context.Background(), map[string]string{"sys.rego": strings.Replace(
				strings.Replace(src, "uma.share", "uma.system", 1), "allow", "deny", 1)}) == nil {
				t.Error("system rules may call it")
			}
		})
	}
	t.Run("print is a no-op", func(t *testing.T) {
		e := newTestEngine(Options{})
		if err := e.SetOwnerModules(context.Background(), "alice", map[string]string{"rules.rego": "package uma.share\n\nallow contains \"read\" if print(\"hi\")\n"}); err != nil {
			t.Fatal(err)
		}
	})
}

func TestLimits(t *testing.T) {
	e := newTestEngine(Options{MaxModules: 2, MaxModuleBytes: 100})
	small := "package uma.share\n"
	err := e.SetOwnerModules(context.Background(), "alice", map[string]string{"a.rego": small, "b.rego": small, "c.rego": small})
	var ce *CompileError
	if !errors.As(err, &ce) || ce.Code != codeLimit || ce.Module != "" || ce.Message != "3 modules, the limit is 2" {
		t.Errorf("too many modules: got %v", err)
	}
	big := small + "# " + strings.Repeat("x", 100) + "\n"
	err = e.SetOwnerModules(context.Background(), "alice", map[string]string{"a.rego": small, "big.rego": big})
	if !errors.As(err, &ce) || ce.Code != codeLimit || ce.Module != "big.rego" || !strings.Contains(ce.Message, "the limit is 100") {
		t.Errorf("module too large: got %v", err)
	}
	if err := e.SetOwnerModules(context.Background(), "alice", map[string]string{"a.rego": small, "b.rego": small}); err != nil {
		t.Errorf("within limits: %v", err)
	}
	if err := e.SetSystemModules(context.Background(), map[string]string{"big.rego": "package uma.system\n" + big}); !errors.Is(err, ErrCompile) {
		t.Errorf("system module too large: got %v", err)
	}
}

func TestREADMEListsRefusedBuiltins(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range RefusedBuiltins() {
		if !strings.Contains(string(readme), "`"+name+"`") {
			t.Errorf("README.md does not list the refused built-in %s", name)
		}
	}
}

func TestLibraryModules(t *testing.T) {
	lib := LibraryModules()
	if len(lib) != 1 || !strings.HasPrefix(strings.TrimLeft(lib["uma.rego"], "# \n"), "Package uma.lib") {
		t.Errorf("LibraryModules() = %d modules: %v", len(lib), slices.Collect(maps.Keys(lib)))
	}
	for name := range lib {
		if strings.HasSuffix(name, "_test.rego") {
			t.Errorf("test module %s in LibraryModules", name)
		}
	}
}

// TestCapabilitiesForCompilesAlike: rules compiled with only the built-ins
// they name (capabilitiesFor) compile, fail and decide as with every
// built-in of the sandbox: built-ins called by name, through operators,
// membership, comprehensions, every, unary minus, in nested namespaces,
// shadowed by a rule of the same name, or not there at all.
func TestCapabilitiesForCompilesAlike(t *testing.T) {
	sources := []string{
		`allow contains "read" if count(input.scopes) > 0`,
		`allow contains s if { some s in input.scopes; startswith(s, "re") }`,
		`allow contains "read" if { every s in input.scopes { s != "write" } }`,
		`allow contains "read" if -1 < 0`,
		`allow contains "read" if time.parse_rfc3339_ns("2026-01-01T00:00:00Z") < input.now * 1000000000`,
		`allow contains "read" if object.get(input, ["resource", "owner"], "") == "alice"`,
		`allow contains "read" if strings.any_prefix_match(input.scopes, "rea")`,
		`allow contains x if { x := concat("", ["re", "ad"]); x in {y | some y in input.scopes} }`,
		`allow contains "read" if { x := [s | some s in input.scopes]; sum([1 | x[_]]) == 1 }`,
		`allow contains "read" if { some k, v in {"a": "read"}; v == input.scopes[0]; k == "a" }`,
		`allow contains "read" if lower(upper("read")) == input.scopes[0]`,
		"allow contains \"read\" if sprintf(\"%s\", [`read`]) == input.scopes[0]",
		`allow contains "read" if nosuchfunction(1)`,
		`allow contains "read" if time.nosuch(1)`,
		`count(x) := 1`,
		`allow contains "read" if http.send({"method": "get", "url": "http://x"})`,
		`allow contains "read" if { x := count; x }`,
	}
	ctx := context.Background()
	in := Input{Resource: Resource{ID: "r", Owner: "alice", Scopes: []string{"read"}}, Scopes: []string{"read"}, Now: t0}
	input, err := in.value("alice", t0)
	if err != nil {
		t.Fatal(err)
	}
	for _, src := range sources {
		src = "package uma.share\n\n" + src + "\n"
		t.Run(src[19:], func(t *testing.T) {
			decide := func(caps func(map[string]*ast.Module) *ast.Capabilities) (string, string) {
				mod, errs := parseModule(ownerKind, "rules.rego", src, Options{}.withDefaults().bounds())
				if len(errs) > 0 {
					return "", errs.Error()
				}
				lib, _ := library()
				parsed := maps.Clone(lib)
				parsed[userPrefix+"rules.rego"] = mod
				parsed[decisionModule] = parsedDecision(ownerKind)
				c := newCompiler(caps(parsed))
				if c.Compile(parsed); c.Failed() {
					return "", sortErrors(fromOPA("", c.Errors)).Error()
				}
				q, err := rego.New(rego.Compiler(c), rego.Query(decisionQuery)).PrepareForEval(ctx)
				if err != nil {
					return "", err.Error()
				}
				rs, err := q.Eval(ctx, rego.EvalParsedInput(input))
				if err != nil {
					return "", err.Error()
				}
				return fmt.Sprint(rs), ""
			}
			all := func(map[string]*ast.Module) *ast.Capabilities { return capabilities }
			got, gotErr := decide(func(m map[string]*ast.Module) *ast.Capabilities { return capabilitiesFor(m) })
			want, wantErr := decide(all)
			if got != want || gotErr != wantErr {
				t.Errorf("with the built-ins named: %s %q\nwith all: %s %q", got, gotErr, want, wantErr)
			}
		})
	}
	if n, all := len(capabilitiesFor(mustLib()).Builtins), len(capabilities.Builtins); n*4 > all {
		t.Errorf("capabilities of the library alone: %d built-ins of %d", n, all)
	}
}

// mustLib returns the library's modules.
func mustLib() map[string]*ast.Module {
	lib, _ := library()
	return lib
}
