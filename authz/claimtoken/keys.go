package claimtoken

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/lestrrat-go/httprc/v3"
	"github.com/lestrrat-go/httprc/v3/errsink"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"go.uber.org/zap"

	"github.com/caddy-uma/caddy-uma/authz/urlcheck"
)

// maxDocumentSize bounds discovery documents and key sets, in bytes.
const maxDocumentSize = 1 << 20

// errRateLimited reports a fetch skipped because another one started less
// than MinRefreshInterval ago.
var errRateLimited = errors.New("keys were fetched too recently")

// errClosed reports a fetch after the verifier was closed.
var errClosed = errors.New("verifier is closed")

// errUnknownKey reports that a key set has no key for a token.
var errUnknownKey = errors.New("no matching key")

// issuerKeys holds the key set of one trusted issuer. Each issuer has a
// jwk.Cache of its own, so that a failed background fetch reported to the
// cache's error sink is known to be this issuer's.
type issuerKeys struct {
	cfg          issuerConfig
	life         context.Context // the verifier's; done after Close
	now          func() time.Time
	minRefresh   time.Duration
	refreshEvery time.Duration
	http         *http.Client
	log          *zap.Logger
	cache        *jwk.Cache

	// res is the key set's cache entry once registered; its Resource is
	// nil until the first successful fetch.
	res atomic.Pointer[httprc.ResourceBase[jwk.Set]]
	// fetchFailed receives failures of the cache's own (background)
	// fetches.
	fetchFailed chan error

	// sem admits one fetch at a time and guards the fields below.
	sem         chan struct{}
	lastAttempt time.Time
	failures    int    // failed fetches in a row
	jwksURL     string // registered with the cache
}

func newIssuerKeys(life context.Context, cfg issuerConfig, opts Options, hc *http.Client) (*issuerKeys, error) {
	ik := &issuerKeys{
		cfg:          cfg,
		life:         life,
		now:          opts.Now,
		minRefresh:   opts.MinRefreshInterval,
		refreshEvery: opts.RefreshInterval,
		http:         hc,
		log:          opts.Logger.With(zap.String("issuer", cfg.Issuer)),
		fetchFailed:  make(chan error, 1),
		sem:          make(chan struct{}, 1),
	}
	client := httprc.NewClient(
		httprc.WithWorkers(1),
		httprc.WithHTTPClient(hc),
		httprc.WithErrorSink(errsink.NewFunc(ik.backgroundFetchFailed)),
	)
	cache, err := jwk.NewCache(life, client)
	if err != nil {
		return nil, fmt.Errorf("starting key cache: %w", err)
	}
	ik.cache = cache
	return ik, nil
}

// backgroundFetchFailed receives the errors of fetches the cache makes on
// its own: the first one after registration and the periodic refreshes.
func (ik *issuerKeys) backgroundFetchFailed(_ context.Context, err error) {
	ik.log.Warn("fetching claim token signing keys failed", zap.Error(err))
	select {
	case ik.fetchFailed <- err:
	default:
	}
}

// current returns the key set, or nil before the first successful fetch.
func (ik *issuerKeys) current() jwk.Set {
	if res := ik.res.Load(); res != nil {
		return res.Resource()
	}
	return nil
}

// keyFor returns the key of this issuer that should verify tok. It fetches
// the key set if there is none yet, and again if it has no key for tok's
// kid, both within the refresh rate limit.
func (ik *issuerKeys) keyFor(ctx context.Context, tok compactToken) (jwk.Key, error) {
	set := ik.current()
	if set == nil {
		err := ik.refresh(ctx)
		if set = ik.current(); set == nil {
			return nil, ik.unavailable(err)
		}
	}
	key, err := selectKey(set, tok)
	if errors.Is(err, errUnknownKey) {
		// Perhaps the issuer has rotated its keys.
		ik.log.Debug("no key for claim token, fetching keys again", zap.String("kid", tok.kid))
		fetchErr := ik.refresh(ctx)
		key, err = selectKey(ik.current(), tok)
		if errors.Is(err, errUnknownKey) && fetchErr != nil && !errors.Is(fetchErr, errRateLimited) {
			return nil, ik.unavailable(fetchErr)
		}
	}
	if errors.Is(err, errUnknownKey) {
		if tok.hasKid {
			return nil, fmt.Errorf("%w: issuer %q has no key with kid %s", ErrSignature, ik.cfg.Issuer, quote(tok.kid))
		}
		return nil, fmt.Errorf("%w: issuer %q has no signing key", ErrSignature, ik.cfg.Issuer)
	}
	return key, err
}

// unavailable is the error for keys that could not be fetched because of
// err. The cause was logged where it happened; it is not returned, for it
// may describe the network.
func (ik *issuerKeys) unavailable(err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%w: fetching the keys of issuer %q was interrupted: %w", ErrKeysUnavailable, ik.cfg.Issuer, err)
	}
	return fmt.Errorf("%w: the keys of issuer %q cannot be fetched now", ErrKeysUnavailable, ik.cfg.Issuer)
}

// selectKey picks the key of set that tok names, or the only signing key
// when tok has no kid. errUnknownKey means there is no such key.
func selectKey(set jwk.Set, tok compactToken) (jwk.Key, error) {
	if set == nil {
		return nil, errUnknownKey
	}
	var key jwk.Key
	if tok.hasKid {
		k, ok := set.LookupKeyID(tok.kid)
		if !ok {
			return nil, errUnknownKey
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
			return nil, errUnknownKey
		case n > 1:
			return nil, fmt.Errorf("%w: the token has no kid and the issuer has %d signing keys", ErrSignature, n)
		}
	}
	if !signingKey(key) {
		return nil, fmt.Errorf("%w: key %s is not a signing key", ErrSignature, quote(tok.kid))
	}
	// A key without alg may verify any accepted algorithm its type
	// supports; jwx refuses a mismatched type when it verifies.
	if alg, ok := key.Algorithm(); ok && alg.String() != tok.alg {
		return nil, fmt.Errorf("%w: key %s is for algorithm %s, not %s", ErrSignature, quote(tok.kid), quote(alg.String()), quote(tok.alg))
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

// refresh fetches the key set (discovering its URL first if needed),
// unless a fetch started less than MinRefreshInterval ago, in which case
// it returns errRateLimited. Callers that wait while another fetch runs
// then see its result through current.
func (ik *issuerKeys) refresh(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(ik.life, cancel)()

	select {
	case ik.sem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-ik.sem }()
	if ik.life.Err() != nil {
		return errClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	now := ik.now()
	if !ik.lastAttempt.IsZero() && now.Sub(ik.lastAttempt) < ik.retryInterval() {
		return errRateLimited
	}
	ik.lastAttempt = now
	if err := ik.fetch(ctx); err != nil {
		ik.failures++
		ik.log.Warn("fetching claim token signing keys failed", zap.Error(err))
		return err
	}
	ik.failures = 0
	ik.log.Debug("fetched claim token signing keys", zap.String("jwks_uri", ik.jwksURL))
	return nil
}

// retryInterval is how long after a fetch another may start. Until a key
// set was ever fetched (the issuer was unreachable when the AS started, as
// when both start in one process), failed fetches are retried sooner:
// after 1s, doubling up to MinRefreshInterval. It is called with sem held.
func (ik *issuerKeys) retryInterval() time.Duration {
	if ik.current() != nil {
		return ik.minRefresh
	}
	return min(time.Second<<min(ik.failures, 10), ik.minRefresh)
}

// fetch fetches the key set. The first time, it discovers the key set's
// URL if needed, registers it with the cache and waits for the cache's
// first fetch; later, it asks the cache to fetch again. It is called with
// sem held.
func (ik *issuerKeys) fetch(ctx context.Context) error {
	first := false
	if ik.jwksURL == "" {
		u := ik.cfg.JWKSURI
		if u == "" {
			var err error
			if u, err = ik.discover(ctx); err != nil {
				return err
			}
		}
		for len(ik.fetchFailed) > 0 {
			<-ik.fetchFailed
		}
		// Registration only talks to the cache's goroutines; ik.life
		// keeps an impatient caller from leaving it half done.
		err := ik.cache.Register(ik.life, u,
			jwk.WithWaitReady(false),
			jwk.WithHTTPClient(ik.http),
			jwk.WithMaxFetchBodySize(maxDocumentSize),
			jwk.WithConstantInterval(ik.refreshEvery),
			// Retry after a failed background fetch.
			jwk.WithMinInterval(max(ik.minRefresh, time.Second)),
		)
		if err != nil {
			return fmt.Errorf("registering key set %s: %w", u, err)
		}
		ik.jwksURL = u
		first = true
	}
	if ik.res.Load() == nil {
		res, err := ik.cache.LookupResource(ik.life, ik.jwksURL)
		if err != nil {
			return err
		}
		ik.res.Store(res)
	}
	if !first {
		_, err := ik.cache.Refresh(ctx, ik.jwksURL)
		return err
	}

	// Registration started the cache's first fetch: wait for its outcome.
	res := ik.res.Load()
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ready := make(chan error, 1)
	go func() { ready <- res.Ready(wctx) }()
	select {
	case err := <-ready:
		return err
	case err := <-ik.fetchFailed:
		return err
	}
}

// discover reads the key set URL from the issuer's OpenID Provider
// metadata, whose issuer must equal the configured one exactly.
func (ik *issuerKeys) discover(ctx context.Context) (string, error) {
	u := strings.TrimSuffix(ik.cfg.Issuer, "/") + "/.well-known/openid-configuration"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return "", fmt.Errorf("discovery: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	res, err := ik.http.Do(req)
	if err != nil {
		return "", fmt.Errorf("discovery: %w", err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return "", fmt.Errorf("discovery: %s answered %s", u, res.Status)
	}
	body, err := io.ReadAll(io.LimitReader(res.Body, maxDocumentSize+1))
	if err != nil {
		return "", fmt.Errorf("discovery: reading %s: %w", u, err)
	}
	if len(body) > maxDocumentSize {
		return "", fmt.Errorf("discovery: %s is larger than %d bytes", u, maxDocumentSize)
	}
	var doc struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return "", fmt.Errorf("discovery: decoding %s: %w", u, err)
	}
	if doc.Issuer != ik.cfg.Issuer {
		return "", fmt.Errorf("discovery: %s names issuer %q, not %q", u, doc.Issuer, ik.cfg.Issuer)
	}
	if err := urlcheck.Absolute(doc.JWKSURI, true); err != nil {
		return "", fmt.Errorf("discovery: jwks_uri %q in %s: %w", doc.JWKSURI, u, err)
	}
	iu, _ := url.Parse(ik.cfg.Issuer)
	if ju, _ := url.Parse(doc.JWKSURI); iu.Scheme == "https" && ju.Scheme != "https" {
		return "", fmt.Errorf("discovery: jwks_uri %q of an https issuer is not https", doc.JWKSURI)
	}
	return doc.JWKSURI, nil
}

func (ik *issuerKeys) close(ctx context.Context) error {
	return ik.cache.Shutdown(ctx)
}
