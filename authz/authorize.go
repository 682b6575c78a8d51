package authz

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-uma/caddy-uma/store"
)

// The OAuth authorization endpoint (RFC 6749 section 4.1, with PKCE, RFC
// 7636) lets a resource server obtain a PAT for a resource owner who
// consents: the owner logs in, sees which resource server asks to protect
// their resources, and approves. The resource server redeems the code at
// the token endpoint (grant_type=authorization_code, with its client
// credentials and the PKCE verifier) for a PAT whose subject is the owner:
// resources registered with it belong to that owner.
//
// Only response_type=code, only PKCE with S256 (required), only the scope
// uma_protection, only resource server clients, and only registered
// redirect URIs, compared exactly. Errors before the client and redirect
// URI are trusted show an error page and never redirect; later ones
// redirect with error and state (RFC 6749 section 4.1.2.1). Codes are
// single use and live one minute.

// nsAuthzCode is the Records namespace of authorization codes, keyed by the
// SHA-256 of the code.
const nsAuthzCode = "authz_code"

// authzCodeTTL is the lifetime of an authorization code.
const authzCodeTTL = time.Minute

// authzCode is what an authorization code stands for.
type authzCode struct {
	ClientID      string `json:"client_id"`
	RedirectURI   string `json:"redirect_uri"`
	RedirectGiven bool   `json:"redirect_given,omitempty"`
	Subject       string `json:"sub"`
	Challenge     string `json:"challenge"`
	Expires       int64  `json:"exp"`
}

// authzRequest is a checked authorization request.
type authzRequest struct {
	client        *registeredClient
	redirectURI   string
	redirectGiven bool
	state         string
	challenge     string
}

// authzRedirectError is an error answered by redirecting to the client.
type authzRedirectError struct {
	code, description string
}

// consentPage is the data of the consent page.
type consentPage struct {
	ClientID      string
	RedirectURI   string
	RedirectGiven bool
	State         string
	Challenge     string
	Host          string
}

// serveAuthorize is the authorization endpoint: GET asks for consent, POST
// (from the consent page) answers.
func (s *Server) serveAuthorize(w http.ResponseWriter, r *http.Request) {
	var params url.Values
	var sess *session
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		params = r.URL.Query()
	case http.MethodPost:
		if sess = s.requirePerson(w, r); sess == nil {
			return
		}
		form, ok := s.readPageForm(w, r, sess)
		if !ok {
			return
		}
		params = form
	default:
		w.Header().Set("Allow", "GET, POST")
		s.renderError(w, http.StatusMethodNotAllowed, "Not allowed", "Use GET.")
		return
	}
	req, fatal, rerr := s.checkAuthzRequest(r, params)
	if fatal != "" {
		s.log.Info("authorization request refused", zap.String("reason", fatal))
		s.renderError(w, http.StatusBadRequest, "This request cannot be accepted", fatal)
		return
	}
	if rerr != nil {
		s.authzRedirect(w, r, req, url.Values{"error": {rerr.code}, "error_description": {rerr.description}})
		return
	}
	if sess == nil {
		if sess = s.requirePerson(w, r); sess == nil {
			return
		}
		s.renderPage(w, http.StatusOK, "consent.html", page{
			Title: "Allow " + req.client.ID + "?", CSRF: sess.CSRF, Person: sess.Person,
			Data: consentPage{
				ClientID: req.client.ID, RedirectURI: req.redirectURI, RedirectGiven: req.redirectGiven,
				State: req.state, Challenge: req.challenge, Host: origin(req.redirectURI),
			},
		}, origin(req.redirectURI))
		return
	}
	if params.Get("decision") != "allow" {
		s.log.Info("owner refused a PAT", clientField(req.client.ID), ownerField(sess.Person.Subject))
		s.authzRedirect(w, r, req, url.Values{"error": {"access_denied"}, "error_description": {"the resource owner did not allow it"}})
		return
	}
	code := randomToken(32)
	val, err := json.Marshal(authzCode{
		ClientID: req.client.ID, RedirectURI: req.redirectURI, RedirectGiven: req.redirectGiven,
		Subject: sess.Person.Subject, Challenge: req.challenge, Expires: s.now().Add(authzCodeTTL).Unix(),
	})
	if err == nil {
		err = s.store.Insert(r.Context(), nsAuthzCode, tokenKey(code), val, s.now().Add(authzCodeTTL))
	}
	if err != nil {
		s.log.Error("storing an authorization code", errField(err))
		s.authzRedirect(w, r, req, url.Values{"error": {"server_error"}})
		return
	}
	s.log.Info("owner allowed a PAT", clientField(req.client.ID), ownerField(sess.Person.Subject))
	s.authzRedirect(w, r, req, url.Values{"code": {code}})
}

// checkAuthzRequest checks an authorization request. fatal is set when the
// client or the redirect URI cannot be trusted (an error page, no
// redirect); rerr when the error goes back to the client.
func (s *Server) checkAuthzRequest(r *http.Request, params url.Values) (req authzRequest, fatal string, rerr *authzRedirectError) {
	repeated := ""
	for name, vals := range params {
		if len(vals) > 1 {
			if name == "client_id" || name == "redirect_uri" {
				return req, "The request repeats the parameter " + name + ".", nil
			}
			repeated = name
		}
	}
	c := s.client(r.Context(), params.Get("client_id"))
	if c == nil {
		return req, "The application that sent you here is not registered at this authorization server.", nil
	}
	req.client = c
	req.redirectURI = params.Get("redirect_uri")
	switch {
	case req.redirectURI != "":
		if !slices.Contains(c.RedirectURIs, req.redirectURI) {
			return req, "The address to send you back to is not registered for the application " + c.ID + ".", nil
		}
		req.redirectGiven = true
	case len(c.RedirectURIs) == 1:
		req.redirectURI = c.RedirectURIs[0]
	default:
		return req, "The application " + c.ID + " did not say where to send you back to.", nil
	}
	req.state = params.Get("state")
	req.challenge = params.Get("code_challenge")
	switch {
	case repeated != "":
		return req, "", &authzRedirectError{"invalid_request", "parameter " + repeated + " is repeated"}
	case params.Get("response_type") != "code":
		return req, "", &authzRedirectError{"unsupported_response_type", "only response_type=code is supported"}
	case req.challenge == "":
		return req, "", &authzRedirectError{"invalid_request", "code_challenge is required (PKCE with S256)"}
	case params.Get("code_challenge_method") != "S256":
		return req, "", &authzRedirectError{"invalid_request", "code_challenge_method must be S256"}
	case len(req.challenge) != 43 || !isPKCEString(req.challenge):
		return req, "", &authzRedirectError{"invalid_request", "code_challenge must be a base64url SHA-256"}
	case !c.ResourceServer:
		return req, "", &authzRedirectError{"unauthorized_client", "only resource servers may obtain PATs"}
	}
	for _, sc := range strings.Fields(params.Get("scope")) {
		if sc != ScopeProtection {
			return req, "", &authzRedirectError{"invalid_scope", "the only scope is " + ScopeProtection}
		}
	}
	return req, "", nil
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

// authzRedirect sends the browser back to the client's redirect URI with
// params and the state, keeping the URI's own query.
func (s *Server) authzRedirect(w http.ResponseWriter, r *http.Request, req authzRequest, params url.Values) {
	if req.state != "" {
		params.Set("state", req.state)
	}
	params.Set("iss", s.issuer) // RFC 9207
	noStore(w.Header())
	http.Redirect(w, r, addQuery(req.redirectURI, params), http.StatusFound)
}

// addQuery adds params to the query of a URI.
func addQuery(uri string, params url.Values) string {
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

// grantAuthorizationCode redeems an authorization code for a PAT.
func (s *Server) grantAuthorizationCode(w http.ResponseWriter, r *http.Request, c *registeredClient, form url.Values) {
	invalid := func(desc string) {
		writeError(w, &oauthError{Status: http.StatusBadRequest, Code: "invalid_grant", Description: desc})
	}
	code := form.Get("code")
	if code == "" {
		writeError(w, errInvalidRequest("code is required"))
		return
	}
	verifier := form.Get("code_verifier")
	if verifier == "" {
		writeError(w, errInvalidRequest("code_verifier is required"))
		return
	}
	if len(code) > 512 {
		invalid("the code is invalid, expired or used")
		return
	}
	val, err := s.store.Take(r.Context(), nsAuthzCode, tokenKey(code))
	if errors.Is(err, store.ErrNotFound) {
		invalid("the code is invalid, expired or used")
		return
	}
	if err != nil {
		s.log.Error("reading an authorization code", errField(err))
		writeError(w, errServer("could not read the code"))
		return
	}
	var rec authzCode
	if err := json.Unmarshal(val, &rec); err != nil {
		writeError(w, errServer("could not read the code"))
		return
	}
	switch {
	case s.now().Unix() >= rec.Expires:
		invalid("the code is invalid, expired or used")
		return
	case rec.ClientID != c.ID:
		invalid("the code was issued to another client")
		return
	case (rec.RedirectGiven || form.Get("redirect_uri") != "") && form.Get("redirect_uri") != rec.RedirectURI:
		invalid("redirect_uri does not match the authorization request")
		return
	case len(verifier) < 43 || len(verifier) > 128 || !isPKCEString(verifier):
		invalid("code_verifier is not a valid PKCE verifier")
		return
	case subtle.ConstantTimeCompare([]byte(pkceChallenge(verifier)), []byte(rec.Challenge)) != 1:
		invalid("code_verifier does not match the code_challenge")
		return
	}
	pat, err := s.IssuePAT(r.Context(), c.ID, rec.Subject)
	if err != nil {
		s.log.Error("issuing a PAT", errField(err))
		writeError(w, errServer("could not issue the PAT"))
		return
	}
	s.log.Info("issued a PAT by the owner's consent", clientField(c.ID), ownerField(rec.Subject))
	writeJSON(w, http.StatusOK, tokenResponse{
		AccessToken: pat, TokenType: "Bearer", ExpiresIn: int64(s.patTTL.Seconds()), Scope: ScopeProtection,
	})
}

// errNoCodeGrant answers an authorization_code grant when nobody can log in.
var errNoCodeGrant = &oauthError{Status: http.StatusBadRequest, Code: "unsupported_grant_type",
	Description: "the authorization_code grant needs login at the authorization server"}
