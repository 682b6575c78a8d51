// Package caddymodule adapts the UMA 2.0 authorization server of package
// authz to Caddy: the uma app holds the server's configuration and state
// (one per config load), the http.handlers.uma_server handler serves its
// endpoints, the modules of the uma.storage namespace (uma.storage.badger,
// uma.storage.postgres) are the databases it can keep its state in, and caddyfile.go parses the
// uma global option and the uma_server directive.
package caddymodule

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-uma/caddy-uma/authz"
	"github.com/caddy-uma/caddy-uma/authz/admin"
	"github.com/caddy-uma/caddy-uma/authz/claimtoken"
	"github.com/caddy-uma/caddy-uma/authz/keycloak"
	"github.com/caddy-uma/caddy-uma/authz/ownerapi"
	"github.com/caddy-uma/caddy-uma/authz/people"
	"github.com/caddy-uma/caddy-uma/authz/signing"
	"github.com/caddy-uma/caddy-uma/authz/urlcheck"
	"github.com/caddy-uma/caddy-uma/policies"
	"github.com/caddy-uma/caddy-uma/store"
)

func init() {
	caddy.RegisterModule(App{})
}

// App is the uma app: a UMA 2.0 authorization server (AS). It holds the AS's
// configuration and, once started, the running server; the uma_server HTTP
// handler serves its endpoints on the sites that should expose them.
//
// The database is opened in Start, not in Provision, so that `caddy
// validate` works while a server on the same storage runs, and it is shared
// across config reloads through a process-wide pool keyed by the storage
// backend and its database (for badger, the path): a reload that keeps the
// storage keeps the open database, one that changes it opens the new one
// and closes the old one.
type App struct {
	// Issuer is the AS's issuer identifier (required): an absolute http or
	// https URL without query or fragment, such as
	// "https://auth.example.com" or "https://example.com/uma". Every endpoint
	// lives under its path, and discovery is at
	// /.well-known/uma2-configuration. Placeholders such as {env.UMA_ISSUER}
	// are expanded when the config is loaded. Use https outside of local
	// development.
	Issuer string `json:"issuer,omitempty"`

	// Storage is where the AS keeps its state: signing keys, registered
	// resources, issued tokens and tickets. It is a module of the
	// uma.storage namespace, named by its "backend" key, with the module's
	// settings beside it: {"backend": "badger", "path": "/var/lib/uma"}.
	// A storage without backend is badger. Default: badger in the "uma"
	// folder of Caddy's data directory.
	Storage json.RawMessage `json:"storage,omitempty" caddy:"namespace=uma.storage inline_key=backend"`

	// Clients are the OAuth clients registered at the AS: resource servers
	// (which obtain PATs and use the protection API) and requesting parties'
	// clients.
	Clients []Client `json:"clients,omitempty"`

	// SigningAlg is the JWS algorithm of the keys the AS generates to sign
	// its tokens: "ES256" (the default), "EdDSA" or "RS256". Changing it
	// applies to the next generated key.
	SigningAlg string `json:"signing_alg,omitempty"`

	// KeyRotation is how often a new signing key replaces the current one.
	// Default: 0, no rotation.
	KeyRotation caddy.Duration `json:"key_rotation,omitempty"`

	// PATTTL is the lifetime of protection API access tokens (PATs).
	// Default: 1h.
	PATTTL caddy.Duration `json:"pat_ttl,omitempty"`

	// TicketTTL is the lifetime of permission tickets. Default: 5m.
	TicketTTL caddy.Duration `json:"ticket_ttl,omitempty"`

	// RPTTTL is the lifetime of requesting party tokens (RPTs).
	// Default: 5m.
	RPTTTL caddy.Duration `json:"rpt_ttl,omitempty"`

	// RefreshTTL is the lifetime of refresh tokens issued with RPTs.
	// Default: 1h.
	RefreshTTL caddy.Duration `json:"refresh_ttl,omitempty"`

	// PCTTTL is the lifetime of persisted claims tokens (PCTs).
	// Default: 720h (30 days).
	PCTTTL caddy.Duration `json:"pct_ttl,omitempty"`

	// RequestInterval is the polling interval announced with
	// request_submitted. Default: 5s.
	RequestInterval caddy.Duration `json:"request_interval,omitempty"`

	// FeedStaleness is how long answers kept in memory (which RPTs are
	// live, for a co-hosted uma_protect) are trusted while the store's
	// change feed is interrupted (on PostgreSQL: the node lost its
	// connection to the database). Past it, each answer is read from the
	// store, and refused if the store cannot be read. Default: 5s.
	FeedStaleness caddy.Duration `json:"feed_staleness,omitempty"`

	// Policies is the operator directory of sharing rules:
	// <dir>/<owner>/*.rego are the rules of that owner and
	// <dir>/_system/*.rego the system rules that apply to everyone. Changes
	// are picked up without restart. Optional.
	Policies string `json:"policies,omitempty"`

	// PolicyTimeout bounds one evaluation of an owner's rules.
	// Default: 250ms.
	PolicyTimeout caddy.Duration `json:"policy_timeout,omitempty"`

	// NewResourceRate bounds how many resources per second uma_protect may
	// register on first sight (bursts of ten times as many). Default: 20.
	NewResourceRate float64 `json:"new_resource_rate,omitempty"`

	// TrustedIssuers are the OpenID providers and JWT issuers whose claim
	// tokens the UMA grant accepts.
	TrustedIssuers []TrustedIssuer `json:"trusted_issuers,omitempty"`

	// Users are local user accounts: people who log in at the AS with a
	// name and password to manage their resources in the console
	// ({issuer}/console), to let a resource server protect their
	// resources (the authorization endpoint), or to prove who they are in
	// claims gathering. A user's name is their subject, the owner of the
	// resources registered for that name.
	Users []User `json:"users,omitempty"`

	// LoginOIDC lets people log in with an upstream OpenID Connect
	// provider; their subject is the provider's sub.
	LoginOIDC *LoginOIDC `json:"login_oidc,omitempty"`

	// KeycloakCompat serves Keycloak's paths under the issuer beside the
	// standard ones ({issuer}/protocol/openid-connect/token,
	// .../authz/protection/resource_set, ...), answered as Keycloak
	// answers, so that Keycloak's client libraries work unchanged. The
	// issuer's path must be /realms/{realm}.
	//
	//	uma {
	//		issuer https://auth.example.com/realms/demo
	//		keycloak_compat
	//	}
	KeycloakCompat bool `json:"keycloak_compat,omitempty"`

	// SessionTTL is how long a login session lasts. Default: 8h.
	SessionTTL caddy.Duration `json:"session_ttl,omitempty"`

	// DynamicRegistration turns on RFC 7591 dynamic client registration at
	// {issuer}/register. Off when absent.
	DynamicRegistration *DynamicRegistration `json:"dynamic_registration,omitempty"`

	// What Provision computes from the fields above, with placeholders
	// expanded and defaults applied.
	issuer     string
	storage    StorageBackend
	signingAlg string
	clients    []authz.Client
	policyDir  string
	loginOIDC  *people.OIDCLogin
	dcrToken   string

	ctx    caddy.Context
	logger *zap.Logger
	audit  *zap.Logger
	state  *appState
}

// appState is what changes while an App runs. It is allocated by Provision
// and held by pointer, so that App values (the config) copy freely.
type appState struct {
	// server is the AS, published by Start and never withdrawn (see
	// Cleanup); nil means not started.
	server atomic.Pointer[authz.Server]
	// pages are the pages people see (nil when nobody logs in),
	// published with server.
	pages atomic.Pointer[people.Site]
	// operator is the operator's API of server, published with it.
	operator atomic.Pointer[admin.API]
	// keycloak are Keycloak's paths (nil outside compat mode), published
	// with server.
	keycloak atomic.Pointer[keycloak.Compat]
	// ownerAPI is the owner API, published with server.
	ownerAPI atomic.Pointer[ownerapi.API]
	// started is closed by a successful Start, after server is published.
	started chan struct{}
	// store is the database as the storage backend opened it, and
	// measured the same wrapped in its metrics, which the server uses;
	// both are set by Start before it publishes the server, for the
	// readiness probe.
	store    store.Store
	measured *measuredStore

	// mu guards storeKey, the key of the storePool entry this app holds:
	// set after a successful LoadOrNew, cleared by the one Delete.
	mu       sync.Mutex
	storeKey string
}

// TrustedIssuer is an issuer whose claim tokens (ID tokens, JWTs) count.
type TrustedIssuer struct {
	// Issuer is the exact "iss" value of its tokens.
	Issuer string `json:"issuer,omitempty"`
	// JWKSURI is where its keys are; empty means OpenID Connect discovery
	// at Issuer + "/.well-known/openid-configuration".
	JWKSURI string `json:"jwks_uri,omitempty"`
	// Audiences are the accepted "aud" values: a claim token must carry
	// one of them. Empty means any. Either way, a token counts only for
	// the client it was issued to: its "aud" must contain the id of the
	// client that pushes it, a token with several audiences needs an "azp"
	// claim, and "azp" must be that client's id (OpenID Connect Core 1.0
	// section 3.1.3.7). A token whose audience is only the AS's issuer is
	// issued to no client and does not count, unless AnyClientAudience.
	Audiences []string `json:"audiences,omitempty"`
	// AnyClientAudience drops the client check: a token carrying one of
	// Audiences counts for every client, so clients can push each other's
	// tokens. For identity providers whose tokens name a shared audience
	// (the AS's issuer, an API). It requires Audiences.
	AnyClientAudience bool `json:"any_client_audience,omitempty"`
	// Algorithms are the accepted JWS algorithms; empty means the
	// asymmetric ones (never none, never HS*).
	Algorithms []string `json:"algorithms,omitempty"`
}

// User is a local user account.
type User struct {
	// Name is the login name and the user's subject (required, unique, no
	// spaces).
	Name string `json:"name,omitempty"`
	// PasswordHash is a bcrypt hash of the password, as printed by `caddy
	// hash-password` (required).
	PasswordHash string `json:"password_hash,omitempty"`
	// Email is the user's e-mail address, taken as verified: shares made
	// with this address apply to the user.
	Email string `json:"email,omitempty"`
	// DisplayName is the name shown on pages; default: Name.
	DisplayName string `json:"display_name,omitempty"`
	// Groups are the user's groups (the "groups" claim of sharing rules).
	Groups []string `json:"groups,omitempty"`
}

// LoginOIDC configures login through an upstream OpenID Connect provider:
// the authorization code flow with PKCE, its configuration discovered at
// Issuer + "/.well-known/openid-configuration", ID tokens verified against
// the provider's JWKS (iss, aud, exp, nonce). Register {issuer}/login/callback
// as the redirect URI at the provider.
type LoginOIDC struct {
	// Issuer is the provider's issuer URL (required).
	Issuer string `json:"issuer,omitempty"`
	// ClientID is the AS's client id at the provider (required).
	ClientID string `json:"client_id,omitempty"`
	// ClientSecret is its secret; {env.*} and {file.*} placeholders are
	// expanded. Empty means a public client.
	ClientSecret string `json:"client_secret,omitempty"`
	// Scopes are asked for besides openid. Default: email profile.
	Scopes []string `json:"scopes,omitempty"`
	// Name is the provider's name on the login button. Default: its host.
	Name string `json:"name,omitempty"`
}

// DynamicRegistration configures RFC 7591 dynamic client registration.
type DynamicRegistration struct {
	// InitialAccessToken is the Bearer token every registration request
	// must carry (required); {env.*} and {file.*} placeholders are
	// expanded.
	InitialAccessToken string `json:"initial_access_token,omitempty"`
}

// Client is an OAuth client registered at the AS.
type Client struct {
	// ID is the client identifier (required, unique).
	ID string `json:"id,omitempty"`

	// Secret authenticates the client (HTTP Basic or client_secret_post):
	// either a bcrypt hash as printed by `caddy hash-password` (recommended)
	// or plain text. Placeholders are expanded when the config is loaded,
	// so "{env.RS_API_SECRET}" or "{file./run/secrets/rs_api}" keeps the
	// secret out of the config; a placeholder that expands to nothing is an
	// error. Empty means a public client.
	Secret string `json:"secret,omitempty"`

	// ResourceServer allows the client to obtain PATs (a client_credentials
	// grant with scope uma_protection) and to use the protection API. A
	// resource server must have a secret.
	ResourceServer bool `json:"resource_server,omitempty"`

	// Scopes are the scopes the client pre-registered: UMA's registered
	// scopes of its grants, and the scopes it may request in a
	// client_credentials grant besides uma_protection.
	Scopes []string `json:"scopes,omitempty"`

	// RedirectURIs are the client's OAuth redirect URIs: absolute URIs
	// without fragment.
	RedirectURIs []string `json:"redirect_uris,omitempty"`

	// ClaimsRedirectURIs are the client's UMA claims redirect URIs, where
	// the AS sends the requesting party back after claims gathering:
	// absolute URIs without fragment.
	ClaimsRedirectURIs []string `json:"claims_redirect_uris,omitempty"`

	// RPTFormat is the layout of RPTs for this resource server's
	// resources: "uma" (default) or "keycloak" (typ "Bearer" and
	// authorization.permissions, as keycloak-connect reads them; needs
	// signing_alg RS256).
	RPTFormat string `json:"rpt_format,omitempty"`

	// PushClaims trusts the client to push claims it asserts itself, as
	// Keycloak's claim_token_format urn:ietf:params:oauth:token-type:jwt
	// (base64url JSON, unsigned). Off by default: such claim tokens are
	// refused.
	PushClaims bool `json:"push_claims,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "uma",
		New: func() caddy.Module { return new(App) },
	}
}

// Provision expands placeholders and applies defaults. It does not open the
// database: Start does.
func (a *App) Provision(ctx caddy.Context) error {
	a.ctx = ctx
	a.logger = ctx.Logger()
	a.audit = auditLogger(ctx)
	a.state = &appState{started: make(chan struct{})}
	if err := registerMetrics(ctx.GetMetricsRegistry()); err != nil {
		return fmt.Errorf("registering metrics: %w", err)
	}
	repl := caddy.NewReplacer()

	issuer, err := repl.ReplaceOrErr(a.Issuer, true, true)
	if err != nil {
		return fmt.Errorf("expanding issuer: %w", err)
	}
	a.issuer = issuer

	if err := a.loadStorage(ctx); err != nil {
		return err
	}

	if a.Policies != "" {
		dir, err := repl.ReplaceOrErr(a.Policies, true, true)
		if err != nil {
			return fmt.Errorf("expanding policies directory: %w", err)
		}
		if a.policyDir, err = filepath.Abs(dir); err != nil {
			return fmt.Errorf("resolving policies directory %q: %w", dir, err)
		}
	}

	a.signingAlg = a.SigningAlg
	if a.signingAlg == "" {
		a.signingAlg = signing.Algorithms[0]
	}

	a.clients = make([]authz.Client, 0, len(a.Clients))
	for _, c := range a.Clients {
		secret := c.Secret
		if secret != "" {
			// errOnEmpty: a secret whose variable is unset must not turn
			// the client into a public one.
			if secret, err = repl.ReplaceOrErr(secret, true, true); err != nil {
				return fmt.Errorf("client %q: expanding secret: %w; set the variable or file its placeholder names (a public client has no secret at all)", c.ID, err)
			}
		}
		a.clients = append(a.clients, authz.Client{
			ID:                 c.ID,
			Secret:             secret,
			ResourceServer:     c.ResourceServer,
			Scopes:             slices.Clone(c.Scopes),
			RedirectURIs:       slices.Clone(c.RedirectURIs),
			ClaimsRedirectURIs: slices.Clone(c.ClaimsRedirectURIs),
			RPTFormat:          c.RPTFormat,
			PushClaims:         c.PushClaims,
		})
	}

	if o := a.LoginOIDC; o != nil {
		lo := &people.OIDCLogin{Issuer: o.Issuer, ClientID: o.ClientID, Scopes: slices.Clone(o.Scopes), Name: o.Name}
		if lo.Issuer, err = repl.ReplaceOrErr(o.Issuer, true, true); err != nil {
			return fmt.Errorf("login_oidc: expanding issuer: %w", err)
		}
		if o.ClientSecret != "" {
			if lo.ClientSecret, err = repl.ReplaceOrErr(o.ClientSecret, true, true); err != nil {
				return fmt.Errorf("login_oidc: expanding client_secret: %w", err)
			}
		}
		a.loginOIDC = lo
	}
	if d := a.DynamicRegistration; d != nil {
		if a.dcrToken, err = repl.ReplaceOrErr(d.InitialAccessToken, true, true); err != nil {
			return fmt.Errorf("dynamic_registration: expanding initial_access_token: %w", err)
		}
	}
	return nil
}

// Validate checks the provisioned configuration.
func (a *App) Validate() error {
	if err := urlcheck.Absolute(a.issuer, false); err != nil {
		return fmt.Errorf("issuer %q: %w", a.issuer, err)
	}
	if err := signing.CheckAlg(a.signingAlg); err != nil {
		return fmt.Errorf("signing_alg: %w", err)
	}
	for _, d := range []struct {
		name  string
		value caddy.Duration
	}{
		{"key_rotation", a.KeyRotation},
		{"pat_ttl", a.PATTTL},
		{"ticket_ttl", a.TicketTTL},
		{"rpt_ttl", a.RPTTTL},
	} {
		if d.value < 0 {
			return fmt.Errorf("%s: negative duration %s", d.name, time.Duration(d.value))
		}
	}

	if err := authz.CheckClients(a.clients); err != nil {
		return err
	}
	for _, ti := range a.trustedIssuers() {
		if err := claimtoken.CheckIssuer(ti); err != nil {
			return fmt.Errorf("trust_issuer: %w", err)
		}
	}
	clientIDs := make([]string, 0, len(a.clients))
	for _, c := range a.clients {
		clientIDs = append(clientIDs, c.ID)
	}
	if err := people.CheckUsers(a.users(), clientIDs); err != nil {
		return err
	}
	if o := a.loginOIDC; o != nil && (o.Issuer == "" || o.ClientID == "") {
		return errors.New("login_oidc: issuer and client_id are required")
	}
	if a.DynamicRegistration != nil && a.dcrToken == "" {
		return errors.New("dynamic_registration: initial_access_token is required")
	}
	if err := a.checkPolicies(); err != nil {
		return err
	}
	if u, _ := url.Parse(a.issuer); u.Scheme == "http" && !urlcheck.Loopback(u.Hostname()) {
		a.logger.Warn("issuer is not https: tokens and client secrets travel in clear text",
			zap.String("issuer", a.issuer))
	}
	return nil
}

// checkedRules are the rule sets that the checks of operator directories
// compiled, process-wide: a server started next, or a config reloaded with
// the same rules, does not compile them again.
var checkedRules = policies.NewCheckedRules()

// checkPolicies compiles the operator directory of rules, so that `caddy
// validate` (and a load or reload) names every file that does not compile.
// While the server runs, the directory's watcher tolerates such files (see
// package policies); at load, they are a configuration mistake.
func (a *App) checkPolicies() error {
	if a.policyDir == "" {
		return nil
	}
	err := policies.CheckDir(a.ctx, a.policyDir, policies.Options{Timeout: time.Duration(a.PolicyTimeout), Checked: checkedRules, Observer: asObserver{}})
	var ce policies.CompileErrors
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ce):
		return fmt.Errorf("policies %s: fix these rule files, or move them out of the directory:\n%w", a.policyDir, err)
	default:
		return fmt.Errorf("policies %s: the directory must exist and be readable: %w", a.policyDir, err)
	}
}

// Start opens the database (or shares the one a previous config opened) and
// starts the authorization server.
func (a *App) Start() error {
	raw, err := a.acquireStore()
	if err != nil {
		return err
	}
	// If anything below fails, Caddy cleans the config up, and Cleanup
	// releases the store.
	st := newMeasuredStore(raw, a.storage.CaddyModule().ID.Name())
	a.state.store, a.state.measured = raw, st
	cfg := authz.Config{
		Issuer:          a.issuer,
		Store:           st,
		Clients:         a.clients,
		SigningAlg:      a.signingAlg,
		KeyRotation:     time.Duration(a.KeyRotation),
		PATTTL:          time.Duration(a.PATTTL),
		TicketTTL:       time.Duration(a.TicketTTL),
		RPTTTL:          time.Duration(a.RPTTTL),
		RefreshTTL:      time.Duration(a.RefreshTTL),
		PCTTTL:          time.Duration(a.PCTTTL),
		RequestInterval: time.Duration(a.RequestInterval),
		FeedStaleness:   time.Duration(a.FeedStaleness),
		PolicyDir:       a.policyDir,
		PolicyTimeout:   time.Duration(a.PolicyTimeout),
		CheckedRules:    checkedRules,
		TrustedIssuers:  a.trustedIssuers(),
		NewResourceRate: a.NewResourceRate,
		LoginPages:      a.loginPages(),
		Registration:    a.registration(),
		HTTPClient:      &http.Client{Timeout: keyFetchTimeout, Transport: keyFetchTransport{http.DefaultTransport}},
		Logger:          a.logger,
		Audit:           a.audit,
		Observer:        asObserver{},
	}
	// Keycloak's RPT layout (rpt_format keycloak) and grant parameters
	// are served with or without keycloak_compat.
	keycloak.Extend(&cfg)
	if a.KeycloakCompat {
		if err := keycloak.Configure(&cfg); err != nil {
			return fmt.Errorf("starting authorization server: %w", err)
		}
	}
	srv, err := authz.New(a.ctx, cfg)
	if err != nil {
		return fmt.Errorf("starting authorization server: %w", err)
	}
	if a.KeycloakCompat {
		kc, err := keycloak.New(srv, st, keycloak.Config{Logger: a.logger})
		if err != nil {
			_ = srv.Close()
			return fmt.Errorf("serving Keycloak's paths: %w", err)
		}
		a.state.keycloak.Store(kc)
	}
	if a.loginPages() {
		pages, err := people.New(a.ctx, srv, st, people.Config{
			Users:      a.users(),
			OIDC:       a.loginOIDC,
			SessionTTL: time.Duration(a.SessionTTL),
			// Failed logins are counted per client: Caddy's client_ip, the
			// real client behind the server's trusted_proxies.
			ClientAddress: clientIP,
			Logger:        a.logger,
		})
		if err != nil {
			_ = srv.Close()
			return fmt.Errorf("starting the login pages: %w", err)
		}
		a.state.pages.Store(pages)
	}
	a.state.ownerAPI.Store(ownerapi.New(srv))
	a.state.operator.Store(admin.New(srv, st, a.logger))
	a.state.server.Store(srv)
	close(a.state.started)
	a.logger.Info("authorization server started",
		zap.String("issuer", a.issuer),
		zap.String("storage", storeKey(a.storage)),
		zap.Int("clients", len(a.clients)))
	return nil
}

// keyFetchTimeout bounds a request for the documents and keys of a trusted
// claim token issuer.
const keyFetchTimeout = 10 * time.Second

// Stop stops the authorization server's background work. The server itself
// stays published (see Cleanup), and the database stays open: the pool
// closes it when the last config that uses it is cleaned up.
func (a *App) Stop() error {
	srv := a.running()
	if srv == nil {
		return nil
	}
	if pages := a.state.pages.Load(); pages != nil {
		_ = pages.Close()
	}
	if err := srv.Close(); err != nil {
		return fmt.Errorf("stopping authorization server: %w", err)
	}
	return nil
}

// Cleanup releases the database, closing it if no other config uses it.
//
// The server stays published to the uma_server handlers of this config: on a
// reload, Caddy stops the old http servers without waiting for the requests
// they are handling and cleans the old config up at once, and those requests
// are still answered by this server, on the database the new config shares,
// instead of with 503. (If the reload changed the storage, the old database
// closes and they fail.) When Caddy exits, it waits for every request before
// it cleans up.
func (a *App) Cleanup() error {
	if a.state == nil {
		return nil // Provision failed before it set up anything
	}
	return a.releaseStore()
}

// running returns the published authorization server, or nil.
func (a *App) running() *authz.Server {
	if a.state == nil {
		return nil
	}
	return a.state.server.Load()
}

// awaitRunning returns the published authorization server, waiting at most
// timeout for Start if it has not run yet. Caddy starts the apps of a
// config in no set order, so the http app may take requests a moment before
// this app has started, at every start and reload. It returns nil if the
// server is not published by then, if ctx ends, or if the config is
// unloaded without this app having started (as when another app's Start
// fails).
func (a *App) awaitRunning(ctx context.Context, timeout time.Duration) *authz.Server {
	if srv := a.running(); srv != nil || a.state == nil {
		return srv
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-a.state.started:
	case <-a.ctx.Done():
	case <-ctx.Done():
	case <-timer.C:
	}
	return a.running()
}

// Interface guards
var (
	_ caddy.App          = (*App)(nil)
	_ caddy.Provisioner  = (*App)(nil)
	_ caddy.Validator    = (*App)(nil)
	_ caddy.CleanerUpper = (*App)(nil)
)

// trustedIssuers converts the trusted issuers for authz.
func (a *App) trustedIssuers() []claimtoken.Issuer {
	out := make([]claimtoken.Issuer, 0, len(a.TrustedIssuers))
	for _, ti := range a.TrustedIssuers {
		out = append(out, claimtoken.Issuer{Issuer: ti.Issuer, JWKSURI: ti.JWKSURI, Audiences: ti.Audiences, AnyClientAudience: ti.AnyClientAudience, Algorithms: ti.Algorithms})
	}
	return out
}

// loginPages reports whether people log in at the AS: local users or an
// OpenID provider are configured.
func (a *App) loginPages() bool { return len(a.Users) > 0 || a.loginOIDC != nil }

// users converts the local users for package people.
func (a *App) users() []people.User {
	out := make([]people.User, 0, len(a.Users))
	for _, u := range a.Users {
		out = append(out, people.User{Name: u.Name, PasswordHash: u.PasswordHash, Email: u.Email, DisplayName: u.DisplayName, Groups: slices.Clone(u.Groups)})
	}
	return out
}

// registration returns the dynamic registration settings, nil when off.
func (a *App) registration() *authz.Registration {
	if a.DynamicRegistration == nil {
		return nil
	}
	return &authz.Registration{InitialAccessToken: a.dcrToken}
}

// clientIP is the client address Caddy established for a request: the
// connection's peer, or, from a proxy listed in the server's
// trusted_proxies, the client its headers name. Empty outside Caddy.
func clientIP(r *http.Request) string {
	ip, _ := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string)
	return ip
}
