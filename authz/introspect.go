package authz

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/caddy-uma/caddy-uma/authz/oauth"
	"github.com/caddy-uma/caddy-uma/store"
)

// introspectionResponse is an RFC 7662 response with the UMA permissions
// extension (Federated Authorization section 5.1).
type introspectionResponse struct {
	Active      bool         `json:"active"`
	Scope       string       `json:"scope,omitempty"`
	ClientID    string       `json:"client_id,omitempty"`
	Subject     string       `json:"sub,omitempty"`
	Audience    []string     `json:"aud,omitempty"`
	Issuer      string       `json:"iss,omitempty"`
	ExpiresAt   int64        `json:"exp,omitempty"`
	IssuedAt    int64        `json:"iat,omitempty"`
	NotBefore   int64        `json:"nbf,omitempty"`
	JTI         string       `json:"jti,omitempty"`
	TokenType   string       `json:"token_type,omitempty"`
	Permissions []Permission `json:"permissions,omitempty"`
}

var inactive = introspectionResponse{Active: false}

// serveIntrospect is the introspection endpoint. Resource servers call it
// with their PAT as a Bearer token, or authenticate as clients.
func (s *Server) serveIntrospect(w http.ResponseWriter, r *http.Request) error {
	var caller protectionCaller
	if _, isBearer := oauth.BearerToken(r); isBearer {
		c, err := s.requirePAT(r)
		if err != nil {
			return err
		}
		caller = c
	}
	form, err := oauth.ReadForm(w, r)
	if err != nil {
		return err
	}
	if caller.ClientID == "" {
		c, err := s.authenticateClient(r, form)
		if err != nil {
			return err
		}
		if !c.ResourceServer {
			return oauth.New(oauth.UnauthorizedClient).WithStatus(http.StatusForbidden).
				WithDescription("only resource servers may introspect tokens")
		}
		caller = protectionCaller{ClientID: c.ID, Subject: c.ID, ForItself: true}
	}
	token := form.Get("token")
	if token == "" {
		return oauth.ErrInvalidRequest("token is required")
	}
	resp, err := s.introspect(r.Context(), caller, token)
	if err != nil {
		return oauth.ErrServer("could not introspect the token", err)
	}
	oauth.WriteJSON(w, http.StatusOK, resp)
	return nil
}

// introspect describes token to caller. Tokens the caller may not see are
// inactive, as RFC 7662 section 2.2 allows. An error is the store's.
func (s *Server) introspect(ctx context.Context, caller protectionCaller, token string) (introspectionResponse, error) {
	if strings.Count(token, ".") == 2 {
		return s.introspectRPT(ctx, caller, token)
	}
	rec, err := s.lookupToken(ctx, token)
	if errors.Is(err, errUnknownToken) {
		return inactive, nil
	}
	if err != nil {
		return inactive, err
	}
	if rec.Kind != kindAccess || rec.ClientID != caller.ClientID {
		return inactive, nil
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
	}, nil
}

// introspectRPT describes an RPT to the resource server that calls, with
// the permissions on its own live resources; it is inactive for a token
// that is not a live RPT of this AS for this caller.
func (s *Server) introspectRPT(ctx context.Context, caller protectionCaller, token string) (introspectionResponse, error) {
	jti, rec, err := s.parseRPT(ctx, token)
	if errors.Is(err, errInvalidRPT) {
		return inactive, nil
	}
	if err != nil {
		return inactive, err
	}
	if s.now().Unix() >= rec.Expires || rec.ResourceServer != caller.ClientID {
		return inactive, nil
	}
	perms := make([]Permission, 0, len(rec.Permissions))
	for _, p := range rec.Permissions {
		// Only live resources within the caller's reach: a deregistered
		// resource is no longer in any RPT, whoever asks.
		res, err := s.store.GetResource(ctx, p.ResourceID)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return inactive, err
		}
		if err != nil || !caller.mayManage(res) {
			continue
		}
		perms = append(perms, Permission{ResourceID: p.ResourceID, ResourceScopes: nonNil(p.ResourceScopes), ExpiresAt: p.ExpiresAt})
	}
	if len(perms) == 0 {
		return inactive, nil
	}
	return introspectionResponse{
		Active:      true,
		ClientID:    rec.ClientID,
		Subject:     rec.Subject,
		Audience:    []string{rec.ResourceServer},
		Issuer:      s.issuer,
		ExpiresAt:   rec.Expires,
		IssuedAt:    rec.IssuedAt,
		JTI:         jti,
		TokenType:   "Bearer",
		Permissions: perms,
	}, nil
}
