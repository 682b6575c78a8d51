package claimtoken

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/lestrrat-go/jwx/v3/jwk"
	"go.uber.org/zap"

	"github.com/caddy-uma/caddy-uma/authz/jwks"
	"github.com/caddy-uma/caddy-uma/authz/metadata"
)

// issuerKeys holds the key set of one trusted issuer.
type issuerKeys struct {
	cfg  issuerConfig
	keys *jwks.Set
	http *http.Client
	log  *zap.Logger
}

func newIssuerKeys(life context.Context, cfg issuerConfig, opts Options, hc *http.Client) (*issuerKeys, error) {
	ik := &issuerKeys{cfg: cfg, http: hc, log: opts.Logger.With(zap.String("issuer", cfg.Issuer))}
	jc := jwks.Config{
		URL:             cfg.JWKSURI,
		HTTPClient:      hc,
		RefreshInterval: opts.RefreshInterval,
		MinRefresh:      opts.MinRefreshInterval,
		Now:             opts.Now,
		Logger:          ik.log,
	}
	if jc.URL == "" {
		jc.Resolve = ik.discover
	}
	keys, err := jwks.New(life, jc)
	if err != nil {
		return nil, fmt.Errorf("starting key cache: %w", err)
	}
	ik.keys = keys
	return ik, nil
}

// keyFor returns the key of this issuer that should verify tok. It fetches
// the key set if there is none yet, and again if it has no key for tok's
// kid, both within the refresh rate limit.
func (ik *issuerKeys) keyFor(ctx context.Context, tok compactToken) (jwk.Key, error) {
	key, err := ik.keys.Key(ctx, jwks.Header{KeyID: tok.kid, HasKeyID: tok.hasKid, Algorithm: tok.alg})
	if err == nil {
		return key, nil
	}
	var ke *jwks.KeyError
	if !errors.As(err, &ke) {
		return nil, ik.unavailable(ctx)
	}
	switch ke.Err {
	case jwks.ErrUnknownKey:
		if tok.hasKid {
			return nil, fmt.Errorf("%w: issuer %q has no key with kid %s", ErrSignature, ik.cfg.Issuer, quote(tok.kid))
		}
		return nil, fmt.Errorf("%w: issuer %q has no signing key", ErrSignature, ik.cfg.Issuer)
	case jwks.ErrAmbiguousKey:
		return nil, fmt.Errorf("%w: the token has no kid and the issuer has %d signing keys", ErrSignature, ke.SigningKeys)
	case jwks.ErrNotSigningKey:
		return nil, fmt.Errorf("%w: key %s is not a signing key", ErrSignature, quote(tok.kid))
	case jwks.ErrAlgorithmMismatch:
		return nil, fmt.Errorf("%w: key %s is for algorithm %s, not %s", ErrSignature, quote(tok.kid), quote(ke.KeyAlgorithm), quote(tok.alg))
	}
	return nil, fmt.Errorf("%w: %s", ErrSignature, ke.Err)
}

// unavailable is the error for keys that could not be fetched. The cause
// was logged where it happened; it is not returned, for it may describe
// the network. Only the end of ctx, the caller's, is told.
func (ik *issuerKeys) unavailable(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%w: fetching the keys of issuer %q was interrupted: %w", ErrKeysUnavailable, ik.cfg.Issuer, err)
	}
	return fmt.Errorf("%w: the keys of issuer %q cannot be fetched now", ErrKeysUnavailable, ik.cfg.Issuer)
}

// discover reads the key set URL from the issuer's OpenID Provider
// metadata, whose issuer must equal the configured one exactly.
func (ik *issuerKeys) discover(ctx context.Context) (string, error) {
	doc, err := metadata.FetchOpenID(ctx, ik.http, ik.cfg.Issuer)
	if err != nil {
		return "", err
	}
	return doc.JWKSURI, nil
}

func (ik *issuerKeys) close() error {
	return ik.keys.Close()
}
