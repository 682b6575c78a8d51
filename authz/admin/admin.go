// Package admin is the operator's API of the authorization server: what an
// operator manages without calling the protocol by hand. It lists and
// revokes the live tokens of a client or subject, lists, registers and
// removes clients, lists and rotates the signing keys, shows and reloads
// the operator directory of rules, lists an owner's resources, and writes
// a backup of the store. routes.go serves it over HTTP; Caddy mounts it on
// its admin endpoint (the admin.api.uma module), and the `caddy uma`
// commands call it.
//
// It changes the AS's state through the exported API of package authz
// only.
package admin

import (
	"context"
	"errors"
	"io"

	"go.uber.org/zap"

	"github.com/caddy-uma/caddy-uma/authz"
	"github.com/caddy-uma/caddy-uma/authz/signing"
	"github.com/caddy-uma/caddy-uma/store"
	"github.com/caddy-uma/caddy-uma/store/dump"
)

// API is the operator's API of one authorization server. It is safe for
// concurrent use.
type API struct {
	as    *authz.Server
	store store.Snapshots
	log   *zap.Logger
}

// New returns the operator's API of as, whose store is st (the backup
// reads it), logging what the operator does to log (nil: nowhere).
func New(as *authz.Server, st store.Snapshots, log *zap.Logger) *API {
	if log == nil {
		log = zap.NewNop()
	}
	return &API{as: as, store: st, log: log}
}

// TokenFilter selects issued tokens: those of a client, of a subject, or
// both. A filter must name at least one.
type TokenFilter struct {
	// ClientID is the client the tokens were issued to.
	ClientID string
	// Subject is who the tokens were issued for: the requesting party of
	// an RPT, refresh token or PCT, the owner of a PAT (a resource server's
	// own PAT has the resource server as its subject).
	Subject string
}

// ErrEmptyTokenFilter means that a TokenFilter names neither a client nor
// a subject: revoking every token of the AS is not one operation.
var ErrEmptyTokenFilter = errors.New("name a client id, a subject or both")

func (f TokenFilter) matches(clientID, subject string) bool {
	return (f.ClientID == "" || f.ClientID == clientID) && (f.Subject == "" || f.Subject == subject)
}

// Tokens lists the live tokens matching f, sorted by issue time and then
// id. It returns ErrEmptyTokenFilter for an empty filter.
func (a *API) Tokens(ctx context.Context, f TokenFilter) ([]authz.IssuedToken, error) {
	if f == (TokenFilter{}) {
		return nil, ErrEmptyTokenFilter
	}
	return a.as.IssuedTokens(ctx, f.matches)
}

// RevokeTokens revokes the live tokens matching f, in one commit, and
// returns them (see authz.Server.RevokeTokens).
func (a *API) RevokeTokens(ctx context.Context, f TokenFilter) ([]authz.IssuedToken, error) {
	toks, err := a.Tokens(ctx, f)
	if err != nil || len(toks) == 0 {
		return toks, err
	}
	if err := a.as.RevokeTokens(ctx, toks); err != nil {
		return nil, err
	}
	a.log.Info("tokens revoked by the operator", zap.String("client_id", f.ClientID), zap.String("requesting_party", f.Subject), zap.Int("tokens", len(toks)))
	return toks, nil
}

// RemoveClient removes a dynamically registered client and revokes every
// token issued to it, and returns the tokens revoked. It returns
// authz.ErrNoSuchClient or authz.ErrConfiguredClient for a client it
// cannot remove.
func (a *API) RemoveClient(ctx context.Context, id string) ([]authz.IssuedToken, error) {
	if err := a.as.RemoveClient(ctx, id); err != nil {
		return nil, err
	}
	return a.RevokeTokens(ctx, TokenFilter{ClientID: id})
}

// RotateKeys makes a new signing key current now (every node of the
// database takes it), and returns the published keys (see
// authz.Server.RotateSigningKey).
func (a *API) RotateKeys(ctx context.Context) ([]signing.Key, error) {
	kid, err := a.as.RotateSigningKey(ctx)
	if err != nil {
		return nil, err
	}
	a.log.Info("signing key rotated by the operator", zap.String("kid", kid))
	return a.as.SigningKeys(), nil
}

// Backup writes a dump (package dump: JSON lines) of everything the store
// holds, read from one consistent snapshot, while the AS runs: what
// `caddy uma restore` (import) reads back into a store. The dump holds
// private keys and every live token: it is as secret as the database.
func (a *API) Backup(ctx context.Context, w io.Writer) (dump.Counts, error) {
	return dump.Export(ctx, w, a.store, a.as.Issuer())
}
