package authz_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-uma/caddy-uma/authz"
	"github.com/caddy-uma/caddy-uma/authz/authztest"
	"github.com/caddy-uma/caddy-uma/authz/claimtoken"
	"github.com/caddy-uma/caddy-uma/authz/ownerapi"
	"github.com/caddy-uma/caddy-uma/store"
)

// countingStore is a real store that counts the calls that commit (each
// write method call is one synced commit, or a share of one), by method.
type countingStore struct {
	store.Store
	mu    sync.Mutex
	calls []string
}

func (c *countingStore) count(name string) {
	c.mu.Lock()
	c.calls = append(c.calls, name)
	c.mu.Unlock()
}

// reset forgets the calls counted so far.
func (c *countingStore) reset() {
	c.mu.Lock()
	c.calls = nil
	c.mu.Unlock()
}

// commits returns the calls counted since the last reset.
func (c *countingStore) commits() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.calls...)
}

func (c *countingStore) Put(ctx context.Context, ns, key string, v []byte, exp time.Time) error {
	c.count("Put " + ns)
	return c.Store.Put(ctx, ns, key, v, exp)
}

func (c *countingStore) Insert(ctx context.Context, ns, key string, v []byte, exp time.Time) error {
	c.count("Insert " + ns)
	return c.Store.Insert(ctx, ns, key, v, exp)
}

func (c *countingStore) PutAll(ctx context.Context, writes []store.Write) error {
	var nss []string
	for _, w := range writes {
		nss = append(nss, w.Namespace)
	}
	c.count("PutAll " + strings.Join(nss, ","))
	return c.Store.PutAll(ctx, writes)
}

func (c *countingStore) Swap(ctx context.Context, ns, key string, old, v []byte, exp time.Time) error {
	c.count("Swap " + ns)
	return c.Store.Swap(ctx, ns, key, old, v, exp)
}

func (c *countingStore) Take(ctx context.Context, ns, key string) ([]byte, error) {
	c.count("Take " + ns)
	return c.Store.Take(ctx, ns, key)
}

func (c *countingStore) Delete(ctx context.Context, ns, key string) error {
	c.count("Delete " + ns)
	return c.Store.Delete(ctx, ns, key)
}

func (c *countingStore) CreateResource(ctx context.Context, r store.Resource) error {
	c.count("CreateResource")
	return c.Store.CreateResource(ctx, r)
}

func (c *countingStore) UpdateResource(ctx context.Context, r store.Resource) error {
	c.count("UpdateResource")
	return c.Store.UpdateResource(ctx, r)
}

func (c *countingStore) SwapResource(ctx context.Context, r store.Resource, prev time.Time) error {
	c.count("SwapResource")
	return c.Store.SwapResource(ctx, r, prev)
}

func (c *countingStore) DeleteResource(ctx context.Context, id string) error {
	c.count("DeleteResource")
	return c.Store.DeleteResource(ctx, id)
}

// TestOneCommitPerGrant counts the synced commits of each kind of grant at
// the token endpoint, on a real Badger store: one each, which holds the
// ticket's replay record, the tokens, and the owner's history of the
// grant.
func TestOneCommitPerGrant(t *testing.T) {
	cs := &countingStore{Store: authztest.OpenStore(t, t.TempDir())}
	t.Cleanup(func() { cs.Store.Close() })
	srv, idp := benchASOn(t, cs)
	pat, err := srv.IssuePAT(t.Context(), "rs-a", "alice")
	if err != nil {
		t.Fatal(err)
	}
	if rec := serve(t, ownerapi.New(srv), "PUT", ownerapi.PathRules+"/main", authztest.AliceRules, "text/plain", "Bearer "+pat); rec.Code != 200 {
		t.Fatal(rec.Body.String())
	}
	rec := serve(t, srv, "POST", authz.PathResourceSet, `{"name":"labs","resource_scopes":["read"]}`, "application/json", "Bearer "+pat)
	id := strings.Split(rec.Body.String(), `"`)[3]
	idToken := idp.Sign(t, map[string]any{"aud": "app", "sub": "doc", "email": "doctor@clinic.example"})
	app := authztest.BasicAuth("app", "app secret:with&chars")
	ticket := func() string {
		tk, err := srv.RequestTicket(t.Context(), "rs-a", []authz.PermissionRequest{{ResourceID: id, Scopes: []string{"read"}}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return tk
	}
	var last struct {
		AccessToken  string `json:"access_token"`
		RefreshToken string `json:"refresh_token"`
		PCT          string `json:"pct"`
		Error        string `json:"error"`
	}
	token := func(form url.Values, wantStatus int) {
		t.Helper()
		rec := serve(t, srv, "POST", authz.PathToken, form.Encode(), "application/x-www-form-urlencoded", app)
		if rec.Code != wantStatus {
			t.Fatalf("token endpoint: %d %s, want %d", rec.Code, rec.Body.String(), wantStatus)
		}
		last.AccessToken, last.RefreshToken, last.PCT, last.Error = "", "", "", ""
		if err := json.Unmarshal(rec.Body.Bytes(), &last); err != nil {
			t.Fatal(err)
		}
	}
	claimGrant := url.Values{"grant_type": {authz.GrantTypeUMATicket}, "claim_token": {idToken},
		"claim_token_format": {claimtoken.FormatIDToken}}
	with := func(v url.Values, kv ...string) url.Values {
		out := url.Values{}
		for k, vs := range v {
			out[k] = vs
		}
		for i := 0; i < len(kv); i += 2 {
			out.Set(kv[i], kv[i+1])
		}
		return out
	}

	var usedTicket, firstRPT string
	steps := []struct {
		name   string
		form   func() url.Values
		status int
		want   int // commits
	}{
		{"TicketAndClaimToken", func() url.Values {
			usedTicket = ticket()
			return with(claimGrant, "ticket", usedTicket)
		}, http.StatusOK, 1},
		{"TicketAndPCT", func() url.Values {
			firstRPT = last.AccessToken
			return url.Values{"grant_type": {authz.GrantTypeUMATicket}, "ticket": {ticket()}, "pct": {last.PCT}}
		}, http.StatusOK, 1},
		{"Upgrade", func() url.Values {
			return with(claimGrant, "ticket", ticket(), "rpt", firstRPT)
		}, http.StatusOK, 1},
		{"Refresh", func() url.Values {
			return url.Values{"grant_type": {"refresh_token"}, "refresh_token": {last.RefreshToken}}
		}, http.StatusOK, 1},
		{"ReplayedTicket", func() url.Values {
			return with(claimGrant, "ticket", usedTicket)
		}, http.StatusBadRequest, 0},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			form := st.form()
			cs.reset()
			token(form, st.status)
			if got := cs.commits(); len(got) != st.want {
				t.Errorf("%d commits %q, want %d", len(got), got, st.want)
			}
		})
	}
}

// TestSingleUseUnderConcurrency sends one ticket or refresh token in many
// concurrent requests, for each kind of answer that spends it in its own
// commit: exactly one gets that answer, the others invalid_grant.
func TestSingleUseUnderConcurrency(t *testing.T) {
	f := authztest.NewGrantFixture(t, nil)
	doc := f.IDToken(map[string]any{"sub": "doc-1", "email": "doctor@clinic.example"})
	stranger := f.IDToken(map[string]any{"sub": "someone", "email": "someone@example.org"})
	app := authztest.BasicAuth("app", authztest.AppSecret)
	cases := []struct {
		name string
		// prepare returns the request that all send at once.
		prepare func(t *testing.T) url.Values
		// status and code are the answer of the one that wins.
		status int
		code   string
	}{
		{"GrantIssuesTokens", func(t *testing.T) url.Values { return umaGrant(f.LabsTicket("read"), doc) }, http.StatusOK, ""},
		{"NeedInfo", func(t *testing.T) url.Values {
			return url.Values{"grant_type": {authz.GrantTypeUMATicket}, "ticket": {f.LabsTicket("read")}}
		}, http.StatusForbidden, "need_info"},
		{"RequestDenied", func(t *testing.T) url.Values { return umaGrant(f.LabsTicket("delete"), stranger) }, http.StatusForbidden, "request_denied"},
		{"Refresh", func(t *testing.T) url.Values {
			r := f.Grant(authztest.WithClaims(f.LabsTicket("read"), doc))
			if r.Status != 200 {
				t.Fatalf("grant: %d %s", r.Status, r.Body)
			}
			return url.Values{"grant_type": {"refresh_token"}, "refresh_token": {r.JSON(t)["refresh_token"].(string)}}
		}, http.StatusOK, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			form := c.prepare(t)
			const n = 16
			answers := make([]authztest.Response, n)
			var wg sync.WaitGroup
			for i := range n {
				wg.Go(func() { answers[i] = f.Do("POST", authz.PathToken, form, "Authorization", app) })
			}
			wg.Wait()
			won := 0
			for _, r := range answers {
				var body struct {
					Error string `json:"error"`
				}
				_ = json.Unmarshal(r.Body, &body)
				switch {
				case r.Status == c.status && body.Error == c.code:
					won++
				case r.Status == http.StatusBadRequest && body.Error == "invalid_grant":
				default:
					t.Errorf("answer %d %s", r.Status, r.Body)
				}
			}
			if won != 1 {
				t.Errorf("%d of %d requests got %d %s, want exactly 1", won, n, c.status, c.code)
			}
		})
	}
}

// umaGrant is the form of a UMA grant with a ticket and an ID token.
func umaGrant(tk, idToken string) url.Values {
	v := authztest.WithClaims(tk, idToken)
	v.Set("grant_type", authz.GrantTypeUMATicket)
	return v
}

// TestHistoryQueue checks that the decisions written off the request path
// are never dropped: many at once (more than the queue holds: the rest
// are written at once), those still queued when the server stops (written
// by Close), and those after it (written at once).
func TestHistoryQueue(t *testing.T) {
	st := authztest.OpenStore(t, t.TempDir())
	t.Cleanup(func() { st.Close() })
	open := func() *authz.Server {
		srv, err := authz.New(t.Context(), authz.Config{Issuer: "https://as.example", Store: st, Clients: authztest.Clients})
		if err != nil {
			t.Fatal(err)
		}
		return srv
	}
	const owners, perOwner = 50, 100 // under the history's bound per owner
	decision := func(i int) authz.DecisionRecord {
		return authz.DecisionRecord{At: time.Unix(int64(1_800_000_000+i), 0).UTC(), ResourceID: "r", ClientID: "app",
			Subject: "bob", Requested: []string{"read"}, Outcome: authz.OutcomeRefused, Reasons: []string{"test"}}
	}
	owner := func(i int) string { return "owner-" + string(rune('A'+i%owners)) + "x" }
	count := func(srv *authz.Server, o string) int {
		list, err := srv.History(t.Context(), o, 0)
		if err != nil {
			t.Fatal(err)
		}
		return len(list)
	}

	a := open()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := g; i < owners*perOwner; i += 8 {
				a.RecordDecision(t.Context(), owner(i), decision(i))
			}
		})
	}
	wg.Wait()
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	// After Close, a decision is written at once.
	a.RecordDecision(t.Context(), "late", decision(0))

	b := open()
	t.Cleanup(func() { b.Close() })
	for o := range owners {
		if got := count(b, owner(o)); got != perOwner {
			t.Errorf("history of %s: %d decisions, want %d", owner(o), got, perOwner)
		}
	}
	if got := count(b, "late"); got != 1 {
		t.Errorf("history of a decision after Close: %d, want 1", got)
	}

	// History shows what this server queued, without waiting.
	b.RecordDecision(t.Context(), "now", decision(1))
	if got := count(b, "now"); got != 1 {
		t.Errorf("History right after a decision: %d, want 1", got)
	}
}

// TestNodesRefreshOnce sends one refresh token to two nodes on one
// PostgreSQL database, many times at once: one new RPT.
func TestNodesRefreshOnce(t *testing.T) {
	c := newCluster(t, 2)
	doc := c.idToken(t, map[string]any{"sub": "doc-1", "email": "doc@example.org"})
	rule := "package uma.share\n\nimport data.uma.lib\n\nallow contains \"read\" if lib.is_email(\"doc@example.org\")\n"
	c.nodes[0].DoRaw("PUT", ownerapi.PathRules+"/main", rule, "text/plain", "Authorization", authztest.Bearer(c.alicePAT))
	var refresh string
	within(t, "node 1 grants", 2*time.Second, func() bool {
		r := c.grant(0, authztest.WithClaims(c.ticket(t, 0), doc))
		if r.Status == 200 {
			refresh = r.JSON(t)["refresh_token"].(string)
		}
		return r.Status == 200
	})
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh}}
	var mu sync.Mutex
	refreshed := 0
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Go(func() {
			r := c.nodes[i%2].Do("POST", authz.PathToken, form, "Authorization", authztest.BasicAuth("app", authztest.AppSecret))
			switch r.Status {
			case 200:
				mu.Lock()
				refreshed++
				mu.Unlock()
			case 400:
			default:
				t.Errorf("refresh: %d %s", r.Status, r.Body)
			}
		})
	}
	wg.Wait()
	if refreshed != 1 {
		t.Fatalf("%d of 40 refreshes of one token got an RPT", refreshed)
	}
}
