package authz

import (
	"net/http"
	"slices"
	"strings"

	"github.com/caddy-uma/caddy-uma/authz/oauth"
)

// grantClientCredentials issues an access token to the client itself: a
// PAT (scope uma_protection) for a resource server, and tokens for the
// other scopes the client registered.
func (s *Server) grantClientCredentials(w http.ResponseWriter, t *tokenRequest) error {
	c := t.client
	if c.public() {
		return oauth.New(oauth.UnauthorizedClient).WithDescription("public clients cannot use client_credentials")
	}
	allowed := slices.Clone(c.Scopes)
	if c.ResourceServer {
		allowed = append(allowed, ScopeProtection)
	}
	if len(allowed) == 0 {
		return oauth.New(oauth.UnauthorizedClient).WithDescription("this client may not use client_credentials")
	}
	var scopes []string
	if raw, ok := t.form["scope"]; ok {
		for _, sc := range strings.Fields(raw[0]) {
			if !slices.Contains(allowed, sc) {
				return oauth.New(oauth.InvalidScope).WithDescription("scope " + oauth.Quote(sc) + " is not available to this client")
			}
			if !slices.Contains(scopes, sc) {
				scopes = append(scopes, sc)
			}
		}
	} else if c.ResourceServer {
		scopes = []string{ScopeProtection}
	} else {
		scopes = slices.Clone(c.Scopes)
	}
	if len(scopes) == 0 {
		return oauth.New(oauth.InvalidScope).WithDescription("no scope requested")
	}
	tok, err := s.issueToken(t.r.Context(), tokenRecord{
		Kind:     kindAccess,
		Grant:    GrantTypeClientCredentials,
		ClientID: c.ID,
		Subject:  c.ID,
		Scopes:   scopes,
	}, s.patTTL)
	if err != nil {
		return oauth.ErrServer("could not issue a token", err)
	}
	s.log.Info("issued access token", clientField(c.ID), scopeField(scopes))
	oauth.WriteJSON(w, http.StatusOK, tokenResponse{
		AccessToken: tok,
		TokenType:   "Bearer",
		ExpiresIn:   int64(s.patTTL.Seconds()),
		Scope:       strings.Join(scopes, " "),
	})
	return nil
}
