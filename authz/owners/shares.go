package owners

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-uma/caddy-uma/authz/secret"
	"github.com/caddy-uma/caddy-uma/policies"
	"github.com/caddy-uma/caddy-uma/store"
)

// Shares are keyed under the owner and the resource. Two indexes go with
// them:
//
// Shares by the person they name (share_to), so that "shared with me"
// lists one person's shares without reading every owner's.
//
// The live tokens of each resource with who holds them (token_holder), so
// that revoking a share revokes the RPTs and refresh tokens it may have
// granted, at once. Each grant writes one holder record per resource it
// grants (the RPT's jti, the refresh token's store key, the requesting
// party's subject and verified e-mail address, the client), living as long
// as the refresh token. Revoking a share deletes the RPT records and
// refresh tokens of the holders it names on its resource (restricted to
// its client, when it names one): introspection and co-hosted enforcement
// refuse them from then on. A holder who also has the access through a
// rule or another share asks again and gets a new RPT.

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

// Shares are the shares owners made of their resources. They are safe for
// concurrent use.
type Shares struct {
	opts Options
}

// NewShares returns the shares kept in opts.Store.
func NewShares(opts Options) *Shares { return &Shares{opts: opts.withDefaults()} }

func shareKey(owner, resourceID, id string) string { return owner + sep + resourceID + sep + id }

// ResourceShares returns the live shares of one of owner's resources.
func (s *Shares) ResourceShares(ctx context.Context, owner, resourceID string) ([]Share, error) {
	return listJSON[Share](ctx, s.opts.Store, nsShare, owner+sep+resourceID+sep, 0)
}

// Shares returns every live share an owner made, sorted by resource.
func (s *Shares) Shares(ctx context.Context, owner string) ([]Share, error) {
	return listJSON[Share](ctx, s.opts.Store, nsShare, owner+sep, 0)
}

// PolicyShares converts shares into the rules' input.
func PolicyShares(shares []Share) []policies.Share {
	out := make([]policies.Share, 0, len(shares))
	for _, sh := range shares {
		out = append(out, policies.Share{Subject: sh.Subject, Email: sh.Email, Scopes: sh.Scopes, Client: sh.Client, ExpiresAt: sh.ExpiresAt})
	}
	return out
}

// AddShare stores a share of one of owner's resources.
func (s *Shares) AddShare(ctx context.Context, sh Share) (Share, error) {
	if sh.Owner == "" || sh.ResourceID == "" || (sh.Subject == "" && sh.Email == "") || len(sh.Scopes) == 0 {
		return sh, fmt.Errorf("a share needs an owner, a resource, a subject or e-mail, and scopes")
	}
	valid := s.opts.ValidName
	if (sh.Subject != "" && !valid(sh.Subject)) || (sh.Email != "" && !valid(sh.Email)) || (sh.Client != "" && !valid(sh.Client)) {
		return sh, fmt.Errorf("the person or client of a share is too long or malformed")
	}
	res, err := s.opts.Store.GetResource(ctx, sh.ResourceID)
	if err != nil || res.Owner != sh.Owner {
		return sh, fmt.Errorf("no such resource of this owner")
	}
	for _, sc := range sh.Scopes {
		if !slices.Contains(res.Scopes, sc) {
			return sh, fmt.Errorf("scope %q is not a scope of this resource", sc)
		}
	}
	sh.ID = secret.New(12)
	sh.CreatedAt = s.opts.Now().UTC()
	val, err := json.Marshal(sh)
	if err != nil {
		return sh, err
	}
	// The share and its index by person, in one commit.
	writes := []store.Write{{Namespace: nsShare, Key: shareKey(sh.Owner, sh.ResourceID, sh.ID), Value: val, ExpiresAt: sh.ExpiresAt}}
	for _, k := range shareToKeys(sh) {
		writes = append(writes, store.Write{Namespace: nsShareTo, Key: k, Value: val, ExpiresAt: sh.ExpiresAt})
	}
	if err := s.opts.Store.PutAll(ctx, writes); err != nil {
		return sh, fmt.Errorf("storing a share: %w", err)
	}
	return sh, nil
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
func (s *Shares) SharedWith(ctx context.Context, subject, email string) ([]Share, error) {
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
		recs, err := s.opts.Store.List(ctx, nsShareTo, p, 0)
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

// RevokeShare deletes one of owner's shares and its index, and revokes the
// tokens on its resource of the holders it names, in one commit: no node
// sees the share gone and its tokens still live. tokens returns the writes
// that revoke one holder's tokens. RevokeShare returns the share, the
// writes it tried (a commit that failed may still have committed them) and
// how many holders it named.
func (s *Shares) RevokeShare(ctx context.Context, owner, resourceID, id string, tokens func(TokenHolder) []store.Write) (Share, []store.Write, int, error) {
	var sh Share
	if !s.opts.ValidName(owner) || resourceID == "" || id == "" {
		return sh, nil, 0, ErrNoSuchShare
	}
	key := shareKey(owner, resourceID, id)
	val, err := s.opts.Store.Get(ctx, nsShare, key)
	if errors.Is(err, store.ErrNotFound) {
		return sh, nil, 0, ErrNoSuchShare
	}
	if err != nil {
		return sh, nil, 0, fmt.Errorf("reading a share: %w", err)
	}
	if err := json.Unmarshal(val, &sh); err != nil {
		return sh, nil, 0, fmt.Errorf("decoding a share: %w", err)
	}
	writes := []store.Write{{Namespace: nsShare, Key: key, Delete: true}}
	for _, k := range shareToKeys(sh) {
		writes = append(writes, store.Write{Namespace: nsShareTo, Key: k, Delete: true})
	}
	revocations, n, err := s.holdersOf(ctx, sh, tokens)
	if err != nil {
		return sh, nil, 0, err
	}
	writes = append(writes, revocations...)
	if err := s.opts.Store.PutAll(ctx, writes); err != nil {
		return sh, writes, 0, fmt.Errorf("revoking a share: %w", err)
	}
	s.opts.Log.Info("share revoked", ownerField(owner), resourceField(resourceID), zap.Int("tokens_revoked", n))
	return sh, writes, n, nil
}

// TokenHolder is who holds an RPT and refresh token on a resource.
type TokenHolder struct {
	// RPT is the RPT's jti; Refresh the store key of the refresh token.
	RPT      string `json:"rpt"`
	Refresh  string `json:"refresh,omitempty"`
	Subject  string `json:"sub"`
	Email    string `json:"email,omitempty"`
	ClientID string `json:"client_id"`
}

// holdersOf returns the deletes that revoke the tokens on the share's
// resource held by the person the share names (for each holder the writes
// of tokens and the holder record), and how many holders.
func (s *Shares) holdersOf(ctx context.Context, sh Share, tokens func(TokenHolder) []store.Write) (writes []store.Write, holders int, err error) {
	recs, err := s.opts.Store.List(ctx, nsTokenHolder, sh.ResourceID+sep, 0)
	if err != nil {
		return nil, 0, fmt.Errorf("listing token holders: %w", err)
	}
	email := NormalizeEmail(sh.Email)
	for _, r := range recs {
		var h TokenHolder
		if err := json.Unmarshal(r.Value, &h); err != nil {
			continue
		}
		if sh.Client != "" && sh.Client != h.ClientID {
			continue
		}
		if !(sh.Subject != "" && h.Subject == sh.Subject) && !(email != "" && h.Email == email) {
			continue
		}
		writes = append(append(writes, tokens(h)...), store.Write{Namespace: nsTokenHolder, Key: r.Key, Delete: true})
		holders++
	}
	return writes, holders, nil
}

// HolderWrites returns the index records of who holds a new RPT (and
// refresh token, by its store key, when refreshKey is not empty) on each
// of its resources, for the caller to commit with the tokens themselves: a
// share revocation finds the tokens through them.
func HolderWrites(resourceIDs []string, h TokenHolder, refreshKey string, until time.Time) []store.Write {
	suffix := "rpt:" + h.RPT
	if refreshKey != "" {
		h.Refresh = refreshKey
		suffix = h.Refresh
	}
	val, err := json.Marshal(h)
	if err != nil {
		return nil
	}
	out := make([]store.Write, 0, len(resourceIDs))
	for _, id := range resourceIDs {
		out = append(out, store.Write{Namespace: nsTokenHolder, Key: id + sep + suffix, Value: val, ExpiresAt: until})
	}
	return out
}

// HolderOfRefresh returns the holder recorded for a refresh token (its
// store key) on one of its resources.
func (s *Shares) HolderOfRefresh(ctx context.Context, resourceIDs []string, refreshKey string) (TokenHolder, bool) {
	var h TokenHolder
	for _, id := range resourceIDs {
		val, err := s.opts.Store.Get(ctx, nsTokenHolder, id+sep+refreshKey)
		if err == nil && json.Unmarshal(val, &h) == nil {
			return h, true
		}
	}
	return h, false
}

// VerifiedEmail returns the claims' e-mail address, normalized, unless the
// claims say it is not verified; "" when there is none.
func VerifiedEmail(claims map[string]any) string {
	addr, _ := claims["email"].(string)
	if v, ok := claims["email_verified"]; ok && v != true && v != "true" {
		return ""
	}
	return NormalizeEmail(addr)
}

// NormalizeEmail trims and lower-cases an address, as the rules' library
// does before it compares addresses.
func NormalizeEmail(addr string) string { return strings.ToLower(strings.TrimSpace(addr)) }
