package policies

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const rulesUnderTest = `package uma.share

allow contains "read" if input.claims.email == "bob@example.com"
`

// TestRunTests runs owners' Rego tests through RunTests: passing and
// failing tests named, system rules, and every way a run is refused (no
// tests, a test that leaves the sandbox, a test module posing as the
// rules or the library, rules that do not compile, limits).
func TestRunTests(t *testing.T) {
	type want struct {
		passed, failed []string // test names
		code           string   // of a CompileErrors; "" for none
		err            error
	}
	cases := []struct {
		name    string
		modules map[string]string
		want    want
	}{
		{"passing and failing", map[string]string{
			"rules.rego": rulesUnderTest,
			"rules_test.rego": `package uma.share_test

import data.uma.share

test_bob_reads if share.allow == {"read"} with input as {"claims": {"email": "bob@example.com"}}

test_eve_reads if share.allow == {"read"} with input as {"claims": {"email": "eve@example.com"}}
`}, want{passed: []string{"test_bob_reads"}, failed: []string{"test_eve_reads"}}},
		{"the library and the decision", map[string]string{
			"rules.rego": rulesUnderTest,
			"lib_test.rego": `package uma.share_test

test_shared if data.uma.lib.shared_scopes == {"read"} with input as {"resource": {"scopes": ["read"]}, "claims": {"sub": "bob"}, "requesting_party": {"sub": "bob"}, "client": {"id": "app"}, "shares": [{"subject": "bob", "email": "", "scopes": ["read"], "client": "", "expires_at": 0}], "now": 1}

test_decision if data.uma.decision.result.allow == {"read"} with input as {"claims": {"email": "bob@example.com"}, "resource": {"scopes": []}, "shares": [], "now": 1}
`}, want{passed: []string{"test_shared", "test_decision"}}},
		{"system rules", map[string]string{
			"policy.rego":      "package uma.system\n\ndeny contains \"admin\" if input.client.id == \"legacy\"\n",
			"policy_test.rego": "package uma.system_test\n\ntest_legacy if data.uma.system.deny == {\"admin\"} with input as {\"client\": {\"id\": \"legacy\"}}\n",
		}, want{passed: []string{"test_legacy"}}},
		{"no tests", map[string]string{"rules.rego": rulesUnderTest}, want{err: ErrNoTests}},
		{"a test module without test rules", map[string]string{
			"rules.rego": rulesUnderTest, "x_test.rego": "package uma.share_test\n\nx := 1\n",
		}, want{err: ErrNoTests}},
		{"a test that calls http.send", map[string]string{
			"rules.rego": rulesUnderTest,
			"net_test.rego": `package uma.share_test

test_out if http.send({"method": "GET", "url": "http://127.0.0.1:1/"}).status_code == 200
`}, want{code: codeSandbox}},
		{"a test that reads the clock", map[string]string{
			"rules.rego":     rulesUnderTest,
			"time_test.rego": "package uma.share_test\n\ntest_now if time.now_ns() > 0\n",
		}, want{code: codeSandbox}},
		{"a test posing as the rules", map[string]string{
			"rules.rego":     rulesUnderTest,
			"evil_test.rego": "package uma.share\n\nallow contains \"write\"\n\ntest_x if true\n",
		}, want{code: codePackage}},
		{"a test posing as the library", map[string]string{
			"rules.rego":    rulesUnderTest,
			"lib_test.rego": "package uma.lib\n\ntest_x if true\n",
		}, want{code: codePackage}},
		{"rules that do not compile", map[string]string{
			"rules.rego":      "package uma.share\n\nallow := 1\n",
			"rules_test.rego": "package uma.share_test\n\ntest_x if true\n",
		}, want{code: codeRule}},
		{"a test that does not parse", map[string]string{
			"rules.rego":      rulesUnderTest,
			"rules_test.rego": "package uma.share_test\n\ntest_x if {\n",
		}, want{code: "rego_parse_error"}},
		{"a module too large", map[string]string{
			"rules.rego":      rulesUnderTest,
			"rules_test.rego": "package uma.share_test\n\n# " + strings.Repeat("x", DefaultMaxModuleBytes) + "\ntest_x if true\n",
		}, want{code: codeLimit}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			report, err := RunTests(context.Background(), c.modules, Options{})
			var ce CompileErrors
			switch {
			case c.want.err != nil:
				if !errors.Is(err, c.want.err) {
					t.Fatalf("err = %v, want %v", err, c.want.err)
				}
				return
			case c.want.code != "":
				if !errors.As(err, &ce) || !slices.ContainsFunc(ce, func(e *CompileError) bool { return e.Code == c.want.code }) {
					t.Fatalf("err = %v, want a CompileErrors with code %s", err, c.want.code)
				}
				return
			case err != nil:
				t.Fatal(err)
			}
			var passed, failed []string
			for _, r := range report.Results {
				if r.Module == "" || r.Line == 0 || r.Package == "" {
					t.Errorf("result without its place: %+v", r)
				}
				if r.Passed {
					passed = append(passed, r.Name)
				} else {
					failed = append(failed, r.Name)
				}
			}
			if !slices.Equal(passed, c.want.passed) || !slices.Equal(failed, c.want.failed) {
				t.Errorf("passed %q, failed %q; want %q and %q", passed, failed, c.want.passed, c.want.failed)
			}
			if report.Passed != len(c.want.passed) || report.Failed != len(c.want.failed) || report.OK() != (len(c.want.failed) == 0) {
				t.Errorf("report counts %d passed, %d failed, OK %v", report.Passed, report.Failed, report.OK())
			}
		})
	}
}

// TestRunTestsExamples runs the tests kept beside the examples, as `caddy
// uma policy test` would: every one passes.
func TestRunTestsExamples(t *testing.T) {
	dirs, _ := filepath.Glob("examples/*")
	dirs = append(dirs, filepath.Join("..", "examples", "policies", "alice"))
	for _, dir := range dirs {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			files, _ := filepath.Glob(filepath.Join(dir, "*.rego"))
			modules := map[string]string{}
			for _, f := range files {
				src, err := os.ReadFile(f)
				if err != nil {
					t.Fatal(err)
				}
				modules[filepath.Base(f)] = string(src)
			}
			report, err := RunTests(context.Background(), modules, Options{})
			if err != nil {
				t.Fatal(err)
			}
			if !report.OK() || report.Passed == 0 {
				t.Errorf("report %+v", report)
			}
		})
	}
}

func TestParseInput(t *testing.T) {
	cases := []struct {
		name, json string
		ok         bool
	}{
		{"whole", `{"resource": {"id": "r1", "type": "t", "owner": "alice", "scopes": ["read"]}, "scopes": ["read"],
			"client": {"id": "app"}, "requesting_party": {"sub": "bob", "iss": "https://idp"}, "claims": {"email": "b@x", "age": 42, "n": {"x": [1.5]}},
			"request": {"method": "GET"}, "shares": [{"email": "b@x", "scopes": ["read"], "expires_at": 100}], "now": 1700000000}`, true},
		{"least", `{"resource": {"id": "r1", "scopes": ["read"]}}`, true},
		{"misspelt member", `{"resource": {"id": "r1", "scopes": ["read"]}, "claim": {}}`, false},
		{"no resource id", `{"resource": {"scopes": ["read"]}}`, false},
		{"no scopes", `{"resource": {"id": "r1"}}`, false},
		{"two values", `{"resource": {"id": "r1", "scopes": ["read"]}} {}`, false},
		{"not JSON", `resource`, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in, err := ParseInput([]byte(c.json))
			if (err == nil) != c.ok {
				t.Fatalf("err = %v, want ok %v", err, c.ok)
			}
			if !c.ok {
				return
			}
			e := newTestEngine(Options{})
			if err := e.SetOwnerModules(context.Background(), "alice", map[string]string{"r.rego": rulesUnderTest}); err != nil {
				t.Fatal(err)
			}
			if _, err := e.Evaluate(context.Background(), "alice", in); err != nil {
				t.Errorf("evaluating the parsed input: %v", err)
			}
		})
	}
	in, _ := ParseInput([]byte(cases[0].json))
	if in.ClientID != "app" || in.Subject != "bob" || in.Claims["age"] != int64(42) || in.Now.Unix() != 1700000000 || len(in.Shares) != 1 || in.Shares[0].ExpiresAt.Unix() != 100 {
		t.Errorf("parsed %+v", in)
	}
}
