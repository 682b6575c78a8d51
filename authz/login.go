package authz

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
	"golang.org/x/crypto/bcrypt"

	"github.com/caddy-uma/caddy-uma/authz/urlcheck"
)

// People log in at the AS with a local account (name and bcrypt-hashed
// password) or through an upstream OpenID Connect provider. Who logged in
// is a person with a subject: a local user's name, or the provider's sub.
// That subject is the resource owner of console actions and of PATs issued
// by consent, and the requesting party of claims gathering.

// Paths of the pages.
const (
	PathLogin         = "/login"
	PathLoginOIDC     = "/login/oidc"
	PathLoginCallback = "/login/callback"
	PathLogout        = "/logout"
	PathAuthorize     = "/authorize"
	PathClaims        = "/claims"
	PathRegister      = "/register"
	PathConsole       = "/console"
)

// people is what login needs.
type people struct {
	users         map[string]*localUser
	oidc          *oidcClient
	sessionTTL    time.Duration
	secureCookies bool

	dummyOnce sync.Once
	dummyHash []byte

	throttle loginThrottle
}

func (p *people) close() {
	if p.oidc != nil {
		p.oidc.close()
	}
}

// localUser is a User with what password checks need.
type localUser struct {
	User
	hash []byte

	mu sync.Mutex
	// verified holds SHA-256 sums of passwords that matched hash, so that
	// bcrypt runs once per password, not once per login.
	verified [][32]byte
}

// checkPassword compares a password with the user's, running bcrypt only
// for a password not seen to match before.
func (u *localUser) checkPassword(password string) bool {
	sum := sha256.Sum256([]byte(password))
	u.mu.Lock()
	for _, v := range u.verified {
		if subtle.ConstantTimeCompare(sum[:], v[:]) == 1 {
			u.mu.Unlock()
			return true
		}
	}
	u.mu.Unlock()
	if bcrypt.CompareHashAndPassword(u.hash, []byte(password)) != nil {
		return false
	}
	u.mu.Lock()
	if len(u.verified) >= maxVerifiedSecrets {
		u.verified = u.verified[1:]
	}
	u.verified = append(u.verified, sum)
	u.mu.Unlock()
	return true
}

// setUpPeople sets up login when users or an OpenID provider are
// configured, and with it the claims interaction endpoint.
func (s *Server) setUpPeople(ctx context.Context, cfg Config) error {
	if len(cfg.Users) == 0 && cfg.LoginOIDC == nil {
		return nil
	}
	u, _ := url.Parse(s.issuer)
	secure := u.Scheme == "https"
	if !secure && !urlcheck.Loopback(u.Hostname()) {
		return fmt.Errorf("login needs an https issuer (plain http only on a loopback host): passwords and session cookies would travel in clear text")
	}
	p := &people{
		users:         make(map[string]*localUser, len(cfg.Users)),
		sessionTTL:    orDefault(cfg.SessionTTL, DefaultSessionTTL),
		secureCookies: secure,
	}
	for _, usr := range cfg.Users {
		if !validOwnerName(usr.Name) || strings.ContainsAny(usr.Name, " \t\r\n") {
			return fmt.Errorf("user %q: a user name is 1 to %d characters without spaces", usr.Name, maxOwnerLen)
		}
		if _, dup := p.users[usr.Name]; dup {
			return fmt.Errorf("user %q is defined twice", usr.Name)
		}
		if !isBcrypt(usr.PasswordHash) {
			return fmt.Errorf("user %q: password_hash must be a bcrypt hash (caddy hash-password prints one)", usr.Name)
		}
		if err := checkBcryptFormat(usr.PasswordHash); err != nil {
			return fmt.Errorf("user %q: invalid bcrypt hash: %w", usr.Name, err)
		}
		p.users[usr.Name] = &localUser{User: usr, hash: []byte(usr.PasswordHash)}
	}
	if cfg.LoginOIDC != nil {
		o, err := newOIDCClient(ctx, *cfg.LoginOIDC, s.endpoint(PathLoginCallback), cfg.HTTPClient, s.now, s.log)
		if err != nil {
			return fmt.Errorf("login_oidc: %w", err)
		}
		p.oidc = o
	}
	s.people = p
	if s.claimsInteraction == "" {
		s.claimsInteraction = s.endpoint(PathClaims)
	}
	return nil
}

// peopleRoute returns the handler of a page, or nil.
func (s *Server) peopleRoute(rel string) http.HandlerFunc {
	if rel == PathRegister && s.registration != nil {
		return s.serveRegister
	}
	if s.people == nil {
		return nil
	}
	switch rel {
	case PathAssets:
		return s.serveAssets
	case PathLogin:
		return s.serveLogin
	case PathLoginOIDC:
		if s.people.oidc != nil {
			return s.serveLoginOIDC
		}
		return nil
	case PathLoginCallback:
		if s.people.oidc != nil {
			return s.serveLoginCallback
		}
		return nil
	case PathLogout:
		return s.serveLogout
	case PathAuthorize:
		return s.serveAuthorize
	case PathClaims:
		return s.serveClaims
	}
	if rel == PathConsole || strings.HasPrefix(rel, PathConsole+"/") {
		return s.consoleRoute(strings.TrimPrefix(rel, PathConsole))
	}
	return nil
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
func (s *Server) serveLogin(w http.ResponseWriter, r *http.Request) {
	sess, err := s.ensureSession(w, r)
	if err != nil {
		s.renderServerError(w, "starting a session", err)
		return
	}
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		next := s.safeNext(r.URL.Query().Get("next"))
		if sess.Person != nil {
			noStore(w.Header())
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
	if len(s.people.users) == 0 {
		s.renderLogin(w, http.StatusBadRequest, sess, next, "Log in with the identity provider.", false)
		return
	}
	name, password := strings.TrimSpace(form.Get("username")), form.Get("password")
	if wait := s.people.throttle.blockedFor(name, s.now()); wait > 0 {
		s.log.Info("login refused", zap.String("reason", "too many failed attempts"))
		data := s.loginData(next)
		data.NameFilled = name
		s.renderPage(w, http.StatusTooManyRequests, "login.html", page{
			Title: "Log in", CSRF: sess.CSRF, Data: data,
			Error: fmt.Sprintf("Too many failed attempts for this name. Try again in %d minutes.", int(wait.Minutes())+1),
		})
		return
	}
	u := s.people.users[name]
	if u == nil || password == "" {
		s.people.throttle.fail(name, s.now())
		// Spend the time a wrong password would.
		_ = bcrypt.CompareHashAndPassword(s.people.dummy(), []byte(password))
		s.log.Info("login failed", zap.String("reason", "unknown user or empty password"))
		s.renderLoginFailed(w, sess, next, name)
		return
	}
	if !u.checkPassword(password) {
		s.people.throttle.fail(name, s.now())
		s.log.Info("login failed", zap.String("user", name), zap.String("reason", "wrong password"))
		s.renderLoginFailed(w, sess, next, name)
		return
	}
	s.people.throttle.succeed(name)
	p := &person{
		Subject: u.Name, Issuer: s.issuer, Name: u.DisplayName, Email: u.Email, EmailVerified: u.Email != "",
		Groups: u.Groups, Method: "password", AuthTime: s.now().Unix(),
	}
	s.loginAs(w, r, sess, p, next)
}

func (s *Server) renderLoginFailed(w http.ResponseWriter, sess *session, next, name string) {
	data := s.loginData(next)
	data.NameFilled = name
	s.renderPage(w, http.StatusUnauthorized, "login.html", page{
		Title: "Log in", CSRF: sess.CSRF, Error: "The name or the password is wrong.", Data: data,
	})
}

func (s *Server) loginData(next string) loginPage {
	data := loginPage{Next: next, Users: len(s.people.users) > 0}
	if o := s.people.oidc; o != nil {
		data.OIDC, data.OIDCName = true, o.displayName()
		data.OIDCURL = s.basePath + PathLoginOIDC + "?" + url.Values{"next": {next}}.Encode()
	}
	return data
}

func (s *Server) renderLogin(w http.ResponseWriter, status int, sess *session, next, errMsg string, loggedOut bool) {
	data := s.loginData(next)
	p := page{Title: "Log in", CSRF: sess.CSRF, Error: errMsg, Data: data}
	if loggedOut {
		p.Flash = "You are logged out."
	}
	s.renderPage(w, status, "login.html", p)
}

// loginAs replaces the session with a new one for p and goes to next.
func (s *Server) loginAs(w http.ResponseWriter, r *http.Request, old *session, p *person, next string) {
	ctx := r.Context()
	if err := s.endSession(ctx, w, old); err != nil {
		s.log.Warn("ending an anonymous session", errField(err))
	}
	if _, err := s.startSession(ctx, w, p); err != nil {
		s.renderServerError(w, "starting a session", err)
		return
	}
	s.log.Info("logged in", zap.String("subject", p.Subject), zap.String("method", p.Method))
	noStore(w.Header())
	http.Redirect(w, r, next, http.StatusSeeOther)
}

// serveLogout ends the session (POST, with the session's CSRF token).
func (s *Server) serveLogout(w http.ResponseWriter, r *http.Request) {
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
func (p *people) dummy() []byte {
	p.dummyOnce.Do(func() {
		p.dummyHash, _ = bcrypt.GenerateFromPassword([]byte(randomToken(16)), bcrypt.DefaultCost)
	})
	return p.dummyHash
}

// requirePerson returns the logged-in session, or sends the browser to the
// login page (for GET) or answers 403 (otherwise) and returns nil.
func (s *Server) requirePerson(w http.ResponseWriter, r *http.Request) *session {
	sess, err := s.loadSession(r)
	if err != nil {
		s.renderServerError(w, "reading a session", err)
		return nil
	}
	if sess != nil && sess.Person != nil {
		return sess
	}
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		noStore(w.Header())
		http.Redirect(w, r, s.basePath+PathLogin+"?"+url.Values{"next": {r.URL.RequestURI()}}.Encode(), http.StatusSeeOther)
		return nil
	}
	s.renderError(w, http.StatusForbidden, "Not logged in", "Your session has ended. Log in again and retry.")
	return nil
}
