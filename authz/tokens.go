package authz

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/caddy-uma/caddy-uma/authz/secret"
	"github.com/caddy-uma/caddy-uma/store"
)

// nsTokens is the Records namespace of opaque tokens, keyed by the
// SHA-256 of the token so that the store never holds a usable token.
const nsTokens = "token"

// ScopeProtection is the scope of a PAT.
const ScopeProtection = "uma_protection"

// Kinds of opaque tokens.
const (
	kindAccess  = "access_token"
	kindRefresh = "refresh_token"
	kindPCT     = "pct"
)

// tokenRecord is what the AS remembers of an opaque token it issued.
type tokenRecord struct {
	Kind     string   `json:"kind"`
	ClientID string   `json:"client_id"`
	Subject  string   `json:"sub"`
	Scopes   []string `json:"scopes,omitempty"`
	// Grant is how an access token was obtained: GrantTypeClientCredentials
	// (the client for itself) or GrantTypeAuthorizationCode (an owner's
	// consent). Only the former may act for any owner.
	Grant    string `json:"grant,omitempty"`
	IssuedAt int64  `json:"iat"`
	Expires  int64  `json:"exp"`
	// RqPIssuer and Claims are the requesting party's issuer and gathered
	// claims (PCTs and refresh tokens).
	RqPIssuer string         `json:"rqp_iss,omitempty"`
	Claims    map[string]any `json:"claims,omitempty"`
	// ResourceServer, Permissions and RPT are what a refresh token
	// refreshes: the permissions granted, for which resource server, and
	// the id of the RPT issued with it.
	ResourceServer string       `json:"rs,omitempty"`
	Permissions    []Permission `json:"perms,omitempty"`
	RPT            string       `json:"rpt,omitempty"`
}

func (t tokenRecord) hasScope(s string) bool { return slices.Contains(t.Scopes, s) }

// tokenKey is the store key of an opaque token.
func tokenKey(token string) string { return secret.Key(token) }

// issueToken creates an opaque token of 256 random bits and stores its
// record until it expires.
func (s *Server) issueToken(ctx context.Context, rec tokenRecord, ttl time.Duration) (string, error) {
	tok, w, err := s.newToken(rec, ttl)
	if err != nil {
		return "", err
	}
	if err := s.store.Insert(ctx, w.Namespace, w.Key, w.Value, w.ExpiresAt); err != nil {
		return "", fmt.Errorf("storing a token: %w", err)
	}
	return tok, nil
}

// newToken creates an opaque token of 256 random bits and returns the
// write that stores its record, for the caller to commit.
func (s *Server) newToken(rec tokenRecord, ttl time.Duration) (string, store.Write, error) {
	now := s.now()
	rec.IssuedAt = now.Unix()
	rec.Expires = now.Add(ttl).Unix()
	val, err := json.Marshal(rec)
	if err != nil {
		return "", store.Write{}, err
	}
	tok := secret.New(32)
	return tok, store.Write{Namespace: nsTokens, Key: tokenKey(tok), Value: val, ExpiresAt: time.Unix(rec.Expires, 0)}, nil
}

// errUnknownToken means that a token is not one the AS issued, or is no
// longer valid.
var errUnknownToken = errors.New("unknown, expired or revoked token")

// lookupToken returns the record of a live opaque token.
func (s *Server) lookupToken(ctx context.Context, token string) (tokenRecord, error) {
	rec, _, err := s.readToken(ctx, token)
	return rec, err
}

// readToken returns the record of a live opaque token and its stored
// value, for a write that is conditional on it.
func (s *Server) readToken(ctx context.Context, token string) (tokenRecord, []byte, error) {
	var rec tokenRecord
	if token == "" || len(token) > 512 {
		return rec, nil, errUnknownToken
	}
	val, err := s.store.Get(ctx, nsTokens, tokenKey(token))
	if errors.Is(err, store.ErrNotFound) {
		return rec, nil, errUnknownToken
	}
	if err != nil {
		return rec, nil, fmt.Errorf("reading a token: %w", err)
	}
	if err := json.Unmarshal(val, &rec); err != nil {
		return rec, nil, fmt.Errorf("decoding a token: %w", err)
	}
	if s.now().Unix() >= rec.Expires {
		return rec, nil, errUnknownToken
	}
	return rec, val, nil
}

// revokeToken deletes an opaque token. Unknown tokens are not an error.
func (s *Server) revokeToken(ctx context.Context, token string) error {
	err := s.store.Delete(ctx, nsTokens, tokenKey(token))
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("revoking a token: %w", err)
	}
	return nil
}
