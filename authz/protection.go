package authz

import (
	"errors"
	"net/http"

	"github.com/caddy-uma/caddy-uma/authz/oauth"
	"github.com/caddy-uma/caddy-uma/store"
)

// protectionCaller is a resource server calling the protection API with a
// PAT, on behalf of a resource owner.
type protectionCaller struct {
	// ClientID is the resource server.
	ClientID string
	// Subject is the PAT's subject: the resource owner for a PAT obtained
	// by an owner's consent, or the resource server itself for a PAT
	// obtained with client credentials.
	Subject string
	// ForItself says that the resource server authenticated as itself
	// (client credentials), not with a PAT an owner consented to. A person
	// whose subject happens to equal the client id does not make it so.
	ForItself bool
}

// actsForAnyOwner reports whether the caller acts for itself (client
// credentials), and may therefore name the owner of what it registers.
func (c protectionCaller) actsForAnyOwner() bool { return c.ForItself }

// mayManage reports whether res is within the caller's reach: registered by
// this resource server, and for an owner's PAT, owned by that owner.
func (c protectionCaller) mayManage(res store.Resource) bool {
	if res.ResourceServer != c.ClientID {
		return false
	}
	return c.actsForAnyOwner() || res.Owner == c.Subject
}

// requirePAT authenticates a protection API request. RFC 6750 errors: no
// token is a 401 with a bare challenge, a bad token a 401 invalid_token,
// and a token without uma_protection a 403 insufficient_scope.
func (s *Server) requirePAT(r *http.Request) (protectionCaller, error) {
	tok, ok := oauth.BearerToken(r)
	if !ok {
		return protectionCaller{}, oauth.New(oauth.InvalidToken).
			WithDescription("a PAT is required as a Bearer token").
			WithChallenge(oauth.BearerChallenge(s.issuer, "", "", ""))
	}
	rec, err := s.lookupToken(r.Context(), tok)
	if err != nil && !errors.Is(err, errUnknownToken) {
		return protectionCaller{}, oauth.ErrServer("could not check the token", err)
	}
	c := s.clients[rec.ClientID]
	// An access token without a recorded grant predates the record of how
	// it was obtained: refused, so that its holder obtains a new one.
	if err != nil || rec.Kind != kindAccess || c == nil || rec.Grant == "" {
		const desc = "the token is unknown, expired or revoked"
		return protectionCaller{}, oauth.New(oauth.InvalidToken).WithDescription(desc).
			WithChallenge(oauth.BearerChallenge(s.issuer, oauth.InvalidToken, desc, ""))
	}
	if !rec.hasScope(ScopeProtection) || !c.ResourceServer {
		return protectionCaller{}, oauth.New(oauth.InsufficientScope).
			WithDescription("the token does not have the uma_protection scope").
			WithChallenge(oauth.BearerChallenge(s.issuer, oauth.InsufficientScope, "", ScopeProtection))
	}
	return protectionCaller{ClientID: rec.ClientID, Subject: rec.Subject, ForItself: rec.Grant == GrantTypeClientCredentials}, nil
}

// withPAT authenticates the caller of a protection or owner API endpoint
// before h runs.
func (s *Server) withPAT(h func(w http.ResponseWriter, r *http.Request, caller protectionCaller) error) handler {
	return func(w http.ResponseWriter, r *http.Request) error {
		caller, err := s.requirePAT(r)
		if err != nil {
			return err
		}
		return h(w, r, caller)
	}
}
