package authz

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strings"

	"go.uber.org/zap"

	"github.com/caddy-uma/caddy-uma/authz/claimtoken"
	"github.com/caddy-uma/caddy-uma/authz/oauth"
)

// The requesting party of a UMA grant request on Keycloak's token path,
// identified as Keycloak identifies it: by a token of the person, not by
// pushed claims.
//
//   - Authorization: Bearer <token>, without client authentication
//     (gocloak, keycloak-js). The client is the one the token was issued
//     to (its azp, or else its only aud; for an RPT of this AS, the RPT's
//     client), which must be registered here and must not be a resource
//     server: a resource server authenticates itself.
//   - subject_token=<token> with client authentication (keycloak-connect's
//     enforcer). A resource server may present the token of a person who
//     called it, whichever client the token was issued to; any other
//     client only a token issued to itself.
//
// The token is one that a trusted issuer signed, checked as pushed claim
// tokens are (claimtoken.Verifier: signature, issuer, audience, expiry, the
// client it was issued to), or an RPT of this AS (signature, issuer,
// expiry, not revoked), whose requesting party it carries on at its own
// resource server (elsewhere the answer is not_authorized). Its verified
// claims count as those of a pushed claim token do. A token that does not
// pass is answered as Keycloak answers: 401 invalid_grant "Invalid bearer
// token" (Bearer) or 400 unauthorized_client "Invalid identity"
// (subject_token); when the issuer's keys cannot be had, 503.

// requestingParty is who a verified token of a person says the
// requesting party is.
type requestingParty struct {
	subject, issuer string
	// claims are the token's verified claims (none for an RPT).
	claims map[string]any
	// resourceServer, for an RPT, is its resource server, the only one at
	// which it names the requesting party: an RPT reaches the resource
	// server it is for, which must not use it to ask for more elsewhere.
	resourceServer string
}

// tokenClient authenticates the client of a token request. On Keycloak's
// token path, a UMA grant request may instead present a person's token
// as a Bearer token, which names both the client and the requesting
// party, or a subject_token beside client authentication.
func (s *Server) tokenClient(r *http.Request, form url.Values, grant string) (*registeredClient, *requestingParty, error) {
	if !keycloakRequest(r) || grant != GrantTypeUMATicket {
		c, err := s.authenticateClient(r, form)
		return c, nil, err
	}
	if tok, ok := oauth.BearerToken(r); ok {
		return s.bearerParty(r.Context(), tok, form)
	}
	c, err := s.authenticateClient(r, form)
	if err != nil {
		return nil, nil, err
	}
	tok := strings.TrimSpace(form.Get("subject_token"))
	if tok == "" {
		return c, nil, nil
	}
	presenter := c.ID
	if c.ResourceServer {
		presenter = "" // the token of whoever called the resource server
	}
	p, _, err := s.verifyPartyToken(r.Context(), tok, presenter)
	if err != nil {
		return nil, nil, s.partyRefused(err, c.ID, oauth.New(oauth.UnauthorizedClient).WithDescription("Invalid identity"))
	}
	return c, p, nil
}

// bearerParty identifies the client and the requesting party of a UMA
// grant request by the Bearer token of a person.
func (s *Server) bearerParty(ctx context.Context, tok string, form url.Values) (*registeredClient, *requestingParty, error) {
	if form.Get("client_secret") != "" {
		return nil, nil, oauth.ErrInvalidRequest("use only one client authentication method: a Bearer token or client credentials")
	}
	invalid := oauth.New(oauth.InvalidGrant).WithStatus(http.StatusUnauthorized).WithDescription("Invalid bearer token")
	p, clientID, err := s.verifyPartyToken(ctx, tok, "")
	if err != nil {
		return nil, nil, s.partyRefused(err, "", invalid)
	}
	c, err := s.client(ctx, clientID)
	switch {
	case err != nil:
		return nil, nil, oauth.ErrServer("could not read a registered client", err)
	case c == nil:
		return nil, nil, s.partyRefused(fmt.Errorf("the token was issued to %s, which is not a client of this authorization server", oauth.Quote(clientID)), "", invalid)
	case c.ResourceServer:
		return nil, nil, s.partyRefused(fmt.Errorf("the token was issued to the resource server %s, which must authenticate itself", oauth.Quote(clientID)), "", invalid)
	}
	if id := form.Get("client_id"); id != "" && id != c.ID {
		return nil, nil, oauth.ErrInvalidRequest("client_id does not match the client the bearer token was issued to")
	}
	return c, p, nil
}

// verifyPartyToken verifies a person's token presented by the client
// presenter ("" for the client the token names) and returns the
// requesting party and the client it was issued to.
func (s *Server) verifyPartyToken(ctx context.Context, tok, presenter string) (*requestingParty, string, error) {
	u, err := claimtoken.Peek(tok)
	if err != nil {
		return nil, "", err
	}
	if u.Issuer == s.issuer {
		_, rec, err := s.parseRPT(ctx, tok)
		switch {
		case errors.Is(err, errInvalidRPT):
			return nil, "", err
		case err != nil:
			return nil, "", serverFault{err}
		case s.now().Unix() >= rec.Expires:
			return nil, "", errors.New("the RPT has expired")
		case presenter != "" && rec.ClientID != presenter:
			return nil, "", errors.New("the RPT was issued to another client")
		}
		p := &requestingParty{resourceServer: rec.ResourceServer}
		if rec.Subject != rec.ClientID || rec.RqPIssuer != "" {
			// An RPT a client obtained for itself names no person.
			p.subject, p.issuer = rec.Subject, rec.RqPIssuer
		}
		return p, rec.ClientID, nil
	}
	if s.claimTokens == nil {
		return nil, "", errors.New("this authorization server trusts no issuer of tokens")
	}
	client := presenter
	if client == "" {
		client = u.IssuedTo
	}
	if client == "" {
		return nil, "", errors.New("the token names no client it was issued to (azp, or a single aud)")
	}
	claims, err := s.claimTokens.Verify(ctx, claimtoken.FormatJWT, tok, client)
	if err != nil {
		return nil, "", err
	}
	if claims.Subject == "" {
		return nil, "", errors.New("the token has no sub")
	}
	return &requestingParty{subject: claims.Subject, issuer: claims.Issuer, claims: claims.Values}, client, nil
}

// partyRefused is the answer to a person's token that failed: 503 when the
// issuer's keys or the store could not be read, refusal otherwise. The
// reason is logged, never the token.
func (s *Server) partyRefused(err error, clientID string, refusal *oauth.Error) error {
	if errors.Is(err, claimtoken.ErrKeysUnavailable) {
		return claimKeysUnavailable(err)
	}
	if errors.As(err, new(serverFault)) {
		return oauth.ErrServer("could not verify the token", err)
	}
	s.log.Info("requesting party's token refused", clientField(clientID), zap.String("reason", err.Error()))
	return refusal
}

// serverFault is an error of the server while verifying a token (the
// store could not be read), not a fault of the token.
type serverFault struct{ err error }

func (e serverFault) Error() string { return e.err.Error() }
func (e serverFault) Unwrap() error { return e.err }

// claimKeysUnavailable is the 503 for a token whose issuer's keys cannot
// be fetched now: the token may well be good, and the client should send
// the same request again after Retry-After.
func claimKeysUnavailable(err error) *oauth.Error {
	retryAfter := int(math.Ceil(claimtoken.KeysRetryInterval.Seconds()))
	return oauth.ErrUnavailable("the signing keys of the token's issuer cannot be fetched now; send the same request again", retryAfter, err)
}
