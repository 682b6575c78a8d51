package pep

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// uriIndex maps requests to the resources this resource server registered
// through the protection API with uris, through a uriTable. It lists them
// from the AS on first use. Then:
//
//   - When the AS has a change feed (ResourceFeed: co-hosted), the feed is
//     watched from before the first listing, and each change of a resource
//     is applied to the table on its own (one read of that resource); the
//     resources are listed again only on a Resync. While the feed is
//     interrupted, or if it cannot be watched, the table is listed again
//     once it is older than refresh, as without a feed.
//   - Otherwise (remote) the resources are listed again, in the
//     background, once the table is older than refresh; requests meanwhile
//     use the previous table.
//
// Listings and changes are applied one at a time (applying), each reading
// the AS after the previous one was applied, so that an older read never
// overwrites a newer one.
type uriIndex struct {
	as      AuthorizationServer
	feed    ResourceFeed // nil when the AS has none
	refresh time.Duration
	timeout time.Duration
	now     func() time.Time
	log     *zap.Logger
	// ctx ends the feed's watch and worker (close).
	ctx  context.Context
	stop context.CancelFunc

	mu       sync.RWMutex
	table    *uriTable
	loaded   bool
	loadedAt time.Time
	// failedAt and lastErr are the last failed load's, so that a request
	// soon after fails fast instead of asking the AS again.
	failedAt time.Time
	lastErr  error

	// applying serializes the listings and the changes (held while the AS
	// is read and the table changed).
	applying sync.Mutex
	// live says that the feed is watched and delivers every change, and
	// behind that a change could not be applied: the table needs no
	// periodic listing while live and not behind.
	live   atomic.Bool
	behind atomic.Bool
	// watchMu guards watched: the watch starts before the first listing,
	// and, if it could not, before the next one.
	watchMu sync.Mutex
	watched bool
	pending pendingChanges

	loading atomic.Bool
	loads   flightGroup[struct{}]
}

// loadRetry is how long after a failed first listing requests fail fast.
const loadRetry = 2 * time.Second

// maxPendingChanges bounds the changes waiting for the worker: past it,
// they are replaced by one listing.
const maxPendingChanges = 4096

// pendingChanges are the changes the feed delivered that the worker has
// not applied yet: resource ids, or a whole listing.
type pendingChanges struct {
	mu     sync.Mutex
	ids    map[string]struct{}
	reload bool
	wake   chan struct{} // capacity 1
}

func newURIIndex(as AuthorizationServer, refresh, timeout time.Duration, now func() time.Time, log *zap.Logger) *uriIndex {
	x := &uriIndex{as: as, refresh: refresh, timeout: timeout, now: now, log: log, table: newURITable()}
	x.ctx, x.stop = context.WithCancel(context.Background())
	x.feed, _ = as.(ResourceFeed)
	x.pending.wake = make(chan struct{}, 1)
	return x
}

// close ends the watch of the feed: from then on the table is listed again
// once it is older than refresh.
func (x *uriIndex) close() {
	if x == nil {
		return
	}
	x.stop()
	x.watchMu.Lock()
	x.watched = true // no watch from now on
	x.watchMu.Unlock()
	x.live.Store(false)
}

// current reports whether the feed keeps the table up to date.
func (x *uriIndex) current() bool {
	return x.live.Load() && !x.behind.Load()
}

// match returns the registered resource whose uris best match the request,
// loading the table first if there is none yet. err is set when the
// resources could not be listed and no earlier table exists.
func (x *uriIndex) match(ctx context.Context, host string, segs []string) (Resource, bool, error) {
	now := x.now()
	x.mu.RLock()
	loaded := x.loaded
	stale := !x.current() && now.Sub(x.loadedAt) >= x.refresh
	failedRecently, lastErr := now.Sub(x.failedAt) < loadRetry, x.lastErr
	x.mu.RUnlock()
	var err error
	switch {
	case !loaded && failedRecently:
		err = lastErr
	case !loaded:
		err = x.load(ctx)
	case stale && x.loading.CompareAndSwap(false, true):
		go func() {
			defer x.loading.Store(false)
			ctx, cancel := context.WithTimeout(context.Background(), x.timeout)
			defer cancel()
			_ = x.load(ctx)
		}()
	}
	x.mu.RLock()
	defer x.mu.RUnlock()
	if res, ok := x.table.match(host, segs); ok {
		return res, true, nil
	}
	return Resource{}, false, err
}

// load lists the registered resources into a new table. Concurrent loads
// share one call. With a feed, the watch starts first, so that no change
// made after the listing is missed.
func (x *uriIndex) load(ctx context.Context) error {
	if x.feed != nil {
		x.watchMu.Lock()
		if !x.watched {
			x.watched = x.watch()
		}
		x.watchMu.Unlock()
	}
	_, err := x.loads.do("", func() (struct{}, error) {
		return struct{}{}, x.list(context.WithoutCancel(ctx))
	})
	return err
}

// list reads the registered resources into a new table, which replaces
// the table once complete. It reads the AS after every listing and change
// applied before it.
func (x *uriIndex) list(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, x.timeout)
	defer cancel()
	x.applying.Lock()
	defer x.applying.Unlock()
	list, err := x.as.RegisteredResources(ctx)
	if err != nil {
		x.log.Warn("listing the registered resources failed", zap.Error(err))
		x.mu.Lock()
		x.failedAt, x.lastErr = x.now(), err
		x.mu.Unlock()
		return err
	}
	table := newURITable()
	for _, res := range list {
		x.put(table, res)
	}
	x.mu.Lock()
	x.table, x.loaded, x.loadedAt = table, true, x.now()
	x.mu.Unlock()
	x.behind.Store(false)
	return nil
}

// put adds res to table, logging the uris that do not compile.
func (x *uriIndex) put(table *uriTable, res Resource) {
	for u, err := range table.put(res) {
		x.log.Debug("ignoring a registered uri", zap.String("resource_id", res.ID), zap.String("uri", u), zap.Error(err))
	}
}

// watch subscribes to the AS's feed and starts the worker that applies
// what it delivers, and reports whether it did. If it cannot, the table is
// listed again periodically, and the next listing tries again.
func (x *uriIndex) watch() bool {
	if err := x.feed.WatchResources(x.ctx, x.onChange); err != nil {
		x.log.Warn("cannot watch the registered resources: they are listed again every refresh interval",
			zap.Duration("refresh", x.refresh), zap.Error(err))
		return false
	}
	x.live.Store(true)
	if x.ctx.Err() != nil { // closed meanwhile
		x.live.Store(false)
		return true
	}
	go x.work()
	return true
}

// onChange queues what the feed delivered for the worker. It runs on the
// feed's goroutine and never waits for the AS.
func (x *uriIndex) onChange(c ResourceChange) {
	if x.ctx.Err() != nil {
		return
	}
	p := &x.pending
	p.mu.Lock()
	switch {
	case c.Interrupted:
		// Changes are lost until the next Resync: list periodically.
		x.live.Store(false)
	case c.Resync:
		x.live.Store(true)
		p.reload, p.ids = true, nil
	case p.reload:
		// The listing to come covers it.
	case len(p.ids) >= maxPendingChanges:
		p.reload, p.ids = true, nil
	default:
		if p.ids == nil {
			p.ids = map[string]struct{}{}
		}
		p.ids[c.ID] = struct{}{}
	}
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// work applies the queued changes until the Enforcer closes.
func (x *uriIndex) work() {
	p := &x.pending
	for {
		select {
		case <-x.ctx.Done():
			return
		case <-p.wake:
		}
		p.mu.Lock()
		reload, ids := p.reload, p.ids
		p.reload, p.ids = false, nil
		p.mu.Unlock()
		if reload {
			if err := x.list(x.ctx); err != nil {
				x.behind.Store(true) // listed again at the next request past refresh
			}
			continue
		}
		for id := range ids {
			if x.ctx.Err() != nil {
				return
			}
			x.apply(id)
		}
	}
}

// apply reads one changed resource and puts it in the table, or takes it
// out. When it cannot be read, the table is listed again at the next
// request past refresh.
func (x *uriIndex) apply(id string) {
	ctx, cancel := context.WithTimeout(x.ctx, x.timeout)
	defer cancel()
	x.applying.Lock()
	defer x.applying.Unlock()
	res, ok, err := x.feed.RegisteredResource(ctx, id)
	if err != nil {
		x.log.Warn("reading a changed resource failed: the registered resources are listed again",
			zap.String("resource_id", id), zap.Error(err))
		x.behind.Store(true)
		return
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if ok {
		x.put(x.table, res)
	} else {
		x.table.remove(id)
	}
}

// invalidate says that resource id is not what the table holds (the AS no
// longer knows it): with a live feed it is read again, otherwise the next
// request lists the resources again.
func (x *uriIndex) invalidate(id string) {
	if x == nil {
		return
	}
	if x.current() {
		x.onChange(ResourceChange{ID: id})
		return
	}
	x.mu.Lock()
	x.loadedAt = time.Time{}
	x.mu.Unlock()
}
