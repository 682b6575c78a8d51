package keycloak

import (
	"errors"
	"net/http"
	"net/url"

	"github.com/caddy-uma/caddy-uma/authz"
	"github.com/caddy-uma/caddy-uma/authz/claimtoken"
	"github.com/caddy-uma/caddy-uma/authz/oauth"
)

// The UMA grant on Keycloak's token path, in Keycloak's dialect
// (authz.Dialect): the requesting party identified by a token of the
// person (party.go), claims a client pushes itself (claims.go), and
// Keycloak's answers (uma-spec section 13.3).

// grant decides a UMA grant request on Keycloak's token path and answers
// as Keycloak does: a claim token without a format is an ID token; a
// previous RPT that is not ours is 403 invalid_rpt; a bad, spent or
// expired ticket 403 invalid_ticket; a request of which nothing is
// granted 403 access_denied, not_authorized (or request_submitted,
// refusal), with no ticket and no need_info.
func (c *Compat) grant(r *http.Request, form url.Values, decide func() error) error {
	if form.Get("claim_token") != "" && form.Get("claim_token_format") == "" {
		// Keycloak's default format (keycloak-js sends none unless told).
		form.Set("claim_token_format", claimtoken.FormatIDToken)
	}
	if raw := form.Get("rpt"); raw != "" {
		_, err := c.as.ReadRPT(r.Context(), raw)
		switch {
		case errors.Is(err, authz.ErrInvalidRPT):
			return oauth.New(oauth.InvalidRPT).WithDescription("RPT signature is invalid")
		case err != nil:
			return oauth.ErrServer("could not read the RPT", err)
		}
	}
	err := decide()
	var e *oauth.Error
	if err == nil || !errors.As(err, &e) {
		return err
	}
	switch e.Code {
	case oauth.InvalidGrant:
		if form.Get("ticket") != "" {
			return oauth.New(oauth.InvalidTicket).WithDescription(e.Description)
		}
	case oauth.NeedInfo, oauth.RequestDenied, oauth.RequestSubmitted:
		return errNotAuthorized()
	}
	return err
}

// refusal is Keycloak's answer to a request of which nothing was granted
// (authz.Dialect.Refusal): 403 access_denied, request_submitted when the
// request was filed with the owner (with a ticket, an identified
// requesting party and submit_request, Keycloak's default), and
// not_authorized otherwise. Keycloak asks for no more claims, so there is
// no need_info, and no ticket is returned.
func refusal(submitted bool) error {
	if submitted {
		return oauth.New(oauth.AccessDenied).WithDescription("request_submitted")
	}
	return errNotAuthorized()
}

// errNotAuthorized is Keycloak's answer to a request that is not granted.
func errNotAuthorized() *oauth.Error {
	return oauth.New(oauth.AccessDenied).WithDescription("not_authorized")
}
