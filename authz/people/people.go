// Package people serves the pages people see at the authorization server,
// under the issuer's path: login (local users, or an upstream OpenID
// provider) and sessions, the consent page of the authorization endpoint
// (a resource server obtains a PAT by its owner's consent), the claims
// interaction endpoint (a requesting party proves who they are), and the
// owners' sharing console.
//
//	{issuer}/login, /login/oidc, /login/callback, /logout   login sessions
//	{issuer}/authorize                        OAuth authorization endpoint (PATs by consent)
//	{issuer}/claims                           UMA claims interaction endpoint (redirect_user)
//	{issuer}/console/...                      the owners' sharing console
//	{issuer}/assets/uma.css                   the pages' style sheet
//
// The protocol behind the pages is package authz's, through its exported
// API; authz never imports this package. Run the AS with
// authz.Config.LoginPages so that it advertises these endpoints.
package people

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-uma/caddy-uma/authz"
	"github.com/caddy-uma/caddy-uma/authz/secret"
	"github.com/caddy-uma/caddy-uma/authz/urlcheck"
	"github.com/caddy-uma/caddy-uma/store"
)

// Paths of the pages, relative to the issuer's path.
const (
	PathLogin         = "/login"
	PathLoginOIDC     = "/login/oidc"
	PathLoginCallback = "/login/callback"
	PathLogout        = "/logout"
	PathAuthorize     = authz.PathAuthorize
	PathClaims        = authz.PathClaims
	PathConsole       = authz.PathConsole
)

// Config configures the pages.
type Config struct {
	// Users are the local user accounts: people who log in with a name and
	// password, to manage their resources in the console, to consent to a
	// resource server's PAT, or to prove who they are in claims gathering.
	Users []User
	// OIDC, when set, lets people log in with an upstream OpenID Connect
	// provider.
	OIDC *OIDCLogin
	// SessionTTL is how long a login session lasts (default 8h).
	SessionTTL time.Duration
	// HTTPClient calls the OpenID provider; nil means a client with a 10s
	// timeout.
	HTTPClient *http.Client
	// Logger receives the pages' logs; nil means none. Passwords, tokens
	// and session ids are never logged.
	Logger *zap.Logger
	// ClientAddress returns the address of the client of a request, under
	// which failed logins are counted; nil, or an empty answer, means the
	// host of the request's RemoteAddr. Behind a proxy, return the real
	// client's address as the server has established it from a trusted
	// proxy's headers (the Caddy module passes Caddy's client_ip, which
	// the server's trusted_proxies decide); never a header anyone can send.
	ClientAddress func(*http.Request) string
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// User is a local user account.
type User struct {
	// Name is the login name, and the user's subject: the owner of the
	// resources registered for "Name".
	Name string
	// PasswordHash is a bcrypt hash of the password ($2a$, $2b$ or $2y$),
	// as `caddy hash-password` prints it.
	PasswordHash string
	// Email is the user's e-mail address, taken as verified.
	Email string
	// DisplayName is the name shown to people; empty means Name.
	DisplayName string
	// Groups are the user's groups (the "groups" claim).
	Groups []string
}

// OIDCLogin configures login through an upstream OpenID Connect provider
// (authorization code flow with PKCE).
type OIDCLogin struct {
	// Issuer is the provider's issuer; its configuration is discovered at
	// Issuer + "/.well-known/openid-configuration".
	Issuer string
	// ClientID and ClientSecret are the AS's client at the provider. The
	// redirect URI to register there is {issuer}/login/callback. An empty
	// secret makes the AS a public client (PKCE only).
	ClientID     string
	ClientSecret string
	// Scopes are requested besides "openid"; empty means "email profile".
	Scopes []string
	// Name is shown on the login button; empty means the provider's host.
	Name string
}

// Site serves the pages. It is safe for concurrent use.
type Site struct {
	as            *authz.Server
	store         store.Records
	base          string // the issuer's path
	users         map[string]*localUser
	oidc          *oidcClient
	sessionTTL    time.Duration
	secureCookies bool
	throttle      *loginThrottle
	clientAddr    func(*http.Request) string
	log           *zap.Logger
	now           func() time.Time
	mux           *http.ServeMux

	// dummies are hashes no password matches, by cost, from the cheapest
	// configured hash's cost to maxCost, the costliest's.
	dummies map[int]*secret.Hashed
	maxCost int
	// passwordChecked, when set (by tests), is told the cost of every
	// password comparison.
	passwordChecked func(cost int)
}

// CheckUsers reports the first thing wrong with the local users: a name
// that is empty, too long, has spaces, is repeated or is the id of one of
// clientIDs, a password hash that is not a valid bcrypt hash. The Caddy
// configuration checks users with it at load, and New again.
func CheckUsers(users []User, clientIDs []string) error {
	seen := make(map[string]bool, len(users))
	for _, u := range users {
		switch {
		case slices.Contains(clientIDs, u.Name):
			// A person named like a client would be taken for it where
			// subjects and client ids meet (a PAT's subject, the history).
			return fmt.Errorf("user %q: a client has the same id; give the user another name", u.Name)
		case !authz.ValidSubject(u.Name) || strings.ContainsAny(u.Name, " \t\r\n"):
			return fmt.Errorf("user %q: a user name is 1 to %d characters without spaces", u.Name, authz.MaxSubjectLen)
		case seen[u.Name]:
			return fmt.Errorf("user %q: defined more than once", u.Name)
		case u.PasswordHash == "":
			return fmt.Errorf("user %q: password_hash is required", u.Name)
		case !secret.LooksHashed(u.PasswordHash):
			return fmt.Errorf("user %q: password_hash must be a bcrypt hash (caddy hash-password prints one)", u.Name)
		}
		if _, err := secret.ParseHashed(u.PasswordHash); err != nil {
			return fmt.Errorf("user %q: invalid bcrypt hash: %w", u.Name, err)
		}
		seen[u.Name] = true
	}
	return nil
}

// New returns the pages of the AS as, with its store (sessions and claims
// interactions are kept there). At least one user or an OpenID provider is
// required, and an https issuer (plain http only on a loopback host).
func New(ctx context.Context, as *authz.Server, st store.Records, cfg Config) (*Site, error) {
	if len(cfg.Users) == 0 && cfg.OIDC == nil {
		return nil, errors.New("login needs local users or an OpenID provider")
	}
	u, _ := url.Parse(as.Issuer())
	secure := u.Scheme == "https"
	if !secure && !urlcheck.Loopback(u.Hostname()) {
		return nil, errors.New("login needs an https issuer (plain http only on a loopback host): passwords and session cookies would travel in clear text")
	}
	if err := CheckUsers(cfg.Users, as.ClientIDs()); err != nil {
		return nil, err
	}
	s := &Site{
		as:            as,
		store:         st,
		base:          as.IssuerPath(),
		users:         make(map[string]*localUser, len(cfg.Users)),
		sessionTTL:    cfg.SessionTTL,
		secureCookies: secure,
		throttle:      newLoginThrottle(),
		clientAddr:    cfg.ClientAddress,
		log:           cfg.Logger,
		now:           cfg.Now,
		dummies:       map[int]*secret.Hashed{},
	}
	if s.sessionTTL <= 0 {
		s.sessionTTL = DefaultSessionTTL
	}
	if s.log == nil {
		s.log = zap.NewNop()
	}
	if s.now == nil {
		s.now = time.Now
	}
	for _, usr := range cfg.Users {
		hashed, _ := secret.ParseHashed(usr.PasswordHash) // checked above
		s.users[usr.Name] = &localUser{User: usr, hashed: hashed}
		s.maxCost = max(s.maxCost, hashed.Cost())
	}
	for _, u := range s.users {
		for c := u.hashed.Cost(); c <= s.maxCost; c++ {
			if s.dummies[c] == nil {
				s.dummies[c] = dummyHash(c)
			}
		}
	}
	if cfg.OIDC != nil {
		o, err := newOIDCClient(ctx, *cfg.OIDC, as.Endpoint(PathLoginCallback), cfg.HTTPClient, s.now, s.log)
		if err != nil {
			return nil, fmt.Errorf("login_oidc: %w", err)
		}
		s.oidc = o
	}
	s.mux = s.routes()
	return s, nil
}

// Close stops the pages' background work.
func (s *Site) Close() error {
	if s.oidc != nil {
		s.oidc.close()
	}
	return nil
}

// Handles reports whether path is one of the pages.
func (s *Site) Handles(path string) bool {
	return s.as.Route(s.mux, &http.Request{Method: http.MethodGet, URL: &url.URL{Path: path}}) != nil
}

// ServeHTTP serves the pages; other paths get a 404 page.
func (s *Site) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := s.as.Route(s.mux, r)
	if h == nil {
		s.renderError(w, http.StatusNotFound, "Not found", "There is no such page.")
		return
	}
	h.ServeHTTP(w, r)
}

// Endpoints serves, under one issuer, the AS's endpoints and the pages
// (when Site is not nil): what the uma_server handler serves, with the
// owner API (authz.Join).
type Endpoints struct {
	AS   *authz.Server
	Site *Site
}

// Handles reports whether path is an endpoint or a page.
func (e Endpoints) Handles(path string) bool {
	return e.AS.Handles(path) || (e.Site != nil && e.Site.Handles(path))
}

// ServeHTTP serves an endpoint or a page; other paths get the AS's 404.
func (e Endpoints) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if e.Site != nil && !e.AS.Handles(r.URL.Path) && e.Site.Handles(r.URL.Path) {
		e.Site.ServeHTTP(w, r)
		return
	}
	e.AS.ServeHTTP(w, r)
}
