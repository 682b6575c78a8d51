package authz

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// tokenResponse is the RFC 6749 section 5.1 success response.
type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in,omitempty"`
	RefreshToken string `json:"refresh_token,omitempty"`
	Scope        string `json:"scope,omitempty"`
	PCT          string `json:"pct,omitempty"`
	Upgraded     *bool  `json:"upgraded,omitempty"`
}

// serveToken is the token endpoint.
func (s *Server) serveToken(w http.ResponseWriter, r *http.Request) {
	form, err := readForm(w, r)
	if err != nil {
		writeError(w, err)
		return
	}
	grant := form.Get("grant_type")
	if grant == "" {
		writeError(w, errInvalidRequest("grant_type is required"))
		return
	}
	client, err := s.authenticateClient(r, form)
	if err != nil {
		writeError(w, err)
		return
	}
	switch grant {
	case "client_credentials":
		s.grantClientCredentials(w, r, client, form)
	case GrantTypeUMATicket:
		s.grantUMATicket(w, r, client, form)
	case "refresh_token":
		s.grantRefreshToken(w, r, client, form)
	case "authorization_code":
		if s.people == nil {
			writeError(w, errNoCodeGrant)
			return
		}
		s.grantAuthorizationCode(w, r, client, form)
	default:
		writeError(w, &oauthError{Status: http.StatusBadRequest, Code: "unsupported_grant_type",
			Description: "supported grant types: client_credentials, refresh_token, " + GrantTypeUMATicket})
	}
}

// grantClientCredentials issues an access token to the client itself: a
// PAT (scope uma_protection) for a resource server, and tokens for the
// other scopes the client registered.
func (s *Server) grantClientCredentials(w http.ResponseWriter, r *http.Request, c *registeredClient, form url.Values) {
	if c.public() {
		writeError(w, &oauthError{Status: http.StatusBadRequest, Code: "unauthorized_client",
			Description: "public clients cannot use client_credentials"})
		return
	}
	allowed := slices.Clone(c.Scopes)
	if c.ResourceServer {
		allowed = append(allowed, ScopeProtection)
	}
	if len(allowed) == 0 {
		writeError(w, &oauthError{Status: http.StatusBadRequest, Code: "unauthorized_client",
			Description: "this client may not use client_credentials"})
		return
	}
	var scopes []string
	if raw, ok := form["scope"]; ok {
		for _, sc := range strings.Fields(raw[0]) {
			if !slices.Contains(allowed, sc) {
				writeError(w, &oauthError{Status: http.StatusBadRequest, Code: "invalid_scope",
					Description: "scope " + quote(sc) + " is not available to this client"})
				return
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
		writeError(w, &oauthError{Status: http.StatusBadRequest, Code: "invalid_scope", Description: "no scope requested"})
		return
	}
	tok, err := s.issueToken(r.Context(), tokenRecord{
		Kind:     kindAccess,
		ClientID: c.ID,
		Subject:  c.ID,
		Scopes:   scopes,
	}, s.patTTL)
	if err != nil {
		s.log.Error("issuing an access token", errField(err))
		writeError(w, errServer("could not issue a token"))
		return
	}
	s.log.Info("issued access token", clientField(c.ID), scopeField(scopes))
	writeJSON(w, http.StatusOK, tokenResponse{
		AccessToken: tok,
		TokenType:   "Bearer",
		ExpiresIn:   int64(s.patTTL.Seconds()),
		Scope:       strings.Join(scopes, " "),
	})
}
