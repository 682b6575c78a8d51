package people

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/caddy-uma/caddy-uma/authz/oauth"
	"github.com/caddy-uma/caddy-uma/authz/secret"
	"go.uber.org/zap"
	"golang.org/x/crypto/bcrypt"
)

// People log in at the AS with a local account (name and bcrypt-hashed
// password) or through an upstream OpenID Connect provider. Who logged in
// is a person with a subject: a local user's name, or the provider's sub.
// That subject is the resource owner of console actions and of PATs issued
// by consent, and the requesting party of claims gathering.

// localUser is a User with their password hash.
type localUser struct {
	User
	hashed *secret.Hashed
}

// loginPage is the data of the login page.
type loginPage struct {
	Next       string
	Users      bool
	OIDC       bool
	OIDCName   string
	OIDCURL    string
	NameFilled string
}

// serveLogin shows the login form (GET) and checks a local user's name and
// password (POST).
func (s *Site) serveLogin(w http.ResponseWriter, r *http.Request) {
	sess, err := s.ensureSession(w, r)
	if err != nil {
		s.renderServerError(w, "starting a session", err)
		return
	}
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		next := s.safeNext(r.URL.Query().Get("next"))
		if sess.Person != nil {
			oauth.NoStore(w.Header())
			http.Redirect(w, r, next, http.StatusSeeOther)
			return
		}
		s.renderLogin(w, http.StatusOK, sess, next, "", r.URL.Query().Get("signed_out") != "")
		return
	}
	form, ok := s.readPageForm(w, r, sess)
	if !ok {
		return
	}
	next := s.safeNext(form.Get("next"))
	if len(s.users) == 0 {
		s.renderLogin(w, http.StatusBadRequest, sess, next, "Log in with the identity provider.", false)
		return
	}
	name, password := strings.TrimSpace(form.Get("username")), form.Get("password")
	if wait := s.throttle.blockedFor(name, s.now()); wait > 0 {
		s.log.Info("login refused", zap.String("reason", "too many failed attempts"))
		data := s.loginData(next)
		data.NameFilled = name
		s.renderPage(w, http.StatusTooManyRequests, "login.html", page{
			Title: "Log in", CSRF: sess.CSRF, Data: data,
			Error: fmt.Sprintf("Too many failed attempts for this name. Try again in %d minutes.", int(wait.Minutes())+1),
		})
		return
	}
	u := s.users[name]
	if u == nil || password == "" {
		s.throttle.fail(name, s.now())
		// Spend the time a wrong password would.
		_ = bcrypt.CompareHashAndPassword(s.dummy(), []byte(password))
		s.log.Info("login failed", zap.String("reason", "unknown user or empty password"))
		s.renderLoginFailed(w, sess, next, name)
		return
	}
	if !u.hashed.Matches(password) {
		s.throttle.fail(name, s.now())
		s.log.Info("login failed", zap.String("user", name), zap.String("reason", "wrong password"))
		s.renderLoginFailed(w, sess, next, name)
		return
	}
	s.throttle.succeed(name)
	p := &person{
		Subject: u.Name, Issuer: s.as.Issuer(), Name: u.DisplayName, Email: u.Email, EmailVerified: u.Email != "",
		Groups: u.Groups, Method: "password", AuthTime: s.now().Unix(),
	}
	s.loginAs(w, r, sess, p, next)
}

func (s *Site) renderLoginFailed(w http.ResponseWriter, sess *session, next, name string) {
	data := s.loginData(next)
	data.NameFilled = name
	s.renderPage(w, http.StatusUnauthorized, "login.html", page{
		Title: "Log in", CSRF: sess.CSRF, Error: "The name or the password is wrong.", Data: data,
	})
}

func (s *Site) loginData(next string) loginPage {
	data := loginPage{Next: next, Users: len(s.users) > 0}
	if o := s.oidc; o != nil {
		data.OIDC, data.OIDCName = true, o.displayName()
		data.OIDCURL = s.base + PathLoginOIDC + "?" + url.Values{"next": {next}}.Encode()
	}
	return data
}

func (s *Site) renderLogin(w http.ResponseWriter, status int, sess *session, next, errMsg string, loggedOut bool) {
	data := s.loginData(next)
	p := page{Title: "Log in", CSRF: sess.CSRF, Error: errMsg, Data: data}
	if loggedOut {
		p.Flash = "You are logged out."
	}
	s.renderPage(w, status, "login.html", p)
}

// loginAs replaces the session with a new one for p and goes to next.
func (s *Site) loginAs(w http.ResponseWriter, r *http.Request, old *session, p *person, next string) {
	ctx := r.Context()
	if err := s.endSession(ctx, w, old); err != nil {
		s.log.Warn("ending an anonymous session", zap.Error(err))
	}
	if _, err := s.startSession(ctx, w, p); err != nil {
		s.renderServerError(w, "starting a session", err)
		return
	}
	s.log.Info("logged in", zap.String("subject", p.Subject), zap.String("method", p.Method))
	oauth.NoStore(w.Header())
	http.Redirect(w, r, next, http.StatusSeeOther)
}

// serveLogout ends the session (POST, with the session's CSRF token).
func (s *Site) serveLogout(w http.ResponseWriter, r *http.Request) {
	sess, err := s.loadSession(r)
	if err != nil {
		s.renderServerError(w, "reading a session", err)
		return
	}
	if sess == nil {
		s.redirect(w, r, PathLogin)
		return
	}
	form, ok := s.readPageForm(w, r, sess)
	if !ok {
		return
	}
	if err := s.endSession(r.Context(), w, sess); err != nil {
		s.renderServerError(w, "ending a session", err)
		return
	}
	s.log.Info("logged out")
	q := url.Values{"signed_out": {"1"}}
	if next := form.Get("next"); next != "" {
		q.Set("next", s.safeNext(next))
	}
	s.redirect(w, r, PathLogin+"?"+q.Encode())
}

// dummy returns a bcrypt hash to compare against for unknown users.
func (s *Site) dummy() []byte {
	s.dummyOnce.Do(func() {
		s.dummyHash, _ = bcrypt.GenerateFromPassword([]byte(secret.New(16)), bcrypt.DefaultCost)
	})
	return s.dummyHash
}

// requirePerson returns the logged-in session, or sends the browser to the
// login page (for GET) or answers 403 (otherwise) and returns nil.
func (s *Site) requirePerson(w http.ResponseWriter, r *http.Request) *session {
	sess, err := s.loadSession(r)
	if err != nil {
		s.renderServerError(w, "reading a session", err)
		return nil
	}
	if sess != nil && sess.Person != nil {
		return sess
	}
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		oauth.NoStore(w.Header())
		http.Redirect(w, r, s.base+PathLogin+"?"+url.Values{"next": {r.URL.RequestURI()}}.Encode(), http.StatusSeeOther)
		return nil
	}
	s.renderError(w, http.StatusForbidden, "Not logged in", "Your session has ended. Log in again and retry.")
	return nil
}
