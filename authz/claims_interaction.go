package authz

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// The claims interaction endpoint (UMA 2.0 Grant section 3.3.2) is served
// by package people: a client whose grant answered need_info with
// redirect_user sends the requesting party's browser there with its
// ticket, the person logs in and agrees to share who they are, and the
// browser goes back to the client with a new ticket. This file holds the
// protocol's part: taking the ticket out of circulation at the start, and
// joining the person's claims to the authorization process at the end, as
// pushed claims do, so that the client's next token request with the new
// ticket is decided with them.

// heldTicketAAD seals a ticket held by a claims interaction: it can resume
// the interaction, and cannot be redeemed at the token endpoint.
const heldTicketAAD = "caddy-uma held ticket v1"

// ClaimsInteractionTTL bounds a claims interaction, logging in included.
const ClaimsInteractionTTL = 15 * time.Minute

// ClaimsInteraction is a permission ticket taken out of circulation while
// its requesting party proves who they are.
type ClaimsInteraction struct {
	// ClientID is the client the ticket was presented by.
	ClientID string `json:"client_id"`
	// Owner owns the resources the ticket asks for.
	Owner string `json:"owner"`
	// ResourceIDs are the resources the ticket asks for.
	ResourceIDs []string `json:"resource_ids"`
	// Held is the consumed ticket, sealed for FinishClaimsInteraction.
	Held string `json:"held"`
}

// RequestingParty is who a person proved to be, with their identity
// claims (sub, iss, name, email, email_verified, groups, ...).
type RequestingParty struct {
	Subject string
	Issuer  string
	Claims  map[string]any
}

// StartClaimsInteraction consumes the ticket a client sent the requesting
// party with. Errors: ErrTicketInvalid, ErrTicketOtherClient,
// ErrTicketUsed, or a store error.
func (s *Server) StartClaimsInteraction(ctx context.Context, clientID, rawTicket string) (ClaimsInteraction, error) {
	var ci ClaimsInteraction
	t, err := s.takeTicket(ctx, clientID, rawTicket)
	if err != nil {
		return ci, err
	}
	ci.ClientID, ci.Owner = clientID, t.Owner
	for _, p := range t.Permissions {
		ci.ResourceIDs = append(ci.ResourceIDs, p.ResourceID)
	}
	t.Expires = s.now().Add(ClaimsInteractionTTL).Unix()
	if ci.Held, err = s.seal(t, heldTicketAAD); err != nil {
		return ci, err
	}
	s.log.Info("claims interaction started", clientField(clientID), ownerField(t.Owner))
	return ci, nil
}

// FinishClaimsInteraction joins the requesting party's claims to the
// authorization process of the held ticket and returns the ticket the
// client continues with. keep is the party's consent to having the claims
// kept: the grant then issues a PCT.
func (s *Server) FinishClaimsInteraction(ctx context.Context, ci ClaimsInteraction, rp RequestingParty, keep bool) (string, error) {
	t, err := s.openSealed(ci.Held, heldTicketAAD)
	if err != nil {
		return "", err
	}
	c, err := s.client(ctx, ci.ClientID)
	if err != nil {
		return "", err
	}
	if c == nil {
		return "", errors.New("the client is no longer registered")
	}
	proc, procID, err := s.loadProcess(ctx, c.ID, t.Process)
	if err != nil {
		return "", err
	}
	if proc.Subject != "" && (proc.Subject != rp.Subject || proc.RqPIssuer != rp.Issuer) {
		proc.Claims = nil // another requesting party: start over
	}
	proc.ClientID = c.ID
	proc.Subject, proc.RqPIssuer = rp.Subject, rp.Issuer
	proc.Claims = mergeClaims(proc.Claims, rp.Claims)
	proc.KeepClaims = keep
	// The ticket was spent when the interaction started.
	g := &grantState{tokenRequest: &tokenRequest{client: c}, ticket: t, proc: proc, procID: procID, spent: true}
	next, err := s.rotateTicket(ctx, g)
	if err != nil {
		return "", fmt.Errorf("rotating a ticket: %w", err)
	}
	s.log.Info("claims gathered interactively", clientField(c.ID), ownerField(t.Owner), requestingPartyField(rp.Subject))
	return next, nil
}

// PCTLifetime is how long a PCT lives: how long the claims of a party who
// agreed to have them kept are kept.
func (s *Server) PCTLifetime() time.Duration { return s.pctTTL }
