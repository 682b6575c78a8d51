package policies

import (
	"context"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// countingObserver counts the compilations an Engine reports.
type countingObserver struct{ compiled atomic.Int32 }

func (o *countingObserver) Compiled(time.Duration, error)  { o.compiled.Add(1) }
func (o *countingObserver) Evaluated(time.Duration, error) {}

// TestCheckedRulesNotCompiledAgain: the rule sets a CheckDir compiled
// (shared through Options.Checked) are put in force without compiling
// them on their own again when their shard will compile them, and decide
// as rules compiled on their own do; rules a shard cannot hold, rules
// that did not compile, and rules whose shard is compiled without them,
// are compiled on their own as before. A second CheckDir compiles only
// what did not compile.
func TestCheckedRulesNotCompiledAgain(t *testing.T) {
	ctx := t.Context()
	examples, _, err := LoadDir("examples")
	if err != nil {
		t.Fatal(err)
	}
	owners := map[string]map[string]string{
		"o0": examples["family-read-only"],
		"o1": examples["doctor-by-email"],
		"o2": examples["ask-owner-write"],
		// Compiles on its own, reads data outside its package: no shard.
		"snoop": rules(`allow contains "x" if data.uma.system`),
		// o0's rules with a comment of their own: they read the same once
		// parsed, and are compiled once with o0's.
		"o0b": commented(examples["family-read-only"]),
		// Does not compile (and is left out: it cannot deny).
		"broken": rules(`allow contains "x" if nosuch(1)`),
	}
	dir := writeOwners(t, owners)
	checked := NewCheckedRules()
	var checkObs countingObserver
	err = CheckDir(ctx, dir, Options{Checked: checked, Observer: &checkObs})
	var ce CompileErrors
	if !errors.As(err, &ce) || len(ce) != 1 || !strings.HasPrefix(ce[0].Module, filepath.Join(dir, "broken")+string(filepath.Separator)) {
		t.Fatalf("CheckDir: %v", err)
	}
	if n := checkObs.compiled.Load(); n != int32(len(owners)-1) {
		t.Errorf("CheckDir compiled %d rule sets, want %d", n, len(owners)-1)
	}
	checkObs.compiled.Store(0)
	if err := CheckDir(ctx, dir, Options{Checked: checked, Observer: &checkObs}); !errors.As(err, &ce) {
		t.Fatalf("CheckDir again: %v", err)
	}
	if n := checkObs.compiled.Load(); n != 1 {
		t.Errorf("CheckDir again compiled %d rule sets, want 1 (the one that did not compile)", n)
	}

	dirModules := func(owner string) map[string]string {
		out := map[string]string{}
		for name, src := range owners[owner] {
			out[DirModulePrefix+name] = src
		}
		return out
	}
	alone := newTestEngine(Options{})
	var obs countingObserver
	e := newTestEngine(Options{Checked: checked, Observer: &obs})
	for _, owner := range []string{"o0", "o0b", "o1", "o2", "snoop", "broken"} {
		must(t, alone.SetOwnerModules(ctx, owner, rulesOrEmpty(alone, dirModules(owner))))
		before := obs.compiled.Load()
		l, err := e.LoadOwnerModules(ctx, owner, nil, dirModules(owner))
		must(t, err)
		compiled := obs.compiled.Load() - before
		switch owner {
		case "snoop", "broken":
			if compiled == 0 {
				t.Errorf("%s: not compiled on its own", owner)
			}
			if owner == "broken" && len(l.LeftOut) != 1 {
				t.Errorf("broken: load %+v, want its module left out", l)
			}
		default:
			if compiled != 0 || !reflect.DeepEqual(l, Load{}) {
				t.Errorf("%s: compiled %d times, load %+v", owner, compiled, l)
			}
		}
	}
	for _, owner := range []string{"o0", "o0b", "o1", "o2", "snoop"} {
		if got, want := decide(t, e, owner), decide(t, alone, owner); !reflect.DeepEqual(got, want) {
			t.Errorf("%s:\n got %+v\nwant %+v", owner, got, want)
		}
	}
	if !inShard(e, "o0") || inShard(e, "snoop") {
		t.Errorf("in a shard: o0 %v, snoop %v", inShard(e, "o0"), inShard(e, "snoop"))
	}

	// The shard is compiled now. Rules it holds are in force from it at
	// once; rules it does not hold are compiled on their own.
	owners["o3"] = owners["o0"]
	owners["o4"] = examples["colleagues-domain"]
	must(t, CheckDir(ctx, writeOwners(t, map[string]map[string]string{"o4": owners["o4"]}), Options{Checked: checked}))
	for owner, want := range map[string]int32{"o3": 0, "o4": 1} {
		before := obs.compiled.Load()
		if _, err := e.LoadOwnerModules(ctx, owner, nil, dirModules(owner)); err != nil {
			t.Fatal(err)
		}
		if n := obs.compiled.Load() - before; n != want {
			t.Errorf("%s: compiled %d times, want %d", owner, n, want)
		}
		must(t, alone.SetOwnerModules(ctx, owner, dirModules(owner)))
		if got, want := decide(t, e, owner), decide(t, alone, owner); !reflect.DeepEqual(got, want) {
			t.Errorf("%s:\n got %+v\nwant %+v", owner, got, want)
		}
	}
	if !inShard(e, "o3") || inShard(e, "o4") {
		t.Errorf("in a shard: o3 %v, o4 %v", inShard(e, "o3"), inShard(e, "o4"))
	}
}

// commented returns modules with a comment line first.
func commented(modules map[string]string) map[string]string {
	out := map[string]string{}
	for name, src := range modules {
		out[name] = "# a copy, with a comment of its own\n" + src
	}
	return out
}

// rulesOrEmpty returns modules if they compile in e, else none.
func rulesOrEmpty(e *Engine, modules map[string]string) map[string]string {
	if e.Check(context.Background(), "x", modules) != nil {
		return nil
	}
	return maps.Clone(modules)
}

// writeOwners writes an operator directory of owners' rules.
func writeOwners(t *testing.T, owners map[string]map[string]string) string {
	dir := t.TempDir()
	for owner, modules := range owners {
		must(t, os.MkdirAll(filepath.Join(dir, owner), 0o755))
		for name, src := range modules {
			must(t, os.WriteFile(filepath.Join(dir, owner, name), []byte(src), 0o644))
		}
	}
	return dir
}
