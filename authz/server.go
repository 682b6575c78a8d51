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
// routes.go holds the route table; each grant of the token endpoint has
// its own file (grant_*.go).
//
// With Config.LoginPages, package people serves the pages people see under
// the same issuer path (login, {issuer}/authorize, {issuer}/claims,
// {issuer}/console), through this package's exported API; this package
// only advertises them. Package ownerapi serves the owner API
// ({issuer}/owner/...: rules, dry runs, requests, behind the owner's PAT)
// the same way. With Keycloak compatibility, package keycloak
// serves Keycloak's paths under the issuer the same way (extension.go:
// route tables, the token endpoint in a Dialect, the protection API for a
// PAT caller).
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
	"time"

	"go.uber.org/zap"
	"golang.org/x/time/rate"

	"github.com/caddy-uma/caddy-uma/authz/claimtoken"
	"github.com/caddy-uma/caddy-uma/authz/owners"
	"github.com/caddy-uma/caddy-uma/authz/signing"
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
	PathRegister         = "/register"
	// The pages of package people, advertised here.
	PathAuthorize = "/authorize"
	PathClaims    = "/claims"
	PathConsole   = "/console"
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
	keys      *signing.KeyRing
	tickets   cipher.AEAD
	patTTL    time.Duration
	ticketTTL time.Duration
	rptTTL    time.Duration
	// The UMA grant.
	refreshTTL        time.Duration
	pctTTL            time.Duration
	requestInterval   time.Duration
	watcher           *policies.Watcher
	claimTokens       *claimtoken.Verifier
	trustedIssuers    []string
	claimsInteraction string
	// newResources limits registrations on first sight.
	newResources *rate.Limiter
	log          *zap.Logger
	audit        *zap.Logger
	observer     Observer
	now          func() time.Time

	// discovery changes the metadata document (Config.Discovery); nil
	// when nothing does.
	discovery func(*Metadata)
	// rptClaims returns the claims an RPT carries besides ours
	// (Config.RPTClaims); nil when none.
	rptClaims func(rs Client, perms []Permission) map[string]any
	// readGrantOptions reads a UMA grant request's extension parameters
	// (Config.GrantOptions); nil when none are read.
	readGrantOptions func(form url.Values) (GrantOptions, error)
	// loginPages says that people log in at the AS (Config.LoginPages).
	loginPages bool
	// mux is the route table of the endpoints, relative to basePath.
	mux *http.ServeMux
	// registration is dynamic client registration; nil when off.
	registration *Registration
	// dynamicClients caches clients registered dynamically, by id.
	dynamicClients sync.Map
	// feed is the state of the store's change feed; stopWatching ends
	// the subscription.
	feed         feedState
	stopWatching context.CancelFunc
	// liveRPTs caches RPT liveness for co-hosted enforcement points.
	liveRPTs liveRPTs
	// resources caches the resources read (see resource_cache.go); store
	// reads and writes resources through it.
	resources *resourceCache
	// faults logs server faults, rate-limited.
	faults faultLog

	// The owners' data; rules puts the owners' rules in force in engine.
	shares   *owners.Shares
	requests *owners.Requests
	rules    *owners.Rules
	history  *owners.History
	engine   *policies.Engine
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
		clients:           clients,
		dummySum:          sha256.Sum256([]byte("caddy-uma: no such client")),
		patTTL:            orDefault(cfg.PATTTL, DefaultPATTTL),
		ticketTTL:         orDefault(cfg.TicketTTL, DefaultTicketTTL),
		rptTTL:            orDefault(cfg.RPTTTL, DefaultRPTTTL),
		refreshTTL:        orDefault(cfg.RefreshTTL, DefaultRefreshTTL),
		pctTTL:            orDefault(cfg.PCTTTL, DefaultPCTTTL),
		requestInterval:   orDefault(cfg.RequestInterval, DefaultRequestInterval),
		claimsInteraction: cfg.ClaimsInteractionEndpoint,
		loginPages:        cfg.LoginPages,
		discovery:         cfg.Discovery,
		rptClaims:         cfg.RPTClaims,
		readGrantOptions:  cfg.GrantOptions,

		log:      cfg.Logger,
		audit:    cfg.Audit,
		observer: cfg.Observer,
		now:      cfg.Now,
	}
	if s.log == nil {
		s.log = zap.NewNop()
	}
	if s.audit == nil {
		s.audit = zap.NewNop()
	}
	if s.observer == nil {
		s.observer = nopObserver{}
	}
	if s.now == nil {
		s.now = time.Now
	}
	s.feed = feedState{now: s.now, staleness: orDefault(cfg.FeedStaleness, DefaultFeedStaleness)}
	s.liveRPTs.known.Max = maxLiveRPTs
	s.resources = newResourceCache(cfg.Store, s.feed.fresh, s.now)
	s.store = s.resources
	s.engine = policies.NewEngine(policies.Options{Timeout: cfg.PolicyTimeout, MaxOwnersInForce: cfg.RulesInMemory, Observer: s.observer,
		Checked: cfg.CheckedRules})
	data := owners.Options{Store: s.store, Now: s.now, Log: s.log, ValidName: ValidSubject}
	s.shares = owners.NewShares(data)
	s.requests = owners.NewRequests(data, s.shares)
	s.rules = owners.NewRules(data, owners.RulesOptions{Engine: s.engine, Dir: cfg.PolicyDir, Fresh: s.feed.fresh})
	s.history = owners.NewHistory(data)
	newRate := cfg.NewResourceRate
	if newRate <= 0 {
		newRate = DefaultNewResourceRate
	}
	s.newResources = rate.NewLimiter(rate.Limit(newRate), int(10*newRate))
	alg := cfg.SigningAlg
	if alg == "" {
		alg = signing.Algorithms[0]
	}
	if err := signing.CheckAlg(alg); err != nil {
		return nil, err
	}
	for _, c := range cfg.Clients {
		if c.RPTFormat == RPTFormatKeycloak && alg != "RS256" {
			return nil, fmt.Errorf("client %q: rpt_format keycloak needs signing_alg RS256 (keycloak-connect verifies RS256 only), not %s", c.ID, alg)
		}
		if c.RPTFormat == RPTFormatKeycloak && cfg.RPTClaims == nil {
			return nil, fmt.Errorf("client %q: rpt_format keycloak needs Config.RPTClaims to write Keycloak's claims (keycloak.RPTClaims)", c.ID)
		}
	}
	s.keys, err = signing.Open(ctx, signing.Options{
		Store: cfg.Store, Alg: alg, Rotation: cfg.KeyRotation, Retention: s.rptTTL, Now: s.now,
	})
	if err != nil {
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
	if s.loginPages && s.claimsInteraction == "" {
		s.claimsInteraction = s.Endpoint(PathClaims)
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
		s.watcher = policies.NewWatcher(cfg.PolicyDir, cfg.PolicyPollInterval, s.rules.SetDirectory, func(err error) {
			s.rules.DirectoryFailed(err)
			s.log.Error("reading the rules directory", zap.Error(err))
		})
		if err := s.watcher.Start(context.Background()); err != nil {
			s.Close()
			return nil, fmt.Errorf("loading rules from %s: %w", cfg.PolicyDir, err)
		}
	}
	watch, stop := context.WithCancel(context.Background())
	s.stopWatching = stop
	if err := s.watchChanges(watch); err != nil {
		s.Close()
		return nil, fmt.Errorf("subscribing to the store's changes: %w", err)
	}
	s.faults.now = s.now
	s.mux = s.routes()
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

// IssuerPath returns the path of the issuer identifier, without a trailing
// slash: "" for an issuer at the root of its host.
func (s *Server) IssuerPath() string { return s.basePath }

// Endpoint returns the absolute URL of a path relative to the issuer's.
func (s *Server) Endpoint(path string) string { return s.issuer + path }

// Close stops the server's background work, after writing the access
// decisions still queued. It does not close the store.
func (s *Server) Close() error {
	s.history.Close()
	if s.stopWatching != nil {
		s.stopWatching()
	}
	if s.watcher != nil {
		s.watcher.Stop()
	}
	if s.rules != nil {
		s.rules.Close()
	}
	if s.claimTokens != nil {
		return s.claimTokens.Close()
	}
	return nil
}
