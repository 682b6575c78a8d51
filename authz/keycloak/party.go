package keycloak

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"go.uber.org/zap"

	"github.com/caddy-uma/caddy-uma/authz"
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

// tokenClient identifies the client of a UMA grant request on Keycloak's
// token path, and the requesting party (authz.Dialect.UMAClient): by the
// Bearer token of a person, which names both, or by client
// authentication and a subject_token.
func (c *Compat) tokenClient(r *http.Request, form url.Values) (string, *authz.Party, error) {
	if tok, ok := oauth.BearerToken(r); ok {
		return c.bearerParty(r.Context(), tok, form)
	}
	client, err := c.as.AuthenticateClient(r, form)
	if err != nil {
		return "", nil, err
	}
	tok := strings.TrimSpace(form.Get("subject_token"))
	if tok == "" {
		return client.ID, nil, nil
	}
	presenter := client.ID
	if client.ResourceServer {
		presenter = "" // the token of whoever called the resource server
	}
	p, _, err := c.verifyPartyToken(r.Context(), tok, presenter)
	if err != nil {
		return "", nil, c.partyRefused(err, client.ID, oauth.New(oauth.UnauthorizedClient).WithDescription("Invalid identity"))
	}
	return client.ID, p, nil
}

// bearerParty identifies the client and the requesting party of a UMA
// grant request by the Bearer token of a person.
func (c *Compat) bearerParty(ctx context.Context, tok string, form url.Values) (string, *authz.Party, error) {
	if form.Get("client_secret") != "" {
		return "", nil, oauth.ErrInvalidRequest("use only one client authentication method: a Bearer token or client credentials")
	}
	invalid := oauth.New(oauth.InvalidGrant).WithStatus(http.StatusUnauthorized).WithDescription("Invalid bearer token")
	p, clientID, err := c.verifyPartyToken(ctx, tok, "")
	if err != nil {
		return "", nil, c.partyRefused(err, "", invalid)
	}
	client, ok, err := c.as.LookupClient(ctx, clientID)
	switch {
	case err != nil:
		return "", nil, oauth.ErrServer("could not read a registered client", err)
	case !ok:
		return "", nil, c.partyRefused(fmt.Errorf("the token was issued to %s, which is not a client of this authorization server", oauth.Quote(clientID)), "", invalid)
	case client.ResourceServer:
		return "", nil, c.partyRefused(fmt.Errorf("the token was issued to the resource server %s, which must authenticate itself", oauth.Quote(clientID)), "", invalid)
	}
	if id := form.Get("client_id"); id != "" && id != client.ID {
		return "", nil, oauth.ErrInvalidRequest("client_id does not match the client the bearer token was issued to")
	}
	return client.ID, p, nil
}

// verifyPartyToken verifies a person's token presented by the client
// presenter ("" for the client the token names) and returns the
// requesting party and the client it was issued to.
func (c *Compat) verifyPartyToken(ctx context.Context, tok, presenter string) (*authz.Party, string, error) {
	u, err := claimtoken.Peek(tok)
	if err != nil {
		return nil, "", err
	}
	if u.Issuer == c.as.Issuer() {
		rpt, err := c.as.ReadRPT(ctx, tok)
		switch {
		case errors.Is(err, authz.ErrInvalidRPT):
			return nil, "", err
		case err != nil:
			return nil, "", serverFault{err}
		case !c.now().Before(rpt.ExpiresAt):
			return nil, "", errors.New("the RPT has expired")
		case presenter != "" && rpt.ClientID != presenter:
			return nil, "", errors.New("the RPT was issued to another client")
		}
		p := &authz.Party{ResourceServer: rpt.ResourceServer}
		if rpt.Subject != rpt.ClientID || rpt.RqPIssuer != "" {
			// An RPT a client obtained for itself names no person.
			p.Subject, p.Issuer = rpt.Subject, rpt.RqPIssuer
		}
		return p, rpt.ClientID, nil
	}
	client := presenter
	if client == "" {
		client = u.IssuedTo
	}
	if client == "" {
		return nil, "", errors.New("the token names no client it was issued to (azp, or a single aud)")
	}
	claims, err := c.as.VerifyClaimToken(ctx, claimtoken.FormatJWT, tok, client)
	if err != nil {
		return nil, "", err
	}
	if claims.Subject == "" {
		return nil, "", errors.New("the token has no sub")
	}
	return &authz.Party{Subject: claims.Subject, Issuer: claims.Issuer, Claims: claims.Values}, client, nil
}

// partyRefused is the answer to a person's token that failed: 503 when the
// issuer's keys or the store could not be read, refusal otherwise. The
// reason is logged, never the token.
func (c *Compat) partyRefused(err error, clientID string, refusal *oauth.Error) error {
	if errors.Is(err, claimtoken.ErrKeysUnavailable) {
		return authz.ClaimKeysUnavailable(err)
	}
	if errors.As(err, new(serverFault)) {
		return oauth.ErrServer("could not verify the token", err)
	}
	c.log.Info("requesting party's token refused", zap.String("client_id", clientID), zap.String("reason", err.Error()))
	return refusal
}

// serverFault is an error of the server while verifying a token (the
// store could not be read), not a fault of the token.
type serverFault struct{ err error }

func (e serverFault) Error() string { return e.err.Error() }
func (e serverFault) Unwrap() error { return e.err }
