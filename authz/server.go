// Package authz is the UMA 2.0 authorization server: discovery, JWKS, the
// token endpoint, the protection API (resource registration, permission
// endpoint, introspection) and revocation, as a plain net/http handler
// with no Caddy imports.
//
// Every endpoint lives under the path of the issuer URL:
//
//	{issuer}/.well-known/uma2-configuration   UMA discovery
//	{issuer}/.well-known/oauth-authorization-server, and
//	/.well-known/oauth-authorization-server{issuer path}   RFC 8414 metadata
//	{issuer}/jwks                             public signing keys
//	{issuer}/token                            token endpoint
//	{issuer}/introspect                       RFC 7662 with UMA permissions
//	{issuer}/revoke                           RFC 7009
//	{issuer}/resource_set[/{_id}]             resource registration
//	{issuer}/permission                       permission tickets
//	{issuer}/register                         RFC 7591 dynamic client registration (when on)
//
// When people can log in (local users or an upstream OpenID provider):
//
//	{issuer}/login, /login/oidc, /login/callback, /logout   login sessions
//	{issuer}/authorize                        OAuth authorization endpoint (PATs by consent)
//	{issuer}/claims                           UMA claims interaction endpoint (redirect_user)
//	{issuer}/console/...                      the owners' sharing console
//	{issuer}/assets/uma.css                   the pages' style sheet
package authz

import (
	"context"
	"crypto/cipher"
	"crypto/sha256"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"golang.org/x/time/rate"

	"github.com/caddy-uma/caddy-uma/authz/claimtoken"
	"github.com/caddy-uma/caddy-uma/authz/urlcheck"
	"github.com/caddy-uma/caddy-uma/policies"
	"github.com/caddy-uma/caddy-uma/store"
)

// Default token lifetimes.
const (
	DefaultPATTTL          = time.Hour
	DefaultTicketTTL       = 5 * time.Minute
	DefaultRPTTTL          = 5 * time.Minute
	DefaultRefreshTTL      = time.Hour
	DefaultPCTTTL          = 30 * 24 * time.Hour
	DefaultRequestInterval = 5 * time.Second
	DefaultNewResourceRate = 20
)

// Endpoint paths, relative to the issuer's path.
const (
	PathUMAConfiguration = "/.well-known/uma2-configuration"
	PathOAuthMetadata    = "/.well-known/oauth-authorization-server"
	PathJWKS             = "/jwks"
	PathToken            = "/token"
	PathIntrospect       = "/introspect"
	PathRevoke           = "/revoke"
	PathResourceSet      = "/resource_set"
	PathPermission       = "/permission"
)

// Server is the authorization server. It is safe for concurrent use.
type Server struct {
	issuer   string // without a trailing slash
	basePath string // the issuer's path, without a trailing slash
	store    store.Store
	clients  map[string]*registeredClient
	// dummySum is compared against when a client is unknown, so that
	// unknown and known clients take the same time.
	dummySum  [32]byte
	keys      *keyRing
	tickets   cipher.AEAD
	patTTL    time.Duration
	ticketTTL time.Duration
	rptTTL    time.Duration
	// The UMA grant.
	refreshTTL        time.Duration
	pctTTL            time.Duration
	requestInterval   time.Duration
	rules             *ruleBook
	watcher           *policies.Watcher
	claimTokens       *claimtoken.Verifier
	trustedIssuers    []string
	claimsInteraction string
	policyTimeout     time.Duration
	// newResources limits registrations on first sight.
	newResources *rate.Limiter
	// ensureLocks serialize EnsureResource per name.
	ensureLocks [64]sync.Mutex
	log         *zap.Logger
	now         func() time.Time

	// People: login, sessions, consent and the console; nil when nobody
	// can log in.
	people *people
	// registration is dynamic client registration; nil when off.
	registration *Registration
	// dynamicClients caches clients registered dynamically, by id.
	dynamicClients sync.Map
	// decisionWrites counts access decisions recorded, to prune the
	// history now and then.
	decisionWrites atomic.Uint64
}

// New returns a Server for cfg. It loads the signing keys from the store,
// generating one on first start, and rotates the current key when due.
func New(ctx context.Context, cfg Config) (*Server, error) {
	issuer, basePath, err := parseIssuer(cfg.Issuer)
	if err != nil {
		return nil, err
	}
	if cfg.Store == nil {
		return nil, fmt.Errorf("no store configured")
	}
	clients, err := newClientRegistry(cfg.Clients)
	if err != nil {
		return nil, fmt.Errorf("registering clients: %w", err)
	}
	s := &Server{
		issuer:            issuer,
		basePath:          basePath,
		store:             cfg.Store,
		clients:           clients,
		dummySum:          sha256.Sum256([]byte("caddy-uma: no such client")),
		patTTL:            orDefault(cfg.PATTTL, DefaultPATTTL),
		ticketTTL:         orDefault(cfg.TicketTTL, DefaultTicketTTL),
		rptTTL:            orDefault(cfg.RPTTTL, DefaultRPTTTL),
		refreshTTL:        orDefault(cfg.RefreshTTL, DefaultRefreshTTL),
		pctTTL:            orDefault(cfg.PCTTTL, DefaultPCTTTL),
		requestInterval:   orDefault(cfg.RequestInterval, DefaultRequestInterval),
		claimsInteraction: cfg.ClaimsInteractionEndpoint,
		policyTimeout:     cfg.PolicyTimeout,
		rules: &ruleBook{
			engine:    policies.NewEngine(policies.Options{Timeout: cfg.PolicyTimeout}),
			dirOwners: map[string]map[string]string{},
			loaded:    map[string]bool{},
		},
		log: cfg.Logger,
		now: cfg.Now,
	}
	if s.log == nil {
		s.log = zap.NewNop()
	}
	newRate := cfg.NewResourceRate
	if newRate <= 0 {
		newRate = DefaultNewResourceRate
	}
	s.newResources = rate.NewLimiter(rate.Limit(newRate), int(10*newRate))
	if s.now == nil {
		s.now = time.Now
	}
	alg := cfg.SigningAlg
	if alg == "" {
		alg = "ES256"
	}
	s.keys = &keyRing{
		store:     cfg.Store,
		alg:       alg,
		rotation:  cfg.KeyRotation,
		retention: s.rptTTL,
		now:       s.now,
	}
	if err := s.keys.load(ctx); err != nil {
		return nil, fmt.Errorf("loading signing keys: %w", err)
	}
	if s.tickets, err = loadTicketCipher(ctx, cfg.Store); err != nil {
		return nil, fmt.Errorf("loading the ticket key: %w", err)
	}
	if len(cfg.TrustedIssuers) > 0 {
		s.claimTokens, err = claimtoken.NewVerifier(ctx, cfg.TrustedIssuers, claimtoken.Options{
			HTTPClient: cfg.HTTPClient, Now: s.now, Logger: s.log,
		})
		if err != nil {
			return nil, fmt.Errorf("trusted issuers: %w", err)
		}
		for _, ti := range cfg.TrustedIssuers {
			s.trustedIssuers = append(s.trustedIssuers, ti.Issuer)
		}
	}
	if err := s.setUpPeople(ctx, cfg); err != nil {
		s.Close()
		return nil, err
	}
	if cfg.Registration != nil {
		if cfg.Registration.InitialAccessToken == "" {
			s.Close()
			return nil, fmt.Errorf("dynamic client registration needs an initial access token")
		}
		reg := *cfg.Registration
		s.registration = &reg
	}
	if cfg.PolicyDir != "" {
		s.watcher = policies.NewWatcher(cfg.PolicyDir, cfg.PolicyPollInterval, s.setDirRules, func(err error) {
			s.log.Error("reading the rules directory", errField(err))
		})
		if err := s.watcher.Start(context.Background()); err != nil {
			s.Close()
			return nil, fmt.Errorf("loading rules from %s: %w", cfg.PolicyDir, err)
		}
	}
	return s, nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// parseIssuer validates an issuer identifier (RFC 8414 section 2: a URL
// with no query or fragment) and returns it without a trailing slash, with
// its path.
func parseIssuer(raw string) (issuer, path string, err error) {
	if err := urlcheck.Absolute(raw, false); err != nil {
		return "", "", fmt.Errorf("issuer %q %w", raw, err)
	}
	u, _ := url.Parse(raw)
	return strings.TrimRight(raw, "/"), strings.TrimRight(u.EscapedPath(), "/"), nil
}

// Issuer returns the issuer identifier.
func (s *Server) Issuer() string { return s.issuer }

// endpoint returns the absolute URL of an endpoint path.
func (s *Server) endpoint(path string) string { return s.issuer + path }

// route returns the handler for a request path, or nil.
func (s *Server) route(path string) http.HandlerFunc {
	if s.basePath != "" && path == PathOAuthMetadata+s.basePath {
		return s.serveOAuthMetadata
	}
	rel, ok := strings.CutPrefix(path, s.basePath)
	if !ok || (rel != "" && rel[0] != '/') {
		return nil
	}
	switch rel {
	case PathUMAConfiguration:
		return s.serveUMAConfiguration
	case PathOAuthMetadata:
		return s.serveOAuthMetadata
	case PathJWKS:
		return s.serveJWKS
	case PathToken:
		return s.serveToken
	case PathIntrospect:
		return s.serveIntrospect
	case PathRevoke:
		return s.serveRevoke
	case PathPermission:
		return s.servePermission
	case PathResourceSet, PathResourceSet + "/":
		return s.serveResourceSet
	}
	if strings.HasPrefix(rel, "/owner/") {
		return s.ownerRoute(rel)
	}
	if h := s.peopleRoute(rel); h != nil {
		return h
	}
	if id, ok := strings.CutPrefix(rel, PathResourceSet+"/"); ok && id != "" && !strings.Contains(id, "/") {
		return func(w http.ResponseWriter, r *http.Request) { s.serveResource(w, r, id) }
	}
	return nil
}

// Handles reports whether path is one of the AS's endpoints.
func (s *Server) Handles(path string) bool { return s.route(path) != nil }

// ServeHTTP serves the AS endpoints. Other paths get a 404 in OAuth error
// format.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := s.route(r.URL.Path)
	if h == nil {
		writeError(w, &oauthError{Status: http.StatusNotFound, Code: "not_found", Description: "no such endpoint"})
		return
	}
	h(w, r)
}

// Close stops the server's background work. It does not close the store.
func (s *Server) Close() error {
	if s.watcher != nil {
		s.watcher.Stop()
	}
	if s.people != nil {
		s.people.close()
	}
	if s.claimTokens != nil {
		return s.claimTokens.Close()
	}
	return nil
}
