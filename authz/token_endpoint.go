package authz

import (
	"net/http"
	"net/url"
	"strings"

	"github.com/caddy-uma/caddy-uma/authz/oauth"
)

// Grant types of the token endpoint.
const (
	GrantTypeClientCredentials = "client_credentials"
	GrantTypeRefreshToken      = "refresh_token"
	GrantTypeAuthorizationCode = "authorization_code"
	// GrantTypeUMATicket is the UMA grant's grant_type.
	GrantTypeUMATicket = "urn:ietf:params:oauth:grant-type:uma-ticket"
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

// tokenRequest is an authenticated token request.
type tokenRequest struct {
	r      *http.Request
	client *registeredClient
	form   url.Values
	// audit gathers what the request decided, for its audit line; nil
	// outside the token endpoint.
	audit *tokenAudit
	// party is the requesting party that a person's token identified
	// (Dialect.UMAClient); nil otherwise.
	party *Party
}

// tokenClient authenticates the client of a token request, or lets the
// request's dialect identify the client of a UMA grant request and its
// requesting party (Dialect.UMAClient).
func (s *Server) tokenClient(r *http.Request, form url.Values, grant string) (*registeredClient, *Party, error) {
	d := dialectOf(r)
	if d == nil || d.UMAClient == nil || grant != GrantTypeUMATicket {
		c, err := s.authenticateClient(r, form)
		return c, nil, err
	}
	id, party, err := d.UMAClient(r, form)
	if err != nil {
		return nil, nil, err
	}
	c, err := s.client(r.Context(), id)
	switch {
	case err != nil:
		return nil, nil, oauth.ErrServer("could not read a registered client", err)
	case c == nil:
		return nil, nil, oauth.New(oauth.InvalidClient).WithDescription("unknown client")
	}
	return c, party, nil
}

// grantHandler issues tokens for one grant type.
type grantHandler func(w http.ResponseWriter, t *tokenRequest) error

// grants returns the grant types the token endpoint takes, each with its
// handler (one file each: grant_*.go).
func (s *Server) grants() map[string]grantHandler {
	g := map[string]grantHandler{
		GrantTypeClientCredentials: s.grantClientCredentials,
		GrantTypeUMATicket:         s.grantUMATicket,
		GrantTypeRefreshToken:      s.grantRefreshToken,
	}
	if s.loginPages {
		g[GrantTypeAuthorizationCode] = s.grantAuthorizationCode
	}
	return g
}

// serveToken is the token endpoint: it authenticates the client and
// dispatches on grant_type.
// Each answer is reported to the Observer and written to the audit log.
func (s *Server) serveToken(w http.ResponseWriter, r *http.Request) (err error) {
	audit := s.startTokenAudit()
	var form url.Values
	defer func() { s.finishTokenAudit(audit, form, err) }()
	if form, err = oauth.ReadForm(w, r, "permission"); err != nil {
		return err
	}
	grant := form.Get("grant_type")
	if grant == "" {
		return oauth.ErrInvalidRequest("grant_type is required")
	}
	h, ok := s.grants()[grant]
	if ok || grant == GrantTypeAuthorizationCode {
		audit.grantType = grant
	} else {
		audit.grantType = GrantTypeOther
	}
	client, party, err := s.tokenClient(r, form, grant)
	if err != nil {
		return err
	}
	audit.client = client.ID
	switch {
	case ok:
		return h(w, &tokenRequest{r: r, client: client, form: form, audit: audit, party: party})
	case grant == GrantTypeAuthorizationCode:
		return oauth.New(oauth.UnsupportedGrantType).
			WithDescription("the authorization_code grant needs login at the authorization server")
	default:
		return oauth.New(oauth.UnsupportedGrantType).
			WithDescription("supported grant types: " + strings.Join([]string{GrantTypeClientCredentials, GrantTypeRefreshToken, GrantTypeUMATicket}, ", "))
	}
}
