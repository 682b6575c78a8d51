package pep

import (
	"net"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// uriTable maps requests to the registered resources whose uris match
// them, without scanning the resources: a trie over path segments for the
// patterns without a host, and one per host for absolute patterns. A match
// walks the request's segments (at each one, at most the literal child of
// that name and the one-segment wildcard child), so its cost grows with
// the length of the path and the shapes of the patterns, not with their
// number.
//
// It answers exactly what the list it replaces answered: of the patterns
// that match (pattern.match), the most specific (pattern.specificity), and
// of equally specific ones the resource with the smallest ID. It is not
// safe for concurrent use: uriIndex guards it.
type uriTable struct {
	anyHost *uriNode
	// byHost holds the tries of absolute patterns: by "p" and the folded
	// host:port for a pattern with a port (which then must be the
	// request's), by "h" and the folded host name otherwise (any port).
	byHost    map[string]*uriNode
	resources map[string]*tableResource
	// owners and scopes are interned: 100k resources have a few owners
	// and scope sets each.
	owners map[string]string
	scopes map[string][]string
}

// tableResource is a resource of the table: what a match returns, and its
// uris, to remove their entries.
type tableResource struct {
	id     string
	owner  string
	scopes []string
	uris   []string
}

// uriNode is one node of a trie: the patterns whose segments so far lead
// here.
type uriNode struct {
	seg string // the literal segment that leads here from the parent
	// lits are the literal children, sorted by seg, until there are more
	// than maxListedChildren; then litMap holds them.
	lits   []*uriNode
	litMap map[string]*uriNode
	// wild is the child of a one-segment wildcard ({name} or *).
	wild *uriNode
	// end are the patterns that end here; rest those whose rest wildcard
	// ({name...} or a final *) starts here. Each list is sorted best
	// first (see better).
	end  []uriEntry
	rest []uriEntry
}

// maxListedChildren is how many literal children a node keeps in a sorted
// slice before it switches to a map (smaller for the many nodes with a
// few children, such as an owner's node with their resources' ids, faster
// for the few with thousands).
const maxListedChildren = 32

type uriEntry struct {
	spec int
	res  *tableResource
}

// better reports whether a goes before b: more specific, then the smaller
// resource ID.
func better(a, b uriEntry) bool {
	if a.spec != b.spec {
		return a.spec > b.spec
	}
	return a.res.id < b.res.id
}

func newURITable() *uriTable {
	return &uriTable{
		anyHost:   &uriNode{},
		byHost:    map[string]*uriNode{},
		resources: map[string]*tableResource{},
		owners:    map[string]string{},
		scopes:    map[string][]string{},
	}
}

// len returns the number of resources in the table.
func (t *uriTable) len() int { return len(t.resources) }

// put adds res, replacing the resource of its ID, and returns the uris it
// left out because they do not compile.
func (t *uriTable) put(res Resource) (invalid map[string]error) {
	t.remove(res.ID)
	tr := &tableResource{id: res.ID, owner: t.intern(res.Owner), scopes: t.internScopes(res.Scopes)}
	for _, u := range res.URIs {
		p, err := compilePattern(u)
		if err != nil {
			if invalid == nil {
				invalid = map[string]error{}
			}
			invalid[u] = err
			continue
		}
		if slices.Contains(tr.uris, u) {
			continue
		}
		tr.uris = append(tr.uris, u)
		t.root(p.Host, true).insert(p.Segs, uriEntry{spec: p.specificity(), res: tr})
	}
	if len(tr.uris) > 0 {
		t.resources[res.ID] = tr
	}
	return invalid
}

// remove takes the resource id out of the table, if it is there.
func (t *uriTable) remove(id string) {
	tr, ok := t.resources[id]
	if !ok {
		return
	}
	delete(t.resources, id)
	for _, u := range tr.uris {
		p, _ := compilePattern(u) // compiled when put
		key := hostKey(p.Host)
		root := t.root(p.Host, false)
		if root == nil {
			continue
		}
		root.delete(p.Segs, tr)
		if p.Host != "" && root.empty() {
			delete(t.byHost, key)
		}
	}
}

// match returns the resource of the best pattern that matches the request
// (host, path segments as splitPath returns them), from the tries of the
// request's host and the one of patterns without a host.
func (t *uriTable) match(host string, segs []string) (Resource, bool) {
	var best uriEntry
	found := false
	if len(t.byHost) > 0 {
		for _, key := range requestHostKeys(host) {
			if root := t.byHost[key]; root != nil {
				root.match(segs, 0, &best, &found)
			}
		}
	}
	t.anyHost.match(segs, 0, &best, &found)
	if !found {
		return Resource{}, false
	}
	r := best.res
	return Resource{ID: r.id, Owner: r.owner, Scopes: r.scopes}, true
}

// root returns the trie of a pattern host ("" for none), creating it when
// create is set.
func (t *uriTable) root(host string, create bool) *uriNode {
	if host == "" {
		return t.anyHost
	}
	key := hostKey(host)
	n := t.byHost[key]
	if n == nil && create {
		n = &uriNode{}
		t.byHost[key] = n
	}
	return n
}

func (t *uriTable) intern(s string) string {
	if v, ok := t.owners[s]; ok {
		return v
	}
	t.owners[s] = s
	return s
}

func (t *uriTable) internScopes(scopes []string) []string {
	key := strings.Join(scopes, "\x00")
	if v, ok := t.scopes[key]; ok {
		return v
	}
	v := slices.Clip(slices.Clone(scopes))
	t.scopes[key] = v
	return v
}

// hostKey is the key of a pattern's host in uriTable.byHost (see
// sameHost: with its port when it has one, by name alone otherwise).
func hostKey(patternHost string) string {
	if _, _, err := net.SplitHostPort(patternHost); err == nil {
		return "p" + foldCase(patternHost)
	}
	return "h" + foldCase(strings.Trim(patternHost, "[]"))
}

// requestHostKeys are the keys of uriTable.byHost that may hold patterns
// matching a request's Host: that of a pattern with the request's port
// (when it has one), and that of a pattern without a port.
func requestHostKeys(reqHost string) []string {
	name := reqHost
	if h, _, err := net.SplitHostPort(reqHost); err == nil {
		name = h
		return []string{"p" + foldCase(reqHost), "h" + foldCase(strings.Trim(name, "[]"))}
	}
	return []string{"h" + foldCase(strings.Trim(name, "[]"))}
}

// foldCase maps s to one spelling of its case-insensitive class, so that
// foldCase(a) == foldCase(b) exactly when strings.EqualFold(a, b): each
// rune becomes the smallest rune of its simple case-folding orbit, and
// each byte of invalid UTF-8 U+FFFD, as EqualFold compares them.
func foldCase(s string) string {
	ascii := true
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			ascii = false
			break
		}
	}
	if ascii {
		// The smallest rune of an ASCII letter's orbit is its upper
		// case (k: K, k and the Kelvin sign).
		return strings.ToUpper(s)
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		smallest := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			smallest = min(smallest, f)
		}
		b.WriteRune(smallest)
		i += size
	}
	return b.String()
}

// insert adds e under the path of segs.
func (n *uriNode) insert(segs []segment, e uriEntry) {
	for _, s := range segs {
		switch s.Kind {
		case segLiteral:
			n = n.literalChild(s.Text, true)
		case segParam, segAny:
			if n.wild == nil {
				n.wild = &uriNode{}
			}
			n = n.wild
		case segRest:
			n.rest = insertEntry(n.rest, e)
			return
		}
	}
	n.end = insertEntry(n.end, e)
}

func insertEntry(list []uriEntry, e uriEntry) []uriEntry {
	i, _ := slices.BinarySearchFunc(list, e, func(a, b uriEntry) int {
		if better(a, b) {
			return -1
		}
		if better(b, a) {
			return 1
		}
		return 0
	})
	return slices.Insert(list, i, e)
}

// delete removes the entries of tr under the path of segs, and the nodes
// that are left empty.
func (n *uriNode) delete(segs []segment, tr *tableResource) {
	if len(segs) == 0 {
		n.end = slices.DeleteFunc(n.end, func(e uriEntry) bool { return e.res == tr })
		return
	}
	s := segs[0]
	switch s.Kind {
	case segRest:
		n.rest = slices.DeleteFunc(n.rest, func(e uriEntry) bool { return e.res == tr })
	case segLiteral:
		if c := n.literalChild(s.Text, false); c != nil {
			c.delete(segs[1:], tr)
			if c.empty() {
				n.removeLiteral(s.Text)
			}
		}
	default:
		if n.wild != nil {
			n.wild.delete(segs[1:], tr)
			if n.wild.empty() {
				n.wild = nil
			}
		}
	}
}

func (n *uriNode) empty() bool {
	return len(n.end) == 0 && len(n.rest) == 0 && n.wild == nil && len(n.lits) == 0 && len(n.litMap) == 0
}

// literalChild returns the child for the literal segment seg, creating it
// when create is set.
func (n *uriNode) literalChild(seg string, create bool) *uriNode {
	if n.litMap != nil {
		c := n.litMap[seg]
		if c == nil && create {
			c = &uriNode{seg: seg}
			n.litMap[seg] = c
		}
		return c
	}
	i, found := slices.BinarySearchFunc(n.lits, seg, func(c *uriNode, s string) int { return strings.Compare(c.seg, s) })
	if found {
		return n.lits[i]
	}
	if !create {
		return nil
	}
	c := &uriNode{seg: seg}
	if len(n.lits) < maxListedChildren {
		n.lits = slices.Insert(n.lits, i, c)
		return c
	}
	n.litMap = make(map[string]*uriNode, 2*maxListedChildren)
	for _, l := range n.lits {
		n.litMap[l.seg] = l
	}
	n.lits = nil
	n.litMap[seg] = c
	return c
}

func (n *uriNode) removeLiteral(seg string) {
	if n.litMap != nil {
		delete(n.litMap, seg)
		if len(n.litMap) == 0 {
			n.litMap = nil
		}
		return
	}
	n.lits = slices.DeleteFunc(n.lits, func(c *uriNode) bool { return c.seg == seg })
	if len(n.lits) == 0 {
		n.lits = nil
	}
}

// match finds, among the patterns under n that match segs[i:], a better
// one than *best.
func (n *uriNode) match(segs []string, i int, best *uriEntry, found *bool) {
	consider := func(list []uriEntry) {
		if len(list) > 0 && (!*found || better(list[0], *best)) {
			*best, *found = list[0], true
		}
	}
	// A rest wildcard here matches whatever follows, nothing included.
	consider(n.rest)
	if i == len(segs) {
		consider(n.end)
		return
	}
	if c := n.literalChild(segs[i], false); c != nil {
		c.match(segs, i+1, best, found)
	}
	if n.wild != nil {
		n.wild.match(segs, i+1, best, found)
	}
}
