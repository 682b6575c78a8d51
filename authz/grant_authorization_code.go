package authz

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"golang.org/x/oauth2"

	"github.com/caddy-uma/caddy-uma/authz/oauth"
	"github.com/caddy-uma/caddy-uma/store"
)

// grantAuthorizationCode redeems an authorization code (authorization.go)
// for a PAT with which the resource server acts for the consenting owner.
func (s *Server) grantAuthorizationCode(w http.ResponseWriter, t *tokenRequest) error {
	ctx := t.r.Context()
	c := t.client
	invalid := func(desc string) error { return oauth.New(oauth.InvalidGrant).WithDescription(desc) }
	code := t.form.Get("code")
	if code == "" {
		return oauth.ErrInvalidRequest("code is required")
	}
	verifier := t.form.Get("code_verifier")
	if verifier == "" {
		return oauth.ErrInvalidRequest("code_verifier is required")
	}
	if len(code) > 512 {
		return invalid("the code is invalid, expired or used")
	}
	val, err := s.store.Take(ctx, nsAuthzCode, tokenKey(code))
	if errors.Is(err, store.ErrNotFound) {
		return invalid("the code is invalid, expired or used")
	}
	if err != nil {
		return oauth.ErrServer("could not read the code", err)
	}
	var rec authzCode
	if err := json.Unmarshal(val, &rec); err != nil {
		return oauth.ErrServer("could not read the code", err)
	}
	redirectURI := t.form.Get("redirect_uri")
	switch {
	case s.now().Unix() >= rec.Expires:
		return invalid("the code is invalid, expired or used")
	case rec.ClientID != c.ID:
		return invalid("the code was issued to another client")
	case (rec.RedirectGiven || redirectURI != "") && redirectURI != rec.RedirectURI:
		return invalid("redirect_uri does not match the authorization request")
	case len(verifier) < 43 || len(verifier) > 128 || !isPKCEString(verifier):
		return invalid("code_verifier is not a valid PKCE verifier")
	case subtle.ConstantTimeCompare([]byte(oauth2.S256ChallengeFromVerifier(verifier)), []byte(rec.Challenge)) != 1:
		return invalid("code_verifier does not match the code_challenge")
	}
	pat, err := s.IssuePAT(ctx, c.ID, rec.Subject)
	if err != nil {
		return oauth.ErrServer("could not issue the PAT", err)
	}
	s.log.Info("issued a PAT by the owner's consent", clientField(c.ID), ownerField(rec.Subject))
	oauth.WriteJSON(w, http.StatusOK, tokenResponse{
		AccessToken: pat, TokenType: "Bearer", ExpiresIn: int64(s.patTTL.Seconds()), Scope: ScopeProtection,
	})
	return nil
}

// IssuePAT issues a PAT with which resource server clientID acts for
// owner: what the authorization code grant issues after the owner's
// consent.
func (s *Server) IssuePAT(ctx context.Context, clientID, owner string) (string, error) {
	c, ok := s.clients[clientID]
	if !ok || !c.ResourceServer {
		return "", fmt.Errorf("client %q is not a resource server", clientID)
	}
	if !ValidSubject(owner) {
		return "", fmt.Errorf("invalid owner")
	}
	return s.issueToken(ctx, tokenRecord{Kind: kindAccess, Grant: GrantTypeAuthorizationCode, ClientID: clientID, Subject: owner, Scopes: []string{ScopeProtection}}, s.patTTL)
}
