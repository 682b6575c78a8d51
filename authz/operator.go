package authz

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-uma/caddy-uma/authz/signing"
	"github.com/caddy-uma/caddy-uma/store"
)

// What the operator manages in the AS's state, without calling the
// protocol by hand: the live tokens, the clients, the signing keys and the
// state of the rules. Package admin serves it as the operator's API.

// Kinds of IssuedToken besides the opaque ones (access_token,
// refresh_token, pct).
const KindRPT = "rpt"

// IssuedToken describes a live token the AS issued, never the token
// itself.
type IssuedToken struct {
	// ID identifies the token: an RPT's jti, or the SHA-256 (hex) of an
	// opaque token, under which the store keeps it.
	ID string `json:"id"`
	// Kind is "rpt", "access_token" (PATs and other access tokens),
	// "refresh_token" or "pct".
	Kind     string `json:"kind"`
	ClientID string `json:"client_id"`
	// Subject is who the token was issued for: the requesting party of
	// an RPT, refresh token or PCT, the owner of a PAT (a resource
	// server's own PAT has the resource server as its subject).
	Subject string `json:"subject,omitempty"`
	// ResourceServer is the audience of an RPT, and what a refresh token
	// refreshes.
	ResourceServer string       `json:"resource_server,omitempty"`
	Scopes         []string     `json:"scopes,omitempty"`
	Permissions    []Permission `json:"permissions,omitempty"`
	IssuedAt       time.Time    `json:"issued_at"`
	ExpiresAt      time.Time    `json:"expires_at"`

	// rpt is the jti of the RPT a refresh token was issued with.
	rpt string
}

// IssuedTokens lists the live tokens whose client and subject match
// accepts, sorted by issue time and then id. It reads every live token.
func (s *Server) IssuedTokens(ctx context.Context, match func(clientID, subject string) bool) ([]IssuedToken, error) {
	now := s.now().Unix()
	var out []IssuedToken
	opaque, err := s.store.List(ctx, nsTokens, "", 0)
	if err != nil {
		return nil, fmt.Errorf("listing tokens: %w", err)
	}
	for _, r := range opaque {
		var rec tokenRecord
		if err := json.Unmarshal(r.Value, &rec); err != nil {
			return nil, fmt.Errorf("decoding a token: %w", err)
		}
		if rec.Expires <= now || !match(rec.ClientID, rec.Subject) {
			continue
		}
		out = append(out, IssuedToken{ID: r.Key, Kind: rec.Kind, ClientID: rec.ClientID, Subject: rec.Subject,
			ResourceServer: rec.ResourceServer, Scopes: rec.Scopes, Permissions: rec.Permissions,
			IssuedAt: time.Unix(rec.IssuedAt, 0).UTC(), ExpiresAt: time.Unix(rec.Expires, 0).UTC(), rpt: rec.RPT})
	}
	rpts, err := s.store.List(ctx, nsRPT, "", 0)
	if err != nil {
		return nil, fmt.Errorf("listing RPTs: %w", err)
	}
	for _, r := range rpts {
		var rec rptRecord
		if err := json.Unmarshal(r.Value, &rec); err != nil {
			return nil, fmt.Errorf("decoding an RPT: %w", err)
		}
		if rec.Expires <= now || !match(rec.ClientID, rec.Subject) {
			continue
		}
		out = append(out, IssuedToken{ID: r.Key, Kind: KindRPT, ClientID: rec.ClientID, Subject: rec.Subject,
			ResourceServer: rec.ResourceServer, Permissions: rec.Permissions,
			IssuedAt: time.Unix(rec.IssuedAt, 0).UTC(), ExpiresAt: time.Unix(rec.Expires, 0).UTC()})
	}
	slices.SortFunc(out, func(a, b IssuedToken) int {
		return cmp.Or(a.IssuedAt.Compare(b.IssuedAt), cmp.Compare(a.ID, b.ID))
	})
	return out, nil
}

// RevokeTokens revokes toks, as IssuedTokens listed them, in one commit:
// RPTs, access tokens (PATs), refresh tokens with the RPTs issued with
// them, and PCTs. Enforcement points of this AS (co-hosted, or remote ones
// that introspect) refuse them from then on.
func (s *Server) RevokeTokens(ctx context.Context, toks []IssuedToken) error {
	if len(toks) == 0 {
		return nil
	}
	writes := make([]store.Write, 0, len(toks))
	for _, t := range toks {
		ns := nsTokens
		if t.Kind == KindRPT {
			ns = nsRPT
		}
		writes = append(writes, store.Write{Namespace: ns, Key: t.ID, Delete: true})
		if t.rpt != "" {
			writes = append(writes, store.Write{Namespace: nsRPT, Key: t.rpt, Delete: true})
		}
	}
	if err := s.store.PutAll(ctx, writes); err != nil {
		return fmt.Errorf("revoking tokens: %w", err)
	}
	for _, t := range toks {
		if t.Kind == KindRPT {
			s.liveRPTs.forget(t.ID)
		} else if t.rpt != "" {
			s.liveRPTs.forget(t.rpt)
		}
	}
	return nil
}

// ClientInfo describes a client of the AS, never its secret.
type ClientInfo struct {
	ClientID string `json:"client_id"`
	// Name is a dynamically registered client's client_name.
	Name string `json:"client_name,omitempty"`
	// Dynamic is true for a client registered at run time (RFC 7591, or
	// the operator's API), false for one of the configuration.
	Dynamic        bool `json:"dynamic"`
	ResourceServer bool `json:"resource_server"`
	// Public is true for a client without a secret.
	Public             bool     `json:"public"`
	Scopes             []string `json:"scopes,omitempty"`
	RedirectURIs       []string `json:"redirect_uris,omitempty"`
	ClaimsRedirectURIs []string `json:"claims_redirect_uris,omitempty"`
	// IssuedAt is when a dynamic client was registered.
	IssuedAt *time.Time `json:"client_id_issued_at,omitempty"`
}

// Clients lists the configured clients and the dynamically registered
// ones, sorted by id.
func (s *Server) Clients(ctx context.Context) ([]ClientInfo, error) {
	out := make([]ClientInfo, 0, len(s.clients))
	for _, id := range slices.Sorted(maps.Keys(s.clients)) {
		c := s.clients[id]
		out = append(out, ClientInfo{ClientID: id, ResourceServer: c.ResourceServer, Public: c.public(),
			Scopes: c.Scopes, RedirectURIs: c.RedirectURIs, ClaimsRedirectURIs: c.ClaimsRedirectURIs})
	}
	recs, err := s.store.List(ctx, nsClient, "", 0)
	if err != nil {
		return nil, fmt.Errorf("listing registered clients: %w", err)
	}
	for _, r := range recs {
		var dc dynamicClient
		if err := json.Unmarshal(r.Value, &dc); err != nil {
			return nil, fmt.Errorf("decoding registered client %q: %w", r.Key, err)
		}
		out = append(out, dynamicInfo(dc))
	}
	slices.SortFunc(out, func(a, b ClientInfo) int { return cmp.Compare(a.ClientID, b.ClientID) })
	return out, nil
}

func dynamicInfo(dc dynamicClient) ClientInfo {
	at := time.Unix(dc.IssuedAt, 0).UTC()
	return ClientInfo{ClientID: dc.ID, Name: dc.Name, Dynamic: true, Public: dc.SecretSum == "",
		Scopes: dc.Scopes, RedirectURIs: dc.RedirectURIs, ClaimsRedirectURIs: dc.ClaimsRedirectURIs, IssuedAt: &at}
}

// RegisterClient registers a requesting party's client as RFC 7591
// registration does (the same checks of md, the same kind of client),
// whether or not dynamic registration is on, and returns it with its
// secret: shown once, never kept (the store keeps its SHA-256). The secret
// is empty for a public client (token_endpoint_auth_method "none"). An
// invalid md is an *oauth.Error (invalid_client_metadata,
// invalid_redirect_uri).
func (s *Server) RegisterClient(ctx context.Context, md ClientMetadata) (ClientInfo, string, error) {
	dc, secret, err := s.registerClient(ctx, md)
	if err != nil {
		return ClientInfo{}, "", err
	}
	return dynamicInfo(dc), secret, nil
}

// Errors of RemoveClient.
var (
	// ErrNoSuchClient means that no dynamically registered client has the
	// id.
	ErrNoSuchClient = errors.New("no such client")
	// ErrConfiguredClient means that the client is one of the
	// configuration: it is removed from the configuration, not at run time.
	ErrConfiguredClient = errors.New("the client is configured, not registered at run time: remove it from the configuration")
)

// RemoveClient removes a dynamically registered client: it can no longer
// authenticate. The tokens issued to it stay live until they are revoked
// (the operator's API revokes them with it) or expire.
func (s *Server) RemoveClient(ctx context.Context, id string) error {
	if _, ok := s.clients[id]; ok {
		return ErrConfiguredClient
	}
	if id == "" {
		return ErrNoSuchClient
	}
	if err := s.store.Delete(ctx, nsClient, id); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return ErrNoSuchClient
		}
		return fmt.Errorf("removing a client: %w", err)
	}
	s.dynamicClients.Delete(id)
	s.log.Info("client removed by the operator", clientField(id))
	return nil
}

// SigningKeys lists the published signing keys, the current one first.
func (s *Server) SigningKeys() []signing.Key { return s.keys.Keys() }

// RotateSigningKey makes a new signing key current now (every node of the
// store takes it), and returns its key id. The previous key stays
// published while tokens it signed may live.
func (s *Server) RotateSigningKey(ctx context.Context) (string, error) {
	kid, err := s.keys.Rotate(ctx)
	if err != nil {
		return "", fmt.Errorf("rotating the signing keys: %w", err)
	}
	return kid, nil
}

// PolicyStatus is the state of the operator directory of rules.
type PolicyStatus struct {
	// Directory is the operator directory; empty when none is configured.
	Directory string `json:"directory,omitempty"`
	// Problems are the rules that do not compile, the system rules first
	// and then by owner.
	Problems []PolicyProblem `json:"problems"`
	// DirectoryError is the error of the last read of the directory,
	// empty after one succeeds.
	DirectoryError string `json:"directory_error,omitempty"`
}

// PolicyStatus returns the state of the rules loaded so far: what did not
// compile at their last load, and whether the operator directory could
// last be read.
func (s *Server) PolicyStatus() PolicyStatus {
	st := PolicyStatus{Directory: s.rules.Directory()}
	st.DirectoryError, st.Problems = s.rules.Status()
	return st
}

// ErrNoPolicyDirectory means that the AS has no operator directory of
// rules to reload.
var ErrNoPolicyDirectory = errors.New("no policies directory is configured")

// ReloadPolicies reads the operator directory now and compiles every
// owner's rules and the system rules again, without waiting for the next
// poll, and returns the state of the rules after it. An error reading the
// directory is returned (the rules in force stay), and is also in the
// status.
func (s *Server) ReloadPolicies(ctx context.Context) (PolicyStatus, error) {
	if s.watcher == nil {
		return PolicyStatus{}, ErrNoPolicyDirectory
	}
	err := s.watcher.Reload()
	if err != nil {
		s.rules.DirectoryFailed(err)
		return s.PolicyStatus(), fmt.Errorf("reloading the rules: %w", err)
	}
	s.log.Info("rules reloaded by the operator", zap.String("directory", s.rules.Directory()))
	return s.PolicyStatus(), ctx.Err()
}
