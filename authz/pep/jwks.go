package pep

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jws"
	"github.com/lestrrat-go/jwx/v3/jwt"
	"go.uber.org/zap"

	"github.com/caddy-uma/caddy-uma/authz/jwks"
	"github.com/caddy-uma/caddy-uma/authz/metadata"
)

// keySet returns the key set at u: the one held, or a new one when there
// is none yet or the discovered jwks_uri changed (the old one is closed).
func (r *Remote) keySet(u string) (*jwks.Set, error) {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil, unavailable("the connection to the AS is closed")
	}
	if r.keys != nil && r.keysURL == u {
		set := r.keys
		r.mu.Unlock()
		return set, nil
	}
	set, err := jwks.New(context.Background(), jwks.Config{
		URL:        u,
		HTTPClient: r.http,
		MinRefresh: r.minKeyRefresh,
		Now:        r.now,
		Logger:     r.log.With(zap.String("issuer", r.issuer)),
	})
	if err != nil {
		r.mu.Unlock()
		return nil, unavailable("the AS's key set: %v", err)
	}
	old := r.keys
	r.keys, r.keysURL = set, u
	r.mu.Unlock()
	if old != nil {
		r.log.Info("the AS's jwks_uri changed", zap.String("issuer", r.issuer), zap.String("jwks_uri", u))
		if err := old.Close(); err != nil {
			r.log.Warn("closing the previous key set", zap.Error(err))
		}
	}
	return set, nil
}

// verifyJWT verifies a JWT RPT with the AS's keys: an asymmetric algorithm
// matching the key, no crit header, a valid signature, iss equal to the
// issuer, aud naming this resource server, exp present and not past (no
// leeway), nbf and iat not in the future (with clockSkew). Any failure is
// ErrInvalidRPT, except keys that cannot be fetched (ErrUnavailable).
func (r *Remote) verifyJWT(ctx context.Context, md *metadata.UMAConfiguration, token string) (*RPT, error) {
	// The header names the key; it is trusted once the signature checks
	// out under that key.
	msg, err := jws.ParseString(token)
	if err != nil || len(msg.Signatures()) != 1 {
		return nil, ErrInvalidRPT
	}
	hdr := msg.Signatures()[0].ProtectedHeaders()
	alg, ok := hdr.Algorithm()
	if !ok || alg == jwa.NoSignature() || alg.IsSymmetric() || hdr.Has(jws.CriticalKey) {
		return nil, ErrInvalidRPT
	}
	kid, hasKid := hdr.KeyID()
	keys, err := r.keySet(md.JWKSURI)
	if err != nil {
		return nil, err
	}
	key, err := keys.Key(ctx, jwks.Header{KeyID: kid, HasKeyID: hasKid, Algorithm: alg.String()})
	switch {
	case errors.Is(err, jwks.ErrUnavailable):
		return nil, unavailable("the AS's key set: %v", err)
	case err != nil:
		return nil, ErrInvalidRPT
	}
	now := r.now()
	tok, err := jwt.ParseString(token,
		jwt.WithKey(alg, key),
		jwt.WithValidate(true),
		jwt.WithIssuer(r.issuer),
		jwt.WithAudience(r.clientID),
		jwt.WithRequiredClaim(jwt.ExpirationKey),
		jwt.WithClock(jwt.ClockFunc(func() time.Time { return now })),
		jwt.WithAcceptableSkew(clockSkew),
		jwt.WithTruncation(time.Second),
	)
	if err != nil {
		return nil, ErrInvalidRPT
	}
	// The skew applies to nbf and iat; jwx applies it to exp too, which
	// allows none.
	if exp, _ := tok.Expiration(); !now.Before(exp) {
		return nil, ErrInvalidRPT
	}
	var c rptClaims
	if err := json.Unmarshal(msg.Payload(), &c); err != nil {
		return nil, ErrInvalidRPT
	}
	return c.rpt()
}
