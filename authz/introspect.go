package authz

import (
	"errors"
	"net/http"
	"strings"
)

// introspectionResponse is an RFC 7662 response with the UMA permissions
// extension (Federated Authorization section 5.1).
type introspectionResponse struct {
	Active      bool                     `json:"active"`
	Scope       string                   `json:"scope,omitempty"`
	ClientID    string                   `json:"client_id,omitempty"`
	Subject     string                   `json:"sub,omitempty"`
	Audience    []string                 `json:"aud,omitempty"`
	Issuer      string                   `json:"iss,omitempty"`
	ExpiresAt   int64                    `json:"exp,omitempty"`
	IssuedAt    int64                    `json:"iat,omitempty"`
	NotBefore   int64                    `json:"nbf,omitempty"`
	JTI         string                   `json:"jti,omitempty"`
	TokenType   string                   `json:"token_type,omitempty"`
	Permissions []IntrospectedPermission `json:"permissions,omitempty"`
}

// IntrospectedPermission is one granted permission of an RPT.
type IntrospectedPermission struct {
	ResourceID     string   `json:"resource_id"`
	ResourceScopes []string `json:"resource_scopes"`
	ExpiresAt      int64    `json:"exp,omitempty"`
	IssuedAt       int64    `json:"iat,omitempty"`
	NotBefore      int64    `json:"nbf,omitempty"`
}

var inactive = introspectionResponse{Active: false}

// serveIntrospect is the introspection endpoint. Resource servers call it
// with their PAT as a Bearer token, or authenticate as clients.
func (s *Server) serveIntrospect(w http.ResponseWriter, r *http.Request) {
	var caller protectionCaller
	if _, isBearer := bearerToken(r); isBearer {
		c, err := s.requirePAT(r)
		if err != nil {
			writeError(w, err)
			return
		}
		caller = c
	}
	form, err := readForm(w, r)
	if err != nil {
		writeError(w, err)
		return
	}
	if caller.ClientID == "" {
		c, err := s.authenticateClient(r, form)
		if err != nil {
			writeError(w, err)
			return
		}
		if !c.ResourceServer {
			writeError(w, &oauthError{Status: http.StatusForbidden, Code: "unauthorized_client",
				Description: "only resource servers may introspect tokens"})
			return
		}
		caller = protectionCaller{ClientID: c.ID, Subject: c.ID}
	}
	token := form.Get("token")
	if token == "" {
		writeError(w, errInvalidRequest("token is required"))
		return
	}
	writeJSON(w, http.StatusOK, s.introspect(r, caller, token))
}

// introspect describes token to caller. Tokens the caller may not see are
// inactive, as RFC 7662 section 2.2 allows.
func (s *Server) introspect(r *http.Request, caller protectionCaller, token string) introspectionResponse {
	if strings.Count(token, ".") == 2 {
		if resp, ok := s.introspectRPT(r.Context(), caller, token); ok {
			return resp
		}
		return inactive
	}
	rec, err := s.lookupToken(r.Context(), token)
	if err != nil {
		if !errors.Is(err, errUnknownToken) {
			s.log.Error("introspecting a token", errField(err))
		}
		return inactive
	}
	if rec.Kind != kindAccess || rec.ClientID != caller.ClientID {
		return inactive
	}
	return introspectionResponse{
		Active:    true,
		Scope:     strings.Join(rec.Scopes, " "),
		ClientID:  rec.ClientID,
		Subject:   rec.Subject,
		Issuer:    s.issuer,
		ExpiresAt: rec.Expires,
		IssuedAt:  rec.IssuedAt,
		TokenType: "Bearer",
	}
}
