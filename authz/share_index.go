package authz

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-uma/caddy-uma/store"
)

// Two indexes serve the console:
//
// Shares by the person they name, so that "shared with me" lists one
// person's shares without reading every owner's:
//
//	share_to sub   \x00 <subject> \x00 <owner> \x00 <resource_id> \x00 <share_id>
//	share_to email \x00 <address> \x00 <owner> \x00 <resource_id> \x00 <share_id>
//
// The live tokens of each resource with who holds them, so that revoking a
// share revokes the RPTs and refresh tokens it may have granted, at once:
//
//	token_holder <resource_id> \x00 <refresh token key or "rpt:" jti>
//
// Each grant writes one holder record per resource it grants (the RPT's
// jti, the refresh token's store key, the requesting party's subject and
// verified e-mail address, the client), living as long as the refresh
// token. Revoking a share deletes the RPT records and refresh tokens of the
// holders it names on its resource (restricted to its client, when it
// names one): introspection and co-hosted enforcement (RPTLive) refuse them
// from then on. A holder who also has the access through a rule or another
// share asks again and gets a new RPT.

const (
	nsShareTo     = "share_to"
	nsTokenHolder = "token_holder"
)

// tokenHolder is who holds an RPT and refresh token on a resource.
type tokenHolder struct {
	RPT      string `json:"rpt"`
	Refresh  string `json:"refresh,omitempty"`
	Subject  string `json:"sub"`
	Email    string `json:"email,omitempty"`
	ClientID string `json:"client_id"`
}

// shareToKeys are the index keys of a share.
func shareToKeys(sh Share) []string {
	tail := sep + sh.Owner + sep + sh.ResourceID + sep + sh.ID
	var keys []string
	if sh.Subject != "" {
		keys = append(keys, "sub"+sep+sh.Subject+tail)
	}
	if sh.Email != "" {
		keys = append(keys, "email"+sep+normalizeEmail(sh.Email)+tail)
	}
	return keys
}

// indexShare adds a share to the person index.
func (s *Server) indexShare(ctx context.Context, sh Share, val []byte) error {
	for _, k := range shareToKeys(sh) {
		if err := s.store.Put(ctx, nsShareTo, k, val, sh.ExpiresAt); err != nil {
			return fmt.Errorf("indexing a share: %w", err)
		}
	}
	return nil
}

// SharedWith returns the live shares naming a person, by subject or by
// verified e-mail address (either may be empty), newest first.
func (s *Server) SharedWith(ctx context.Context, subject, email string) ([]Share, error) {
	var prefixes []string
	if subject != "" {
		prefixes = append(prefixes, "sub"+sep+subject+sep)
	}
	if email = normalizeEmail(email); email != "" {
		prefixes = append(prefixes, "email"+sep+email+sep)
	}
	seen := map[string]bool{}
	var out []Share
	for _, p := range prefixes {
		recs, err := s.store.List(ctx, nsShareTo, p, 0)
		if err != nil {
			return nil, fmt.Errorf("listing shares: %w", err)
		}
		for _, r := range recs {
			var sh Share
			if err := json.Unmarshal(r.Value, &sh); err != nil {
				return nil, fmt.Errorf("decoding a share: %w", err)
			}
			if !seen[sh.ID] {
				seen[sh.ID] = true
				out = append(out, sh)
			}
		}
	}
	slices.SortFunc(out, func(a, b Share) int { return b.CreatedAt.Compare(a.CreatedAt) })
	return out, nil
}

// errNoSuchShare means that the owner has no such share.
var errNoSuchShare = errors.New("no such share")

// RevokeShare deletes one of owner's shares, and revokes the live RPTs and
// refresh tokens of the requesting parties it names on its resource. It
// returns the share and how many tokens were revoked.
func (s *Server) RevokeShare(ctx context.Context, owner, resourceID, id string) (Share, int, error) {
	var sh Share
	if !validOwnerName(owner) || resourceID == "" || id == "" {
		return sh, 0, errNoSuchShare
	}
	val, err := s.store.Take(ctx, nsShare, shareKey(owner, resourceID, id))
	if errors.Is(err, store.ErrNotFound) {
		return sh, 0, errNoSuchShare
	}
	if err != nil {
		return sh, 0, fmt.Errorf("deleting a share: %w", err)
	}
	if err := json.Unmarshal(val, &sh); err != nil {
		return sh, 0, fmt.Errorf("decoding a share: %w", err)
	}
	for _, k := range shareToKeys(sh) {
		if err := s.store.Delete(ctx, nsShareTo, k); err != nil && !errors.Is(err, store.ErrNotFound) {
			s.log.Warn("unindexing a share", errField(err))
		}
	}
	n, err := s.revokeHolders(ctx, sh)
	s.log.Info("share revoked", ownerField(owner), resourceField(resourceID), zap.Int("tokens_revoked", n))
	return sh, n, err
}

// revokeHolders revokes the tokens on the share's resource held by the
// person the share names.
func (s *Server) revokeHolders(ctx context.Context, sh Share) (int, error) {
	recs, err := s.store.List(ctx, nsTokenHolder, sh.ResourceID+sep, 0)
	if err != nil {
		return 0, fmt.Errorf("listing token holders: %w", err)
	}
	email := normalizeEmail(sh.Email)
	n := 0
	for _, r := range recs {
		var h tokenHolder
		if err := json.Unmarshal(r.Value, &h); err != nil {
			continue
		}
		if sh.Client != "" && sh.Client != h.ClientID {
			continue
		}
		if !(sh.Subject != "" && h.Subject == sh.Subject) && !(email != "" && h.Email == email) {
			continue
		}
		if err := s.revokeRPT(ctx, h.RPT); err != nil {
			return n, err
		}
		if h.Refresh != "" {
			if err := s.store.Delete(ctx, nsTokens, h.Refresh); err != nil && !errors.Is(err, store.ErrNotFound) {
				return n, fmt.Errorf("revoking a refresh token: %w", err)
			}
		}
		_ = s.store.Delete(ctx, nsTokenHolder, r.Key)
		n++
	}
	return n, nil
}

// holderWrites returns the index records of who holds a new RPT (and
// refresh token) on each of its resources, for the caller to commit with
// the tokens themselves: a share revocation finds the tokens through them.
func holderWrites(perms []RPTPermission, h tokenHolder, refreshToken string, until time.Time) []store.Write {
	suffix := "rpt:" + h.RPT
	if refreshToken != "" {
		h.Refresh = tokenKey(refreshToken)
		suffix = h.Refresh
	}
	val, err := json.Marshal(h)
	if err != nil {
		return nil
	}
	out := make([]store.Write, 0, len(perms))
	for _, p := range perms {
		out = append(out, store.Write{Namespace: nsTokenHolder, Key: p.ResourceID + sep + suffix, Value: val, ExpiresAt: until})
	}
	return out
}

// holderOfRefresh returns the holder recorded for a refresh token on one
// of its resources.
func (s *Server) holderOfRefresh(ctx context.Context, perms []RPTPermission, refreshToken string) (tokenHolder, bool) {
	var h tokenHolder
	for _, p := range perms {
		val, err := s.store.Get(ctx, nsTokenHolder, p.ResourceID+sep+tokenKey(refreshToken))
		if err == nil && json.Unmarshal(val, &h) == nil {
			return h, true
		}
	}
	return h, false
}
