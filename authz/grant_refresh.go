package authz

import (
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/caddy-uma/caddy-uma/authz/oauth"
	"github.com/caddy-uma/caddy-uma/authz/owners"
	"github.com/caddy-uma/caddy-uma/store"
)

// grantRefreshToken refreshes an RPT without a new assessment (Grant
// section 3.6); scope may narrow its permissions. The refresh token is
// rotated, in one commit: the delete of the refresh token, conditional on
// its value (so that of concurrent refreshes exactly one commits), the new
// RPT, the next refresh token and their revocation index.
func (s *Server) grantRefreshToken(w http.ResponseWriter, t *tokenRequest) error {
	ctx := t.r.Context()
	c := t.client
	raw := t.form.Get("refresh_token")
	if raw == "" {
		return oauth.ErrInvalidRequest("refresh_token is required")
	}
	invalid := oauth.New(oauth.InvalidGrant).WithDescription("the refresh token is invalid, expired or revoked")
	rec, stored, err := s.readToken(ctx, raw)
	if err != nil && !errors.Is(err, errUnknownToken) {
		return oauth.ErrServer("could not read the refresh token", err)
	}
	if err != nil || rec.Kind != kindRefresh || rec.ClientID != c.ID {
		return invalid
	}
	perms := rec.Permissions
	if scope := strings.Fields(t.form.Get("scope")); len(scope) > 0 {
		var narrowed []Permission
		for _, p := range perms {
			var keep []string
			for _, sc := range p.ResourceScopes {
				if slices.Contains(scope, sc) {
					keep = append(keep, sc)
				}
			}
			if len(keep) > 0 {
				p.ResourceScopes = keep
				narrowed = append(narrowed, p)
			}
		}
		if len(narrowed) == 0 {
			return oauth.New(oauth.InvalidScope).WithDescription("the scope exceeds what was granted")
		}
		perms = narrowed
	}
	live := livePermissions(perms, s.now())
	if len(live) == 0 {
		return invalid
	}
	rpt, jti, rptWrite, err := s.signRPT(ctx, rptRecord{ClientID: c.ID, Subject: rec.Subject, RqPIssuer: rec.RqPIssuer, ResourceServer: rec.ResourceServer, Permissions: live})
	if err != nil {
		return oauth.ErrServer("could not issue the RPT", err)
	}
	until := time.Unix(rec.Expires, 0)
	rec.Permissions, rec.RPT = live, jti
	next, refreshWrite, err := s.newToken(rec, until.Sub(s.now()))
	if err != nil {
		return oauth.ErrServer("could not issue the refresh token", err)
	}
	// Single use: the refresh token goes, in the commit of what replaces it.
	writes := []store.Write{{Namespace: nsTokens, Key: tokenKey(raw), Delete: true, Old: stored}, rptWrite, refreshWrite}
	if h, ok := s.shares.HolderOfRefresh(ctx, resourceIDs(live), tokenKey(raw)); ok {
		h.RPT = jti
		writes = append(writes, owners.HolderWrites(resourceIDs(live), h, tokenKey(next), until)...)
	}
	err = s.store.PutAll(ctx, writes)
	switch {
	case errors.Is(err, store.ErrConflict):
		// A concurrent refresh (or a revocation) committed first.
		return invalid
	case err != nil:
		return oauth.ErrServer("could not issue the RPT", err)
	}
	oauth.WriteJSON(w, http.StatusOK, tokenResponse{AccessToken: rpt, TokenType: "Bearer", ExpiresIn: int64(s.rptTTL.Seconds()), RefreshToken: next})
	return nil
}
