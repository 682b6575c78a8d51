package pep

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestRegisteredURIPrecedence maps requests among registered resources
// whose uris overlap: the most specific pattern wins (more literal
// segments, then no rest wildcard, an absolute uri before a path), and of
// equally specific ones the resource with the smallest ID.
func TestRegisteredURIPrecedence(t *testing.T) {
	res := func(id string, uris ...string) Resource {
		return Resource{ID: id, Owner: "erin", Scopes: []string{"read"}, URIs: uris}
	}
	tests := []struct {
		name       string
		registered []Resource
		host, path string
		want       string // resource ID, "" for none
	}{
		{"literal beats parameter", []Resource{res("a", "/p/{x}"), res("b", "/p/1")}, "", "/p/1", "b"},
		{"parameter beats rest", []Resource{res("a", "/p/*"), res("b", "/p/{x}")}, "", "/p/1", "b"},
		{"one-segment * is a parameter", []Resource{res("a", "/p/*/t"), res("b", "/p/{x}/t")}, "", "/p/1/t", "a"},
		{"longer literal rest beats shorter", []Resource{res("a", "/p/*"), res("b", "/p/q/*")}, "", "/p/q/r/s", "b"},
		{"literal rest beats parameters", []Resource{res("a", "/{x}/{y}/{z}"), res("b", "/p/q/{rest...}")}, "", "/p/q/r", "b"},
		{"parameters only where literals fail", []Resource{res("a", "/p/{x}/r"), res("b", "/p/q/s")}, "", "/p/q/r", "a"},
		{"rest matches nothing after it", []Resource{res("a", "/p/*")}, "", "/p", "a"},
		{"rest at the root", []Resource{res("a", "/*"), res("b", "/p")}, "", "/x/y", "a"},
		{"the root", []Resource{res("a", "/"), res("b", "/*")}, "", "/", "a"},
		{"trailing slash ignored", []Resource{res("a", "/p/q/")}, "", "/p/q/", "a"},
		{"equal specificity: smaller ID", []Resource{res("b", "/p/{x}"), res("a", "/p/{y}")}, "", "/p/1", "a"},
		{"equal specificity across resources and uris", []Resource{res("z", "/p/1", "/q/{x}"), res("m", "/q/{y}", "/r")}, "", "/q/1", "m"},
		{"one resource's best uri counts", []Resource{res("a", "/p/*", "/p/1"), res("b", "/p/{x}")}, "", "/p/1", "a"},
		{"absolute beats path", []Resource{res("a", "/p/1"), res("b", "https://api.example/*")}, "api.example", "/p/1", "b"},
		{"absolute of another host", []Resource{res("a", "/p/*"), res("b", "https://other.example/p/1")}, "api.example", "/p/1", "a"},
		{"absolute host case-insensitive", []Resource{res("a", "https://API.Example/p")}, "api.EXAMPLE", "/p", "a"},
		{"absolute host by name, any port", []Resource{res("a", "https://api.example/p")}, "api.example:8443", "/p", "a"},
		{"absolute host with port, same port", []Resource{res("a", "https://api.example:8443/p")}, "api.example:8443", "/p", "a"},
		{"absolute host with port, other port", []Resource{res("a", "https://api.example:8443/p")}, "api.example:9443", "/p", ""},
		{"absolute host with port, none in request", []Resource{res("a", "https://api.example:8443/p")}, "api.example", "/p", ""},
		{"absolute host folded beyond ASCII", []Resource{res("a", "https://\u212Aey.example/p")}, "key.example", "/p", "a"},
		{"IPv6 host", []Resource{res("a", "https://[::1]/p")}, "[::1]:8080", "/p", "a"},
		{"literal segments case-sensitive", []Resource{res("a", "/P")}, "", "/p", ""},
		{"no partial path", []Resource{res("a", "/p/q")}, "", "/p", ""},
		{"no longer path", []Resource{res("a", "/p/{x}")}, "", "/p/1/2", ""},
		{"invalid uri left out, valid kept", []Resource{res("a", "/p/x*", "/p/{x}")}, "", "/p/1", "a"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			as := newFakeAS()
			as.registered = tt.registered
			e := newEnforcer(t, as, &testClock{t: time.Unix(1_700_000_000, 0)}, func(c *Config) {
				c.Templates = nil
				c.RegisteredURIs = true
			})
			r := request(http.MethodGet, tt.path, "")
			if tt.host != "" {
				r.Host = tt.host
			}
			d := e.Decide(r)
			switch {
			case tt.want == "" && d.Reason != ReasonUnmatched:
				t.Errorf("GET %s%s = %+v, want unmatched", tt.host, tt.path, d)
			case tt.want != "" && (d.Status != http.StatusUnauthorized || d.ResourceID != tt.want):
				t.Errorf("GET %s%s = %+v, want a ticket for %s", tt.host, tt.path, d, tt.want)
			}
		})
	}
}

// listMatch is the linear scan the table replaces: of the patterns that
// match, the most specific, then the smallest resource ID.
func listMatch(resources map[string]Resource, host string, segs []string) (string, bool) {
	best, bestSpec := "", -1
	for _, res := range resources {
		for _, u := range res.URIs {
			p, err := compilePattern(u)
			if err != nil {
				continue
			}
			if _, ok := p.match(host, segs, nil); !ok {
				continue
			}
			if s := p.specificity(); s > bestSpec || s == bestSpec && res.ID < best {
				best, bestSpec = res.ID, s
			}
		}
	}
	return best, bestSpec >= 0
}

// TestURITableMatchesList puts, replaces and removes random resources
// with random patterns, and after each step compares the table's answer
// for random requests with the linear scan's. Removing every resource
// leaves an empty table (no nodes kept).
func TestURITableMatchesList(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	pick := func(s ...string) string { return s[rnd.IntN(len(s))] }
	literals := []string{"a", "b", "c", "ab", "A"}
	randomPattern := func() string {
		var b strings.Builder
		if rnd.IntN(4) == 0 {
			b.WriteString(pick("https://h.example", "https://H.example:8443", "https://g.example"))
		}
		n := rnd.IntN(4)
		for i := range n {
			b.WriteString("/")
			switch k := rnd.IntN(6); {
			case k < 3:
				b.WriteString(pick(literals...))
			case k == 3:
				fmt.Fprintf(&b, "{p%d}", i)
			case k == 4:
				b.WriteString("*")
			default:
				if i == n-1 {
					b.WriteString("{rest...}")
				} else {
					b.WriteString(pick(literals...))
				}
			}
		}
		if b.Len() == 0 || strings.HasSuffix(b.String(), ".example") || strings.HasSuffix(b.String(), "8443") {
			b.WriteString("/")
		}
		return b.String()
	}
	randomRequest := func() (string, []string) {
		segs := make([]string, rnd.IntN(5))
		for i := range segs {
			segs[i] = pick(literals...)
		}
		return pick("h.example", "H.EXAMPLE:8443", "h.example:9", "g.example", "x.example"), segs
	}

	table := newURITable()
	resources := map[string]Resource{}
	for step := range 3000 {
		id := fmt.Sprintf("r%02d", rnd.IntN(60))
		if rnd.IntN(4) == 0 {
			table.remove(id)
			delete(resources, id)
		} else {
			res := Resource{ID: id, Owner: "o" + id, Scopes: []string{"read"}}
			for range 1 + rnd.IntN(3) {
				res.URIs = append(res.URIs, randomPattern())
			}
			table.put(res)
			resources[id] = res
		}
		for range 10 {
			host, segs := randomRequest()
			want, wantOK := listMatch(resources, host, segs)
			got, ok := table.match(host, segs)
			if ok != wantOK || got.ID != want || ok && (got.Owner != resources[want].Owner || !slices.Equal(got.Scopes, resources[want].Scopes)) {
				t.Fatalf("step %d: match(%q, %q) = %+v, %v; the list says %q, %v (resources %v)", step, host, segs, got, ok, want, wantOK, resources)
			}
		}
	}
	for id := range resources {
		table.remove(id)
	}
	if table.len() != 0 || !table.anyHost.empty() || len(table.byHost) != 0 {
		t.Errorf("after removing every resource: %d resources, root empty %v, %d hosts", table.len(), table.anyHost.empty(), len(table.byHost))
	}
}

// TestFoldCase checks that foldCase(a) == foldCase(b) exactly when
// strings.EqualFold(a, b), for the host names the table keys.
func TestFoldCase(t *testing.T) {
	words := []string{"k", "K", "\u212A", "s", "S", "\u017F", "ß", "ẞ", "a", "\xff", "\xfe", "\uFFFD", "Σ", "σ", "ς", "İ", "i", "I", "ı", "-", "1"}
	for _, a := range words {
		for _, b := range words {
			for _, pre := range []string{"", "x", "\u212A"} {
				x, y := pre+a+".", b+"."
				if (foldCase(x) == foldCase(y)) != strings.EqualFold(x, y) {
					t.Errorf("foldCase(%q) = %q, foldCase(%q) = %q; EqualFold = %v", x, foldCase(x), y, foldCase(y), strings.EqualFold(x, y))
				}
			}
		}
	}
}
