package authz

import (
	"context"
	"errors"

	"github.com/caddy-uma/caddy-uma/authz/owners"
	"github.com/caddy-uma/caddy-uma/policies"
	"github.com/caddy-uma/caddy-uma/store"
)

// The owners' data (package owners: shares, access requests, rules,
// histories) as the Server's API, for the pages, the owner API and
// Keycloak's paths.

// Owners' data types.
type (
	// Share gives a requesting party scopes on one resource.
	Share = owners.Share
	// AccessRequest is a request for access sent to an owner.
	AccessRequest = owners.AccessRequest
	// DecisionRecord is one access decision in an owner's history.
	DecisionRecord = owners.DecisionRecord
	// PolicyProblem is what the last load of one owner's rules from the
	// operator directory (or of the system rules) found wrong.
	PolicyProblem = owners.LoadProblem
)

// Request statuses.
const (
	RequestPending  = owners.RequestPending
	RequestApproved = owners.RequestApproved
	RequestDenied   = owners.RequestDenied
)

// Decision outcomes of the history.
const (
	OutcomeGranted = owners.OutcomeGranted
	OutcomePartly  = owners.OutcomePartly
	OutcomeRefused = owners.OutcomeRefused
	OutcomeError   = owners.OutcomeError
	OutcomeAsked   = owners.OutcomeAsked
)

// Errors of the owners' data.
var (
	ErrNoSuchShare    = owners.ErrNoSuchShare
	ErrNoSuchRequest  = owners.ErrNoSuchRequest
	ErrRequestDecided = owners.ErrRequestDecided
	ErrBadRuleName    = owners.ErrBadRuleName
	ErrNoSuchRule     = owners.ErrNoSuchRule
)

// sep separates the parts of a store key.
const sep = "\x00"

// nsRequest is the namespace of access requests, which
// DecideRequestScope narrows (extension.go; Keycloak's permission
// tickets).
const nsRequest = owners.NamespaceRequests

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

// ResourceShares returns the live shares of one of owner's resources.
func (s *Server) ResourceShares(ctx context.Context, owner, resourceID string) ([]Share, error) {
	return s.shares.ResourceShares(ctx, owner, resourceID)
}

func (s *Server) sharesOf(ctx context.Context, owner, resourceID string) ([]Share, error) {
	return s.shares.ResourceShares(ctx, owner, resourceID)
}

// Shares returns every live share an owner made, sorted by resource.
func (s *Server) Shares(ctx context.Context, owner string) ([]Share, error) {
	return s.shares.Shares(ctx, owner)
}

// AddShare stores a share of one of owner's resources.
func (s *Server) AddShare(ctx context.Context, sh Share) (Share, error) {
	return s.shares.AddShare(ctx, sh)
}

// SharedWith returns the live shares naming a person, by subject or by
// verified e-mail address (either may be empty), newest first.
func (s *Server) SharedWith(ctx context.Context, subject, email string) ([]Share, error) {
	return s.shares.SharedWith(ctx, subject, email)
}

// RevokeShare deletes one of owner's shares, and revokes the live RPTs and
// refresh tokens of the requesting parties it names on its resource. It
// returns the share and how many tokens were revoked.
func (s *Server) RevokeShare(ctx context.Context, owner, resourceID, id string) (Share, int, error) {
	sh, writes, n, err := s.shares.RevokeShare(ctx, owner, resourceID, id, func(h owners.TokenHolder) []store.Write {
		w := []store.Write{{Namespace: nsRPT, Key: h.RPT, Delete: true}}
		if h.Refresh != "" {
			w = append(w, store.Write{Namespace: nsTokens, Key: h.Refresh, Delete: true})
		}
		return w
	})
	s.forgetRevoked(writes)
	return sh, n, err
}

// resourceIDs returns the resources of permissions.
func resourceIDs(perms []Permission) []string {
	out := make([]string, len(perms))
	for i, p := range perms {
		out[i] = p.ResourceID
	}
	return out
}

// FileRequest stores a pending request unless the same one exists, and
// returns the stored one (which may already be decided).
func (s *Server) FileRequest(ctx context.Context, req AccessRequest) (AccessRequest, error) {
	return s.requests.FileRequest(ctx, req)
}

// Request returns one of owner's requests.
func (s *Server) Request(ctx context.Context, owner, id string) (AccessRequest, error) {
	return s.requests.Request(ctx, owner, id)
}

// Requests returns an owner's requests, pending first, newest first.
func (s *Server) Requests(ctx context.Context, owner string) ([]AccessRequest, error) {
	return s.requests.Requests(ctx, owner)
}

// DecideRequest approves or denies an owner's pending request. Approval
// creates a share of the requested scopes with the requesting party,
// restricted to the requesting client.
func (s *Server) DecideRequest(ctx context.Context, owner, id string, approve bool) (AccessRequest, error) {
	return s.requests.DecideRequest(ctx, owner, id, approve)
}

// Rules returns an owner's rule modules, those from the operator directory
// included (named "dir/<file>", read-only).
func (s *Server) Rules(ctx context.Context, owner string) (map[string]string, error) {
	return s.rules.Rules(ctx, owner)
}

// PutRule stores (or replaces) one of an owner's rule modules, or Rego
// tests, after checking that they compile (owners.Rules.PutRule).
func (s *Server) PutRule(ctx context.Context, owner, name, source string) error {
	return s.rules.PutRule(ctx, owner, name, source)
}

// DeleteRule removes one of an owner's rule modules, after checking that
// the others still compile without it.
func (s *Server) DeleteRule(ctx context.Context, owner, name string) error {
	return s.rules.DeleteRule(ctx, owner, name)
}

// RuleTests runs an owner's Rego tests against the owner's rules
// (owners.Rules.RuleTests).
func (s *Server) RuleTests(ctx context.Context, owner string) (policies.TestReport, error) {
	return s.rules.RuleTests(ctx, owner)
}

// History returns an owner's newest access decisions, at most limit,
// including those still in the history queue.
func (s *Server) History(ctx context.Context, owner string, limit int) ([]DecisionRecord, error) {
	return s.history.History(ctx, owner, limit)
}
