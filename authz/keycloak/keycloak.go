// Package keycloak is Keycloak compatibility: Keycloak's paths, served
// under the issuer beside the AS's own (package authz), so that clients
// written for Keycloak Authorization Services (gocloak, keycloak-connect,
// keycloak-js) work with a URL change. The issuer's path must be
// /realms/{realm}, as Keycloak's, since those clients build it from a
// server URL and a realm. A request that arrives on a Keycloak path is
// answered as Keycloak answers; the AS's own paths keep standard UMA.
//
//	{issuer}/protocol/openid-connect/token             the token endpoint, in Keycloak's dialect (token.go)
//	{issuer}/protocol/openid-connect/token/introspect  introspection
//	{issuer}/protocol/openid-connect/certs             the signing keys
//	{issuer}/authz/protection/resource_set[/{id}]      resources in Keycloak's representation (resources.go)
//	{issuer}/authz/protection/permission               the permission endpoint
//	{issuer}/authz/protection/permission/ticket[/{id}] permission tickets: shares and requests (tickets.go)
//	{issuer}/authz/protection/uma-policy[/{id}]        UMA policies: shares and owners' rules (policy.go)
//
// Everything goes through the exported API of package authz: the paths
// are a route table of their own (Compat), joined with the AS's
// (Endpoints); the token endpoint is the AS's in a dialect (authz.Dialect);
// resources, shares, requests and rules are the AS's. RPTs in Keycloak's
// layout (rpt.go), Keycloak's extension parameters of the UMA grant
// (params.go) and its ticketless form (ticketless.go) are the AS's on every
// token path, through authz.Config.RPTClaims and authz.Config.GrantOptions
// (Extend).
package keycloak

import (
	"fmt"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-uma/caddy-uma/authz"
	"github.com/caddy-uma/caddy-uma/authz/oauth"
	"github.com/caddy-uma/caddy-uma/store"
)

// Keycloak's paths, relative to the issuer's path.
const (
	PathToken            = "/protocol/openid-connect/token"
	PathIntrospect       = "/protocol/openid-connect/token/introspect"
	PathCerts            = "/protocol/openid-connect/certs"
	PathResourceSet      = "/authz/protection/resource_set"
	PathPermission       = "/authz/protection/permission"
	PathPermissionTicket = "/authz/protection/permission/ticket"
	PathUMAPolicy        = "/authz/protection/uma-policy"
)

// Realm returns the realm of an issuer path /…/realms/{realm}, or an
// error that says what compat mode needs.
func Realm(issuerPath string) (string, error) {
	parent, realm := path.Split(strings.TrimSuffix(issuerPath, "/"))
	if realm == "" || !strings.HasSuffix(parent, "/realms/") {
		return "", fmt.Errorf("keycloak_compat: the issuer's path is %q, but Keycloak's clients build it as {server}/realms/{realm}: use an issuer such as https://auth.example.com/realms/demo", issuerPath)
	}
	return realm, nil
}

// Extend lets Keycloak's clients use the AS's own token path as they use
// Keycloak's, with or without Keycloak's paths: RPTs in Keycloak's layout
// for the resource servers that ask for it (RPTClaims), and Keycloak's
// extension parameters of the UMA grant on cfg's store (GrantOptions).
func Extend(cfg *authz.Config) {
	cfg.RPTClaims = RPTClaims
	cfg.GrantOptions = GrantOptions(cfg.Store)
}

// Configure readies the configuration of an AS for Keycloak's paths: it
// checks the issuer's path (Realm), extends the AS (Extend), and
// advertises Keycloak's token endpoint and UMA policy API in the
// metadata.
func Configure(cfg *authz.Config) error {
	u, err := url.Parse(cfg.Issuer)
	if err != nil {
		return fmt.Errorf("issuer %q: %w", cfg.Issuer, err)
	}
	if _, err := Realm(strings.TrimRight(u.EscapedPath(), "/")); err != nil {
		return err
	}
	Extend(cfg)
	cfg.Discovery = advertise
	return nil
}

// advertise names Keycloak's token endpoint and UMA policy API in the
// metadata. keycloak-js posts its requests, which identify the requesting
// party by a Bearer token, to the discovered token endpoint: Keycloak's,
// as Keycloak's discovery names it. {issuer}/token keeps standard UMA
// (need_info, request_denied with a ticket).
func advertise(m *authz.Metadata) {
	m.TokenEndpoint = m.Issuer + PathToken
	m.PolicyEndpoint = m.Issuer + PathUMAPolicy
}

// Config configures Keycloak's paths.
type Config struct {
	// Logger receives their logs; nil means none. Tokens are never
	// logged.
	Logger *zap.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Compat serves Keycloak's paths of one AS. It is safe for concurrent
// use.
type Compat struct {
	as      *authz.Server
	store   store.Store
	log     *zap.Logger
	now     func() time.Time
	dialect authz.Dialect
	// paths is its route table, served as the AS serves its own.
	paths authz.Paths
}

// New returns Keycloak's paths for the AS as, whose store is st, and
// whose configuration went through Configure.
func New(as *authz.Server, st store.Store, cfg Config) (*Compat, error) {
	if _, err := Realm(as.IssuerPath()); err != nil {
		return nil, err
	}
	c := &Compat{as: as, store: st, log: cfg.Logger, now: cfg.Now}
	if c.log == nil {
		c.log = zap.NewNop()
	}
	if c.now == nil {
		c.now = time.Now
	}
	c.dialect = authz.Dialect{
		BothClientAuthMethods: true,
		UMAClient:             c.tokenClient,
		PushedClaims:          c.pushedClaims,
		UMAGrant:              c.grant,
		Refusal:               refusal,
	}
	c.paths = as.Table(c.routes())
	return c, nil
}

// Handles reports whether path is one of its paths.
func (c *Compat) Handles(path string) bool { return c.paths.Handles(path) }

// ServeHTTP serves its paths; any other gets a 404 in OAuth error format,
// as the AS answers (join it with the AS's paths with authz.Join).
func (c *Compat) ServeHTTP(w http.ResponseWriter, r *http.Request) { c.paths.ServeHTTP(w, r) }

// routes is the route table of Keycloak's paths, relative to the issuer's
// path: the token, introspection and key paths, then the protection API:
// resource registration in Keycloak's representation (resources.go), the
// permission endpoint (the AS's: an array or an object, items with
// claims), the owner's permission tickets (tickets.go) and the UMA
// policies a resource server sets for an owner (policy.go).
func (c *Compat) routes() []authz.Route {
	pat := c.as.WithPAT
	methodRefusal, protectionRefusal := oauth.ErrMethodNotAllowed, oauth.ErrUnsupportedMethodType
	on := func(name string, h authz.Handler) authz.Method { return authz.Method{Name: name, Handler: h} }
	get, post, put, del := http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete
	patCaller := c.as.AuthenticatePAT
	return []authz.Route{
		{Path: PathToken, Methods: []authz.Method{on(post, c.as.TokenEndpoint(&c.dialect))}, Refuse: methodRefusal},
		{Path: PathIntrospect, Methods: []authz.Method{on(post, c.as.IntrospectionEndpoint(&c.dialect))}, Refuse: methodRefusal, Authenticate: c.as.AuthenticateIntrospection},
		{Path: PathCerts, Methods: []authz.Method{on(get, c.as.JWKSEndpoint())}, Refuse: methodRefusal},

		{Path: PathResourceSet, Methods: []authz.Method{on(get, pat(c.listResources)), on(post, pat(c.createResource))}, Refuse: protectionRefusal, Authenticate: patCaller, Collection: true},
		{Path: PathResourceSet + "/{id}", Methods: []authz.Method{on(get, pat(c.readResource)), on(put, pat(c.updateResource)), on(del, pat(c.as.DeleteResource))}, Refuse: protectionRefusal, Authenticate: patCaller},
		{Path: PathPermission, Methods: []authz.Method{on(post, pat(c.as.ServePermission))}, Refuse: methodRefusal, Authenticate: patCaller},
		{Path: PathPermissionTicket, Methods: []authz.Method{on(get, pat(c.listTickets)), on(post, pat(c.createTicket)), on(put, pat(c.updateTicket))}, Refuse: protectionRefusal, Authenticate: patCaller, Collection: true},
		{Path: PathPermissionTicket + "/{id}", Methods: []authz.Method{on(del, pat(c.deleteTicket))}, Refuse: protectionRefusal, Authenticate: patCaller},
		{Path: PathUMAPolicy, Methods: []authz.Method{on(get, pat(c.listPolicies))}, Refuse: protectionRefusal, Authenticate: patCaller, Collection: true},
		{Path: PathUMAPolicy + "/{id}", Methods: []authz.Method{on(get, pat(c.readPolicy)), on(post, pat(c.createPolicy)), on(put, pat(c.updatePolicy)), on(del, pat(c.deletePolicy))}, Refuse: protectionRefusal, Authenticate: patCaller},
	}
}

func clientField(id string) zap.Field   { return zap.String("client_id", id) }
func ownerField(owner string) zap.Field { return zap.String("owner", owner) }
func resourceField(id string) zap.Field { return zap.String("resource_id", id) }
