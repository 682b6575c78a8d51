package pep

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// uriIndex maps requests to the resources this resource server registered
// through the protection API with uris. It lists them from the AS on first
// use and again, in the background, once the list is older than refresh;
// requests meanwhile use the previous list.
type uriIndex struct {
	as      AuthorizationServer
	refresh time.Duration
	timeout time.Duration
	now     func() time.Time
	log     *zap.Logger

	mu       sync.RWMutex
	loaded   bool
	loadedAt time.Time
	entries  []uriEntry // most specific first
	// failedAt and lastErr are the last failed load's, so that a request
	// soon after fails fast instead of asking the AS again.
	failedAt time.Time
	lastErr  error

	loading atomic.Bool
	loads   flightGroup[struct{}]
}

// loadRetry is how long after a failed first listing requests fail fast.
const loadRetry = 2 * time.Second

type uriEntry struct {
	pattern pattern
	res     Resource
}

// match returns the registered resource whose uris best match the request,
// loading the list first if there is none yet. err is set when the list
// could not be loaded and no earlier list exists.
func (x *uriIndex) match(ctx context.Context, host string, segs []string) (Resource, bool, error) {
	now := x.now()
	x.mu.RLock()
	loaded, stale := x.loaded, now.Sub(x.loadedAt) >= x.refresh
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
	for _, e := range x.entries {
		if _, ok := e.pattern.match(host, segs, nil); ok {
			return e.res, true, nil
		}
	}
	return Resource{}, false, err
}

// load lists the registered resources. Concurrent loads share one call.
func (x *uriIndex) load(ctx context.Context) error {
	_, err := x.loads.do("", func() (struct{}, error) {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), x.timeout)
		defer cancel()
		list, err := x.as.RegisteredResources(ctx)
		if err != nil {
			x.log.Warn("listing the registered resources failed", zap.Error(err))
			x.mu.Lock()
			x.failedAt, x.lastErr = x.now(), err
			x.mu.Unlock()
			return struct{}{}, err
		}
		var entries []uriEntry
		for _, res := range list {
			for _, u := range res.URIs {
				p, err := compilePattern(u)
				if err != nil {
					x.log.Debug("ignoring a registered uri", zap.String("resource_id", res.ID), zap.Error(err))
					continue
				}
				entries = append(entries, uriEntry{pattern: p, res: res})
			}
		}
		slices.SortStableFunc(entries, func(a, b uriEntry) int {
			if d := b.pattern.specificity() - a.pattern.specificity(); d != 0 {
				return d
			}
			switch {
			case a.res.ID < b.res.ID:
				return -1
			case a.res.ID > b.res.ID:
				return 1
			}
			return 0
		})
		x.mu.Lock()
		x.entries, x.loaded, x.loadedAt = entries, true, x.now()
		x.mu.Unlock()
		return struct{}{}, nil
	})
	return err
}

// invalidate makes the next request list the resources again.
func (x *uriIndex) invalidate() {
	if x == nil {
		return
	}
	x.mu.Lock()
	x.loadedAt = time.Time{}
	x.mu.Unlock()
}
