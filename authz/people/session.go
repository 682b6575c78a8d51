package people

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/caddy-uma/caddy-uma/authz/secret"
	"github.com/caddy-uma/caddy-uma/store"
)

// Login sessions are server-side: the cookie holds 256 random bits, and the
// store holds the session under the SHA-256 of that value (namespace
// "session"), so that the store never holds a usable session id. A session
// starts anonymous (when a login form or an OpenID login is started) and
// carries the CSRF token of its forms; logging in replaces it with a new
// one (a new id and a new CSRF token), so that an id planted before the
// login is worth nothing after it.
//
// The cookie is HttpOnly, SameSite=Lax, limited to the issuer's path, and
// Secure unless the issuer is plain http on a loopback host (development).

// nsSession is the Records namespace of login sessions.
const nsSession = "session"

// sessionCookie is the name of the session cookie.
const sessionCookie = "uma_session"

// DefaultSessionTTL is how long a login session lasts.
const DefaultSessionTTL = 8 * time.Hour

// anonymousSessionTTL is how long a session without a person lasts: long
// enough to fill in a login form or to log in at an OpenID provider.
const anonymousSessionTTL = 30 * time.Minute

// session is a browser's session at the AS.
type session struct {
	// CSRF is the synchronizer token of the session's forms.
	CSRF string `json:"csrf"`
	// Person is who logged in; nil for an anonymous session.
	Person *person `json:"person,omitempty"`
	// OIDC is a login at the upstream provider in progress.
	OIDC    *oidcPending `json:"oidc,omitempty"`
	Created int64        `json:"created"`
	Expires int64        `json:"exp"`

	// id is the session's cookie value (not stored).
	id string
}

// person is someone logged in.
type person struct {
	// Subject is the person's subject: a local user's name, or the sub of
	// the upstream provider's ID token. It is the owner of console actions.
	Subject string `json:"sub"`
	// Issuer is who vouches for the subject: the AS itself for local
	// users, the upstream provider otherwise.
	Issuer        string   `json:"iss"`
	Name          string   `json:"name,omitempty"`
	Email         string   `json:"email,omitempty"`
	EmailVerified bool     `json:"email_verified,omitempty"`
	Groups        []string `json:"groups,omitempty"`
	// Method is how the person logged in: "password" or "oidc".
	Method string `json:"method"`
	// Claims are the other identity claims of an ID token.
	Claims map[string]any `json:"claims,omitempty"`
	// AuthTime is when the person logged in (unix seconds).
	AuthTime int64 `json:"auth_time"`
}

// DisplayName is how the person is shown: name, e-mail or subject.
func (p *person) DisplayName() string {
	switch {
	case p.Name != "":
		return p.Name
	case p.Email != "":
		return p.Email
	}
	return p.Subject
}

// identityClaims are the claims the person brings to an authorization
// process: the ID token's (or the local account's) identity claims.
func (p *person) identityClaims() map[string]any {
	out := make(map[string]any, len(p.Claims)+6)
	for k, v := range p.Claims {
		out[k] = v
	}
	out["sub"] = p.Subject
	out["iss"] = p.Issuer
	if p.Name != "" {
		out["name"] = p.Name
	}
	if p.Email != "" {
		out["email"] = p.Email
		out["email_verified"] = p.EmailVerified
	}
	if len(p.Groups) > 0 {
		groups := make([]any, len(p.Groups))
		for i, g := range p.Groups {
			groups[i] = g
		}
		out["groups"] = groups
	}
	return out
}

// loadSession returns the live session of the request's cookie, or nil.
func (s *Site) loadSession(r *http.Request) (*session, error) {
	c, err := r.Cookie(sessionCookie)
	if err != nil || c.Value == "" || len(c.Value) > 128 {
		return nil, nil
	}
	val, err := s.store.Get(r.Context(), nsSession, secret.Key(c.Value))
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading a session: %w", err)
	}
	var sess session
	if err := json.Unmarshal(val, &sess); err != nil {
		return nil, fmt.Errorf("decoding a session: %w", err)
	}
	if s.now().Unix() >= sess.Expires {
		return nil, nil
	}
	sess.id = c.Value
	return &sess, nil
}

// saveSession stores a session under its id until it expires.
func (s *Site) saveSession(ctx context.Context, sess *session) error {
	val, err := json.Marshal(sess)
	if err != nil {
		return err
	}
	if err := s.store.Put(ctx, nsSession, secret.Key(sess.id), val, time.Unix(sess.Expires, 0)); err != nil {
		return fmt.Errorf("storing a session: %w", err)
	}
	return nil
}

// startSession creates a session for p (nil: anonymous), stores it and
// sets its cookie.
func (s *Site) startSession(ctx context.Context, w http.ResponseWriter, p *person) (*session, error) {
	now := s.now()
	ttl := anonymousSessionTTL
	if p != nil {
		ttl = s.sessionTTL
	}
	sess := &session{
		id:      secret.New(32),
		CSRF:    secret.New(32),
		Person:  p,
		Created: now.Unix(),
		Expires: now.Add(ttl).Unix(),
	}
	if err := s.saveSession(ctx, sess); err != nil {
		return nil, err
	}
	s.setSessionCookie(w, sess.id, ttl)
	return sess, nil
}

// ensureSession returns the request's session, starting an anonymous one
// if there is none.
func (s *Site) ensureSession(w http.ResponseWriter, r *http.Request) (*session, error) {
	sess, err := s.loadSession(r)
	if err != nil || sess != nil {
		return sess, err
	}
	return s.startSession(r.Context(), w, nil)
}

// endSession deletes a session and its cookie.
func (s *Site) endSession(ctx context.Context, w http.ResponseWriter, sess *session) error {
	s.setSessionCookie(w, "", -1)
	if sess == nil {
		return nil
	}
	err := s.store.Delete(ctx, nsSession, secret.Key(sess.id))
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("deleting a session: %w", err)
	}
	return nil
}

// setSessionCookie sets the session cookie; a negative ttl deletes it.
func (s *Site) setSessionCookie(w http.ResponseWriter, value string, ttl time.Duration) {
	c := &http.Cookie{
		Name:     sessionCookie,
		Value:    value,
		Path:     s.cookiePath(),
		HttpOnly: true,
		Secure:   s.secureCookies,
		SameSite: http.SameSiteLaxMode,
	}
	if ttl < 0 {
		c.MaxAge = -1
	} else {
		c.MaxAge = int(ttl.Seconds())
	}
	http.SetCookie(w, c)
}

// cookiePath is the path of the AS's cookies: the issuer's path.
func (s *Site) cookiePath() string {
	if s.base == "" {
		return "/"
	}
	return s.base
}

// validCSRF reports whether token is the session's CSRF token, comparing
// in constant time.
func validCSRF(sess *session, token string) bool {
	return sess != nil && secret.Equal(token, sess.CSRF)
}
