package pep

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-uma/caddy-uma/authz"
	"github.com/caddy-uma/caddy-uma/store"
)

// feedAS is a fakeAS with a change feed of its registered resources that
// the test drives: send delivers a change as the AS's feed would.
type feedAS struct {
	*fakeAS
	fmu      sync.Mutex
	fn       func(ResourceChange)
	watchErr error
	readErr  error
	watches  int
	reads    int
}

func (f *feedAS) WatchResources(ctx context.Context, fn func(ResourceChange)) error {
	f.fmu.Lock()
	defer f.fmu.Unlock()
	f.watches++
	if f.watchErr != nil {
		return f.watchErr
	}
	f.fn = fn
	return nil
}

func (f *feedAS) RegisteredResource(ctx context.Context, id string) (Resource, bool, error) {
	f.fmu.Lock()
	f.reads++
	err := f.readErr
	f.fmu.Unlock()
	if err != nil {
		return Resource{}, false, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	i := slices.IndexFunc(f.registered, func(r Resource) bool { return r.ID == id })
	if i < 0 {
		return Resource{}, false, nil
	}
	return f.registered[i], true, nil
}

func (f *feedAS) send(c ResourceChange) {
	f.fmu.Lock()
	fn := f.fn
	f.fmu.Unlock()
	fn(c)
}

func (f *feedAS) setRegistered(list ...Resource) {
	f.mu.Lock()
	f.registered = list
	f.mu.Unlock()
}

func (f *feedAS) listCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lists
}

// eventually polls cond (the enforcement point applies changes in the
// background) and fails after a generous bound.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("never: %s", what)
		}
	}
}

// matched returns the resource a GET of path maps to, "" for none.
func matched(e *Enforcer, path string) string {
	d := e.Decide(request(http.MethodGet, path, ""))
	if d.Reason == ReasonUnmatched {
		return ""
	}
	return d.ResourceID
}

// noListingStarted reports whether the Decide just made started no listing
// (match marks one as loading before it returns) and none ran since
// the listings counted.
func noListingStarted(e *Enforcer, as *feedAS, lists int) bool {
	return !e.uris.loading.Load() && as.listCount() == lists
}

// feedEnforcer is an Enforcer mapping requests by the uris of as's
// registered resources, listed again after a minute without a feed: one,
// erin's album at /photos/erin/*. It is closed at the end of the test.
func feedEnforcer(t *testing.T, as *feedAS) (*Enforcer, *testClock) {
	as.registered = []Resource{{ID: "album", Owner: "erin", Scopes: []string{"read"}, URIs: []string{"/photos/erin/*"}}}
	clock := &testClock{t: time.Unix(1_700_000_000, 0)}
	e := newEnforcer(t, as, clock, func(c *Config) {
		c.Templates = nil
		c.RegisteredURIs = true
		c.URIRefresh = time.Minute
	})
	t.Cleanup(e.Close)
	return e, clock
}

// TestRegisteredURIsFollowFeed: with a change feed, the enforcement point
// lists the registered resources once, then applies each change by
// reading that one resource, lists again on a Resync and never
// periodically while the feed is live; an Interrupted, a change it cannot
// read and Close bring back the periodic listing.
func TestRegisteredURIsFollowFeed(t *testing.T) {
	as := &feedAS{fakeAS: newFakeAS()}
	e, clock := feedEnforcer(t, as)
	album := as.registered[0]
	if got := matched(e, "/photos/erin/1"); got != "album" || as.listCount() != 1 || as.watches != 1 {
		t.Fatalf("first request: %q, %d listings, %d watches", got, as.listCount(), as.watches)
	}

	// A new resource, then a change of its uris, then its removal.
	video := Resource{ID: "video", Owner: "erin", Scopes: []string{"read"}, URIs: []string{"/videos/*"}}
	as.setRegistered(album, video)
	as.send(ResourceChange{ID: "video"})
	eventually(t, "the new resource is matched", func() bool { return matched(e, "/videos/1") == "video" })
	video.URIs = []string{"/movies/*"}
	as.setRegistered(album, video)
	as.send(ResourceChange{ID: "video"})
	eventually(t, "the changed uris are matched", func() bool { return matched(e, "/movies/1") == "video" })
	if got := matched(e, "/videos/1"); got != "" {
		t.Errorf("the old uri still maps to %q", got)
	}
	as.setRegistered(album)
	as.send(ResourceChange{ID: "video"})
	eventually(t, "the removed resource is unmatched", func() bool { return matched(e, "/movies/1") == "" })

	// Live: no periodic listing.
	clock.Advance(2 * time.Minute)
	matched(e, "/photos/erin/1")
	if !noListingStarted(e, as, 1) {
		t.Fatalf("listed again while the feed is live: %d listings", as.listCount())
	}

	// A Resync lists again, once.
	as.setRegistered(album, video)
	as.send(ResourceChange{Resync: true})
	eventually(t, "the Resync's listing", func() bool { return as.listCount() == 2 && matched(e, "/movies/1") == "video" })

	// Interrupted: listed again once older than the refresh interval.
	as.send(ResourceChange{Interrupted: true})
	clock.Advance(2 * time.Minute)
	matched(e, "/photos/erin/1")
	eventually(t, "a periodic listing while interrupted", func() bool { return as.listCount() == 3 })
	as.send(ResourceChange{Resync: true})
	eventually(t, "the listing of the Resync after the interruption", func() bool { return as.listCount() == 4 })
	clock.Advance(2 * time.Minute)
	matched(e, "/photos/erin/1")
	if !noListingStarted(e, as, 4) {
		t.Fatalf("listed periodically after the Resync: %d listings", as.listCount())
	}

	// A change that cannot be read: listed periodically until a listing
	// succeeds.
	as.fmu.Lock()
	as.readErr = ErrUnavailable
	as.fmu.Unlock()
	as.send(ResourceChange{ID: "album"})
	eventually(t, "the failed read", func() bool { as.fmu.Lock(); defer as.fmu.Unlock(); return as.reads >= 4 && e.uris.behind.Load() })
	as.fmu.Lock()
	as.readErr = nil
	as.fmu.Unlock()
	clock.Advance(2 * time.Minute)
	matched(e, "/photos/erin/1")
	eventually(t, "a listing after the failed read", func() bool { return as.listCount() == 5 && !e.uris.loading.Load() })
	clock.Advance(2 * time.Minute)
	matched(e, "/photos/erin/1")
	if !noListingStarted(e, as, 5) {
		t.Fatalf("listed periodically after a successful listing: %d listings", as.listCount())
	}

	// After Close: listed periodically, and the listing works.
	e.Close()
	as.setRegistered(album)
	clock.Advance(2 * time.Minute)
	matched(e, "/photos/erin/1")
	eventually(t, "a periodic listing after Close", func() bool { return as.listCount() == 6 && matched(e, "/movies/1") == "" })
}

// TestRegisteredURIsFeedUnwatchable: when the feed cannot be watched, the
// resources are listed periodically, and each listing tries to watch again.
func TestRegisteredURIsFeedUnwatchable(t *testing.T) {
	as := &feedAS{fakeAS: newFakeAS(), watchErr: ErrUnavailable}
	e, clock := feedEnforcer(t, as)
	if got := matched(e, "/photos/erin/1"); got != "album" {
		t.Fatalf("first request: %q", got)
	}
	as.fmu.Lock()
	as.watchErr = nil
	as.fmu.Unlock()
	clock.Advance(time.Minute)
	matched(e, "/photos/erin/1")
	eventually(t, "the periodic listing", func() bool { return as.listCount() == 2 && !e.uris.loading.Load() })
	as.fmu.Lock()
	watches := as.watches
	as.fmu.Unlock()
	if watches != 2 {
		t.Errorf("%d watches, want a second one with the second listing", watches)
	}
	// Now live: no more periodic listing.
	clock.Advance(time.Minute)
	matched(e, "/photos/erin/1")
	if !noListingStarted(e, as, 2) {
		t.Errorf("listed periodically once watching: %d listings", as.listCount())
	}
}

// countingServer counts the listings of a co-hosted AS.
type countingServer struct {
	*authz.Server
	lists atomic.Int64
}

func (c *countingServer) ResourcesOf(ctx context.Context, rs string) ([]store.Resource, error) {
	c.lists.Add(1)
	return c.Server.ResourcesOf(ctx, rs)
}

// TestCoHostedRegisteredURIsFollowStore: co-hosted, resources registered,
// changed and deleted in the AS's store reach the enforcement point
// through the store's change feed, without listing them again; another
// resource server's resources never do.
func TestCoHostedRegisteredURIsFollowStore(t *testing.T) {
	as := newRealAS(t, nil)
	srv := &countingServer{Server: as.srv}
	e, err := New(Config{AS: CoHosted("rs-api", func(context.Context) LocalServer { return srv }), RegisteredURIs: true, Now: as.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	ctx := t.Context()
	if got := matched(e, "/videos/1"); got != "" || srv.lists.Load() != 1 {
		t.Fatalf("first request: %q, %d listings", got, srv.lists.Load())
	}
	now := as.clock.Now().UTC()
	video := store.Resource{ID: "video", ResourceServer: "rs-api", Owner: "alice", Scopes: []string{"read"},
		URIs: []string{"/videos/*"}, CreatedAt: now, UpdatedAt: now}
	if err := as.store.CreateResource(ctx, video); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the new resource is matched", func() bool { return matched(e, "/videos/1") == "video" })
	if d := e.Decide(request(http.MethodGet, "/videos/1", "")); d.Status != http.StatusUnauthorized || d.Owner != "alice" {
		t.Errorf("ticket for the new resource: %+v", d)
	}
	video.URIs = []string{"/movies/*"}
	if err := as.store.UpdateResource(ctx, video); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the changed uris are matched", func() bool { return matched(e, "/movies/1") == "video" })
	if got := matched(e, "/videos/1"); got != "" {
		t.Errorf("the old uri still maps to %q", got)
	}
	other := store.Resource{ID: "other", ResourceServer: "rs-other", Owner: "alice", Scopes: []string{"read"},
		URIs: []string{"/other/*"}, CreatedAt: now, UpdatedAt: now}
	if err := as.store.CreateResource(ctx, other); err != nil {
		t.Fatal(err)
	}
	if err := as.store.DeleteResource(ctx, "video"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the deleted resource is unmatched", func() bool { return matched(e, "/movies/1") == "" })
	if got := matched(e, "/other/1"); got != "" {
		t.Errorf("another resource server's resource maps to %q", got)
	}
	if _, ok, err := CoHosted("rs-api", func(context.Context) LocalServer { return srv }).(ResourceFeed).RegisteredResource(ctx, "other"); ok || err != nil {
		t.Errorf("RegisteredResource of another resource server's = %v, %v", ok, err)
	}
	if n := srv.lists.Load(); n != 1 {
		t.Errorf("%d listings, want 1", n)
	}
}

// TestCoHostedFeedNotRunning: while the co-hosted AS is not running, the
// feed cannot be watched nor a resource read, and the request that needs
// the list is refused as unavailable, not unmatched.
func TestCoHostedFeedNotRunning(t *testing.T) {
	c := CoHosted("rs-api", func(context.Context) LocalServer { return nil })
	feed := c.(ResourceFeed)
	if err := feed.WatchResources(t.Context(), func(ResourceChange) {}); !errors.Is(err, ErrUnavailable) {
		t.Errorf("WatchResources = %v", err)
	}
	if _, _, err := feed.RegisteredResource(t.Context(), "x"); !errors.Is(err, ErrUnavailable) {
		t.Errorf("RegisteredResource = %v", err)
	}
	e, err := New(Config{AS: c, RegisteredURIs: true})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if d := e.Decide(request(http.MethodGet, "/videos/1", "")); d.Reason != ReasonUnavailable || d.Status != http.StatusForbidden {
		t.Errorf("Decide = %+v", d)
	}
}
