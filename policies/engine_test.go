package policies

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

var t0 = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// photo is a resource of alice's.
var photo = Resource{ID: "photo-1", Name: "Holiday", Type: "photo", Owner: "alice", Scopes: []string{"view", "download", "edit"}}

// rules returns one module of alice's rules, importing the library when src
// uses it (strict mode refuses unused imports).
func rules(src string) map[string]string {
	header := "package uma.share\n\n"
	if strings.Contains(src, "lib.") {
		header += "import data.uma.lib\n\n"
	}
	return map[string]string{"rules.rego": header + src}
}

func TestEvaluate(t *testing.T) {
	bob := Input{Resource: photo, Scopes: []string{"view"}, ClientID: "app", Subject: "bob", Issuer: "https://idp.example",
		Claims: map[string]any{"email": "bob@example.org", "email_verified": true}, Now: t0}
	with := func(f func(*Input)) Input {
		in := bob
		f(&in)
		return in
	}
	tests := []struct {
		name   string
		owner  map[string]string // alice's rules
		system map[string]string
		in     Input
		want   Decision
	}{
		{
			name: "no rules grants nothing",
			in:   bob,
			want: Decision{},
		},
		{
			name:  "rules that match nobody grant nothing",
			owner: rules(`allow contains "view" if lib.is_person("carol")`),
			in:    bob,
			want:  Decision{},
		},
		{
			name:  "allow by subject",
			owner: rules(`allow contains scope if { lib.is_subject("bob"); some scope in {"view", "download"} }`),
			in:    bob,
			want:  Decision{Allow: []string{"download", "view"}, Granted: []string{"download", "view"}},
		},
		{
			name:  "granted stays within the resource's scopes",
			owner: rules(`allow contains scope if some scope in {"view", "admin"}`),
			in:    bob,
			want:  Decision{Allow: []string{"admin", "view"}, Granted: []string{"view"}},
		},
		{
			name: "deny overrides allow",
			owner: rules(`allow contains scope if some scope in lib.available

deny contains "edit" if lib.is_email("bob@example.org")`),
			in:   bob,
			want: Decision{Allow: []string{"download", "edit", "view"}, Deny: []string{"edit"}, Granted: []string{"download", "view"}},
		},
		{
			name:   "system deny overrides owner allow",
			owner:  rules(`allow contains scope if some scope in lib.available`),
			system: map[string]string{"sys.rego": "package uma.system\n\ndeny contains \"download\" if input.client.id == \"app\"\n"},
			in:     bob,
			want:   Decision{Allow: []string{"download", "edit", "view"}, SystemDeny: []string{"download"}, Granted: []string{"edit", "view"}},
		},
		{
			name:   "system deny overrides console shares",
			system: map[string]string{"sys.rego": "package uma.system\n\ndeny contains \"view\"\n"},
			in:     with(func(in *Input) { in.Shares = []Share{{Subject: "bob", Scopes: []string{"view", "download"}}} }),
			want:   Decision{Shared: []string{"download", "view"}, SystemDeny: []string{"view"}, Granted: []string{"download"}},
		},
		{
			name:  "owner deny overrides console shares",
			owner: rules(`deny contains "download"`),
			in:    with(func(in *Input) { in.Shares = []Share{{Subject: "bob", Scopes: []string{"view", "download"}}} }),
			want:  Decision{Deny: []string{"download"}, Shared: []string{"download", "view"}, Granted: []string{"view"}},
		},
		{
			name: "required_claims surfaced",
			owner: rules(`required_claims contains lib.email_claim if not lib.email

required_claims contains {"name": "member_of", "claim_type": "urn:x", "issuer": "https://idp.example", "claim_token_format": ["jwt"]} if true`),
			in: with(func(in *Input) { in.Claims = nil }),
			want: Decision{RequiredClaims: []RequiredClaim{
				{Name: "email", FriendlyName: "E-mail address", ClaimTokenFormat: []string{"http://openid.net/specs/openid-connect-core-1_0.html#IDToken"}},
				{Name: "member_of", ClaimType: "urn:x", ClaimTokenFormat: []string{"jwt"}, Issuer: []string{"https://idp.example"}},
			}},
		},
		{
			name:  "ask_owner surfaced",
			owner: rules(`ask_owner contains scope if { some scope in lib.requested; not lib.is_read_scope(scope) }`),
			in:    with(func(in *Input) { in.Scopes = []string{"view", "edit"} }),
			want:  Decision{AskOwner: []string{"edit"}},
		},
		{
			name: "console share by subject, no owner rules",
			in:   with(func(in *Input) { in.Shares = []Share{{Subject: "bob", Scopes: []string{"view"}}} }),
			want: Decision{Shared: []string{"view"}, Granted: []string{"view"}},
		},
		{
			name: "console share by e-mail",
			in: with(func(in *Input) {
				in.Shares = []Share{{Email: "Bob@Example.org", Scopes: []string{"view", "download"}}}
			}),
			want: Decision{Shared: []string{"download", "view"}, Granted: []string{"download", "view"}},
		},
		{
			name: "console share by unverified e-mail ignored",
			in: with(func(in *Input) {
				in.Claims = map[string]any{"email": "bob@example.org", "email_verified": false}
				in.Shares = []Share{{Email: "bob@example.org", Scopes: []string{"view"}}}
			}),
			want: Decision{},
		},
		{
			name: "expired console share ignored",
			in: with(func(in *Input) {
				in.Shares = []Share{
					{Subject: "bob", Scopes: []string{"edit"}, ExpiresAt: t0},
					{Subject: "bob", Scopes: []string{"view"}, ExpiresAt: t0.Add(time.Second)},
				}
			}),
			want: Decision{Shared: []string{"view"}, Granted: []string{"view"}},
		},
		{
			name: "client-restricted console share",
			in: with(func(in *Input) {
				in.Shares = []Share{
					{Subject: "bob", Scopes: []string{"view"}, Client: "app"},
					{Subject: "bob", Scopes: []string{"edit"}, Client: "other-app"},
				}
			}),
			want: Decision{Shared: []string{"view"}, Granted: []string{"view"}},
		},
		{
			name: "console share for someone else",
			in: with(func(in *Input) {
				in.Shares = []Share{{Subject: "carol", Email: "carol@example.org", Scopes: []string{"view"}}}
			}),
			want: Decision{},
		},
		{
			name:  "owner rules and console shares add up",
			owner: rules(`allow contains "download" if lib.is_subject("bob")`),
			in:    with(func(in *Input) { in.Shares = []Share{{Subject: "bob", Scopes: []string{"view"}}} }),
			want:  Decision{Allow: []string{"download"}, Shared: []string{"view"}, Granted: []string{"download", "view"}},
		},
		{
			name: "many modules add to the same sets",
			owner: map[string]string{
				"a.rego": "package uma.share\n\nallow contains \"view\"\n",
				"b.rego": "package uma.share\n\nallow contains \"edit\"\n\ndeny contains \"edit\" if input.client.id == \"app\"\n",
				"c.rego": "package uma.share\n\nallow contains \"view\"\n\nask_owner contains \"download\"\n",
			},
			in:   bob,
			want: Decision{Allow: []string{"edit", "view"}, Deny: []string{"edit"}, AskOwner: []string{"download"}, Granted: []string{"view"}},
		},
		{
			name:  "default time is the clock's",
			owner: rules(`allow contains "view" if lib.now == 1735689600`),
			in:    with(func(in *Input) { in.Now = time.Time{} }),
			want:  Decision{Allow: []string{"view"}, Granted: []string{"view"}},
		},
	}
	defer func(f func() time.Time) { now = f }(now)
	now = func() time.Time { return t0 }
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newTestEngine(Options{})
			if err := e.SetOwnerModules(context.Background(), "alice", tt.owner); err != nil {
				t.Fatal(err)
			}
			if err := e.SetSystemModules(context.Background(), tt.system); err != nil {
				t.Fatal(err)
			}
			got, err := e.Evaluate(context.Background(), "alice", tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestInputShape(t *testing.T) {
	e := newTestEngine(Options{})
	err := e.SetOwnerModules(context.Background(), "alice", rules(`allow contains "ok" if {
	input.resource == {"id": "photo-1", "name": "Holiday", "type": "photo", "owner": "alice",
		"scopes": ["view", "download", "edit"], "uris": ["https://rs.example/photos/1"]}
	input.scopes == ["view"]
	input.client == {"id": "app"}
	input.requesting_party == {"sub": "bob", "iss": "https://idp.example"}
	input.claims == {"email": "bob@example.org", "groups": ["a", "b"], "age": 42, "nested": {"x": null}}
	input.request == {"method": "GET"}
	input.shares == [
		{"subject": "bob", "email": "", "scopes": ["view"], "client": "", "expires_at": 0},
		{"subject": "", "email": "b@example.org", "scopes": [], "client": "app", "expires_at": 1735689660},
	]
	input.now == 1735689600
}`))
	if err != nil {
		t.Fatal(err)
	}
	res := photo
	res.Owner = "" // filled in
	res.URIs = []string{"https://rs.example/photos/1"}
	d, err := e.Evaluate(context.Background(), "alice", Input{
		Resource: res, Scopes: []string{"view"}, ClientID: "app", Subject: "bob", Issuer: "https://idp.example",
		Claims:  map[string]any{"email": "bob@example.org", "groups": []string{"a", "b"}, "age": 42, "nested": map[string]any{"x": nil}},
		Request: map[string]any{"method": "GET"},
		Shares: []Share{
			{Subject: "bob", Scopes: []string{"view"}},
			{Email: "b@example.org", Client: "app", ExpiresAt: t0.Add(time.Minute)},
		},
		Now: t0,
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(d.Allow, "ok") {
		t.Errorf("the input is not shaped as documented: %+v", d)
	}
	// Empty input: every member still present.
	if err := e.SetOwnerModules(context.Background(), "alice", rules(`allow contains "ok" if {
	input.resource == {"id": "", "name": "", "type": "", "owner": "alice", "scopes": [], "uris": []}
	input.scopes == []
	input.client == {"id": ""}
	input.requesting_party == {"sub": "", "iss": ""}
	input.claims == {}
	input.request == {}
	input.shares == []
	is_number(input.now)
}`)); err != nil {
		t.Fatal(err)
	}
	d, err = e.Evaluate(context.Background(), "alice", Input{})
	if err != nil || !slices.Contains(d.Allow, "ok") {
		t.Errorf("empty input: %+v, %v", d, err)
	}
}

func TestEvaluateErrors(t *testing.T) {
	tests := []struct {
		name   string
		owner  map[string]string
		in     Input
		owner2 string // owner evaluated, "alice" if empty
		want   string // substring of the error
	}{
		{name: "complete rules conflict at evaluation",
			owner: rules(`level := 1 if input.client.id == "app"

level := 2 if input.requesting_party.sub == "bob"

allow contains "view" if level == 1`),
			in:   Input{ClientID: "app", Subject: "bob"},
			want: "eval_conflict_error"},
		{name: "non-string scope",
			owner: rules(`allow contains 5`),
			want:  "allow: 5 is not a scope string"},
		{name: "required claim not an object",
			owner: rules(`required_claims contains "email"`),
			want:  `required_claims: "email" is not an object`},
		{name: "required claim with a bad member",
			owner: rules(`required_claims contains {"name": 5}`),
			want:  "required_claims: name: 5 is not a string"},
		{name: "required claim with a bad list",
			owner: rules(`required_claims contains {"issuer": [1]}`),
			want:  "required_claims: issuer: 1 is not a string"},
		{name: "resource of another owner",
			in:   Input{Resource: Resource{ID: "r", Owner: "bob"}},
			want: `resource "r" belongs to "bob", not "alice"`},
		{name: "no owner", owner2: "-", want: "empty owner"},
		{name: "claims that are not JSON",
			in:   Input{Claims: map[string]any{"f": func() {}}},
			want: "converting claims"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newTestEngine(Options{})
			if err := e.SetOwnerModules(context.Background(), "alice", tt.owner); err != nil {
				t.Fatal(err)
			}
			owner := cmpOr(tt.owner2, "alice")
			if owner == "-" {
				owner = ""
			}
			d, err := e.Evaluate(context.Background(), owner, tt.in)
			if !errors.Is(err, ErrEvaluation) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %+v, %v; want ErrEvaluation with %q", d, err, tt.want)
			}
		})
	}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func TestIsolation(t *testing.T) {
	e := newTestEngine(Options{})
	// Alice keeps a helper rule; she shares nothing with bob.
	must(t, e.SetOwnerModules(context.Background(), "alice", rules(`secret_friends := {"carol"}

allow contains "view" if lib.subject in secret_friends`)))
	// Mallory's rules try to grant on alice's resources, and to read alice's rules.
	must(t, e.SetOwnerModules(context.Background(), "mallory", rules(`allow contains scope if {
	input.resource.owner == "alice"
	some scope in input.resource.scopes
}

allow contains "leak" if count(data.uma.share.secret_friends) > 0

allow contains "system" if data.uma.system

deny contains "nothing"`)))

	bob := Input{Resource: photo, Subject: "bob", Now: t0}
	d, err := e.Evaluate(context.Background(), "alice", bob)
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Granted) != 0 || len(d.Allow) != 0 || len(d.Deny) != 0 {
		t.Errorf("mallory's rules applied to alice's resource: %+v", d)
	}
	// Evaluated for mallory, her rules see her own package only.
	res := photo
	res.Owner = ""
	d, err = e.Evaluate(context.Background(), "mallory", Input{Resource: res, Subject: "bob", Now: t0})
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(d.Allow, "leak") || slices.Contains(d.Allow, "system") {
		t.Errorf("mallory read data she has no access to: %+v", d)
	}
	// The caller cannot evaluate alice's resource under mallory's rules.
	if _, err := e.Evaluate(context.Background(), "mallory", bob); !errors.Is(err, ErrEvaluation) {
		t.Errorf("evaluating alice's resource for mallory: %v", err)
	}
	// Alice's rules still work for carol.
	carol := bob
	carol.Subject = "carol"
	if d, _ := e.Evaluate(context.Background(), "alice", carol); !slices.Equal(d.Granted, []string{"view"}) {
		t.Errorf("alice's rules for carol: %+v", d)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestRecompileOnlyOnChange(t *testing.T) {
	e := newTestEngine(Options{})
	v1 := map[string]string{
		"a.rego": "package uma.share\n\nallow contains \"view\"\n",
		"b.rego": "package uma.share\n\nallow contains \"download\"\n",
	}
	v2 := map[string]string{"a.rego": "package uma.share\n\nallow contains \"edit\"\n"}
	bad := map[string]string{"a.rego": "package uma.share\n\nallow contains\n"}
	steps := []struct {
		name     string
		do       func() error
		wantErr  bool
		compiles int64
		granted  []string // alice's, after the step
	}{
		{"first rules", func() error { return e.SetOwnerModules(context.Background(), "alice", v1) }, false, 1, []string{"download", "view"}},
		{"same rules", func() error { return e.SetOwnerModules(context.Background(), "alice", maps.Clone(v1)) }, false, 1, []string{"download", "view"}},
		{"check the rules in force", func() error { return e.Check(context.Background(), "alice", v1) }, false, 1, []string{"download", "view"}},
		{"check new rules", func() error { return e.Check(context.Background(), "alice", v2) }, false, 2, []string{"download", "view"}},
		{"put the checked rules in force", func() error { return e.SetOwnerModules(context.Background(), "alice", v2) }, false, 2, []string{"edit"}},
		{"back to the first rules", func() error { return e.SetOwnerModules(context.Background(), "alice", v1) }, false, 2, []string{"download", "view"}},
		{"another owner with the same rules", func() error { return e.SetOwnerModules(context.Background(), "bob", v2) }, false, 2, []string{"download", "view"}},
		{"rules that do not compile", func() error { return e.SetOwnerModules(context.Background(), "alice", bad) }, true, 3, []string{"download", "view"}},
		{"the same bad rules again", func() error { return e.SetOwnerModules(context.Background(), "alice", bad) }, true, 4, []string{"download", "view"}},
		{"remove the rules", func() error { return e.SetOwnerModules(context.Background(), "alice", nil) }, false, 4, nil},
		{"rules back", func() error { return e.SetOwnerModules(context.Background(), "alice", v1) }, false, 4, []string{"download", "view"}},
		{"system rules", func() error {
			return e.SetSystemModules(context.Background(), map[string]string{"s.rego": "package uma.system\n"})
		}, false, 5, []string{"download", "view"}},
		{"same system rules", func() error {
			return e.SetSystemModules(context.Background(), map[string]string{"s.rego": "package uma.system\n"})
		}, false, 5, []string{"download", "view"}},
	}
	for _, s := range steps {
		err := s.do()
		if (err != nil) != s.wantErr {
			t.Fatalf("%s: error %v", s.name, err)
		}
		if got := e.compiles.Load(); got != s.compiles {
			t.Errorf("%s: %d compilations, want %d", s.name, got, s.compiles)
		}
		d, err := e.Evaluate(context.Background(), "alice", Input{Resource: photo, Now: t0})
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if !slices.Equal(d.Granted, s.granted) {
			t.Errorf("%s: granted %q, want %q", s.name, d.Granted, s.granted)
		}
	}
	if got := e.OwnerModules("alice"); !maps.Equal(got, v1) {
		t.Errorf("OwnerModules = %v", got)
	}
	if got := e.OwnerModules("nobody"); got != nil {
		t.Errorf("OwnerModules(nobody) = %v", got)
	}
	if got := e.SystemModules(); len(got) != 1 {
		t.Errorf("SystemModules = %v", got)
	}
}

func TestCompiledCacheIsBounded(t *testing.T) {
	e := newTestEngine(Options{})
	for i := range compiledCacheSize + 10 {
		must(t, e.Check(context.Background(), "alice", rules(fmt.Sprintf("allow contains \"s%d\"\n", i))))
	}
	if n := e.cache.order.Len(); n != compiledCacheSize || len(e.cache.index) != compiledCacheSize {
		t.Errorf("cache holds %d (%d), want %d", n, len(e.cache.index), compiledCacheSize)
	}
}

// runaway never ends: 8e9 iterations of a condition that never holds.
const runaway = `allow contains "view" if {
	r := numbers.range(1, 2000)
	some a in r
	some b in r
	some c in r
	a + b + c < 0
}`

func TestTimeout(t *testing.T) {
	const limit = 200 * time.Millisecond
	e := newTestEngine(Options{Timeout: limit})
	must(t, e.SetOwnerModules(context.Background(), "mallory", rules(runaway)))
	must(t, e.SetOwnerModules(context.Background(), "alice", rules(`allow contains "view" if lib.is_subject("bob")`)))

	type result struct {
		err     error
		elapsed time.Duration
	}
	done := make(chan result)
	go func() {
		start := time.Now()
		_, err := e.Evaluate(context.Background(), "mallory", Input{Resource: Resource{Scopes: []string{"view"}}, Now: t0})
		done <- result{err, time.Since(start)}
	}()
	// Meanwhile, alice's evaluations go on.
	for i := 0; ; i++ {
		d, err := e.Evaluate(context.Background(), "alice", Input{Resource: photo, Subject: "bob", Now: t0})
		if err != nil || !slices.Equal(d.Granted, []string{"view"}) {
			t.Fatalf("alice's evaluation during mallory's: %+v, %v", d, err)
		}
		select {
		case r := <-done:
			if !errors.Is(r.err, ErrTimeout) || !errors.Is(r.err, context.DeadlineExceeded) {
				t.Fatalf("runaway rules: %v, want ErrTimeout", r.err)
			}
			// Generous: the race detector and a busy machine slow things.
			if r.elapsed > limit+2*time.Second {
				t.Errorf("runaway rules stopped after %v, limit %v", r.elapsed, limit)
			}
			if i == 0 {
				t.Log("no evaluation of alice's ran meanwhile")
			}
			return
		default:
		}
	}
}

func TestCallerDeadlineAndCancel(t *testing.T) {
	e := newTestEngine(Options{Timeout: time.Minute})
	must(t, e.SetOwnerModules(context.Background(), "mallory", rules(runaway)))
	in := Input{Resource: Resource{Scopes: []string{"view"}}, Now: t0}

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := e.Evaluate(ctx, "mallory", in); !errors.Is(err, ErrTimeout) {
		t.Errorf("caller's deadline: %v, want ErrTimeout", err)
	}

	ctx, cancel = context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	_, err := e.Evaluate(ctx, "mallory", in)
	if !errors.Is(err, context.Canceled) || errors.Is(err, ErrTimeout) {
		t.Errorf("caller's cancel: %v, want context.Canceled", err)
	}
}

func TestConcurrency(t *testing.T) {
	// Compilations hog the CPU here; this test is not about time limits.
	e := newTestEngine(Options{Timeout: time.Minute})
	versions := []map[string]string{
		rules(`allow contains "view" if lib.is_subject("bob")`),
		rules(`allow contains "download" if lib.is_subject("bob")`),
	}
	system := []map[string]string{
		nil,
		{"s.rego": "package uma.system\n\ndeny contains \"edit\"\n"},
	}
	owners := []string{"alice", "carol", "dave"}
	for _, o := range owners {
		must(t, e.SetOwnerModules(context.Background(), o, versions[0]))
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	// Writers swap rules back and forth.
	for i, o := range owners {
		wg.Go(func() {
			for n := 0; ctx.Err() == nil; n++ {
				if err := e.SetOwnerModules(context.Background(), o, versions[n%2]); err != nil {
					t.Error(err)
					return
				}
				if i == 0 {
					if err := e.SetSystemModules(context.Background(), system[n%2]); err != nil {
						t.Error(err)
						return
					}
				}
				_ = e.Check(context.Background(), o, versions[(n+1)%2])
				_ = e.OwnerModules(o)
			}
		})
	}
	// Readers evaluate and always see one version or the other.
	var evals sync.WaitGroup
	for r := range 8 {
		evals.Go(func() {
			o := owners[r%len(owners)]
			res := photo
			res.Owner = o
			for range 200 {
				d, err := e.Evaluate(ctx, o, Input{Resource: res, Subject: "bob", Now: t0,
					Shares: []Share{{Subject: "bob", Scopes: []string{"edit"}}}})
				if err != nil {
					t.Error(err)
					return
				}
				g := strings.Join(d.Granted, ",")
				switch g {
				case "edit,view", "download,edit", "view", "download":
				default:
					t.Errorf("%s: unexpected grant %q", o, g)
					return
				}
			}
		})
	}
	evals.Wait()
	cancel()
	wg.Wait()
}

// newTestEngine is NewEngine with a minute for each evaluation and each
// compilation unless opts says otherwise: tests that are not about time
// limits must not trip them on a busy machine or under the race detector.
func newTestEngine(opts Options) *Engine {
	if opts.Timeout == 0 {
		opts.Timeout = time.Minute
	}
	if opts.CompileTimeout == 0 {
		opts.CompileTimeout = time.Minute
	}
	return NewEngine(opts)
}

// TestOwnersInForceBounded: past MaxOwnersInForce, the compiled rules of
// the owner evaluated longest ago are dropped: Evaluate answers
// ErrNotInForce for that owner (never the library's decision in place of
// the owner's rules), the sources stay, and putting them in force again
// compiles them again (evicting the next least recently used).
func TestOwnersInForceBounded(t *testing.T) {
	ctx := t.Context()
	e := NewEngine(Options{MaxOwnersInForce: 2})
	input := func(owner string) Input {
		return Input{Resource: Resource{ID: "r-" + owner, Owner: owner, Scopes: []string{"view"}}, Scopes: []string{"view"},
			Subject: "bob", Now: t0, Shares: []Share{{Subject: "bob", Scopes: []string{"view"}}}}
	}
	// Each owner denies what their share allows: evaluated without their
	// rules, bob would get view. The rules read data outside their
	// package, so they stay compiled on their own (see shard.go).
	deny := rules(`deny contains "view" if { lib.is_subject("bob"); not data.elsewhere }`)
	check := func(owner string, wantErr error) {
		t.Helper()
		d, err := e.Evaluate(ctx, owner, input(owner))
		switch {
		case wantErr != nil && !errors.Is(err, wantErr):
			t.Errorf("Evaluate(%s) = %+v, %v; want %v", owner, d, err, wantErr)
		case wantErr == nil && (err != nil || len(d.Granted) != 0 || !slices.Contains(d.Deny, "view")):
			t.Errorf("Evaluate(%s) = %+v, %v; want view denied", owner, d, err)
		}
	}
	for _, owner := range []string{"a", "b"} {
		if err := e.SetOwnerModules(ctx, owner, deny); err != nil {
			t.Fatal(err)
		}
	}
	check("a", nil)
	check("b", nil)
	check("a", nil) // b is now the least recently used
	if _, err := e.LoadOwnerModules(ctx, "c", deny, nil); err != nil {
		t.Fatal(err)
	}
	check("b", ErrNotInForce)
	check("a", nil)
	check("c", nil)
	if got := e.OwnerModules("b"); !maps.Equal(got, deny) {
		t.Errorf("OwnerModules of an owner left out = %v, want the sources", got)
	}
	compiles := e.compiles.Load()
	if _, err := e.LoadOwnerModules(ctx, "b", deny, nil); err != nil {
		t.Fatal(err)
	}
	check("b", nil)
	check("a", ErrNotInForce) // a was evaluated before c
	check("c", nil)
	// The same rules for several owners share one compilation (cached):
	// putting b in force again compiled nothing.
	if n := e.compiles.Load() - compiles; n != 0 {
		t.Errorf("%d compilations to put b's rules in force again, want 0 (cached)", n)
	}
	// Removing an owner's rules frees their place.
	if err := e.SetOwnerModules(ctx, "c", nil); err != nil {
		t.Fatal(err)
	}
	if err := e.SetOwnerModules(ctx, "a", deny); err != nil {
		t.Fatal(err)
	}
	check("a", nil)
	check("b", nil)
}
