// Package jwks keeps a remote JSON Web Key Set (RFC 7517) for the
// verification of signed tokens, and picks the key of the set that should
// verify a token. The enforcement point reads its AS's key set with it, the
// AS the key sets of the issuers of claim tokens and ID tokens.
//
// # Fetching
//
// A Set is fetched on first use (or when Refresh is called) and refreshed
// in the background every Config.RefreshInterval; a failed refresh keeps
// the keys already known. A token whose kid is not in the set makes the Set
// fetch it again at once, so that a key rotation is picked up by the first
// token signed with the new key. Such on-demand fetches happen at most once
// per Config.MinRefresh, measured on Config.Now: a flood of tokens with
// made-up kids costs the key set's server one request per interval.
// Concurrent callers share a fetch in progress and its outcome.
//
// After a failed fetch (the server was down at start, or is down now and a
// token names a kid the set lacks), the next on-demand fetch may start
// Config.RetryInterval (1 s) later instead: callers get ErrUnavailable
// until then, and the first caller after it fetches again, so a set whose
// server comes back is usable within about a second of the next token,
// at the cost of at most one request per second to a server that is
// failing anyway. The first successful fetch brings back MinRefresh. The
// first failure in a row is logged as a warning, the others at debug
// level, and the recovery at info level.
//
// A fetch, once started, is not interrupted by the caller that started it:
// a caller whose context ends stops waiting, and the fetch goes on for the
// others (bounded by the HTTP client's timeout and fetchTimeout).
//
// Each Set has a jwk.Cache (httprc) of its own, so that a failed
// background fetch is known to be that set's.
//
// # Key selection
//
// A token's key is the key with its kid or, when the token has no kid, the
// only signing key of the set (several are an error). The key must be a
// signing key (no "use", or "use": "sig", and a key type jwx supports), and
// its "alg", when it has one, must equal the token's alg. A key without alg
// may verify any algorithm its key type supports: the verifier refuses a
// mismatched type.
package jwks

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lestrrat-go/httprc/v3"
	"github.com/lestrrat-go/httprc/v3/errsink"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"go.uber.org/zap"
	"golang.org/x/sync/singleflight"
)

// Defaults of Config.
const (
	DefaultRefreshInterval = 15 * time.Minute
	DefaultMinRefresh      = 30 * time.Second
	DefaultRetryInterval   = time.Second
	defaultHTTPTimeout     = 10 * time.Second
)

const (
	// MaxSetSize bounds a key set document, in bytes.
	MaxSetSize = 1 << 20
	// fetchTimeout bounds one fetch (discovery of the URL included), in
	// case the HTTP client has no timeout of its own.
	fetchTimeout = time.Minute
	// shutdownTimeout bounds the wait for the cache's goroutines in Close.
	shutdownTimeout = 5 * time.Second
)

// Errors of Set.Key and Set.Refresh.
var (
	// ErrUnavailable means that the key set could not be fetched: there
	// is none yet, or the token's key is not in the set and fetching it
	// again failed. The error wraps the cause.
	ErrUnavailable = errors.New("key set is unavailable")
	// ErrUnknownKey means that the set has no key with the token's kid,
	// or no signing key at all for a token without kid.
	ErrUnknownKey = errors.New("no key of the key set fits the token")
	// ErrAmbiguousKey means that the token has no kid and the set has
	// several signing keys.
	ErrAmbiguousKey = errors.New("the token has no kid and the key set has several signing keys")
	// ErrNotSigningKey means that the key the token names is not for
	// signatures.
	ErrNotSigningKey = errors.New("key is not a signing key")
	// ErrAlgorithmMismatch means that the key the token names is for
	// another algorithm than the token's.
	ErrAlgorithmMismatch = errors.New("key is for another algorithm")
)

// errClosed reports a fetch after Close.
var errClosed = errors.New("the key set is closed")

// Config configures a Set.
type Config struct {
	// URL is the key set's URL. When it is empty, Resolve finds it.
	URL string
	// Resolve returns the key set's URL (from a discovery document, say).
	// It is called on the first fetch, and again on later ones until it
	// succeeds; its failures count as failed fetches.
	Resolve func(ctx context.Context) (string, error)
	// HTTPClient fetches the set; nil means a client with a 10 s timeout.
	HTTPClient *http.Client
	// RefreshInterval is how often the set is fetched in the background
	// (default DefaultRefreshInterval). It is measured on the real clock.
	RefreshInterval time.Duration
	// MinRefresh is the least time between two on-demand fetches after a
	// successful one (default DefaultMinRefresh).
	MinRefresh time.Duration
	// RetryInterval is the least time between two on-demand fetches after
	// a failed one (default DefaultRetryInterval, at most MinRefresh).
	RetryInterval time.Duration
	// Now is the clock of the on-demand rate limit; nil means time.Now.
	Now func() time.Time
	// Logger receives the first failed fetch of a run (warning), the
	// others (debug), the recovery (info) and fetches (debug); nil means
	// none. Give it fields that name the set's owner.
	Logger *zap.Logger
}

// Header is what key selection reads of a token's protected header.
type Header struct {
	// KeyID is the token's kid; HasKeyID says whether it has one.
	KeyID    string
	HasKeyID bool
	// Algorithm is the token's alg, a JWA name.
	Algorithm string
}

// KeyError says why no key of the set fits a token. It matches (with
// errors.Is) one of ErrUnknownKey, ErrAmbiguousKey, ErrNotSigningKey and
// ErrAlgorithmMismatch.
type KeyError struct {
	// Err is the sentinel.
	Err error
	// Header is the token's.
	Header Header
	// SigningKeys is how many signing keys the set has (ErrAmbiguousKey).
	SigningKeys int
	// KeyAlgorithm is the alg of the key the token names
	// (ErrAlgorithmMismatch).
	KeyAlgorithm string
}

func (e *KeyError) Error() string {
	switch e.Err {
	case ErrUnknownKey:
		if e.Header.HasKeyID {
			return fmt.Sprintf("no key with kid %q", e.Header.KeyID)
		}
		return "no signing key"
	case ErrAmbiguousKey:
		return fmt.Sprintf("the token has no kid and the key set has %d signing keys", e.SigningKeys)
	case ErrNotSigningKey:
		return fmt.Sprintf("key %q is not a signing key", e.Header.KeyID)
	case ErrAlgorithmMismatch:
		return fmt.Sprintf("key %q is for algorithm %q, not %q", e.Header.KeyID, e.KeyAlgorithm, e.Header.Algorithm)
	}
	return e.Err.Error()
}

// Unwrap returns the sentinel.
func (e *KeyError) Unwrap() error { return e.Err }

// Set is a remote key set. It is safe for concurrent use. Close stops its
// background work.
type Set struct {
	url             string
	resolve         func(ctx context.Context) (string, error)
	http            *http.Client
	refreshInterval time.Duration
	minRefresh      time.Duration
	retryInterval   time.Duration
	now             func() time.Time
	log             *zap.Logger

	life   context.Context // done after Close
	cancel context.CancelFunc
	cache  *jwk.Cache
	// res is the set's cache entry once registered; its Resource is nil
	// until the first successful fetch.
	res atomic.Pointer[httprc.ResourceBase[jwk.Set]]
	// backgroundFailed receives failures of the cache's own fetches.
	backgroundFailed chan error
	flight           singleflight.Group

	// mu guards the fields below; only one fetch runs at a time (flight).
	mu          sync.Mutex
	registered  string // the URL registered with the cache
	lastAttempt time.Time
	lastErr     error // outcome of the last fetch
	failures    int   // failed fetches in a row
	closed      bool
	fetching    sync.WaitGroup

	closeOnce sync.Once
	closeErr  error
}

// New returns a Set for cfg. It fetches nothing yet. ctx bounds the set's
// background work, as Close does.
func New(ctx context.Context, cfg Config) (*Set, error) {
	if cfg.URL == "" && cfg.Resolve == nil {
		return nil, errors.New("jwks: a key set URL or a way to resolve it is required")
	}
	s := &Set{
		url:              cfg.URL,
		resolve:          cfg.Resolve,
		http:             cfg.HTTPClient,
		refreshInterval:  cfg.RefreshInterval,
		minRefresh:       cfg.MinRefresh,
		retryInterval:    cfg.RetryInterval,
		now:              cfg.Now,
		log:              cfg.Logger,
		backgroundFailed: make(chan error, 1),
	}
	if s.http == nil {
		s.http = &http.Client{Timeout: defaultHTTPTimeout}
	}
	if s.refreshInterval <= 0 {
		s.refreshInterval = DefaultRefreshInterval
	}
	if s.minRefresh <= 0 {
		s.minRefresh = DefaultMinRefresh
	}
	if s.retryInterval <= 0 {
		s.retryInterval = DefaultRetryInterval
	}
	s.retryInterval = min(s.retryInterval, s.minRefresh)
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = zap.NewNop()
	}
	s.life, s.cancel = context.WithCancel(ctx)
	client := httprc.NewClient(
		httprc.WithWorkers(1),
		httprc.WithHTTPClient(s.http),
		httprc.WithErrorSink(errsink.NewFunc(s.backgroundFetchFailed)),
	)
	cache, err := jwk.NewCache(s.life, client)
	if err != nil {
		s.cancel()
		return nil, fmt.Errorf("jwks: starting the key cache: %w", err)
	}
	s.cache = cache
	return s, nil
}

// backgroundFetchFailed receives the errors of fetches the cache makes on
// its own: the first one after registration and the periodic refreshes.
func (s *Set) backgroundFetchFailed(_ context.Context, err error) {
	s.log.Warn("fetching the key set failed", zap.Error(err))
	select {
	case s.backgroundFailed <- err:
	default:
	}
}

// current returns the key set, or nil before the first successful fetch.
func (s *Set) current() jwk.Set {
	if res := s.res.Load(); res != nil {
		return res.Resource()
	}
	return nil
}

// Key returns the key of the set that should verify a token with header
// h. It fetches the set when there is none yet, and again when the set has
// no key for h (within the rate limit). The error matches ErrUnavailable
// (wrapping the cause, or ctx's error when ctx ended) or is a *KeyError.
func (s *Set) Key(ctx context.Context, h Header) (jwk.Key, error) {
	set := s.current()
	if set == nil {
		err := s.Refresh(ctx)
		if set = s.current(); set == nil {
			if err == nil {
				err = fmt.Errorf("%w: no key set was fetched", ErrUnavailable)
			}
			return nil, err
		}
	}
	key, err := selectKey(set, h)
	if errors.Is(err, ErrUnknownKey) {
		// Perhaps the keys were rotated.
		s.log.Debug("no key for the token, fetching the key set again", zap.String("kid", h.KeyID))
		fetchErr := s.Refresh(ctx)
		key, err = selectKey(s.current(), h)
		if errors.Is(err, ErrUnknownKey) && fetchErr != nil {
			return nil, fetchErr
		}
	}
	return key, err
}

// Refresh fetches the set now, unless a fetch started less than
// MinRefresh ago (RetryInterval, if that fetch failed): then it returns
// the outcome of that fetch, sharing it if it is still in progress. An error matches ErrUnavailable; when ctx ends first, it also
// wraps ctx's error.
func (s *Set) Refresh(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	ch := s.flight.DoChan("", func() (any, error) { return nil, s.fetch() })
	select {
	case res := <-ch:
		return res.Err
	case <-ctx.Done():
		return fmt.Errorf("%w: %w", ErrUnavailable, ctx.Err())
	}
}

// fetch runs one fetch, unless the rate limit says no. It runs detached
// from its callers, one at a time.
func (s *Set) fetch() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return fmt.Errorf("%w: %w", ErrUnavailable, errClosed)
	}
	now := s.now()
	if !s.lastAttempt.IsZero() && now.Sub(s.lastAttempt) < s.nextFetchAfter() {
		err := s.lastErr
		s.mu.Unlock()
		return err
	}
	s.lastAttempt = now
	s.fetching.Add(1)
	s.mu.Unlock()
	defer s.fetching.Done()

	ctx, cancel := context.WithTimeout(s.life, fetchTimeout)
	defer cancel()
	u, logged, err := s.sync(ctx)

	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.failures++
		switch {
		case logged:
		case s.failures == 1:
			s.log.Warn("fetching the key set failed; retrying on demand", zap.String("jwks_uri", u), zap.Error(err))
		default:
			s.log.Debug("fetching the key set failed again", zap.String("jwks_uri", u), zap.Int("failures", s.failures), zap.Error(err))
		}
		s.lastErr = fmt.Errorf("%w: %w", ErrUnavailable, err)
		return s.lastErr
	}
	if s.failures > 0 {
		s.log.Info("fetched the key set again", zap.String("jwks_uri", u), zap.Int("failures", s.failures))
	} else {
		s.log.Debug("fetched the key set", zap.String("jwks_uri", u))
	}
	s.failures = 0
	s.lastErr = nil
	return nil
}

// nextFetchAfter is how long after the last fetch started another may:
// RetryInterval if it failed, MinRefresh if it succeeded. It is called
// with mu held.
func (s *Set) nextFetchAfter() time.Duration {
	if s.lastErr != nil {
		return s.retryInterval
	}
	return s.minRefresh
}

// sync fetches the set. The first time, it resolves the URL if needed,
// registers it with the cache and waits for the cache's first fetch;
// later, it asks the cache to fetch again. It returns the URL, and whether
// a failure was already logged.
func (s *Set) sync(ctx context.Context) (string, bool, error) {
	s.mu.Lock()
	u := s.registered
	s.mu.Unlock()
	if u == "" {
		return s.register(ctx)
	}
	if s.res.Load() == nil {
		res, err := s.cache.LookupResource(s.life, u)
		if err != nil {
			return u, false, err
		}
		s.res.Store(res)
	}
	_, err := s.cache.Refresh(ctx, u)
	return u, false, err
}

// register resolves the URL if needed, registers it with the cache and
// waits for the outcome of the cache's first fetch.
func (s *Set) register(ctx context.Context) (string, bool, error) {
	u := s.url
	if u == "" {
		var err error
		if u, err = s.resolve(ctx); err != nil {
			return "", false, fmt.Errorf("finding the key set's URL: %w", err)
		}
	}
	for len(s.backgroundFailed) > 0 {
		<-s.backgroundFailed
	}
	// Registration only talks to the cache's goroutines; s.life keeps a
	// timeout from leaving it half done.
	err := s.cache.Register(s.life, u,
		jwk.WithWaitReady(false),
		jwk.WithHTTPClient(s.http),
		jwk.WithMaxFetchBodySize(MaxSetSize),
		jwk.WithConstantInterval(s.refreshInterval),
		// Retry after a failed background fetch.
		jwk.WithMinInterval(max(s.minRefresh, time.Second)),
	)
	if err != nil {
		return u, false, fmt.Errorf("registering key set %s: %w", u, err)
	}
	s.mu.Lock()
	s.registered = u
	s.mu.Unlock()
	res, err := s.cache.LookupResource(s.life, u)
	if err != nil {
		return u, false, err
	}
	s.res.Store(res)

	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ready := make(chan error, 1)
	go func() { ready <- res.Ready(wctx) }()
	select {
	case err := <-ready:
		return u, false, err
	case err := <-s.backgroundFailed:
		return u, true, err
	}
}

// selectKey picks the key of set for a token with header h.
func selectKey(set jwk.Set, h Header) (jwk.Key, error) {
	if set == nil {
		return nil, &KeyError{Err: ErrUnknownKey, Header: h}
	}
	var key jwk.Key
	if h.HasKeyID {
		k, ok := set.LookupKeyID(h.KeyID)
		if !ok {
			return nil, &KeyError{Err: ErrUnknownKey, Header: h}
		}
		key = k
	} else {
		n := 0
		for i := range set.Len() {
			k, _ := set.Key(i)
			if signingKey(k) {
				key = k
				n++
			}
		}
		switch {
		case n == 0:
			return nil, &KeyError{Err: ErrUnknownKey, Header: h}
		case n > 1:
			return nil, &KeyError{Err: ErrAmbiguousKey, Header: h, SigningKeys: n}
		}
	}
	if !signingKey(key) {
		return nil, &KeyError{Err: ErrNotSigningKey, Header: h}
	}
	if alg, ok := key.Algorithm(); ok && alg.String() != h.Algorithm {
		return nil, &KeyError{Err: ErrAlgorithmMismatch, Header: h, KeyAlgorithm: alg.String()}
	}
	return key, nil
}

// signingKey reports whether k may verify signatures: a supported key type
// not reserved for encryption.
func signingKey(k jwk.Key) bool {
	if jwk.IsUnsupportedKey(k) {
		return false
	}
	use, ok := k.KeyUsage()
	return !ok || use == "" || use == jwk.ForSignature.String()
}

// Close stops the background refreshes and waits for a fetch in progress.
// Key keeps working with the keys fetched so far, but fetches no more.
func (s *Set) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		s.cancel()
		s.fetching.Wait()
		ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
		defer cancel()
		s.closeErr = s.cache.Shutdown(ctx)
	})
	return s.closeErr
}
