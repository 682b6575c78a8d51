package policies

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkRunTests runs the demo owner's rules and four Rego tests
// (examples/policies/alice), compile included: what the console does each
// time an owner's rules page shows.
func BenchmarkRunTests(b *testing.B) {
	dir := filepath.Join("..", "examples", "policies", "alice")
	modules := map[string]string{}
	for _, name := range []string{"records.rego", "records_test.rego"} {
		src, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			b.Fatal(err)
		}
		modules[name] = string(src)
	}
	for b.Loop() {
		report, err := RunTests(context.Background(), modules, Options{})
		if err != nil || !report.OK() {
			b.Fatalf("%v %+v", err, report)
		}
	}
}
