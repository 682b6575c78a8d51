package pep

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/lestrrat-go/httprc/v3"
	"github.com/lestrrat-go/httprc/v3/errsink"
	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
	"go.uber.org/zap"
)

// keyRefreshInterval is how often the JWKS is fetched in the background.
const keyRefreshInterval = 15 * time.Minute

// errRateLimited reports a key fetch skipped because another one happened
// less than the minimum refresh interval ago.
var errRateLimited = errors.New("keys were fetched too recently")

// keySet holds the AS's JWKS in a jwk.Cache, created on first use. The
// cache refreshes it in the background; a token whose kid is unknown makes
// it fetch again at once, at most once per minRefresh.
type keySet struct {
	http       *http.Client
	minRefresh time.Duration
	now        func() time.Time
	log        *zap.Logger

	life   context.Context
	cancel context.CancelFunc

	// sem admits one fetch at a time and guards the fields below.
	sem       chan struct{}
	cache     *jwk.Cache
	url       string // registered with the cache
	lastFetch time.Time
	fetchErr  error

	closeOnce sync.Once
}

func newKeySet(hc *http.Client, minRefresh time.Duration, now func() time.Time, log *zap.Logger) (*keySet, error) {
	life, cancel := context.WithCancel(context.Background())
	return &keySet{
		http: hc, minRefresh: minRefresh, now: now, log: log,
		life: life, cancel: cancel, sem: make(chan struct{}, 1),
	}, nil
}

func (k *keySet) close() error {
	var err error
	k.closeOnce.Do(func() {
		k.sem <- struct{}{}
		cache := k.cache
		<-k.sem
		k.cancel()
		if cache != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			err = cache.Shutdown(ctx)
		}
	})
	return err
}

// current returns the cached set of u, or nil.
func (k *keySet) current(ctx context.Context, u string) jwk.Set {
	select {
	case k.sem <- struct{}{}:
	case <-ctx.Done():
		return nil
	}
	cache, registered := k.cache, k.url == u
	<-k.sem
	if cache == nil || !registered {
		return nil
	}
	set, err := cache.Lookup(ctx, u)
	if err != nil {
		return nil
	}
	return set
}

// fetch fetches the set at u now, unless a fetch happened less than
// minRefresh ago (errRateLimited, or that fetch's error).
func (k *keySet) fetch(ctx context.Context, u string) error {
	select {
	case k.sem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-k.sem }()
	if err := k.life.Err(); err != nil {
		return err
	}
	now := k.now()
	if k.url == u && !k.lastFetch.IsZero() && now.Sub(k.lastFetch) < k.minRefresh {
		if k.fetchErr != nil {
			return k.fetchErr
		}
		return errRateLimited
	}
	k.lastFetch = now
	k.fetchErr = k.fetchLocked(ctx, u)
	if k.fetchErr != nil {
		k.log.Warn("fetching the authorization server's JWKS failed", zap.String("jwks_uri", u), zap.Error(k.fetchErr))
	}
	return k.fetchErr
}

func (k *keySet) fetchLocked(ctx context.Context, u string) error {
	if k.cache == nil {
		client := httprc.NewClient(
			httprc.WithWorkers(1),
			httprc.WithErrorSink(errsink.NewFunc(func(_ context.Context, err error) {
				k.log.Debug("background JWKS fetch failed", zap.Error(err))
			})),
		)
		cache, err := jwk.NewCache(k.life, client)
		if err != nil {
			return fmt.Errorf("starting the key cache: %w", err)
		}
		k.cache = cache
	}
	if k.url != u {
		if k.url != "" {
			_ = k.cache.Unregister(ctx, k.url)
		}
		err := k.cache.Register(k.life, u,
			jwk.WithWaitReady(false),
			jwk.WithHTTPClient(k.http),
			jwk.WithMaxFetchBodySize(maxResponseBytes),
			jwk.WithConstantInterval(keyRefreshInterval),
		)
		if err != nil {
			return fmt.Errorf("registering the key set: %w", err)
		}
		k.url = u
	}
	if _, err := k.cache.Refresh(ctx, u); err != nil {
		return fmt.Errorf("%w: fetching the JWKS: %v", ErrUnavailable, err)
	}
	return nil
}

// key returns the key for kid (or the only signing key when kid is empty),
// fetching the set when there is none yet or it lacks kid.
func (k *keySet) key(ctx context.Context, u, kid string) (jwk.Key, error) {
	set := k.current(ctx, u)
	if set == nil {
		if err := k.fetch(ctx, u); err != nil && !errors.Is(err, errRateLimited) {
			return nil, err
		}
		if set = k.current(ctx, u); set == nil {
			return nil, fmt.Errorf("%w: the JWKS is not available", ErrUnavailable)
		}
	}
	key, ok := selectKey(set, kid)
	if !ok {
		// Perhaps the AS rotated its keys.
		if err := k.fetch(ctx, u); err != nil && !errors.Is(err, errRateLimited) {
			return nil, err
		}
		if set = k.current(ctx, u); set != nil {
			key, ok = selectKey(set, kid)
		}
	}
	if !ok {
		return nil, ErrInvalidRPT
	}
	return key, nil
}

func selectKey(set jwk.Set, kid string) (jwk.Key, bool) {
	if kid != "" {
		return set.LookupKeyID(kid)
	}
	var found jwk.Key
	n := 0
	for i := range set.Len() {
		k, _ := set.Key(i)
		if use, ok := k.KeyUsage(); !ok || use == "" || use == jwk.ForSignature.String() {
			found = k
			n++
		}
	}
	return found, n == 1
}

// rptClaims are the claims of a JWT RPT: ours (permissions) and
// Keycloak's (authorization.permissions).
type rptClaims struct {
	Issuer        string            `json:"iss"`
	Subject       string            `json:"sub"`
	Audience      json.RawMessage   `json:"aud"`
	ExpiresAt     *float64          `json:"exp"`
	NotBefore     float64           `json:"nbf"`
	IssuedAt      float64           `json:"iat"`
	JTI           string            `json:"jti"`
	AZP           string            `json:"azp"`
	ClientID      string            `json:"client_id"`
	Permissions   *[]wirePermission `json:"permissions"`
	Authorization struct {
		Permissions *[]wirePermission `json:"permissions"`
	} `json:"authorization"`
}

// verifyJWT verifies a JWT RPT with the AS's keys: an asymmetric algorithm
// matching the key, a valid signature, iss equal to the issuer, aud naming
// this resource server, exp present and not past, nbf and iat not in the
// future (with clockSkew). Any failure is ErrInvalidRPT, except keys that
// cannot be fetched (ErrUnavailable).
func (r *Remote) verifyJWT(ctx context.Context, md *metadata, token string) (*RPT, error) {
	parts := strings.Split(token, ".")
	var hdr struct {
		Alg  string          `json:"alg"`
		Kid  string          `json:"kid"`
		Crit json.RawMessage `json:"crit"`
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil || json.Unmarshal(raw, &hdr) != nil || hdr.Crit != nil {
		return nil, ErrInvalidRPT
	}
	alg, ok := jwa.LookupSignatureAlgorithm(hdr.Alg)
	if !ok || alg == jwa.NoSignature() || alg.IsSymmetric() {
		return nil, ErrInvalidRPT
	}
	key, err := r.keys.key(ctx, md.JWKSURI, hdr.Kid)
	if err != nil {
		return nil, err
	}
	if ka, ok := key.Algorithm(); ok && ka.String() != alg.String() {
		return nil, ErrInvalidRPT
	}
	payload, err := jws.Verify([]byte(token), jws.WithKey(alg, key))
	if err != nil {
		return nil, ErrInvalidRPT
	}
	var c rptClaims
	if err := json.Unmarshal(payload, &c); err != nil {
		return nil, ErrInvalidRPT
	}
	now := r.now()
	switch {
	case c.Issuer != r.issuer:
		return nil, ErrInvalidRPT
	case !slices.Contains(audiences(c.Audience), r.clientID):
		return nil, ErrInvalidRPT
	case c.ExpiresAt == nil || !now.Before(time.Unix(int64(*c.ExpiresAt), 0)):
		return nil, ErrInvalidRPT
	case c.NotBefore > 0 && now.Add(clockSkew).Before(time.Unix(int64(c.NotBefore), 0)):
		return nil, ErrInvalidRPT
	case c.IssuedAt > 0 && now.Add(clockSkew).Before(time.Unix(int64(c.IssuedAt), 0)):
		return nil, ErrInvalidRPT
	case c.Permissions == nil && c.Authorization.Permissions == nil:
		return nil, ErrInvalidRPT // an access token, not an RPT
	}
	rpt := &RPT{ID: c.JTI, Subject: c.Subject, ClientID: c.ClientID, ExpiresAt: time.Unix(int64(*c.ExpiresAt), 0)}
	if rpt.ClientID == "" {
		rpt.ClientID = c.AZP
	}
	perms := c.Permissions
	if perms == nil {
		perms = c.Authorization.Permissions
	}
	for _, p := range *perms {
		perm := p.permission()
		if c.NotBefore > 0 && (perm.NotBefore.IsZero() || perm.NotBefore.Before(time.Unix(int64(c.NotBefore), 0))) {
			perm.NotBefore = time.Unix(int64(c.NotBefore), 0)
		}
		rpt.Permissions = append(rpt.Permissions, perm)
	}
	return rpt, nil
}
