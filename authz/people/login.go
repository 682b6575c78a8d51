package people

import (
	"crypto/rand"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/caddy-uma/caddy-uma/authz/oauth"
	"github.com/caddy-uma/caddy-uma/authz/secret"
	"go.uber.org/zap"
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
	attempt, wait := s.throttle.admit(name, addressKey(s.clientAddress(r)), s.now())
	if wait > 0 {
		s.log.Info("login refused", zap.String("reason", "too many failed attempts"), zap.Duration("retry_after", wait))
		s.renderLoginThrottled(w, sess, next, name, wait)
		return
	}
	u := s.users[name]
	if !s.tryPassword(attempt, u, password) {
		if u == nil || password == "" {
			s.log.Info("login failed", zap.String("reason", "unknown user or empty password"))
		} else {
			s.log.Info("login failed", zap.String("user", name), zap.String("reason", "wrong password"))
		}
		s.renderLoginFailed(w, sess, next, name)
		return
	}
	p := &person{
		Subject: u.Name, Issuer: s.as.Issuer(), Name: u.DisplayName, Email: u.Email, EmailVerified: u.Email != "",
		Groups: u.Groups, Method: "password", AuthTime: s.now().Unix(),
	}
	s.loginAs(w, r, sess, p, next)
}

// tryPassword checks password for an attempt the throttle let through, and
// tells the throttle how it went, whatever happens (an attempt never left
// in flight would hold its name and address to one at a time for good).
func (s *Site) tryPassword(a loginAttempt, u *localUser, password string) (matched bool) {
	defer func() { s.throttle.done(a, matched, s.now()) }()
	return s.checkPassword(u, password)
}

// checkPassword reports whether password is u's; u is nil for an unknown
// name. Every failure costs the same bcrypt work, that of the costliest
// configured hash, so that the time of the answer does not tell whether
// the name exists: an unknown name or an empty password is compared with
// a dummy hash of that cost, and a wrong password of a cheaper hash (cost
// c) is followed by dummy comparisons at costs c to max-1, since
// 2^c + 2^c + 2^(c+1) + ... + 2^(max-1) = 2^max.
func (s *Site) checkPassword(u *localUser, password string) bool {
	if u == nil || password == "" {
		s.compare(s.dummies[s.maxCost], password)
		return false
	}
	if s.compare(u.hashed, password) {
		return true
	}
	for c := u.hashed.Cost(); c < s.maxCost; c++ {
		s.compare(s.dummies[c], password)
	}
	return false
}

// compare compares password with h.
func (s *Site) compare(h *secret.Hashed, password string) bool {
	if s.passwordChecked != nil {
		s.passwordChecked(h.Cost())
	}
	return h.Matches(password)
}

// bcryptAlphabet is the alphabet of bcrypt's salt and hash.
const bcryptAlphabet = "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

// dummyHash returns a well-formed bcrypt hash of the given cost that no
// password matches (its salt and hash are random): comparing with it
// costs what comparing with a real hash of that cost does, and making it
// costs nothing.
func dummyHash(cost int) *secret.Hashed {
	h, err := secret.ParseHashed(dummyHashText(cost))
	if err != nil {
		panic("a dummy bcrypt hash is malformed: " + err.Error()) // cannot happen: cost is a configured hash's
	}
	return h
}

func dummyHashText(cost int) string {
	b := make([]byte, 53)
	_, _ = rand.Read(b) // never fails (crypto/rand crashes the program instead)
	for i := range b {
		b[i] = bcryptAlphabet[b[i]&63]
	}
	return fmt.Sprintf("$2a$%02d$%s", cost, b)
}

// clientAddress is the address the throttle counts a request's login
// attempts under.
func (s *Site) clientAddress(r *http.Request) string {
	if s.clientAddr != nil {
		if a := s.clientAddr(r); a != "" {
			return a
		}
	}
	return remoteHost(r)
}

// renderLoginThrottled answers an attempt that must wait: 429 with
// Retry-After, no password checked.
func (s *Site) renderLoginThrottled(w http.ResponseWriter, sess *session, next, name string, wait time.Duration) {
	secs := int((wait + time.Second - 1) / time.Second)
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	when := fmt.Sprintf("%d second%s", secs, plural(secs))
	if secs >= 120 {
		mins := (secs + 59) / 60
		when = fmt.Sprintf("%d minute%s", mins, plural(mins))
	}
	data := s.loginData(next)
	data.NameFilled = name
	s.renderPage(w, http.StatusTooManyRequests, "login.html", page{
		Title: "Log in", CSRF: sess.CSRF, Data: data,
		Error: "Too many failed attempts. Try again in " + when + ".",
	})
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
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

func (s *Site) reportCost(c int) {
	if s.passwordChecked != nil {
		s.passwordChecked(c)
	}
}
