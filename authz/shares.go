package authz

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/caddy-uma/caddy-uma/authz/secret"
	"github.com/caddy-uma/caddy-uma/policies"
	"github.com/caddy-uma/caddy-uma/store"
	"go.uber.org/zap"
)

// An owner's data: their resources, the shares they made (this file),
// the requests sent to them (requests.go), their rules (rules.go) and the
// history of decisions on their resources (history.go). Shares and
// requests are keyed under the owner so that listing them never crosses
// owners:
//
//	share   <owner> \x00 <resource_id> \x00 <share_id>
//	request <owner> \x00 <request_id>
//
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
	nsShare   = "share"
	nsRequest = "request"
	sep       = "\x00"
)

// Share gives a requesting party scopes on one resource. Shares come from
// the owner's console and from approved requests; the built-in rule
// data.uma.lib.shared_scopes grants them.
type Share struct {
	ID         string    `json:"id"`
	Owner      string    `json:"owner"`
	ResourceID string    `json:"resource_id"`
	Subject    string    `json:"subject,omitempty"`
	Email      string    `json:"email,omitempty"`
	Scopes     []string  `json:"scopes"`
	Client     string    `json:"client,omitempty"`
	ExpiresAt  time.Time `json:"expires_at,omitzero"`
	CreatedAt  time.Time `json:"created_at"`
	// Request is the id of the approved request the share comes from.
	Request string `json:"request,omitempty"`
}

func shareKey(owner, resourceID, id string) string { return owner + sep + resourceID + sep + id }

// sharesOf returns the live shares of a resource.
func (s *Server) sharesOf(ctx context.Context, owner, resourceID string) ([]Share, error) {
	return listJSON[Share](ctx, s.store, nsShare, owner+sep+resourceID+sep, 0)
}

// ResourceShares returns the live shares of one of owner's resources.
func (s *Server) ResourceShares(ctx context.Context, owner, resourceID string) ([]Share, error) {
	return s.sharesOf(ctx, owner, resourceID)
}

// Shares returns every live share an owner made, sorted by resource.
func (s *Server) Shares(ctx context.Context, owner string) ([]Share, error) {
	return listJSON[Share](ctx, s.store, nsShare, owner+sep, 0)
}

// listJSON lists the records of a namespace under a prefix, decoded from
// JSON.
func listJSON[T any](ctx context.Context, st store.Records, namespace, prefix string, limit int) ([]T, error) {
	recs, err := st.List(ctx, namespace, prefix, limit)
	if err != nil {
		return nil, fmt.Errorf("listing %s records: %w", namespace, err)
	}
	out := make([]T, 0, len(recs))
	for _, r := range recs {
		var v T
		if err := json.Unmarshal(r.Value, &v); err != nil {
			return nil, fmt.Errorf("decoding a %s record: %w", namespace, err)
		}
		out = append(out, v)
	}
	return out, nil
}

// policyShares converts shares into the rules' input.
func policyShares(shares []Share) []policies.Share {
	out := make([]policies.Share, 0, len(shares))
	for _, sh := range shares {
		out = append(out, policies.Share{Subject: sh.Subject, Email: sh.Email, Scopes: sh.Scopes, Client: sh.Client, ExpiresAt: sh.ExpiresAt})
	}
	return out
}

// AddShare stores a share of one of owner's resources.
func (s *Server) AddShare(ctx context.Context, sh Share) (Share, error) {
	if sh.Owner == "" || sh.ResourceID == "" || (sh.Subject == "" && sh.Email == "") || len(sh.Scopes) == 0 {
		return sh, fmt.Errorf("a share needs an owner, a resource, a subject or e-mail, and scopes")
	}
	if (sh.Subject != "" && !ValidSubject(sh.Subject)) || (sh.Email != "" && !ValidSubject(sh.Email)) || (sh.Client != "" && !ValidSubject(sh.Client)) {
		return sh, fmt.Errorf("the person or client of a share is too long or malformed")
	}
	res, err := s.store.GetResource(ctx, sh.ResourceID)
	if err != nil || res.Owner != sh.Owner {
		return sh, fmt.Errorf("no such resource of this owner")
	}
	for _, sc := range sh.Scopes {
		if !slices.Contains(res.Scopes, sc) {
			return sh, fmt.Errorf("scope %q is not a scope of this resource", sc)
		}
	}
	sh.ID = secret.New(12)
	sh.CreatedAt = s.now().UTC()
	val, err := json.Marshal(sh)
	if err != nil {
		return sh, err
	}
	// The share and its index by person, in one commit.
	writes := []store.Write{{Namespace: nsShare, Key: shareKey(sh.Owner, sh.ResourceID, sh.ID), Value: val, ExpiresAt: sh.ExpiresAt}}
	for _, k := range shareToKeys(sh) {
		writes = append(writes, store.Write{Namespace: nsShareTo, Key: k, Value: val, ExpiresAt: sh.ExpiresAt})
	}
	if err := s.store.PutAll(ctx, writes); err != nil {
		return sh, fmt.Errorf("storing a share: %w", err)
	}
	return sh, nil
}

// OwnerResource returns one of owner's resources; any other is
// ErrNoSuchResource.
func (s *Server) OwnerResource(ctx context.Context, owner, id string) (store.Resource, error) {
	res, err := s.store.GetResource(ctx, id)
	if errors.Is(err, store.ErrNotFound) || (err == nil && res.Owner != owner) {
		return store.Resource{}, ErrNoSuchResource
	}
	return res, err
}

// OwnerResources returns every resource of owner, whichever resource
// server registered it.
func (s *Server) OwnerResources(ctx context.Context, owner string) ([]store.Resource, error) {
	return s.store.ListResources(ctx, store.ResourceQuery{Owner: owner})
}

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
		keys = append(keys, "email"+sep+NormalizeEmail(sh.Email)+tail)
	}
	return keys
}

// SharedWith returns the live shares naming a person, by subject or by
// verified e-mail address (either may be empty), newest first.
func (s *Server) SharedWith(ctx context.Context, subject, email string) ([]Share, error) {
	var prefixes []string
	if subject != "" {
		prefixes = append(prefixes, "sub"+sep+subject+sep)
	}
	if email = NormalizeEmail(email); email != "" {
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

// ErrNoSuchShare means that the owner has no such share.
var ErrNoSuchShare = errors.New("no such share")

// RevokeShare deletes one of owner's shares, and revokes the live RPTs and
// refresh tokens of the requesting parties it names on its resource. It
// returns the share and how many tokens were revoked.
func (s *Server) RevokeShare(ctx context.Context, owner, resourceID, id string) (Share, int, error) {
	var sh Share
	if !ValidSubject(owner) || resourceID == "" || id == "" {
		return sh, 0, ErrNoSuchShare
	}
	key := shareKey(owner, resourceID, id)
	val, err := s.store.Get(ctx, nsShare, key)
	if errors.Is(err, store.ErrNotFound) {
		return sh, 0, ErrNoSuchShare
	}
	if err != nil {
		return sh, 0, fmt.Errorf("reading a share: %w", err)
	}
	if err := json.Unmarshal(val, &sh); err != nil {
		return sh, 0, fmt.Errorf("decoding a share: %w", err)
	}
	// The share, its index and the tokens it may have granted go in one
	// commit: no node sees the share gone and its tokens still live.
	writes := []store.Write{{Namespace: nsShare, Key: key, Delete: true}}
	for _, k := range shareToKeys(sh) {
		writes = append(writes, store.Write{Namespace: nsShareTo, Key: k, Delete: true})
	}
	revocations, n, err := s.holdersOf(ctx, sh)
	if err != nil {
		return sh, 0, err
	}
	err = s.store.PutAll(ctx, append(writes, revocations...))
	s.forgetRevoked(revocations)
	if err != nil {
		return sh, 0, fmt.Errorf("revoking a share: %w", err)
	}
	s.log.Info("share revoked", ownerField(owner), resourceField(resourceID), zap.Int("tokens_revoked", n))
	return sh, n, nil
}

// holdersOf returns the deletes that revoke the tokens on the share's
// resource held by the person the share names (for each holder its RPT
// record, the holder record and its refresh token), and how many holders.
func (s *Server) holdersOf(ctx context.Context, sh Share) (writes []store.Write, holders int, err error) {
	recs, err := s.store.List(ctx, nsTokenHolder, sh.ResourceID+sep, 0)
	if err != nil {
		return nil, 0, fmt.Errorf("listing token holders: %w", err)
	}
	email := NormalizeEmail(sh.Email)
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
		writes = append(writes, store.Write{Namespace: nsRPT, Key: h.RPT, Delete: true},
			store.Write{Namespace: nsTokenHolder, Key: r.Key, Delete: true})
		if h.Refresh != "" {
			writes = append(writes, store.Write{Namespace: nsTokens, Key: h.Refresh, Delete: true})
		}
		holders++
	}
	return writes, holders, nil
}

// holderWrites returns the index records of who holds a new RPT (and
// refresh token) on each of its resources, for the caller to commit with
// the tokens themselves: a share revocation finds the tokens through them.
func holderWrites(perms []Permission, h tokenHolder, refreshToken string, until time.Time) []store.Write {
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
func (s *Server) holderOfRefresh(ctx context.Context, perms []Permission, refreshToken string) (tokenHolder, bool) {
	var h tokenHolder
	for _, p := range perms {
		val, err := s.store.Get(ctx, nsTokenHolder, p.ResourceID+sep+tokenKey(refreshToken))
		if err == nil && json.Unmarshal(val, &h) == nil {
			return h, true
		}
	}
	return h, false
}

// verifiedEmail returns the claims' e-mail address, normalized, unless the
// claims say it is not verified; "" when there is none.
func verifiedEmail(claims map[string]any) string {
	addr, _ := claims["email"].(string)
	if v, ok := claims["email_verified"]; ok && v != true && v != "true" {
		return ""
	}
	return NormalizeEmail(addr)
}

// NormalizeEmail trims and lower-cases an address, as the rules' library
// does before it compares addresses.
func NormalizeEmail(addr string) string { return strings.ToLower(strings.TrimSpace(addr)) }
