package policies

import (
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"
)

// Modules of an owner's directory, for the load tests.
const (
	allowBob    = "package uma.share\n\nallow contains \"view\" if input.requesting_party.sub == \"bob\"\n"
	allowCarol  = "package uma.share\n\nallow contains \"view\" if input.requesting_party.sub == \"carol\"\n"
	allowDan    = "package uma.share\n\nallow contains \"view\" if input.requesting_party.sub == \"dan\"\n"
	denyCarol   = "package uma.share\n\ndeny contains \"view\" if input.requesting_party.sub == \"carol\"\n"
	brokenAllow = "package uma.share\n\nallow contains \"view\" if {\n\tinput.requesting_party.sub ==\n}\n"
	brokenDeny  = "package uma.share\n\ndeny contains \"view\" if {\n\tinput.requesting_party.sub ==\n}\n"
	friends     = "package uma.share\n\nfriends := {\"carol\"}\n"
	useFriends  = "package uma.share\n\nallow contains \"view\" if input.requesting_party.sub in friends\n"
	useFullRef  = "package uma.share\n\nallow contains \"view\" if not data.uma.share.blocked[input.requesting_party.sub]\n"
)

// viewers returns who of bob, carol and dan may view alice's photo, or the
// evaluation error.
func viewers(t *testing.T, e *Engine) (string, error) {
	t.Helper()
	var who []string
	for _, p := range []string{"bob", "carol", "dan"} {
		d, err := e.Evaluate(t.Context(), "alice", Input{Resource: photo, Subject: p, Now: t0,
			Shares: []Share{{Subject: "carol", Scopes: []string{"view"}}}})
		if err != nil {
			return "", err
		}
		if slices.Contains(d.Granted, "view") {
			who = append(who, p)
		}
	}
	return strings.Join(who, ","), nil
}

// TestLoadOwnerModules shows how a module that does not compile is handled
// beside the others: its version in force stays, or it is left out where
// that cannot grant more, or else the owner's rules refuse everything.
// Carol has a console share in every step: a deny must beat it.
func TestLoadOwnerModules(t *testing.T) {
	type want struct {
		viewers  string // "" with broken
		broken   bool
		problems []string // modules with problems
		previous []string
		leftOut  []string
	}
	steps := []struct {
		name     string
		fixed    map[string]string
		optional map[string]string
		want     want
	}{
		{"a fresh start with a broken file that holds no deny", nil,
			map[string]string{"bob.rego": allowBob, "notes.rego": brokenAllow},
			want{viewers: "bob,carol", problems: []string{"notes.rego"}, leftOut: []string{"notes.rego"}}},
		{"fixed", nil,
			map[string]string{"bob.rego": allowBob, "notes.rego": allowDan},
			want{viewers: "bob,carol,dan"}},
		{"a live edit breaks a file: its version in force stays, the others' changes apply", nil,
			map[string]string{"bob.rego": denyCarol, "notes.rego": brokenAllow},
			want{viewers: "dan", problems: []string{"notes.rego"}, previous: []string{"notes.rego"}}},
		{"a broken deny keeps its version in force", nil,
			map[string]string{"bob.rego": brokenDeny, "notes.rego": allowDan},
			want{viewers: "dan", problems: []string{"bob.rego"}, previous: []string{"bob.rego"}}},
		{"a new broken file that mentions deny: everything refused, console shares too", nil,
			map[string]string{"bob.rego": denyCarol, "notes.rego": allowDan, "block.rego": brokenDeny},
			want{broken: true, problems: []string{"block.rego"}}},
		{"fixed again", nil,
			map[string]string{"bob.rego": allowBob, "notes.rego": allowDan},
			want{viewers: "bob,carol,dan"}},
		{"rules that the owner saved always load as given", map[string]string{"saved": allowDan},
			map[string]string{"bob.rego": allowBob, "notes.rego": brokenAllow},
			want{viewers: "bob,carol,dan", problems: []string{"notes.rego"}, previous: []string{"notes.rego"}}},
	}
	e := newTestEngine(Options{})
	for _, s := range steps {
		l, err := e.LoadOwnerModules(t.Context(), "alice", s.fixed, s.optional)
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		var problems []string
		for _, p := range l.Problems {
			if !slices.Contains(problems, p.Module) {
				problems = append(problems, p.Module)
			}
		}
		if l.Broken != s.want.broken || !slices.Equal(problems, s.want.problems) ||
			!slices.Equal(l.Previous, s.want.previous) || !slices.Equal(l.LeftOut, s.want.leftOut) {
			t.Errorf("%s: got %+v (problems in %v), want %+v", s.name, l, problems, s.want)
		}
		got, err := viewers(t, e)
		switch {
		case s.want.broken:
			if !errors.Is(err, ErrBroken) || !errors.Is(err, ErrCompile) {
				t.Errorf("%s: evaluation %q, %v, want ErrBroken", s.name, got, err)
			}
		case err != nil || got != s.want.viewers:
			t.Errorf("%s: viewers %q, %v, want %q", s.name, got, err, s.want.viewers)
		}
	}

	// The same modules again are not compiled again, and say the same.
	last := steps[len(steps)-1]
	n := e.compiles.Load()
	l, err := e.LoadOwnerModules(t.Context(), "alice", maps.Clone(last.fixed), maps.Clone(last.optional))
	if err != nil || !slices.Equal(l.Previous, last.want.previous) || e.compiles.Load() != n {
		t.Errorf("same modules: %+v, %v, %d compilations more", l, err, e.compiles.Load()-n)
	}
}

// TestLoadLeavesOutOnlyWhatNothingUses shows that a module is not left out
// when the others would then refer to rules that are gone.
func TestLoadLeavesOutOnlyWhatNothingUses(t *testing.T) {
	tests := []struct {
		name     string
		optional map[string]string
		leftOut  []string // nil with broken
		viewers  string
	}{
		{"a helper used by name: the user is left out too",
			map[string]string{"friends.rego": strings.Replace(friends, "}", "", 1), "use.rego": useFriends, "bob.rego": allowBob},
			[]string{"friends.rego", "use.rego"}, "bob,carol"},
		{"a rule used by its full reference, which would be undefined: refused",
			map[string]string{"blocked.rego": "package uma.share\n\nblocked contains \"carol\" if {\n", "use.rego": useFullRef},
			nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newTestEngine(Options{})
			l, err := e.LoadOwnerModules(t.Context(), "alice", nil, tt.optional)
			if err != nil {
				t.Fatal(err)
			}
			got, err := viewers(t, e)
			if tt.leftOut == nil {
				if !l.Broken || !errors.Is(err, ErrBroken) {
					t.Errorf("got %+v, viewers %q, %v; want broken", l, got, err)
				}
				return
			}
			if l.Broken || !slices.Equal(l.LeftOut, tt.leftOut) || err != nil || got != tt.viewers {
				t.Errorf("got %+v, viewers %q, %v; want %v left out, viewers %q", l, got, err, tt.leftOut, tt.viewers)
			}
		})
	}
}

// TestLoadSystemModules shows that a system module is never left out: it
// keeps its version in force, and without one every evaluation is refused.
func TestLoadSystemModules(t *testing.T) {
	e := newTestEngine(Options{})
	must(t, e.SetOwnerModules(t.Context(), "alice", rules(`allow contains "view"`)))
	freeze := map[string]string{"freeze.rego": "package uma.system\n\ndeny contains \"view\" if input.requesting_party.sub == \"bob\"\n"}
	broken := map[string]string{"freeze.rego": "package uma.system\n\ndeny contains \"view\" if {\n"}

	l, err := e.LoadSystemModules(t.Context(), broken)
	if err != nil || !l.Broken {
		t.Fatalf("broken at start: %+v, %v", l, err)
	}
	if _, err := e.Evaluate(t.Context(), "alice", Input{Resource: photo, Subject: "carol", Now: t0}); !errors.Is(err, ErrBroken) {
		t.Errorf("with broken system rules: %v, want ErrBroken", err)
	}
	if l, err = e.LoadSystemModules(t.Context(), freeze); err != nil || len(l.Problems) > 0 {
		t.Fatalf("fixed: %+v, %v", l, err)
	}
	if l, err = e.LoadSystemModules(t.Context(), broken); err != nil || l.Broken || !slices.Equal(l.Previous, []string{"freeze.rego"}) {
		t.Fatalf("broken in a live edit: %+v, %v", l, err)
	}
	d, err := e.Evaluate(t.Context(), "alice", Input{Resource: photo, Subject: "bob", Now: t0})
	if err != nil || len(d.Granted) != 0 || !slices.Equal(d.SystemDeny, []string{"view"}) {
		t.Errorf("the version in force denies: %+v, %v", d, err)
	}
}
