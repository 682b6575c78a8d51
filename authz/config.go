package authz

import (
	"net/http"
	"net/url"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-uma/caddy-uma/authz/claimtoken"
	"github.com/caddy-uma/caddy-uma/policies"
	"github.com/caddy-uma/caddy-uma/store"
)

// Client is an OAuth client registered at the AS.
type Client struct {
	// ID is the client identifier.
	ID string
	// Secret is the client secret, in plain text or as a bcrypt hash
	// ($2a$, $2b$ or $2y$). Empty means a public client.
	Secret string
	// ResourceServer allows the client to obtain PATs (scope
	// uma_protection) and to use the protection API.
	ResourceServer bool
	// Scopes are the scopes the client pre-registered: the UMA
	// RegisteredScopes of the grant, and the scopes it may ask for in a
	// client_credentials grant besides uma_protection.
	Scopes []string
	// RedirectURIs are the registered OAuth redirect URIs.
	RedirectURIs []string
	// ClaimsRedirectURIs are the registered UMA claims redirect URIs.
	ClaimsRedirectURIs []string
	// RPTFormat is the layout of the RPTs whose permissions are for this
	// resource server's resources: RPTFormatUMA (empty means it) or
	// RPTFormatKeycloak (Keycloak's, for keycloak-connect; needs
	// SigningAlg RS256, and Config.RPTClaims to write it).
	RPTFormat string
	// PushClaims trusts the client to push claims it asserts itself
	// (Keycloak's claim_token_format urn:ietf:params:oauth:token-type:jwt,
	// base64url JSON, Dialect.PushedClaims); without it such claim tokens
	// are refused.
	PushClaims bool
}

// RPT formats of a resource server (Client.RPTFormat).
const (
	// RPTFormatUMA is our layout: permissions with resource_id and
	// resource_scopes.
	RPTFormatUMA = "uma"
	// RPTFormatKeycloak is Keycloak's: typ "Bearer" and
	// authorization.permissions with rsid, rsname and scopes, besides
	// ours (package keycloak writes them, through Config.RPTClaims).
	RPTFormatKeycloak = "keycloak"
)

// Config configures a Server.
type Config struct {
	// Issuer is the AS's issuer identifier: an absolute URL with no query
	// or fragment. Every endpoint lives under its path.
	Issuer string
	// Store persists the AS's state. The Server does not close it.
	Store store.Store
	// Clients are the registered clients.
	Clients []Client
	// SigningAlg is the JWS algorithm of generated signing keys: ES256
	// (default), EdDSA or RS256.
	SigningAlg string
	// KeyRotation is how often a new signing key replaces the current one;
	// zero means never.
	KeyRotation time.Duration
	// PATTTL, TicketTTL and RPTTTL are token lifetimes; zero means the
	// defaults (1h, 5m, 5m).
	PATTTL    time.Duration
	TicketTTL time.Duration
	RPTTTL    time.Duration
	// RefreshTTL is the lifetime of refresh tokens (default 1h), PCTTTL of
	// PCTs (default 30 days).
	RefreshTTL time.Duration
	PCTTTL     time.Duration
	// RequestInterval is the polling interval announced with
	// request_submitted (default 5s).
	RequestInterval time.Duration
	// PolicyDir is the operator directory of rules: <dir>/<owner>/*.rego
	// are owners' rules, <dir>/_system/*.rego the system rules. Changes are
	// picked up without restart. Empty means no directory.
	PolicyDir string
	// PolicyPollInterval is how often PolicyDir is checked for changes
	// (default 5s).
	PolicyPollInterval time.Duration
	// PolicyTimeout bounds one evaluation of rules (default 250ms).
	PolicyTimeout time.Duration
	// RulesInMemory bounds the owners whose rules stay in memory compiled
	// on their own (each about 225 KiB for a small rule; owners' rules
	// compiled 64 owners together do not count, see
	// policies.Options.MaxOwnersInForce); the rules of an owner left out
	// are compiled again on their next use. Zero means
	// policies.DefaultMaxOwnersInForce.
	RulesInMemory int
	// CheckedRules, when not nil, are the rule sets a check of PolicyDir
	// compiled (policies.CheckDir): the server does not compile them
	// again to put them in force (see policies.Options.Checked).
	CheckedRules *policies.CheckedRules
	// TrustedIssuers are the issuers whose claim tokens are accepted. A
	// claim token counts only for the client it was issued to (its aud
	// names the pushing client, and so does its azp if it has one), unless
	// its issuer has AnyClientAudience; see package claimtoken. When an
	// issuer's keys cannot be fetched, the UMA grant answers 503
	// temporarily_unavailable with Retry-After and leaves the ticket
	// unspent.
	TrustedIssuers []claimtoken.Issuer
	// HTTPClient fetches trusted issuers' keys; nil means a client with a
	// 10s timeout.
	HTTPClient *http.Client
	// ClaimsInteractionEndpoint, when set, is the URL of the claims
	// interaction endpoint, advertised and sent as redirect_user. When
	// LoginPages is on and it is empty, it is the AS's own endpoint,
	// {issuer}/claims.
	ClaimsInteractionEndpoint string
	// LoginPages says that people log in at the AS, on pages served under
	// the issuer (package people): the authorization endpoint
	// ({issuer}/authorize, PATs by an owner's consent), the claims
	// interaction endpoint ({issuer}/claims) and the sharing console
	// ({issuer}/console). The AS then advertises them, accepts the
	// authorization_code grant, and answers an unidentified requesting
	// party need_info (it can prove who it is there).
	LoginPages bool
	// Discovery, when set, changes the metadata document before it is
	// served: another server's paths, advertised (package keycloak names
	// Keycloak's token endpoint and its UMA policy API).
	Discovery func(*Metadata)
	// RPTClaims, when set, returns the claims that an RPT for the resource
	// server rs carries besides ours, for its permissions perms (package
	// keycloak: Keycloak's layout, Client.RPTFormat). Required when a
	// client has RPTFormatKeycloak.
	RPTClaims func(rs Client, perms []Permission) map[string]any
	// GrantOptions, when set, reads the extension parameters of a UMA
	// grant request (package keycloak: Keycloak's); an error it returns is
	// the answer.
	GrantOptions func(form url.Values) (GrantOptions, error)
	// Registration, when set, turns on RFC 7591 dynamic client
	// registration at {issuer}/register. It is off by default.
	Registration *Registration
	// NewResourceRate bounds how many resources per second EnsureResource
	// (registration on first sight at a co-hosted enforcement point) may
	// create, with bursts of ten times as many; zero means 20 per second.
	NewResourceRate float64
	// FeedStaleness is how long the answers the AS keeps in memory (RPT
	// liveness for co-hosted enforcement points) are trusted while the
	// store's change feed is interrupted (default 5s); past it, each
	// answer is read from the store again.
	FeedStaleness time.Duration
	// Logger receives the AS's logs; nil means no logs. Tokens and secrets
	// are never logged.
	Logger *zap.Logger
	// Audit receives the audit trail: one line per answer of the token
	// endpoint, at info level (see package audit for its fields); nil means
	// none. It never holds a token, a ticket or a secret.
	Audit *zap.Logger
	// Observer receives the answers of the token endpoint and the
	// compilations and evaluations of rules, for metrics; nil means none.
	Observer Observer
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Registration configures dynamic client registration.
type Registration struct {
	// InitialAccessToken is the Bearer token a registration request must
	// carry (RFC 7591 section 3); required.
	InitialAccessToken string
}
