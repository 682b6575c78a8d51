package people

import (
	"errors"
	"net/http"
	"net/url"

	"go.uber.org/zap"

	"github.com/caddy-uma/caddy-uma/authz"
	"github.com/caddy-uma/caddy-uma/authz/oauth"
)

// The pages of the OAuth authorization endpoint (authz/authorization.go
// holds its protocol): a resource server sends the owner's browser to
// {issuer}/authorize; the owner logs in, sees which resource server asks
// to protect their resources, and approves or refuses. Errors before the
// client and redirect URI are trusted show an error page and never
// redirect; later ones redirect with error and state (RFC 6749 section
// 4.1.2.1).

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
func (s *Site) serveAuthorize(w http.ResponseWriter, r *http.Request) {
	var params url.Values
	var sess *session
	if r.Method == http.MethodPost {
		if sess = s.requirePerson(w, r); sess == nil {
			return
		}
		form, ok := s.readPageForm(w, r, sess)
		if !ok {
			return
		}
		params = form
	} else {
		params = r.URL.Query()
	}
	req, err := s.as.CheckAuthorizationRequest(r.Context(), params)
	var refused *authz.AuthorizationError
	if errors.As(err, &refused) {
		if refused.Untrusted {
			s.log.Info("authorization request refused", zap.String("reason", refused.Description))
			s.renderError(w, http.StatusBadRequest, "This request cannot be accepted", refused.Description)
			return
		}
		s.authorizationRedirect(w, r, req, url.Values{"error": {string(refused.Code)}, "error_description": {refused.Description}})
		return
	}
	if sess == nil {
		if sess = s.requirePerson(w, r); sess == nil {
			return
		}
		s.renderPage(w, http.StatusOK, "consent.html", page{
			Title: "Allow " + req.ClientID + "?", CSRF: sess.CSRF, Person: sess.Person,
			Data: consentPage{
				ClientID: req.ClientID, RedirectURI: req.RedirectURI, RedirectGiven: req.RedirectGiven,
				State: req.State, Challenge: req.Challenge, Host: origin(req.RedirectURI),
			},
		}, origin(req.RedirectURI))
		return
	}
	owner := sess.Person.Subject
	if params.Get("decision") != "allow" {
		s.log.Info("owner refused a PAT", zap.String("client_id", req.ClientID), zap.String("owner", owner))
		s.authorizationRedirect(w, r, req, url.Values{"error": {string(oauth.AccessDenied)}, "error_description": {"the resource owner did not allow it"}})
		return
	}
	code, err := s.as.IssueAuthorizationCode(r.Context(), req, owner)
	if err != nil {
		s.log.Error("issuing an authorization code", zap.Error(err))
		s.authorizationRedirect(w, r, req, url.Values{"error": {string(oauth.ServerError)}})
		return
	}
	s.authorizationRedirect(w, r, req, url.Values{"code": {code}})
}

// authorizationRedirect sends the browser back to the client.
func (s *Site) authorizationRedirect(w http.ResponseWriter, r *http.Request, req authz.AuthorizationRequest, params url.Values) {
	oauth.NoStore(w.Header())
	http.Redirect(w, r, s.as.AuthorizationRedirect(req, params), http.StatusFound)
}
