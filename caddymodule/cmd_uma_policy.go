package caddymodule

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	"github.com/caddy-uma/caddy-uma/authz/admin"
	"github.com/caddy-uma/caddy-uma/policies"
)

// The policy commands: test and eval run offline, on a directory, with
// the same compiler, library, sandbox and bounds as the server; status and
// reload ask the running Caddy.

func umaPolicyCommand() *cobra.Command {
	test := &cobra.Command{
		Use:   "test <dir> [--timeout <duration>] [--json]",
		Short: "Runs the Rego tests kept beside sharing rules, offline",
		Long: `
Runs the Rego tests (files named *_test.rego, rules named test_*) kept
beside sharing rules, as 'opa test' would, but with what the server uses:
the built-in library (data.uma.lib), the same sandbox (http.send, net.*,
time.now_ns and the other non-deterministic built-ins do not compile, in
tests too), strict mode, and the same limits on module size and
complexity. The console runs the same code when an owner saves a rule or
a test.

<dir> is either one owner's directory (its *.rego files are the rules and
the tests) or an operator directory (the policies option: <dir>/<owner>/
and <dir>/_system/), whose every subdirectory with tests is run on its own.

It prints each test with PASS or FAIL (and where the test is), then the
totals. Exit status: 0 every test passed, 1 a test failed or the rules or
tests do not compile (or there is no test at all), 2 wrong usage (no such
directory).
`,
		Example: `  $ caddy uma policy test /etc/caddy/policies/alice
  $ caddy uma policy test /etc/caddy/policies`,
	}
	test.Flags().Duration("timeout", 0, "Time limit of each test (default: 1s)")
	test.Flags().Bool("json", false, "Print the results as JSON")
	setRun(test, 1, cmdUMAPolicyTest)

	eval := &cobra.Command{
		Use:   "eval --rules <dir> [--system <dir>] [--input <file>] [--owner <subject>] [--json]",
		Short: "Dry-runs a decision of sharing rules on a JSON input, offline",
		Long: `
Evaluates an owner's sharing rules (the *.rego files of --rules, tests left
out) and the system rules (--system, optional) on one input, as the UMA
grant would, and prints the outcome the token endpoint would answer with
(granted, partly granted, need_info, request_submitted or request_denied),
the scopes granted and one reason for each scope. Nothing is granted or
recorded, and no server is needed.

--input is a JSON file (default, or -: stdin) in the shape the rules see as
input, of which resource.id and resource.scopes are required:

  {"resource": {"id": "r1", "type": "lab-report", "owner": "alice", "scopes": ["read", "write"]},
   "scopes": ["read"], "client": {"id": "app"},
   "requesting_party": {"sub": "bob", "iss": "https://idp.example"},
   "claims": {"email": "bob@example.com", "email_verified": true},
   "request": {"method": "GET"}, "shares": [], "now": 1767225600}

Console shares are those of input.shares; "now" defaults to the current
time. The owner is --owner, else input.resource.owner, else the name of the
--rules directory.

Exit status: 0 evaluated (whatever the outcome), 1 the rules do not compile
or fail, 2 wrong usage (a missing flag, an unreadable or malformed input).
`,
		Example: `  $ caddy uma policy eval --rules policies/alice --input request.json
  $ echo '{"resource":{"id":"r1","scopes":["read"]},"claims":{"email":"bob@example.com"}}' | caddy uma policy eval --rules policies/alice`,
	}
	eval.Flags().String("rules", "", "Directory of the owner's rules (required)")
	eval.Flags().String("system", "", "Directory of the system rules")
	eval.Flags().StringP("input", "i", "", "JSON input file (default: stdin)")
	eval.Flags().String("owner", "", "The owner whose rules these are")
	eval.Flags().Bool("json", false, "Print the outcome as JSON")
	setRun(eval, 0, cmdUMAPolicyEval)

	status := policyStatusCommand("status", "Shows the running server's rules that do not compile", `
Shows the state of the operator directory of rules in the running server:
the files that do not compile, for each owner and for the system rules,
with their errors, and whether the directory could be read. Exit status:
0 every rule compiles, 1 some do not (or the call failed), 2 wrong usage.
`, http.MethodGet, admin.PathPolicies)
	reload := policyStatusCommand("reload", "Makes the running server read its rules directory now", `
Makes the running server read the operator directory of rules now, rather
than at its next poll, compile every owner's rules and the system rules
again, and shows their state as 'policy status' does. Exit status: 0 every
rule compiles, 1 some do not (or the directory cannot be read), 2 wrong
usage.
`, http.MethodPost, admin.PathPoliciesReload)
	return groupCommand("policy", "Tests and dry-runs sharing rules; shows and reloads the server's (test, eval, status, reload)",
		test, eval, status, reload)
}

// readRuleDir reads the rule and test modules of one directory.
func readRuleDir(dir string) (map[string]string, error) {
	rules, tests, err := policies.LoadModules(dir)
	if err != nil {
		return nil, err
	}
	mods := map[string]string{}
	maps.Copy(mods, rules)
	maps.Copy(mods, tests)
	return mods, nil
}

// testSuite is the rules and tests of one directory.
type testSuite struct {
	dir     string
	modules map[string]string
}

// findTestSuites returns the directories of dir to test: dir itself if it
// holds rule files, else each of its subdirectories (owners, _system) that
// holds tests.
func findTestSuites(dir string) ([]testSuite, error) {
	modules, err := readRuleDir(dir)
	if err != nil {
		return nil, err
	}
	if len(modules) > 0 {
		return []testSuite{{dir, modules}}, nil
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var suites []testSuite
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") || (strings.HasPrefix(name, "_") && name != policies.SystemDir) {
			continue
		}
		sub := filepath.Join(dir, name)
		if info, err := os.Stat(sub); err != nil || !info.IsDir() {
			continue
		}
		mods, err := readRuleDir(sub)
		if err != nil {
			return nil, err
		}
		if slices.ContainsFunc(slices.Collect(maps.Keys(mods)), policies.IsTestModule) {
			suites = append(suites, testSuite{sub, mods})
		}
	}
	return suites, nil
}

// cmdUMAPolicyTest runs `caddy uma policy test <dir>`.
func cmdUMAPolicyTest(fl caddycmd.Flags, args []string) (int, error) {
	dir := args[0]
	if info, err := os.Stat(dir); err != nil || !info.IsDir() {
		return exitUsage, fmt.Errorf("<dir> %q is not a directory: give the directory of an owner's rules, or the policies directory", dir)
	}
	suites, err := findTestSuites(dir)
	if err != nil {
		return exitFailure, fmt.Errorf("reading %s: %w", dir, err)
	}
	if len(suites) == 0 {
		return exitFailure, fmt.Errorf("no tests in %s: keep Rego tests in files named *%s beside the rules", dir, policies.TestSuffix)
	}
	opts := policies.Options{Timeout: fl.Duration("timeout")}
	ctx := context.Background()
	type suiteResult struct {
		Directory string                 `json:"directory"`
		Report    policies.TestReport    `json:"report"`
		Errors    policies.CompileErrors `json:"errors,omitempty"`
		Error     string                 `json:"error,omitempty"`
	}
	var results []suiteResult
	passed, failed, broken := 0, 0, 0
	for _, s := range suites {
		report, err := policies.RunTests(ctx, s.modules, opts)
		res := suiteResult{Directory: s.dir, Report: report}
		var ce policies.CompileErrors
		switch {
		case errors.As(err, &ce):
			for _, e := range ce {
				c := *e
				if c.Module != "" {
					c.Module = filepath.Join(s.dir, c.Module)
				}
				res.Errors = append(res.Errors, &c)
			}
			broken++
		case err != nil:
			res.Error = err.Error()
			broken++
		}
		passed += report.Passed
		failed += report.Failed
		results = append(results, res)
	}
	if fl.Bool("json") {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(results); err != nil {
			return exitFailure, err
		}
	} else {
		for _, r := range results {
			fmt.Printf("%s:\n", r.Directory)
			for _, e := range r.Errors {
				fmt.Printf("  ERROR %s\n", e)
			}
			if r.Error != "" {
				fmt.Printf("  ERROR %s\n", r.Error)
			}
			for _, t := range r.Report.Results {
				where := fmt.Sprintf("%s:%d", filepath.Join(r.Directory, t.Module), t.Line)
				switch {
				case t.Skipped:
					fmt.Printf("  SKIP  data.%s.%s (%s)\n", t.Package, t.Name, where)
				case t.Passed:
					fmt.Printf("  PASS  data.%s.%s (%s)\n", t.Package, t.Name, t.Duration.Round(time.Microsecond))
				case t.Error != "":
					fmt.Printf("  ERROR data.%s.%s (%s): %s\n", t.Package, t.Name, where, t.Error)
				default:
					fmt.Printf("  FAIL  data.%s.%s (%s)\n", t.Package, t.Name, where)
				}
			}
		}
		fmt.Println(strings.Repeat("-", 72))
		total := passed + failed
		fmt.Printf("PASS: %d/%d\n", passed, total)
		if failed > 0 {
			fmt.Printf("FAIL: %d/%d\n", failed, total)
		}
	}
	switch {
	case broken > 0:
		return exitFailure, fmt.Errorf("%d of %d directories did not compile or held no test", broken, len(suites))
	case failed > 0:
		return exitFailure, fmt.Errorf("%d of %d tests failed", failed, passed+failed)
	}
	return exitOK, nil
}

// Outcome is what the token endpoint would answer after a decision.
type evalOutcome struct {
	Outcome   string            `json:"outcome"`
	Owner     string            `json:"owner"`
	Requested []string          `json:"requested"`
	Granted   []string          `json:"granted"`
	Reasons   []string          `json:"reasons"`
	Decision  policies.Decision `json:"decision"`
}

// cmdUMAPolicyEval runs `caddy uma policy eval`.
func cmdUMAPolicyEval(fl caddycmd.Flags, _ []string) (int, error) {
	rulesDir, systemDir, inputFile := fl.String("rules"), fl.String("system"), fl.String("input")
	if rulesDir == "" {
		return exitUsage, errors.New("--rules is required: the directory of the owner's rules (*.rego)")
	}
	var raw []byte
	var err error
	if inputFile == "" || inputFile == "-" {
		if term.IsTerminal(int(os.Stdin.Fd())) {
			return exitUsage, errors.New("--input: no input to evaluate: give --input <file.json>, or pipe one into stdin")
		}
		raw, err = io.ReadAll(io.LimitReader(os.Stdin, 1<<20))
	} else {
		raw, err = os.ReadFile(inputFile)
	}
	if err != nil {
		return exitUsage, fmt.Errorf("--input: %w", err)
	}
	in, err := policies.ParseInput(raw)
	if err != nil {
		return exitUsage, fmt.Errorf("--input: %w", err)
	}
	owner := fl.String("owner")
	if owner == "" {
		owner = in.Resource.Owner
	}
	if owner == "" {
		abs, _ := filepath.Abs(rulesDir)
		owner = filepath.Base(abs)
	}
	load := func(flag, dir string) (map[string]string, error) {
		mods, _, err := policies.LoadModules(dir)
		if err != nil {
			return nil, usage(fmt.Errorf("%s %q: %w", flag, dir, err))
		}
		if len(mods) == 0 {
			return nil, usage(fmt.Errorf("%s %q holds no rule file (*.rego)", flag, dir))
		}
		return mods, nil
	}
	ctx := context.Background()
	e := policies.NewEngine(policies.Options{})
	if systemDir != "" {
		mods, err := load("--system", systemDir)
		if err != nil {
			return exitStatus(err), err
		}
		if err := e.SetSystemModules(ctx, mods); err != nil {
			return exitFailure, fmt.Errorf("the system rules in %s do not compile:\n%w", systemDir, err)
		}
	}
	mods, err := load("--rules", rulesDir)
	if err != nil {
		return exitStatus(err), err
	}
	if err := e.SetOwnerModules(ctx, owner, mods); err != nil {
		return exitFailure, fmt.Errorf("the rules in %s do not compile:\n%w", rulesDir, err)
	}
	dec, err := e.Evaluate(ctx, owner, in)
	if err != nil {
		return exitFailure, fmt.Errorf("evaluating the rules: %w", err)
	}
	out := explain(owner, in, dec)
	if fl.Bool("json") {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(out); err != nil {
			return exitFailure, err
		}
		return exitOK, nil
	}
	fmt.Printf("outcome:   %s\n", out.Outcome)
	fmt.Printf("requested: %s\n", orDash(strings.Join(out.Requested, " ")))
	fmt.Printf("granted:   %s\n", orDash(strings.Join(out.Granted, " ")))
	fmt.Println("reasons:")
	for _, r := range out.Reasons {
		fmt.Printf("  %s\n", r)
	}
	return exitOK, nil
}

// explain turns a decision into the answer the UMA grant would give, with
// a reason for each requested scope.
func explain(owner string, in policies.Input, dec policies.Decision) evalOutcome {
	out := evalOutcome{Owner: owner, Requested: in.Scopes, Decision: dec, Granted: []string{}}
	if len(out.Requested) == 0 {
		out.Requested = in.Resource.Scopes
	}
	var missing, ask []string
	for _, sc := range out.Requested {
		if slices.Contains(dec.Granted, sc) {
			out.Granted = append(out.Granted, sc)
			by := "the owner's rules (allow)"
			if slices.Contains(dec.Shared, sc) {
				by = "a share (input.shares)"
				if slices.Contains(dec.Allow, sc) {
					by += " and the owner's rules (allow)"
				}
			}
			out.Reasons = append(out.Reasons, fmt.Sprintf("%q is granted by %s.", sc, by))
			continue
		}
		missing = append(missing, sc)
		switch {
		case slices.Contains(dec.SystemDeny, sc):
			out.Reasons = append(out.Reasons, fmt.Sprintf("%q is refused by the system rules (deny), which apply to everyone.", sc))
		case slices.Contains(dec.Deny, sc):
			out.Reasons = append(out.Reasons, fmt.Sprintf("%q is refused by a deny in the owner's rules.", sc))
		case !slices.Contains(in.Resource.Scopes, sc):
			out.Reasons = append(out.Reasons, fmt.Sprintf("%q is not a scope of the resource.", sc))
		case slices.Contains(dec.AskOwner, sc):
			ask = append(ask, sc)
			out.Reasons = append(out.Reasons, fmt.Sprintf("%q needs the owner's approval (ask_owner).", sc))
		default:
			out.Reasons = append(out.Reasons, fmt.Sprintf("%q is not granted: no rule or share gives it to this requester.", sc))
		}
	}
	switch {
	case len(missing) == 0:
		out.Outcome = "granted"
	case len(dec.RequiredClaims) > 0:
		out.Outcome = "need_info"
		var names []string
		for _, c := range dec.RequiredClaims {
			names = append(names, cmp.Or(c.FriendlyName, c.Name, c.ClaimType, "a claim"))
		}
		out.Reasons = append(out.Reasons, "The rules ask for more claims (required_claims): "+strings.Join(names, ", ")+".")
	case len(ask) > 0:
		out.Outcome = "request_submitted"
	case len(out.Granted) > 0:
		out.Outcome = "partly granted"
	default:
		out.Outcome = "request_denied"
	}
	return out
}
