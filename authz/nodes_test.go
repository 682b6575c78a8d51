package authz_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwt"

	"github.com/caddy-uma/caddy-uma/authz"
	"github.com/caddy-uma/caddy-uma/authz/authztest"
	"github.com/caddy-uma/caddy-uma/authz/claimtoken"
	"github.com/caddy-uma/caddy-uma/authz/claimtoken/claimtokentest"
	"github.com/caddy-uma/caddy-uma/authz/ownerapi"
	"github.com/caddy-uma/caddy-uma/store"
	"github.com/caddy-uma/caddy-uma/store/pgstore"
	"github.com/caddy-uma/caddy-uma/store/pgstore/pgtest"
)

// Several AS nodes on one PostgreSQL database, as several Caddy nodes run:
// what one node does, the others see, within the change feed's delay.

// cluster is two AS nodes on one database, trusting one provider, with
// alice's labs registered by rs-a on node 1.
type cluster struct {
	nodes    []*authztest.AS
	idp      *claimtokentest.Provider
	alicePAT string // rs-a for alice, usable on every node
	labs     string
}

func newCluster(t *testing.T, n int) *cluster {
	t.Helper()
	return newClusterOf(t, openStores(t, n), nil)
}

// openStores opens n stores on a new schema.
func openStores(t *testing.T, n int) []store.Store {
	t.Helper()
	dsn := pgtest.DSN(t)
	var stores []store.Store
	for range n {
		st, err := pgstore.Open(t.Context(), pgstore.Options{DSN: dsn})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		stores = append(stores, st)
	}
	return stores
}

// newClusterOf starts a cluster on stores; mod, if not nil, changes each
// node's config further.
func newClusterOf(t *testing.T, stores []store.Store, mod func(*authz.Config)) *cluster {
	t.Helper()
	idp := claimtokentest.NewProvider(t)
	c := &cluster{idp: idp}
	c.nodes = authztest.NewCluster(t, stores, func(cfg *authz.Config) {
		cfg.TrustedIssuers = []claimtoken.Issuer{{Issuer: idp.Issuer(), Audiences: []string{"app"}}}
		if mod != nil {
			mod(cfg)
		}
	})
	var err error
	if c.alicePAT, err = c.nodes[0].Server.IssuePAT(t.Context(), "rs-a", "alice"); err != nil {
		t.Fatal(err)
	}
	c.labs = c.nodes[0].Register(c.alicePAT, `{"name":"labs","resource_scopes":["read","write"]}`)
	return c
}

func (c *cluster) ticket(t *testing.T, node int) string {
	t.Helper()
	r := c.nodes[node].Do("POST", authz.PathPermission, `{"resource_id":"`+c.labs+`","resource_scopes":["read"]}`, "Authorization", authztest.Bearer(c.alicePAT))
	if r.Status != 201 {
		t.Fatalf("ticket: %d %s", r.Status, r.Body)
	}
	return r.JSON(t)["ticket"].(string)
}

func (c *cluster) grant(node int, params url.Values) authztest.Response {
	params.Set("grant_type", authz.GrantTypeUMATicket)
	return c.nodes[node].Do("POST", authz.PathToken, params, "Authorization", authztest.BasicAuth("app", authztest.AppSecret))
}

func (c *cluster) idToken(t *testing.T, claims map[string]any) string {
	claims["aud"] = "app"
	return c.idp.Sign(t, claims)
}

// within polls check until it holds, and returns how long that took; it
// fails the test past limit.
func within(t *testing.T, what string, limit time.Duration, check func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !check() {
		if time.Since(start) > limit {
			t.Fatalf("%s: not within %s", what, limit)
		}
		time.Sleep(time.Millisecond)
	}
	d := time.Since(start)
	t.Logf("%s: after %s", what, d)
	return d
}

func TestNodesShareTicketsOnce(t *testing.T) {
	c := newCluster(t, 2)
	doc := c.idToken(t, map[string]any{"sub": "doc-1", "email": "doc@example.org"})
	rule := "package uma.share\n\nimport data.uma.lib\n\nallow contains \"read\" if lib.is_email(\"doc@example.org\")\n"
	c.nodes[0].DoRaw("PUT", ownerapi.PathRules+"/main", rule, "text/plain", "Authorization", authztest.Bearer(c.alicePAT))

	// A ticket from node 1 redeemed on node 2; a second redemption on node 1 refused.
	tk := c.ticket(t, 0)
	within(t, "node 2 decides with the rule saved on node 1", 2*time.Second, func() bool {
		r := c.grant(1, authztest.WithClaims(c.ticket(t, 0), doc))
		return r.Status == 200
	})
	if r := c.grant(1, authztest.WithClaims(tk, doc)); r.Status != 200 {
		t.Fatalf("node 2: %d %s", r.Status, r.Body)
	}
	authztest.ExpectUMAError(t, c.grant(0, authztest.WithClaims(tk, doc)), "invalid_grant", false)

	// 100 concurrent redemptions of one ticket over both nodes: one RPT.
	tk = c.ticket(t, 0)
	var mu sync.Mutex
	granted := 0
	seen := map[string]int{}
	var wg sync.WaitGroup
	for i := range 100 {
		wg.Go(func() {
			r := c.grant(i%2, authztest.WithClaims(tk, doc))
			mu.Lock()
			if r.Status == 200 {
				granted++
			} else {
				seen[fmt.Sprintf("%d %s", r.Status, r.Body)]++
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	if granted != 1 {
		t.Fatalf("%d of 100 redemptions of one ticket got an RPT: %v", granted, seen)
	}
}

func TestNodesSeeRuleChanges(t *testing.T) {
	c := newCluster(t, 2)
	bob := c.idToken(t, map[string]any{"sub": "bob", "email": "bob@example.org"})
	put := func(src string) {
		if r := c.nodes[0].DoRaw("PUT", ownerapi.PathRules+"/main", src, "text/plain", "Authorization", authztest.Bearer(c.alicePAT)); r.Status != 200 {
			t.Fatalf("rule: %d %s", r.Status, r.Body)
		}
	}
	granted := func(node int) bool { return c.grant(node, authztest.WithClaims(c.ticket(t, 0), bob)).Status == 200 }
	put("package uma.share\n\nallow contains \"read\" if input.requesting_party.sub == \"bob\"\n")
	if !granted(1) {
		t.Fatal("node 2 did not grant under the first rule")
	}
	// Node 2 compiled alice's rules; node 1 changes them.
	put("package uma.share\n\nallow contains \"read\" if input.requesting_party.sub == \"carol\"\n")
	within(t, "node 2 refuses under the rule changed on node 1", time.Second, func() bool { return !granted(1) })
}

// deafStore is a store whose change feed a test interrupts: from
// interrupt on, its watcher hears nothing more, as a node whose listening
// connection is lost while the database still answers it.
type deafStore struct {
	store.Store
	mu   sync.Mutex
	deaf bool
	fn   func(store.Change)
}

func (d *deafStore) Watch(ctx context.Context, fn func(store.Change), namespaces ...string) error {
	d.mu.Lock()
	d.fn = fn
	d.mu.Unlock()
	return d.Store.Watch(ctx, func(c store.Change) {
		d.mu.Lock()
		deaf := d.deaf
		d.mu.Unlock()
		if !deaf {
			fn(c)
		}
	}, namespaces...)
}

// interrupt tells the watcher that the feed is interrupted, and silences
// it.
func (d *deafStore) interrupt() {
	d.mu.Lock()
	d.deaf = true
	fn := d.fn
	d.mu.Unlock()
	fn(store.Change{Interrupted: true})
}

// TestNodesRulesWhileTheFeedIsDown: a node whose change feed is
// interrupted keeps deciding with the rules it compiled for at most
// FeedStaleness; after that it reads them from the store on each use, and
// so decides with a rule changed on another node meanwhile.
func TestNodesRulesWhileTheFeedIsDown(t *testing.T) {
	stores := openStores(t, 2)
	deaf := &deafStore{Store: stores[1]}
	c := newClusterOf(t, []store.Store{stores[0], deaf}, func(cfg *authz.Config) { cfg.FeedStaleness = time.Second })
	bob := c.idToken(t, map[string]any{"sub": "bob", "email": "bob@example.org"})
	put := func(src string) {
		t.Helper()
		if r := c.nodes[0].DoRaw("PUT", ownerapi.PathRules+"/main", src, "text/plain", "Authorization", authztest.Bearer(c.alicePAT)); r.Status != 200 {
			t.Fatalf("rule: %d %s", r.Status, r.Body)
		}
	}
	granted := func() bool { return c.grant(1, authztest.WithClaims(c.ticket(t, 0), bob)).Status == 200 }
	put("package uma.share\n\nallow contains \"read\" if input.requesting_party.sub == \"bob\"\n")
	if !granted() {
		t.Fatal("node 2 did not grant under the first rule")
	}
	deaf.interrupt()
	put("package uma.share\n\nallow contains \"read\" if input.requesting_party.sub == \"carol\"\n")
	if !granted() {
		t.Fatal("node 2, within FeedStaleness of the interruption: not the rule it compiled")
	}
	c.nodes[1].Clock.Advance(time.Second)
	if granted() {
		t.Fatal("node 2, FeedStaleness after the interruption, still decides with the rule replaced on node 1")
	}
}

func TestNodesSeeRevocations(t *testing.T) {
	c := newCluster(t, 2)
	ctx := t.Context()
	if _, err := c.nodes[0].Server.AddShare(ctx, authz.Share{Owner: "alice", ResourceID: c.labs, Subject: "bob", Scopes: []string{"read"}}); err != nil {
		t.Fatal(err)
	}
	bob := c.idToken(t, map[string]any{"sub": "bob"})
	r := c.grant(0, authztest.WithClaims(c.ticket(t, 0), bob))
	if r.Status != 200 {
		t.Fatalf("grant: %d %s", r.Status, r.Body)
	}
	rpt, err := c.nodes[0].Server.VerifyRPT(ctx, r.JSON(t)["access_token"].(string), "rs-a")
	if err != nil {
		t.Fatal(err)
	}
	// Node 1's co-hosted enforcement point knows the RPT is live.
	if live, err := c.nodes[0].Server.RPTLive(ctx, rpt.ID); !live || err != nil {
		t.Fatalf("live on node 1: %v %v", live, err)
	}
	// The share is revoked on node 2.
	shares, _ := c.nodes[1].Server.ResourceShares(ctx, "alice", c.labs)
	if _, n, err := c.nodes[1].Server.RevokeShare(ctx, "alice", c.labs, shares[0].ID); err != nil || n != 1 {
		t.Fatalf("revoke: %d %v", n, err)
	}
	within(t, "node 1 refuses the RPT revoked on node 2", time.Second, func() bool {
		live, err := c.nodes[0].Server.RPTLive(ctx, rpt.ID)
		return err == nil && !live
	})
}

// TestNodesRevokeAtOnceLocally: the node that revokes an RPT (at the
// revocation endpoint, or with the share that granted it) refuses it from
// the next check on, without waiting for its own change feed.
func TestNodesRevokeAtOnceLocally(t *testing.T) {
	c := newCluster(t, 1)
	ctx := t.Context()
	as := c.nodes[0]
	if _, err := as.Server.AddShare(ctx, authz.Share{Owner: "alice", ResourceID: c.labs, Subject: "bob", Scopes: []string{"read"}}); err != nil {
		t.Fatal(err)
	}
	bob := c.idToken(t, map[string]any{"sub": "bob"})
	liveRPT := func() (string, string) {
		t.Helper()
		r := c.grant(0, authztest.WithClaims(c.ticket(t, 0), bob))
		if r.Status != 200 {
			t.Fatalf("grant: %d %s", r.Status, r.Body)
		}
		tok := r.JSON(t)["access_token"].(string)
		rpt, err := as.Server.VerifyRPT(ctx, tok, "rs-a")
		if err != nil {
			t.Fatal(err)
		}
		// Read, then kept: the next answer comes from memory.
		for range 2 {
			if live, err := as.Server.RPTLive(ctx, rpt.ID); !live || err != nil {
				t.Fatalf("live: %v %v", live, err)
			}
		}
		return tok, rpt.ID
	}
	for i := range 20 {
		tok, jti := liveRPT()
		if r := as.Do("POST", authz.PathRevoke, url.Values{"token": {tok}}, "Authorization", authztest.BasicAuth("app", authztest.AppSecret)); r.Status != 200 {
			t.Fatalf("revoke: %d %s", r.Status, r.Body)
		}
		if live, err := as.Server.RPTLive(ctx, jti); live || err != nil {
			t.Fatalf("revocation %d: the RPT revoked on this node is still live: %v %v", i, live, err)
		}
	}
	_, jti := liveRPT()
	shares, _ := as.Server.ResourceShares(ctx, "alice", c.labs)
	if _, _, err := as.Server.RevokeShare(ctx, "alice", c.labs, shares[0].ID); err != nil {
		t.Fatal(err)
	}
	if live, err := as.Server.RPTLive(ctx, jti); live || err != nil {
		t.Fatalf("the RPT of the share revoked on this node is still live: %v %v", live, err)
	}
}

func TestNodesShareKeysAndClients(t *testing.T) {
	dsn := pgtest.DSN(t)
	var stores []store.Store
	for range 3 {
		st, err := pgstore.Open(t.Context(), pgstore.Options{DSN: dsn})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		stores = append(stores, st)
	}
	// Three nodes starting together on an empty database make one key.
	var nodes []*authztest.AS
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range stores {
		wg.Go(func() {
			n := authztest.NewCluster(t, stores[i:i+1], func(c *authz.Config) {
				c.Issuer = "http://as.example/uma"
				c.KeyRotation = time.Hour
				c.Registration = &authz.Registration{InitialAccessToken: "iat"}
			})
			mu.Lock()
			nodes = append(nodes, n[0])
			mu.Unlock()
		})
	}
	wg.Wait()
	kids := func(n *authztest.AS) []string {
		var set struct {
			Keys []struct {
				Kid string `json:"kid"`
			} `json:"keys"`
		}
		_ = json.Unmarshal(n.Do("GET", authz.PathJWKS, nil).Body, &set)
		var out []string
		for _, k := range set.Keys {
			out = append(out, k.Kid)
		}
		return out
	}
	first := kids(nodes[0])
	for _, n := range nodes {
		if got := kids(n); len(got) != 1 || got[0] != first[0] {
			t.Fatalf("nodes started together publish %v and %v, want one key", first, got)
		}
	}

	// A key rotated on one node verifies on the others.
	nodes[0].Clock.Advance(time.Hour + time.Second)
	signed, err := nodes[0].Server.Sign(t.Context(), newTestJWT(t))
	if err != nil {
		t.Fatal(err)
	}
	if after := kids(nodes[0]); len(after) != 2 || after[0] == first[0] {
		t.Fatalf("after rotation node 1 publishes %v", after)
	}
	for i, n := range nodes[1:] {
		// A token the keys do not verify reads them again, at most once a
		// second of the node's clock: the change feed may have just made
		// this node read them (before the rotation), and its clock stands
		// still unless the test moves it.
		n.Clock.Advance(time.Second)
		if _, err := n.Server.VerifySignature(signed); err != nil {
			t.Fatalf("node %d: a token signed with the rotated key: %v", i+2, err)
		}
		within(t, "a node publishes the key rotated on node 1", time.Second, func() bool { return len(kids(n)) == 2 })
	}

	// A client registered on one node authenticates on the others.
	reg := nodes[1].Do("POST", authz.PathRegister, `{"client_name":"x"}`, "Authorization", authztest.Bearer("iat")).JSON(t)
	id, secret := reg["client_id"].(string), reg["client_secret"].(string)
	for _, n := range []*authztest.AS{nodes[0], nodes[2]} {
		r := n.Do("POST", authz.PathToken, url.Values{"grant_type": {authz.GrantTypeUMATicket}, "ticket": {"nope"}}, "Authorization", authztest.BasicAuth(id, secret))
		authztest.ExpectError(t, r, 400, "invalid_grant") // authenticated: the ticket is what is wrong
	}
}

// TestNodesKeepTheReplacedKey: a node that starts when the current key is
// due for rotation (as a node restarted after a kill does) replaces it,
// and keeps publishing and accepting the key it replaced, whose tokens
// still live, from the first request on.
func TestNodesKeepTheReplacedKey(t *testing.T) {
	dsn := pgtest.DSN(t)
	open := func() store.Store {
		st, err := pgstore.Open(t.Context(), pgstore.Options{DSN: dsn})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	}
	rotation := func(c *authz.Config) { c.KeyRotation = time.Hour }
	first := authztest.NewCluster(t, []store.Store{open()}, rotation)[0]
	signed, err := first.Server.Sign(t.Context(), newTestJWT(t))
	if err != nil {
		t.Fatal(err)
	}
	first.Clock.Advance(time.Hour + time.Second)
	late := authztest.NewCluster(t, []store.Store{open()}, func(c *authz.Config) {
		rotation(c)
		c.Now = first.Clock.Now
	})[0]
	var set struct {
		Keys []struct {
			Kid string `json:"kid"`
		} `json:"keys"`
	}
	if err := json.Unmarshal(late.Do("GET", authz.PathJWKS, nil).Body, &set); err != nil {
		t.Fatal(err)
	}
	if len(set.Keys) != 2 {
		t.Errorf("the node that rotated at start publishes %d keys, want the new and the replaced one", len(set.Keys))
	}
	if _, err := late.Server.VerifySignature(signed); err != nil {
		t.Errorf("the node that rotated at start refuses a token of the key it replaced: %v", err)
	}
}

func TestNodesRegisterOneResourcePerName(t *testing.T) {
	c := newCluster(t, 2)
	ctx := t.Context()
	var wg sync.WaitGroup
	ids := make([]string, 20)
	for i := range ids {
		wg.Go(func() {
			res, err := c.nodes[i%2].Server.EnsureResource(ctx, "rs-a", store.Resource{Owner: "alice", Name: "summer", Scopes: []string{"read", []string{"write", "delete"}[i%2]}})
			if err != nil {
				t.Error(err)
				return
			}
			ids[i] = res.ID
		})
	}
	wg.Wait()
	for _, id := range ids[1:] {
		if id != ids[0] {
			t.Fatalf("one name, several resources: %v", ids)
		}
	}
	res, err := c.nodes[0].Server.OwnerResource(ctx, "alice", ids[0])
	if err != nil || !strings.Contains(strings.Join(res.Scopes, " "), "write") || !strings.Contains(strings.Join(res.Scopes, " "), "delete") {
		t.Fatalf("the scopes of both nodes: %+v %v", res, err)
	}
	list, _ := c.nodes[1].Server.OwnerResources(ctx, "alice")
	n := 0
	for _, r := range list {
		if r.Name == "summer" {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%d resources named summer", n)
	}
}

func newTestJWT(t *testing.T) jwt.Token {
	t.Helper()
	tok, err := jwt.NewBuilder().Issuer("test").Expiration(time.Now().Add(time.Minute)).Build()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// permission asks node for a ticket on scopes of alice's labs and returns
// the status: 201, or 400 once labs or the scope is gone.
func (c *cluster) permission(t *testing.T, node int, scope string) int {
	t.Helper()
	r := c.nodes[node].Do("POST", authz.PathPermission, `{"resource_id":"`+c.labs+`","resource_scopes":["`+scope+`"]}`, "Authorization", authztest.Bearer(c.alicePAT))
	if r.Status != 201 && r.Status != 400 {
		t.Fatalf("permission: %d %s", r.Status, r.Body)
	}
	return r.Status
}

// TestNodesSeeResourceChanges: a node that read a resource (and keeps it)
// sees another node change its scopes and delete it, within the feed's
// delay: no ticket for a scope or a resource that is gone.
func TestNodesSeeResourceChanges(t *testing.T) {
	c := newCluster(t, 2)
	for range 2 { // read, then kept
		if s := c.permission(t, 1, "write"); s != 201 {
			t.Fatalf("node 2, write on labs: %d", s)
		}
	}
	if r := c.nodes[0].Do("PUT", authz.PathResourceSet+"/"+c.labs, `{"name":"labs","resource_scopes":["read"]}`, "Authorization", authztest.Bearer(c.alicePAT)); r.Status != 200 {
		t.Fatalf("update: %d %s", r.Status, r.Body)
	}
	within(t, "node 2 refuses the scope removed on node 1", time.Second, func() bool { return c.permission(t, 1, "write") == 400 })
	if s := c.permission(t, 1, "read"); s != 201 {
		t.Fatalf("node 2, read on labs: %d", s)
	}
	if r := c.nodes[0].Do("DELETE", authz.PathResourceSet+"/"+c.labs, nil, "Authorization", authztest.Bearer(c.alicePAT)); r.Status != 204 {
		t.Fatalf("delete: %d %s", r.Status, r.Body)
	}
	within(t, "node 2 refuses the resource deleted on node 1", time.Second, func() bool { return c.permission(t, 1, "read") == 400 })
}

// TestNodesResourceChangesAtOnceLocally: the node that changes or deletes a
// resource answers with the change from the next request on, without its
// change feed, which this test silences.
func TestNodesResourceChangesAtOnceLocally(t *testing.T) {
	stores := openStores(t, 1)
	deaf := &deafStore{Store: stores[0]}
	c := newClusterOf(t, []store.Store{deaf}, nil)
	deaf.mu.Lock()
	deaf.deaf = true // hears nothing, and is not told so
	deaf.mu.Unlock()
	for i := range 10 {
		if i > 0 {
			c.labs = c.nodes[0].Register(c.alicePAT, `{"name":"labs-`+fmt.Sprint(i)+`","resource_scopes":["read","write"]}`)
		}
		for range 2 {
			if s := c.permission(t, 0, "write"); s != 201 {
				t.Fatalf("write on labs: %d", s)
			}
		}
		if r := c.nodes[0].Do("PUT", authz.PathResourceSet+"/"+c.labs, `{"name":"labs","resource_scopes":["read"]}`, "Authorization", authztest.Bearer(c.alicePAT)); r.Status != 200 {
			t.Fatalf("update: %d %s", r.Status, r.Body)
		}
		if s := c.permission(t, 0, "write"); s != 400 {
			t.Fatalf("change %d: a ticket for the scope this node removed: %d", i, s)
		}
		if r := c.nodes[0].Do("DELETE", authz.PathResourceSet+"/"+c.labs, nil, "Authorization", authztest.Bearer(c.alicePAT)); r.Status != 204 {
			t.Fatalf("delete: %d %s", r.Status, r.Body)
		}
		if s := c.permission(t, 0, "read"); s != 400 {
			t.Fatalf("change %d: a ticket for the resource this node deleted: %d", i, s)
		}
	}
}

// TestNodesResourcesWhileTheFeedIsDown: a node whose change feed is
// interrupted answers from the resources it keeps for at most
// FeedStaleness; after that it reads them from the store, and so refuses
// a resource deleted on another node meanwhile.
func TestNodesResourcesWhileTheFeedIsDown(t *testing.T) {
	stores := openStores(t, 2)
	deaf := &deafStore{Store: stores[1]}
	c := newClusterOf(t, []store.Store{stores[0], deaf}, func(cfg *authz.Config) { cfg.FeedStaleness = time.Second })
	for range 2 {
		if s := c.permission(t, 1, "read"); s != 201 {
			t.Fatalf("node 2, read on labs: %d", s)
		}
	}
	deaf.interrupt()
	if r := c.nodes[0].Do("DELETE", authz.PathResourceSet+"/"+c.labs, nil, "Authorization", authztest.Bearer(c.alicePAT)); r.Status != 204 {
		t.Fatalf("delete: %d %s", r.Status, r.Body)
	}
	if s := c.permission(t, 1, "read"); s != 201 {
		t.Fatalf("node 2, within FeedStaleness of the interruption: not the resource it kept: %d", s)
	}
	c.nodes[1].Clock.Advance(time.Second)
	if s := c.permission(t, 1, "read"); s != 400 {
		t.Fatalf("node 2, FeedStaleness after the interruption, still answers with the resource deleted on node 1: %d", s)
	}
}
