package authz

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-uma/caddy-uma/authz/oauth"
	"github.com/caddy-uma/caddy-uma/authz/secret"
)

// The OAuth authorization endpoint (RFC 6749 section 4.1, with PKCE, RFC
// 7636) lets a resource server obtain a PAT for a resource owner who
// consents. Package people serves the endpoint's pages (login, consent);
// this file holds its protocol: checking an authorization request and
// issuing the code, which the resource server redeems at the token
// endpoint (grant_authorization_code.go) for a PAT whose subject is the
// owner.
//
// Only response_type=code, only PKCE with S256 (required), only the scope
// uma_protection, only resource server clients, and only registered
// redirect URIs, compared exactly. Codes are single use and live one
// minute.

// nsAuthzCode is the Records namespace of authorization codes, keyed by the
// SHA-256 of the code.
const nsAuthzCode = "authz_code"

// AuthorizationCodeTTL is the lifetime of an authorization code.
const AuthorizationCodeTTL = time.Minute

// authzCode is what an authorization code stands for.
type authzCode struct {
	ClientID      string `json:"client_id"`
	RedirectURI   string `json:"redirect_uri"`
	RedirectGiven bool   `json:"redirect_given,omitempty"`
	Subject       string `json:"sub"`
	Challenge     string `json:"challenge"`
	Expires       int64  `json:"exp"`
}

// AuthorizationRequest is a checked request of the authorization endpoint.
type AuthorizationRequest struct {
	// ClientID is the resource server asking for a PAT.
	ClientID string
	// RedirectURI is where the answer goes: the one the request named, or
	// the client's only registered one.
	RedirectURI string
	// RedirectGiven says the request named redirect_uri, which the code
	// redemption must then repeat (RFC 6749 section 4.1.3).
	RedirectGiven bool
	// State is the client's state, sent back with the answer.
	State string
	// Challenge is the PKCE S256 code challenge.
	Challenge string
}

// AuthorizationError is a refused authorization request. Until the client
// and its redirect URI are trusted (Untrusted), the answer is a page that
// shows Description to the person and never redirects; after, the browser
// goes back to the client with Code and Description (RFC 6749 section
// 4.1.2.1).
type AuthorizationError struct {
	Untrusted   bool
	Code        oauth.Code
	Description string
}

func (e *AuthorizationError) Error() string { return string(e.Code) + ": " + e.Description }

// CheckAuthorizationRequest checks the parameters of an authorization
// request. A refusal is an *AuthorizationError; the request is returned
// with what could be read (for the redirect of a trusted client).
func (s *Server) CheckAuthorizationRequest(ctx context.Context, params url.Values) (AuthorizationRequest, error) {
	var req AuthorizationRequest
	untrusted := func(msg string) error {
		return &AuthorizationError{Untrusted: true, Code: oauth.InvalidRequest, Description: msg}
	}
	back := func(code oauth.Code, desc string) error { return &AuthorizationError{Code: code, Description: desc} }
	repeated := ""
	for name, vals := range params {
		if len(vals) > 1 {
			if name == "client_id" || name == "redirect_uri" {
				return req, untrusted("The request repeats the parameter " + name + ".")
			}
			repeated = name
		}
	}
	c, err := s.client(ctx, params.Get("client_id"))
	if err != nil {
		s.log.Error("reading a registered client", zap.Error(err))
		return req, untrusted("The authorization server cannot check the application that sent you here now. Try again in a moment.")
	}
	if c == nil {
		return req, untrusted("The application that sent you here is not registered at this authorization server.")
	}
	req.ClientID = c.ID
	req.RedirectURI = params.Get("redirect_uri")
	switch {
	case req.RedirectURI != "":
		if !slices.Contains(c.RedirectURIs, req.RedirectURI) {
			return req, untrusted("The address to send you back to is not registered for the application " + c.ID + ".")
		}
		req.RedirectGiven = true
	case len(c.RedirectURIs) == 1:
		req.RedirectURI = c.RedirectURIs[0]
	default:
		return req, untrusted("The application " + c.ID + " did not say where to send you back to.")
	}
	req.State = params.Get("state")
	req.Challenge = params.Get("code_challenge")
	switch {
	case repeated != "":
		return req, back(oauth.InvalidRequest, "parameter "+repeated+" is repeated")
	case params.Get("response_type") != "code":
		return req, back(oauth.UnsupportedResponseType, "only response_type=code is supported")
	case req.Challenge == "":
		return req, back(oauth.InvalidRequest, "code_challenge is required (PKCE with S256)")
	case params.Get("code_challenge_method") != "S256":
		return req, back(oauth.InvalidRequest, "code_challenge_method must be S256")
	case len(req.Challenge) != 43 || !isPKCEString(req.Challenge):
		return req, back(oauth.InvalidRequest, "code_challenge must be a base64url SHA-256")
	case !c.ResourceServer:
		return req, back(oauth.UnauthorizedClient, "only resource servers may obtain PATs")
	}
	for _, sc := range strings.Fields(params.Get("scope")) {
		if sc != ScopeProtection {
			return req, back(oauth.InvalidScope, "the only scope is "+ScopeProtection)
		}
	}
	return req, nil
}

// isPKCEString reports whether s uses only the characters of a PKCE
// verifier (RFC 7636 section 4.1).
func isPKCEString(s string) bool {
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~') {
			return false
		}
	}
	return true
}

// IssueAuthorizationCode issues the code of an authorization request the
// owner consented to.
func (s *Server) IssueAuthorizationCode(ctx context.Context, req AuthorizationRequest, owner string) (string, error) {
	if !ValidSubject(owner) {
		return "", fmt.Errorf("invalid owner")
	}
	code := secret.New(32)
	val, err := json.Marshal(authzCode{
		ClientID: req.ClientID, RedirectURI: req.RedirectURI, RedirectGiven: req.RedirectGiven,
		Subject: owner, Challenge: req.Challenge, Expires: s.now().Add(AuthorizationCodeTTL).Unix(),
	})
	if err != nil {
		return "", err
	}
	if err := s.store.Insert(ctx, nsAuthzCode, tokenKey(code), val, s.now().Add(AuthorizationCodeTTL)); err != nil {
		return "", fmt.Errorf("storing an authorization code: %w", err)
	}
	s.log.Info("owner allowed a PAT", clientField(req.ClientID), ownerField(owner))
	return code, nil
}

// AuthorizationRedirect returns the address that sends the browser back to
// the client with params (a code, or error and error_description), the
// state and the issuer (RFC 9207), keeping the redirect URI's own query.
func (s *Server) AuthorizationRedirect(req AuthorizationRequest, params url.Values) string {
	if req.State != "" {
		params.Set("state", req.State)
	}
	params.Set("iss", s.issuer)
	return AddQuery(req.RedirectURI, params)
}

// AddQuery adds params to the query of a URI.
func AddQuery(uri string, params url.Values) string {
	u, err := url.Parse(uri)
	if err != nil {
		return uri
	}
	q := u.Query()
	for k, vs := range params {
		q[k] = vs
	}
	u.RawQuery = q.Encode()
	return u.String()
}
