package pep

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// CheckTemplate checks a template as New does, without an AS: its path
// pattern, its owner, and that every {key} in its owner, name, type and
// context values names a parameter of the pattern or a placeholder that
// known accepts (nil: those of ExpandPlain). A key that is neither would
// expand to nothing on every request: a mistyped {ownr} makes every request
// a 403 no_owner.
func CheckTemplate(t Template, known func(key string) bool) error {
	p, err := compilePattern(t.Path)
	if err != nil {
		return fmt.Errorf("resource %s: %w", t.Path, err)
	}
	if strings.TrimSpace(t.Owner) == "" {
		return fmt.Errorf("resource %s: an owner is required", t.Path)
	}
	if known == nil {
		known = plainPlaceholder
	}
	return checkPlaceholders(t, p, known)
}

// plainPlaceholder reports whether ExpandPlain knows key.
func plainPlaceholder(key string) bool {
	return strings.HasPrefix(key, "header.") && len(key) > len("header.") ||
		strings.HasPrefix(key, "query.") && len(key) > len("query.") ||
		key == "remote_host" || key == "method"
}

// placeholderKeys returns the keys in braces of a template value, as
// ExpandWith finds them.
func placeholderKeys(s string) []string {
	var keys []string
	for {
		open := strings.IndexByte(s, '{')
		if open < 0 {
			return keys
		}
		end := strings.IndexByte(s[open:], '}')
		if end < 0 {
			return keys
		}
		keys = append(keys, s[open+1:open+end])
		s = s[open+end+1:]
	}
}

// checkPlaceholders checks the values of t against the parameters of its
// compiled pattern p and known.
func checkPlaceholders(t Template, p pattern, known func(string) bool) error {
	var params []string
	for _, s := range p.Segs {
		if s.Text != "" && (s.Kind == segParam || s.Kind == segRest) {
			params = append(params, s.Text)
		}
	}
	values := []struct{ name, value string }{{"owner", t.Owner}, {"name", t.Name}, {"type", t.Type}}
	for _, n := range slices.Sorted(maps.Keys(t.Context)) {
		values = append(values, struct{ name, value string }{"context " + n, t.Context[n]})
	}
	for _, v := range values {
		for _, key := range placeholderKeys(v.value) {
			if slices.Contains(params, key) || known(key) {
				continue
			}
			return fmt.Errorf("%s %s of resource %s: {%s} names neither a parameter of the path (%s) nor a known placeholder%s",
				v.name, v.value, p.Raw, key, braced(params), suggestion(key, params))
		}
	}
	return nil
}

// braced lists names as {a}, {b}, or says there are none.
func braced(names []string) string {
	if len(names) == 0 {
		return "it has none"
	}
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = "{" + n + "}"
	}
	return strings.Join(out, ", ")
}

// suggestion proposes the parameter closest to key, if one is within two
// edits.
func suggestion(key string, params []string) string {
	best, bestDist := "", 3
	for _, p := range params {
		if d := editDistance(key, p); d < bestDist {
			best, bestDist = p, d
		}
	}
	if best == "" {
		return ""
	}
	return "; did you mean {" + best + "}?"
}

// editDistance is the Levenshtein distance of a and b (bytes).
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
