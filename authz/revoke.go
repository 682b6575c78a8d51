package authz

import (
	"context"
	"net/http"
	"strings"

	"github.com/caddy-uma/caddy-uma/authz/oauth"
	"go.uber.org/zap"
)

// serveRevoke is the RFC 7009 revocation endpoint. A client may revoke the
// tokens issued to it; any other token, known or not, gets the same empty
// 200 so that the endpoint tells nothing about tokens.
func (s *Server) serveRevoke(w http.ResponseWriter, r *http.Request) error {
	form, err := oauth.ReadForm(w, r)
	if err != nil {
		return err
	}
	client, err := s.authenticateClient(r, form)
	if err != nil {
		return err
	}
	token := form.Get("token")
	if token == "" {
		return oauth.ErrInvalidRequest("token is required")
	}
	// token_type_hint is not needed: every token is looked up the same way.
	if err := s.revoke(r.Context(), client, token); err != nil {
		return oauth.ErrServer("could not revoke the token", err)
	}
	oauth.WriteNoContent(w, http.StatusOK)
	return nil
}

// revoke revokes token if it was issued to client: an RPT, or an opaque
// token (access token, refresh token with its RPT, PCT).
func (s *Server) revoke(ctx context.Context, client *registeredClient, token string) error {
	if strings.Count(token, ".") == 2 {
		jti, rec, err := s.parseRPT(ctx, token)
		if err != nil || rec.ClientID != client.ID {
			return nil
		}
		s.log.Info("RPT revoked", clientField(client.ID))
		return s.revokeRPT(ctx, jti)
	}
	rec, err := s.lookupToken(ctx, token)
	if err != nil || rec.ClientID != client.ID {
		return nil
	}
	if rec.Kind == kindRefresh && rec.RPT != "" {
		if err := s.revokeRPT(ctx, rec.RPT); err != nil {
			return err
		}
	}
	s.log.Info("token revoked", clientField(client.ID), zap.String("kind", rec.Kind))
	return s.revokeToken(ctx, token)
}
