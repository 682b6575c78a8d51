package authz

import (
	"context"
	"errors"
	"net/http"

	"github.com/caddy-uma/caddy-uma/authz/claimtoken"
	"github.com/caddy-uma/caddy-uma/authz/oauth"
)

// keycloakTokenRoutes are Keycloak's token, introspection and key paths.
func (s *Server) keycloakTokenRoutes() []route {
	refusal := oauth.ErrMethodNotAllowed
	return []route{
		{path: KeycloakPathToken, methods: []method{onPost(asKeycloak(s.serveToken))}, refuse: refusal},
		{path: KeycloakPathIntrospect, methods: []method{onPost(asKeycloak(s.serveIntrospect))}, refuse: refusal, authenticate: s.introspectionCaller},
		{path: KeycloakPathCerts, methods: []method{onGet(s.serveJWKS)}, refuse: refusal},
	}
}

// keycloakGrant decides a UMA grant request on Keycloak's token path and
// answers as Keycloak does (uma-spec section 13.3): a claim token without
// a format is an ID token; a previous RPT that is not ours is 403
// invalid_rpt; a bad, spent or expired ticket 403 invalid_ticket; a
// request of which nothing is granted 403 access_denied, not_authorized
// (or request_submitted, keycloakRefusal), with no ticket and no
// need_info.
func (s *Server) keycloakGrant(w http.ResponseWriter, t *tokenRequest) error {
	if t.form.Get("claim_token") != "" && t.form.Get("claim_token_format") == "" {
		// Keycloak's default format (keycloak-js sends none unless told).
		t.form.Set("claim_token_format", claimtoken.FormatIDToken)
	}
	if raw := t.form.Get("rpt"); raw != "" {
		_, _, err := s.parseRPT(t.r.Context(), raw)
		switch {
		case errors.Is(err, errInvalidRPT):
			return oauth.New(oauth.InvalidRPT).WithDescription("RPT signature is invalid")
		case err != nil:
			return oauth.ErrServer("could not read the RPT", err)
		}
	}
	err := s.umaGrant(w, t)
	var e *oauth.Error
	if err == nil || !errors.As(err, &e) {
		return err
	}
	switch e.Code {
	case oauth.InvalidGrant:
		if t.form.Get("ticket") != "" {
			return oauth.New(oauth.InvalidTicket).WithDescription(e.Description)
		}
	case oauth.NeedInfo, oauth.RequestDenied, oauth.RequestSubmitted:
		return errNotAuthorized("")
	}
	return err
}

// identify makes the requesting party that a person's token identified
// (tokenRequest.party) the process's, with the token's claims, and keeps
// the claims a push_claims client pushed apart from them.
func (s *Server) identify(g *grantState) error {
	if p := g.party; p != nil && p.resourceServer != "" && p.resourceServer != g.rs {
		s.log.Info("an RPT presented as the requesting party's token for another resource server", clientField(g.client.ID))
		return errNotAuthorized("")
	}
	if p := g.party; p != nil && p.subject != "" {
		same := g.proc.Subject == p.subject && g.proc.RqPIssuer == p.issuer
		switch {
		case g.pushed && !same:
			return oauth.ErrInvalidRequest("the claim token and the token of the requesting party are not of the same person")
		case !same:
			g.proc.Claims = nil // another requesting party: start over
		}
		g.proc.Subject, g.proc.RqPIssuer = p.subject, p.issuer
		g.proc.Claims = mergeClaims(g.proc.Claims, p.claims)
	}
	if g.pushedClaims != nil {
		g.proc.PushedClaims = g.pushedClaims
	}
	return nil
}

// keycloakRefusal answers, on Keycloak's path, a request of which nothing
// was granted. With a ticket, an identified requesting party and
// submit_request (Keycloak's default), the permissions that the owners'
// rules send to the owner (ask_owner) are filed with them and the answer
// is 403 access_denied, request_submitted; every other refusal is 403
// access_denied, not_authorized. Keycloak asks for no more claims, so
// there is no need_info, and no ticket is returned.
func (s *Server) keycloakRefusal(ctx context.Context, g *grantState, a assessment) error {
	if err := s.spendTicket(ctx, g); err != nil {
		return err
	}
	if !g.opts.submit || g.ticket.ID == "" || g.proc.Subject == "" || len(a.askOwner) == 0 {
		return errNotAuthorized("")
	}
	denied, err := s.fileRequests(ctx, g, a.askOwner)
	switch {
	case err != nil:
		return err
	case denied:
		return errNotAuthorized("")
	}
	g.audit.requestSubmitted()
	return oauth.New(oauth.AccessDenied).WithDescription("request_submitted")
}
