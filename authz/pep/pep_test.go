package pep

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeAS is an AuthorizationServer in memory that records its calls.
type fakeAS struct {
	mu       sync.Mutex
	down     bool
	interval time.Duration
	// resources by id; names maps owner|name|type to id.
	resources map[string]Resource
	names     map[string]string
	nextID    int
	rpts      map[string]*RPT // token -> RPT
	revoked   map[string]bool // token -> revoked
	// registered are the resources with uris; listErr fails the listing.
	registered []Resource
	listErr    error
	// ensureGate, when set, blocks EnsureResource until closed.
	ensureGate chan struct{}

	ensures, tickets, verifies, rechecks, lists int
	lastTicket                                  struct {
		perms   []Permission
		request map[string][]string
	}
}

func newFakeAS() *fakeAS {
	return &fakeAS{
		resources: map[string]Resource{}, names: map[string]string{},
		rpts: map[string]*RPT{}, revoked: map[string]bool{},
	}
}

func (f *fakeAS) Issuer(context.Context) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return "", ErrUnavailable
	}
	return "https://as.example", nil
}

func (f *fakeAS) EnsureResource(_ context.Context, res Resource) (string, error) {
	f.mu.Lock()
	gate := f.ensureGate
	f.mu.Unlock()
	if gate != nil {
		<-gate
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ensures++
	if f.down {
		return "", ErrUnavailable
	}
	key := res.Owner + "|" + res.Name + "|" + res.Type
	if id, ok := f.names[key]; ok {
		if _, exists := f.resources[id]; exists {
			return id, nil
		}
	}
	f.nextID++
	res.ID = fmt.Sprintf("res-%d", f.nextID)
	f.resources[res.ID] = res
	f.names[key] = res.ID
	return res.ID, nil
}

func (f *fakeAS) RequestTicket(_ context.Context, perms []Permission, request map[string][]string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tickets++
	if f.down {
		return "", ErrUnavailable
	}
	for _, p := range perms {
		res, ok := f.resources[p.ResourceID]
		if !ok {
			for _, r := range f.registered {
				if r.ID == p.ResourceID {
					res, ok = r, true
				}
			}
		}
		if !ok {
			return "", ErrUnknownResource
		}
		for _, s := range p.Scopes {
			if !slices.Contains(res.Scopes, s) {
				return "", fmt.Errorf("scope %s not registered", s)
			}
		}
	}
	f.lastTicket.perms, f.lastTicket.request = perms, request
	return fmt.Sprintf("ticket-%d", f.tickets), nil
}

func (f *fakeAS) VerifyRPT(_ context.Context, token string) (*RPT, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.verifies++
	if f.down {
		return nil, ErrUnavailable
	}
	rpt, ok := f.rpts[token]
	if !ok || f.revoked[token] {
		return nil, ErrInvalidRPT
	}
	return rpt, nil
}

func (f *fakeAS) RecheckInterval() time.Duration { return f.interval }

func (f *fakeAS) Recheck(_ context.Context, token string, rpt *RPT) (*RPT, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rechecks++
	if f.down {
		return nil, ErrUnavailable
	}
	if f.revoked[token] {
		return nil, ErrInvalidRPT
	}
	return rpt, nil
}

func (f *fakeAS) RegisteredResources(context.Context) ([]Resource, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lists++
	if f.listErr != nil {
		return nil, f.listErr
	}
	return slices.Clone(f.registered), nil
}

func (f *fakeAS) counts() (ensures, tickets, verifies, rechecks int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ensures, f.tickets, f.verifies, f.rechecks
}

// grant makes token an RPT granting scopes on the resource of owner/name.
func (f *fakeAS) grant(t *testing.T, token, owner, name string, exp time.Time, scopes ...string) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	id, ok := f.names[owner+"|"+name+"|"]
	if !ok {
		t.Fatalf("no resource %s/%s registered yet", owner, name)
	}
	f.rpts[token] = &RPT{ID: "jti-" + token, Subject: "bob", ClientID: "app", ExpiresAt: exp,
		Permissions: []Permission{{ResourceID: id, Scopes: scopes}}}
}

// testClock is a settable clock.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

var recordsTemplate = Template{
	Path:    "/api/records/{owner}/{id}",
	Owner:   "{owner}",
	Context: map[string]string{"ip": "{remote_host}", "record": "{id}", "via": "{header.X-Via}", "q": "{query.q}"},
}

func newEnforcer(t *testing.T, as AuthorizationServer, clock *testClock, mod func(*Config)) *Enforcer {
	t.Helper()
	cfg := Config{AS: as, Realm: "api", Templates: []Template{recordsTemplate}, Now: clock.Now}
	if mod != nil {
		mod(&cfg)
	}
	e, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func request(method, target, token string) *http.Request {
	r := httptest.NewRequest(method, target, nil)
	if token != "" {
		r.Header.Set("Authorization", "Bearer "+token)
	}
	return r
}

func TestDecideMapping(t *testing.T) {
	tests := map[string]struct {
		templates  []Template
		methods    map[string][]string
		unmatched  Unmatched
		method     string
		target     string
		header     map[string]string
		wantReason Reason
		wantStatus int
		wantAllow  bool
		wantOwner  string
		wantName   string
		wantType   string
		wantScopes []string // requested in the ticket
	}{
		"GET is read": {
			method: "GET", target: "/api/records/alice/1",
			wantReason: ReasonNoToken, wantStatus: 401, wantOwner: "alice", wantName: "/api/records/alice/1", wantScopes: []string{"read"},
		},
		"HEAD is read":     {method: "HEAD", target: "/api/records/alice/1", wantReason: ReasonNoToken, wantStatus: 401, wantScopes: []string{"read"}},
		"POST is write":    {method: "POST", target: "/api/records/alice/1", wantReason: ReasonNoToken, wantStatus: 401, wantScopes: []string{"write"}},
		"PUT is write":     {method: "PUT", target: "/api/records/alice/1", wantReason: ReasonNoToken, wantStatus: 401, wantScopes: []string{"write"}},
		"PATCH is write":   {method: "PATCH", target: "/api/records/alice/1", wantReason: ReasonNoToken, wantStatus: 401, wantScopes: []string{"write"}},
		"DELETE is delete": {method: "DELETE", target: "/api/records/alice/1", wantReason: ReasonNoToken, wantStatus: 401, wantScopes: []string{"delete"}},
		"OPTIONS is not mapped": {
			method: "OPTIONS", target: "/api/records/alice/1", wantReason: ReasonMethodNotMapped, wantStatus: 403,
		},
		"trailing slash is the same resource": {
			method: "GET", target: "/api/records/alice/1/", wantReason: ReasonNoToken, wantStatus: 401, wantName: "/api/records/alice/1/",
		},
		"unmatched, deny": {method: "GET", target: "/public/x", wantReason: ReasonUnmatched, wantStatus: 403},
		"unmatched, pass": {method: "GET", target: "/public/x", unmatched: UnmatchedPass, wantReason: ReasonPassed, wantAllow: true},
		"dot segments are refused": {
			method: "GET", target: "/api/records/alice/../bob/1", unmatched: UnmatchedPass, wantReason: ReasonAmbiguousPath, wantStatus: 400,
		},
		"encoded slash is refused": {
			method: "GET", target: "/api/records/alice%2Fbob/1", unmatched: UnmatchedPass, wantReason: ReasonAmbiguousPath, wantStatus: 400,
		},
		"owner, name and type from headers": {
			templates: []Template{{Path: "/v1/{kind}/{id}", Owner: "{header.X-Owner}", Name: "{kind}:{id}", Type: "urn:{kind}"}},
			method:    "GET", target: "/v1/notes/7", header: map[string]string{"X-Owner": "carol"},
			wantReason: ReasonNoToken, wantStatus: 401, wantOwner: "carol", wantName: "notes:7", wantType: "urn:notes",
		},
		"missing owner is refused, even with pass": {
			templates: []Template{{Path: "/v1/{kind}/{id}", Owner: "{header.X-Owner}"}},
			unmatched: UnmatchedPass, method: "GET", target: "/v1/notes/7",
			wantReason: ReasonNoOwner, wantStatus: 403,
		},
		"a template's own method map": {
			templates: []Template{{Path: "/reports/{owner}", Owner: "{owner}", Methods: map[string][]string{"GET": {"view", "list"}}, Match: MatchAny}},
			method:    "GET", target: "/reports/dan",
			wantReason: ReasonNoToken, wantStatus: 401, wantScopes: []string{"view", "list"},
		},
		"a template's method map leaves other methods out": {
			templates: []Template{{Path: "/reports/{owner}", Owner: "{owner}", Methods: map[string][]string{"GET": {"view"}}}},
			method:    "DELETE", target: "/reports/dan", wantReason: ReasonMethodNotMapped, wantStatus: 403,
		},
		"the handler's method map": {
			methods: map[string][]string{"GET": {"fetch"}, "OPTIONS": {"fetch"}},
			method:  "OPTIONS", target: "/api/records/alice/1", wantReason: ReasonNoToken, wantStatus: 401, wantScopes: []string{"fetch"},
		},
		"first template wins": {
			templates: []Template{
				{Path: "/api/records/admin/{id}", Owner: "root"},
				{Path: "/api/records/{owner}/{id}", Owner: "{owner}"},
			},
			method: "GET", target: "/api/records/admin/1", wantReason: ReasonNoToken, wantStatus: 401, wantOwner: "root",
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			as := newFakeAS()
			clock := &testClock{t: time.Unix(1_700_000_000, 0)}
			e := newEnforcer(t, as, clock, func(c *Config) {
				if tt.templates != nil {
					c.Templates = tt.templates
				}
				c.Methods = tt.methods
				c.Unmatched = tt.unmatched
			})
			r := request(tt.method, tt.target, "")
			for k, v := range tt.header {
				r.Header.Set(k, v)
			}
			d := e.Decide(r)
			if d.Reason != tt.wantReason || d.Status != tt.wantStatus || d.Allow != tt.wantAllow {
				t.Fatalf("decision = %s %d allow=%v (%v), want %s %d allow=%v", d.Reason, d.Status, d.Allow, d.Err,
					tt.wantReason, tt.wantStatus, tt.wantAllow)
			}
			if tt.wantStatus == 401 {
				if !strings.HasPrefix(d.Challenge, `UMA realm="api", as_uri="https://as.example", ticket="ticket-`) {
					t.Errorf("challenge = %s", d.Challenge)
				}
				res := as.resources[d.ResourceID]
				if tt.wantOwner != "" && (res.Owner != tt.wantOwner || d.Owner != tt.wantOwner) {
					t.Errorf("owner = %q / %q, want %q", res.Owner, d.Owner, tt.wantOwner)
				}
				if tt.wantName != "" && res.Name != tt.wantName {
					t.Errorf("name = %q, want %q", res.Name, tt.wantName)
				}
				if res.Type != tt.wantType {
					t.Errorf("type = %q, want %q", res.Type, tt.wantType)
				}
				if tt.wantScopes != nil && !slices.Equal(as.lastTicket.perms[0].Scopes, tt.wantScopes) {
					t.Errorf("ticket scopes = %v, want %v", as.lastTicket.perms[0].Scopes, tt.wantScopes)
				}
			} else if d.Challenge != "" {
				t.Errorf("a challenge with status %d", d.Status)
			}
		})
	}
}

func TestRegisteredScopesDefaultToTheMethodMap(t *testing.T) {
	as := newFakeAS()
	e := newEnforcer(t, as, &testClock{t: time.Now()}, nil)
	e.Decide(request("GET", "/api/records/alice/1", ""))
	for _, res := range as.resources {
		if want := []string{"delete", "read", "write"}; !slices.Equal(res.Scopes, want) {
			t.Errorf("registered scopes = %v, want %v", res.Scopes, want)
		}
	}
	if _, err := New(Config{AS: as, Templates: []Template{{Path: "/x", Owner: "o", Scopes: []string{"read"}}}}); err == nil {
		t.Error("scopes that leave out a mapped scope should be refused")
	}
}

func TestRequestContextTravelsWithTheTicket(t *testing.T) {
	as := newFakeAS()
	e := newEnforcer(t, as, &testClock{t: time.Now()}, nil)
	r := request("GET", "/api/records/alice/42?q=urgent", "")
	r.RemoteAddr = "192.0.2.7:5555"
	r.Header.Set("X-Via", "mobile")
	d := e.Decide(r)
	if d.Status != http.StatusUnauthorized {
		t.Fatalf("status %d", d.Status)
	}
	want := map[string][]string{"ip": {"192.0.2.7"}, "record": {"42"}, "via": {"mobile"}, "q": {"urgent"}}
	got := as.lastTicket.request
	if len(got) != len(want) {
		t.Fatalf("request context = %v, want %v", got, want)
	}
	for k, v := range want {
		if !slices.Equal(got[k], v) {
			t.Errorf("request[%s] = %v, want %v", k, got[k], v)
		}
	}
	// Empty values are left out, and so are values too large for a ticket.
	r = request("GET", "/api/records/alice/42?q="+strings.Repeat("x", maxContextValue+1), "")
	e.Decide(r)
	if _, ok := as.lastTicket.request["via"]; ok {
		t.Error("an empty context value was sent")
	}
	if _, ok := as.lastTicket.request["q"]; ok {
		t.Error("an oversized context value was sent")
	}
	if as.lastTicket.request["record"][0] != "42" {
		t.Error("the other values should still be sent")
	}
}

func TestAuthorizedAndInsufficient(t *testing.T) {
	as := newFakeAS()
	clock := &testClock{t: time.Unix(1_700_000_000, 0)}
	e := newEnforcer(t, as, clock, nil)
	e.Decide(request("GET", "/api/records/alice/1", "")) // registers the resource
	as.grant(t, "rpt-read", "alice", "/api/records/alice/1", clock.Now().Add(time.Minute), "read")

	d := e.Decide(request("GET", "/api/records/alice/1", "rpt-read"))
	if !d.Allow || d.Reason != ReasonAuthorized || !d.Authorized {
		t.Fatalf("GET with a read RPT: %+v", d)
	}
	if d.Subject != "bob" || d.ClientID != "app" || d.Owner != "alice" || !slices.Equal(d.Scopes, []string{"read"}) || d.ResourceID == "" {
		t.Errorf("results = %+v", d)
	}
	_, ticketsBefore, _, _ := as.counts()
	d = e.Decide(request("DELETE", "/api/records/alice/1", "rpt-read"))
	if d.Allow || d.Status != 401 || d.Reason != ReasonInsufficient || !strings.Contains(d.Challenge, "ticket=") {
		t.Fatalf("DELETE with a read RPT: %+v", d)
	}
	if _, tickets, _, _ := as.counts(); tickets != ticketsBefore+1 {
		t.Error("no new ticket for an insufficient RPT")
	}
	// The RPT does not cover another resource.
	d = e.Decide(request("GET", "/api/records/alice/2", "rpt-read"))
	if d.Allow || d.Reason != ReasonInsufficient {
		t.Errorf("another resource: %+v", d)
	}
	// An unknown token is answered like no token.
	d = e.Decide(request("GET", "/api/records/alice/1", "forged"))
	if d.Allow || d.Status != 401 || d.Reason != ReasonInvalidToken || d.Challenge == "" {
		t.Errorf("forged RPT: %+v", d)
	}
}

func TestMatchAllAndAny(t *testing.T) {
	for _, match := range []Match{MatchAll, MatchAny} {
		t.Run(string(match), func(t *testing.T) {
			as := newFakeAS()
			clock := &testClock{t: time.Unix(1_700_000_000, 0)}
			e := newEnforcer(t, as, clock, func(c *Config) {
				c.Templates = []Template{{Path: "/r/{owner}", Owner: "{owner}", Match: match,
					Methods: map[string][]string{"GET": {"read", "list"}}}}
			})
			e.Decide(request("GET", "/r/alice", ""))
			as.grant(t, "tok", "alice", "/r/alice", clock.Now().Add(time.Minute), "list")
			d := e.Decide(request("GET", "/r/alice", "tok"))
			if d.Allow != (match == MatchAny) {
				t.Errorf("allow = %v with only list of read+list", d.Allow)
			}
		})
	}
}

func TestPermissionWindow(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	rpt := &RPT{Permissions: []Permission{
		{ResourceID: "a", Scopes: []string{"read"}, ExpiresAt: now},
		{ResourceID: "b", Scopes: []string{"read"}, NotBefore: now.Add(time.Second)},
		{ResourceID: "c", Scopes: []string{"read"}},
		{ResourceID: "c", Scopes: []string{"write"}, ExpiresAt: now.Add(time.Second)},
	}}
	if _, ok := rpt.grantedScopes("a", now); ok {
		t.Error("an expired permission counted")
	}
	if _, ok := rpt.grantedScopes("b", now); ok {
		t.Error("a permission before its nbf counted")
	}
	if got, _ := rpt.grantedScopes("c", now); !slices.Equal(got, []string{"read", "write"}) {
		t.Errorf("merged scopes = %v", got)
	}
}

func TestRPTCache(t *testing.T) {
	t.Run("verified once, checked on every use when co-hosted", func(t *testing.T) {
		as := newFakeAS() // interval 0, as co-hosted
		clock := &testClock{t: time.Unix(1_700_000_000, 0)}
		obs := &testObserver{}
		e := newEnforcer(t, as, clock, func(c *Config) { c.Observer = obs })
		e.Decide(request("GET", "/api/records/alice/1", ""))
		as.grant(t, "tok", "alice", "/api/records/alice/1", clock.Now().Add(time.Minute), "read")
		for range 5 {
			if d := e.Decide(request("GET", "/api/records/alice/1", "tok")); !d.Allow {
				t.Fatalf("refused: %+v", d)
			}
		}
		if _, _, verifies, rechecks := as.counts(); verifies != 1 || rechecks != 4 {
			t.Errorf("verifies = %d, rechecks = %d; want 1 and 4", verifies, rechecks)
		}
		// Revocation applies at once.
		as.mu.Lock()
		as.revoked["tok"] = true
		as.mu.Unlock()
		if d := e.Decide(request("GET", "/api/records/alice/1", "tok")); d.Allow || d.Status != 401 || d.Reason != ReasonInvalidToken {
			t.Errorf("revoked RPT: %+v", d)
		}
		// The request without a token looked nothing up.
		if hits, misses := obs.cache(); hits != 5 || misses != 1 {
			t.Errorf("observed %d cache hits and %d misses, want 5 and 1", hits, misses)
		}
	})

	t.Run("rechecked after the interval when remote", func(t *testing.T) {
		as := newFakeAS()
		as.interval = 30 * time.Second
		clock := &testClock{t: time.Unix(1_700_000_000, 0)}
		e := newEnforcer(t, as, clock, nil)
		e.Decide(request("GET", "/api/records/alice/1", ""))
		as.grant(t, "tok", "alice", "/api/records/alice/1", clock.Now().Add(time.Hour), "read")
		e.Decide(request("GET", "/api/records/alice/1", "tok"))
		as.mu.Lock()
		as.revoked["tok"] = true
		as.mu.Unlock()
		clock.Advance(29 * time.Second)
		if d := e.Decide(request("GET", "/api/records/alice/1", "tok")); !d.Allow {
			t.Errorf("within the interval the cached RPT is trusted: %+v", d)
		}
		clock.Advance(time.Second)
		if d := e.Decide(request("GET", "/api/records/alice/1", "tok")); d.Allow || d.Reason != ReasonInvalidToken {
			t.Errorf("after the interval a revoked RPT is refused: %+v", d)
		}
		if _, _, verifies, rechecks := as.counts(); verifies != 1 || rechecks != 1 {
			t.Errorf("verifies = %d, rechecks = %d; want 1 and 1", verifies, rechecks)
		}
	})

	t.Run("never served beyond its expiry", func(t *testing.T) {
		as := newFakeAS()
		as.interval = -1 // never rechecked
		clock := &testClock{t: time.Unix(1_700_000_000, 0)}
		e := newEnforcer(t, as, clock, nil)
		e.Decide(request("GET", "/api/records/alice/1", ""))
		as.grant(t, "tok", "alice", "/api/records/alice/1", clock.Now().Add(10*time.Second), "read")
		if d := e.Decide(request("GET", "/api/records/alice/1", "tok")); !d.Allow {
			t.Fatalf("refused: %+v", d)
		}
		clock.Advance(10 * time.Second)
		if d := e.Decide(request("GET", "/api/records/alice/1", "tok")); d.Allow || d.Reason != ReasonInvalidToken {
			t.Errorf("expired RPT: %+v", d)
		}
	})

	t.Run("bounded", func(t *testing.T) {
		as := newFakeAS()
		as.interval = -1
		clock := &testClock{t: time.Unix(1_700_000_000, 0)}
		obs := &testObserver{}
		e := newEnforcer(t, as, clock, func(c *Config) { c.RPTCacheSize = 2; c.Observer = obs })
		e.Decide(request("GET", "/api/records/alice/1", ""))
		for _, tok := range []string{"t1", "t2", "t3"} {
			as.grant(t, tok, "alice", "/api/records/alice/1", clock.Now().Add(time.Hour), "read")
			e.Decide(request("GET", "/api/records/alice/1", tok))
		}
		if n := e.rpts.len(); n != 2 {
			t.Errorf("cache holds %d RPTs, want 2", n)
		}
		e.Decide(request("GET", "/api/records/alice/1", "t1")) // evicted: verified again
		if _, _, verifies, _ := as.counts(); verifies != 4 {
			t.Errorf("verifies = %d, want 4", verifies)
		}
		if hits, misses := obs.cache(); hits != 0 || misses != 4 {
			t.Errorf("observed %d cache hits and %d misses, want 0 and 4", hits, misses)
		}
	})

	t.Run("keyed by a hash of the token", func(t *testing.T) {
		as := newFakeAS()
		clock := &testClock{t: time.Unix(1_700_000_000, 0)}
		e := newEnforcer(t, as, clock, nil)
		e.Decide(request("GET", "/api/records/alice/1", ""))
		as.grant(t, "secret-token", "alice", "/api/records/alice/1", clock.Now().Add(time.Hour), "read")
		e.Decide(request("GET", "/api/records/alice/1", "secret-token"))
		e.rpts.mu.Lock()
		defer e.rpts.mu.Unlock()
		for k := range e.rpts.items {
			if strings.Contains(string(k[:]), "secret") {
				t.Error("the cache key holds the token")
			}
		}
	})
}

func TestModes(t *testing.T) {
	t.Run("permissive lets through, asks no ticket", func(t *testing.T) {
		as := newFakeAS()
		e := newEnforcer(t, as, &testClock{t: time.Now()}, func(c *Config) { c.Mode = Permissive })
		d := e.Decide(request("GET", "/api/records/alice/1", ""))
		if !d.Allow || d.Reason != ReasonNoToken || d.Status != 0 || d.Challenge != "" {
			t.Errorf("permissive: %+v", d)
		}
		if _, tickets, _, _ := as.counts(); tickets != 0 {
			t.Errorf("%d tickets requested in permissive mode", tickets)
		}
		if d := e.Decide(request("GET", "/elsewhere", "")); !d.Allow || d.Reason != ReasonUnmatched {
			t.Errorf("permissive, unmatched: %+v", d)
		}
		as.mu.Lock()
		as.down = true
		as.mu.Unlock()
		if d := e.Decide(request("GET", "/api/records/alice/2", "")); !d.Allow || d.Reason != ReasonUnavailable {
			t.Errorf("permissive, AS down: %+v", d)
		}
	})
	t.Run("disabled does nothing", func(t *testing.T) {
		as := newFakeAS()
		e := newEnforcer(t, as, &testClock{t: time.Now()}, func(c *Config) { c.Mode = Disabled })
		d := e.Decide(request("DELETE", "/api/records/alice/1", ""))
		if !d.Allow || d.Reason != ReasonDisabled {
			t.Errorf("disabled: %+v", d)
		}
		if e, tk, v, _ := as.counts(); e+tk+v != 0 {
			t.Error("the AS was called in disabled mode")
		}
	})
	t.Run("unknown mode", func(t *testing.T) {
		if _, err := New(Config{AS: newFakeAS(), Mode: "audit"}); err == nil {
			t.Error("want an error")
		}
	})
}

func TestUnavailable(t *testing.T) {
	as := newFakeAS()
	clock := &testClock{t: time.Unix(1_700_000_000, 0)}
	e := newEnforcer(t, as, clock, nil)
	e.Decide(request("GET", "/api/records/alice/1", ""))
	as.grant(t, "tok", "alice", "/api/records/alice/1", clock.Now().Add(time.Hour), "read")
	as.mu.Lock()
	as.down = true
	as.mu.Unlock()
	for name, r := range map[string]*http.Request{
		"no token, resource known":   request("GET", "/api/records/alice/1", ""),
		"no token, resource unknown": request("GET", "/api/records/alice/9", ""),
		"RPT, cannot be checked":     request("GET", "/api/records/alice/1", "tok"),
	} {
		d := e.Decide(r)
		if d.Allow || d.Status != 403 || d.Reason != ReasonUnavailable || d.Warning != WarningUnreachable || d.Challenge != "" {
			t.Errorf("%s: %+v", name, d)
		}
		rec := httptest.NewRecorder()
		d.Respond(rec)
		if rec.Code != 403 || rec.Header().Get("Warning") != `199 - "UMA Authorization Server Unreachable"` {
			t.Errorf("%s: response %d %v", name, rec.Code, rec.Header())
		}
	}
}

func TestEnsureResourceOnceForConcurrentRequests(t *testing.T) {
	as := newFakeAS()
	gate := make(chan struct{})
	as.ensureGate = gate
	e := newEnforcer(t, as, &testClock{t: time.Now()}, nil)
	var wg sync.WaitGroup
	for range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e.Decide(request("GET", "/api/records/alice/1", ""))
		}()
	}
	time.Sleep(50 * time.Millisecond)
	close(gate)
	wg.Wait()
	if ensures, tickets, _, _ := as.counts(); ensures != 1 || tickets != 10 {
		t.Errorf("ensures = %d, tickets = %d; want 1 and 10", ensures, tickets)
	}
	if len(as.resources) != 1 {
		t.Errorf("%d resources, want 1", len(as.resources))
	}
}

func TestDeletedResourceIsRegisteredAgain(t *testing.T) {
	as := newFakeAS()
	e := newEnforcer(t, as, &testClock{t: time.Now()}, nil)
	first := e.Decide(request("GET", "/api/records/alice/1", ""))
	as.mu.Lock()
	delete(as.resources, first.ResourceID)
	as.mu.Unlock()
	d := e.Decide(request("GET", "/api/records/alice/1", ""))
	if d.Status != 401 || d.Challenge == "" {
		t.Fatalf("after deregistration: %+v", d)
	}
	if ensures, _, _, _ := as.counts(); ensures != 2 {
		t.Errorf("ensures = %d, want 2", ensures)
	}
	if as.lastTicket.perms[0].ResourceID == first.ResourceID {
		t.Error("the ticket names the deleted resource")
	}
}

func TestRegisteredURIs(t *testing.T) {
	as := newFakeAS()
	as.registered = []Resource{
		{ID: "album", Owner: "erin", Scopes: []string{"read", "write"}, URIs: []string{"/photos/erin/*"}},
		{ID: "photo-1", Owner: "erin", Scopes: []string{"read"}, URIs: []string{"/photos/erin/1"}},
	}
	clock := &testClock{t: time.Unix(1_700_000_000, 0)}
	e := newEnforcer(t, as, clock, func(c *Config) {
		c.Templates = nil
		c.RegisteredURIs = true
		c.URIRefresh = time.Minute
	})
	d := e.Decide(request("GET", "/photos/erin/1", ""))
	if d.Status != 401 || d.ResourceID != "photo-1" || d.Owner != "erin" {
		t.Errorf("most specific uri: %+v", d)
	}
	if d := e.Decide(request("PUT", "/photos/erin/2", "")); d.Status != 401 || d.ResourceID != "album" {
		t.Errorf("album: %+v", d)
	}
	if d := e.Decide(request("PUT", "/photos/erin/1", "")); d.Status != 403 || d.Reason != ReasonScopeNotRegistered {
		t.Errorf("a scope the resource lacks: %+v", d)
	}
	if d := e.Decide(request("GET", "/videos/1", "")); d.Reason != ReasonUnmatched {
		t.Errorf("no uri: %+v", d)
	}
	if as.lists != 1 {
		t.Errorf("listed %d times, want 1", as.lists)
	}

	// A new resource shows up after the refresh interval.
	as.mu.Lock()
	as.registered = append(as.registered, Resource{ID: "video", Owner: "erin", Scopes: []string{"read"}, URIs: []string{"/videos/*"}})
	as.mu.Unlock()
	clock.Advance(time.Minute)
	e.Decide(request("GET", "/videos/1", "")) // starts the refresh in the background
	deadline := time.Now().Add(5 * time.Second)
	for {
		if d := e.Decide(request("GET", "/videos/1", "")); d.ResourceID == "video" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the new resource was never matched")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestRegisteredURIsUnavailable(t *testing.T) {
	as := newFakeAS()
	as.listErr = ErrUnavailable
	e := newEnforcer(t, as, &testClock{t: time.Now()}, func(c *Config) {
		c.RegisteredURIs = true
		c.Unmatched = UnmatchedPass
	})
	// Templates still work.
	if d := e.Decide(request("GET", "/api/records/alice/1", "")); d.Status != 401 {
		t.Errorf("template: %+v", d)
	}
	// Anything else might be a registered resource: not passed through.
	d := e.Decide(request("GET", "/photos/1", ""))
	if d.Allow || d.Status != 403 || d.Warning == "" {
		t.Errorf("unlisted: %+v", d)
	}
}

func TestHandler(t *testing.T) {
	as := newFakeAS()
	clock := &testClock{t: time.Unix(1_700_000_000, 0)}
	e := newEnforcer(t, as, clock, func(c *Config) { c.StripAuthorization = true })
	var seen *http.Request
	h := e.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = r
		d, ok := DecisionFrom(r.Context())
		if !ok || !d.Authorized {
			t.Error("no decision in the context")
		}
		fmt.Fprint(w, "upstream")
	}))

	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, request("GET", "/api/records/alice/1", ""))
	if rec.Code != 401 || !strings.HasPrefix(rec.Header().Get("WWW-Authenticate"), "UMA ") ||
		rec.Header().Get("Cache-Control") != "no-store" || seen != nil {
		t.Fatalf("no token: %d %v (reached upstream: %v)", rec.Code, rec.Header(), seen != nil)
	}
	as.grant(t, "tok", "alice", "/api/records/alice/1", clock.Now().Add(time.Hour), "read")
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, request("GET", "/api/records/alice/1", "tok"))
	if rec.Code != 200 || rec.Body.String() != "upstream" {
		t.Fatalf("with an RPT: %d %q", rec.Code, rec.Body)
	}
	if seen.Header.Get("Authorization") != "" {
		t.Error("the Authorization header reached the upstream")
	}
}

func TestNewErrors(t *testing.T) {
	as := newFakeAS()
	for name, cfg := range map[string]Config{
		"no AS":           {Templates: []Template{recordsTemplate}},
		"bad unmatched":   {AS: as, Unmatched: "maybe"},
		"bad match":       {AS: as, Match: "some"},
		"no owner":        {AS: as, Templates: []Template{{Path: "/x"}}},
		"bad pattern":     {AS: as, Templates: []Template{{Path: "x", Owner: "o"}}},
		"bad scope":       {AS: as, Methods: map[string][]string{"GET": {"re ad"}}},
		"method no scope": {AS: as, Methods: map[string][]string{"GET": {}}},
		"realm control":   {AS: as, Realm: "a\nb"},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: New succeeded", name)
		}
	}
	if !errors.Is(fmt.Errorf("x: %w", ErrInvalidRPT), ErrInvalidRPT) {
		t.Fatal("sentinels must wrap")
	}
}
