package authz

import (
	"context"
	"testing"

	"github.com/lestrrat-go/jwx/v3/jwt"

	"github.com/caddy-uma/caddy-uma/authz/owners"
	"github.com/caddy-uma/caddy-uma/authz/signing"
)

// Hooks for the tests in package authz_test: they reach what the tests
// check and the exported API does not show. This file is compiled only
// with the tests.

// Store namespaces.
const (
	NSClient      = nsClient
	NSTokens      = nsTokens
	NSTicketsUsed = nsTicketsUsed
	NSSecrets     = nsSecrets
	NSSigningKeys = signing.Namespace
)

// Wire types.
type (
	RegistrationResponse = registrationResponse
	ResourceDescription  = resourceDescription
	Ticket               = ticket
)

// OpenTicket opens a sealed ticket without consuming it.
func (s *Server) OpenTicket(raw string) (Ticket, error) { return s.openTicket(raw) }

// ConsumeTicket marks a ticket used.
func (s *Server) ConsumeTicket(ctx context.Context, t Ticket) error { return s.consumeTicket(ctx, t) }

// Sign signs a token with the current key.
func (s *Server) Sign(ctx context.Context, tok jwt.Token) (string, error) {
	return s.keys.Sign(ctx, tok)
}

// VerifySignature checks a token's signature with the published keys.
func (s *Server) VerifySignature(token string) (jwt.Token, error) {
	return s.keys.Verify(context.Background(), token)
}

// ReloadKeys reads the signing keys from the store again.
func (s *Server) ReloadKeys(ctx context.Context) error { return s.keys.Load(ctx) }

// ClientSecretMatches checks a configured client's secret, and returns how
// many secrets its bcrypt cache holds.
func (s *Server) ClientSecretMatches(id, given string) (ok bool, cached int) {
	c := s.clients[id]
	ok = c.checkSecret(given)
	if c.hashed != nil {
		cached = c.hashed.Matched()
	}
	return ok, cached
}

// RecordDecision adds a decision to an owner's history, through the
// history queue.
func (s *Server) RecordDecision(ctx context.Context, owner string, rec DecisionRecord) {
	s.history.Queue([]owners.HistoryEntry{{Owner: owner, Record: rec}})
}

// AddShareForTest shares a resource with a subject.
func (s *Server) AddShareForTest(t *testing.T, owner, resourceID, subject string, scopes ...string) error {
	t.Helper()
	_, err := s.AddShare(t.Context(), Share{Owner: owner, ResourceID: resourceID, Subject: subject, Scopes: scopes})
	return err
}

// RoutePatterns returns the "METHOD path" of every route of the AS's route
// table (relative to the issuer's path), for the check of
// docs/openapi.yaml.
func (s *Server) RoutePatterns() []string {
	var out []string
	for _, rt := range s.routeTable() {
		for _, m := range rt.methods {
			out = append(out, m.name+" "+rt.path)
		}
	}
	return out
}
