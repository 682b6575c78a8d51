package authz

import (
	"context"
	"errors"
	"math"
	"net/http"
	"net/url"
	"time"

	"github.com/caddy-uma/caddy-uma/authz/claimtoken"
	"github.com/caddy-uma/caddy-uma/authz/oauth"
	"github.com/caddy-uma/caddy-uma/policies"
	"github.com/caddy-uma/caddy-uma/store"
)

// The exported API of the AS for a package that serves another server's
// paths under the issuer, as that server answers them (package keycloak):
// route tables served the way the AS serves its own, the AS's endpoints
// in a Dialect, and the protection API's operations for a PAT's caller.

// Handler is an endpoint of a route table: it decodes the request, does
// what it asks and writes the success answer; an error it returns is
// answered once, as an OAuth error (5xx logged, never shown).
type Handler func(w http.ResponseWriter, r *http.Request) error

// Route is one path of a route table served with Server.Mux.
type Route struct {
	// Path is relative to the issuer's path.
	Path string
	// Methods are the path's handlers, in the order Allow lists them.
	Methods []Method
	// Refuse answers the methods the path does not take:
	// oauth.ErrMethodNotAllowed, or oauth.ErrUnsupportedMethodType on the
	// protection API.
	Refuse func(allow ...string) *oauth.Error
	// Authenticate, when set, checks the caller before a refusal (so that
	// a 405 tells an anonymous caller nothing): Server.AuthenticatePAT,
	// Server.AuthenticateIntrospection.
	Authenticate func(*http.Request) error
	// Collection says that Path + "/" is the same collection.
	Collection bool
}

// Method is the handler of one method of a Route.
type Method struct {
	Name    string
	Handler Handler
}

// Mux returns the mux of a route table under the issuer's path, as the
// AS's own: each path also answers the methods it does not take with 405
// and Allow, after Authenticate. Server.Route finds a request's handler in
// it.
func (s *Server) Mux(routes []Route) *http.ServeMux {
	mux := http.NewServeMux()
	for _, rt := range routes {
		s.register(mux, rt, s.basePath+rt.Path)
		if rt.Collection {
			s.register(mux, rt, s.basePath+rt.Path+"/{$}")
		}
	}
	return mux
}

// AuthenticatePAT checks the PAT of a protection API request (see
// WithPAT), for Route.Authenticate.
func (s *Server) AuthenticatePAT(r *http.Request) error { return s.patCaller(r) }

// AuthenticateIntrospection checks the PAT of an introspection request
// that sent one (others authenticate as clients, in the form), for
// Route.Authenticate.
func (s *Server) AuthenticateIntrospection(r *http.Request) error { return s.introspectionCaller(r) }

// PATCaller is a resource server calling the protection API with a PAT,
// on behalf of a resource owner (or, with client credentials, of itself).
type PATCaller = protectionCaller

// MayManage reports whether res is within the caller's reach: registered
// by its resource server, and for an owner's PAT, owned by that owner.
func (c protectionCaller) MayManage(res store.Resource) bool { return c.mayManage(res) }

// ActsForAnyOwner reports whether the caller acts for itself (client
// credentials), and so for every owner of its resources.
func (c protectionCaller) ActsForAnyOwner() bool { return c.actsForAnyOwner() }

// WithPAT authenticates the caller of a protection API endpoint before h
// runs: 401 without a PAT or with a bad one, 403 insufficient_scope
// without uma_protection.
func (s *Server) WithPAT(h func(w http.ResponseWriter, r *http.Request, caller PATCaller) error) Handler {
	return Handler(s.withPAT(h))
}

// A Dialect changes how the token endpoint and introspection read and
// answer a request, for the clients of another server on that server's
// paths. Its hooks run within the AS's own steps (client authentication,
// the UMA grant, the audit line of the answer); nil hooks change nothing.
type Dialect struct {
	// BothClientAuthMethods takes client_secret_basic and
	// client_secret_post in one request when they carry the same
	// credentials (RFC 6749 allows one method per request).
	BothClientAuthMethods bool
	// UMAClient, when set, identifies the client of a UMA grant request in
	// place of client authentication (it may call
	// Server.AuthenticateClient), and may identify the requesting party,
	// whose subject and claims then count as a verified claim token's: it
	// returns the client's id, which must be registered, and the party
	// (nil: none).
	UMAClient func(r *http.Request, form url.Values) (clientID string, party *Party, err error)
	// PushedClaims, when set, reads a claim token of a format the dialect
	// reads itself (ok false leaves the token to the trusted issuers):
	// claims that client asserts, never an identity, which owners' rules
	// see as input.pushed_claims.
	PushedClaims func(client Client, format, token string) (claims map[string]any, ok bool, err error)
	// UMAGrant, when set, runs around the decision of a UMA grant request:
	// it may change the form before decide, and answer the error decide
	// returns in its own terms.
	UMAGrant func(r *http.Request, form url.Values, decide func() error) error
	// Refusal, when set, answers a UMA grant request of which nothing is
	// granted, for clients that cannot interact: no need_info and no
	// ticket. When the request has a ticket (and GrantOptions.NoRequests
	// is not set), an identified requesting party, and
	// permissions that the owners' rules send to the owner, those are
	// filed with the owners first, and submitted is true (unless an owner
	// already denied one).
	Refusal func(submitted bool) error
}

// Party is the requesting party that a token of the person identified
// (Dialect.UMAClient).
type Party struct {
	// Subject and Issuer name the person; an empty Subject names no one.
	Subject, Issuer string
	// Claims are the token's verified claims.
	Claims map[string]any
	// ResourceServer, for an RPT of this AS, is its resource server, the
	// only one at which it names the requesting party.
	ResourceServer string
}

type dialectKey struct{}

// withDialect serves the requests of h in dialect d.
func withDialect(d *Dialect, h handler) Handler {
	return func(w http.ResponseWriter, r *http.Request) error {
		return h(w, r.WithContext(context.WithValue(r.Context(), dialectKey{}, d)))
	}
}

// dialectOf is the dialect of r: nil for the AS's own paths (and for a
// grant that has no request, at the claims interaction endpoint).
func dialectOf(r *http.Request) *Dialect {
	if r == nil {
		return nil
	}
	d, _ := r.Context().Value(dialectKey{}).(*Dialect)
	return d
}

// TokenEndpoint is the token endpoint in dialect d.
func (s *Server) TokenEndpoint(d *Dialect) Handler { return withDialect(d, s.serveToken) }

// IntrospectionEndpoint is RFC 7662 introspection in dialect d.
func (s *Server) IntrospectionEndpoint(d *Dialect) Handler { return withDialect(d, s.serveIntrospect) }

// JWKSEndpoint serves the public signing keys.
func (s *Server) JWKSEndpoint() Handler { return s.serveJWKS }

// AuthenticateClient authenticates the client of a token request by
// client_secret_basic or client_secret_post, or identifies a public client
// by client_id: 401 invalid_client otherwise. The client comes without its
// secret.
func (s *Server) AuthenticateClient(r *http.Request, form url.Values) (Client, error) {
	c, err := s.authenticateClient(r, form)
	if err != nil {
		return Client{}, err
	}
	out := c.Client
	out.Secret = ""
	return out, nil
}

// LookupClient returns the client with id, configured or registered
// dynamically, without its secret; ok is false for none. An error means
// the store could not say.
func (s *Server) LookupClient(ctx context.Context, id string) (c Client, ok bool, err error) {
	rc, err := s.client(ctx, id)
	if err != nil || rc == nil {
		return Client{}, false, err
	}
	out := rc.Client
	out.Secret = ""
	return out, true, nil
}

// ErrInvalidRPT means that a token is not an RPT of this AS, or was
// revoked.
var ErrInvalidRPT = errInvalidRPT

// ReadRPT verifies an RPT of this AS (the token as issued, signed with
// its keys, not revoked) and returns it, whether or not it has expired:
// ErrInvalidRPT when it is not one; another error when the store could not
// say.
func (s *Server) ReadRPT(ctx context.Context, token string) (*RPT, error) {
	jti, rec, err := s.parseRPT(ctx, token)
	if err != nil {
		return nil, err
	}
	return &RPT{
		ID: jti, ClientID: rec.ClientID, Subject: rec.Subject, RqPIssuer: rec.RqPIssuer, ResourceServer: rec.ResourceServer,
		Permissions: rec.Permissions, IssuedAt: time.Unix(rec.IssuedAt, 0), ExpiresAt: time.Unix(rec.Expires, 0),
	}, nil
}

// VerifyClaimToken verifies a token of a trusted issuer (Config.
// TrustedIssuers) in format for the client clientID, as pushed claim
// tokens are; an error when the AS trusts no issuer.
func (s *Server) VerifyClaimToken(ctx context.Context, format, token, clientID string) (claimtoken.Claims, error) {
	if s.claimTokens == nil {
		return claimtoken.Claims{}, errors.New("this authorization server trusts no issuer of tokens")
	}
	return s.claimTokens.Verify(ctx, format, token, clientID)
}

// ClaimKeysUnavailable is the answer to a token whose issuer's keys cannot
// be fetched now (claimtoken.ErrKeysUnavailable): 503 with Retry-After.
func ClaimKeysUnavailable(err error) *oauth.Error { return claimKeysUnavailable(err) }

// claimKeysUnavailable is the 503 for a token whose issuer's keys cannot
// be fetched now: the token may well be good, and the client should send
// the same request again after Retry-After.
func claimKeysUnavailable(err error) *oauth.Error {
	retryAfter := int(math.Ceil(claimtoken.KeysRetryInterval.Seconds()))
	return oauth.ErrUnavailable("the signing keys of the token's issuer cannot be fetched now; send the same request again", retryAfter, err)
}

// GrantedPermission is a permission as the answer of
// response_mode=permissions lists it (Keycloak's layout, which its RPTs
// carry too).
type GrantedPermission struct {
	RSID   string   `json:"rsid"`
	RSName string   `json:"rsname,omitempty"`
	Scopes []string `json:"scopes"`
}

// GrantedPermissions returns perms as response_mode=permissions lists
// them.
func GrantedPermissions(perms []Permission) []GrantedPermission {
	out := make([]GrantedPermission, 0, len(perms))
	for _, p := range perms {
		out = append(out, GrantedPermission{RSID: p.ResourceID, RSName: p.ResourceName, Scopes: nonNil(p.ResourceScopes)})
	}
	return out
}

// Limits on the texts of resources, and on what a list answers.
const (
	MaxNameLen      = maxNameLen
	MaxTextLen      = maxTextLen
	MaxScopes       = maxScopes
	MaxURILen       = maxURILen
	MaxListedResult = maxListedResult
)

// ValidText reports whether s is UTF-8 text without control characters
// (but line breaks and tabs when multiline) or bidirectional formatting
// characters: what names, types and descriptions may hold.
func ValidText(s string, multiline bool) bool { return validText(s, multiline) }

// DeleteResource deregisters the caller's resource of the path's {id},
// and answers 204.
func (s *Server) DeleteResource(w http.ResponseWriter, r *http.Request, caller PATCaller) error {
	return s.deleteResource(w, r, caller)
}

// ServePermission is the permission endpoint: requested permissions on the
// caller's resources, one object or an array, into one ticket (201).
func (s *Server) ServePermission(w http.ResponseWriter, r *http.Request, caller PATCaller) error {
	return s.servePermission(w, r, caller)
}

// RulesRefused is the answer to owners' rules that do not compile: 400
// invalid_request with the problems.
func RulesRefused(ce policies.CompileErrors) error {
	e := oauth.ErrInvalidRequest("%s", ce.Error())
	e.Problems = ce
	return e
}

// RulesUnavailable is the answer to an error of the rules engine that says
// that rules could not be compiled now: 503 temporarily_unavailable with
// Retry-After; nil for any other error.
func RulesUnavailable(err error) *oauth.Error { return compileUnavailable(err) }

// RulesFailed reports whether err, from Evaluate, is the rules' own
// failure (the rules are at fault, not the server).
func RulesFailed(err error) bool { return errors.As(err, new(rulesFailed)) }

// Paths serves some of the paths under the issuer: the AS's endpoints
// (Server), its pages (people.Endpoints), a route table of another package
// (Server.Table), or several of them joined (Join).
type Paths interface {
	http.Handler
	// Handles reports whether path is one it serves.
	Handles(path string) bool
}

// Table returns the paths of a route table served as the AS's own
// (Server.Mux); any other path is answered 404 in OAuth error format, as
// the AS answers it.
func (s *Server) Table(routes []Route) Paths {
	return table{as: s, mux: s.Mux(routes)}
}

type table struct {
	as  *Server
	mux *http.ServeMux
}

func (t table) Handles(path string) bool {
	return t.as.Route(t.mux, &http.Request{Method: http.MethodGet, URL: &url.URL{Path: path}}) != nil
}

func (t table) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h := t.as.Route(t.mux, r); h != nil {
		h.ServeHTTP(w, r)
		return
	}
	oauth.WriteError(w, oauth.ErrNotFound("no such endpoint"))
}

// Join serves, under one issuer, the paths of First, and every other path
// as Next serves it (with Next's 404 for a path neither has).
type Join struct {
	First, Next Paths
}

// Handles reports whether path is one of First's or of Next's.
func (j Join) Handles(path string) bool { return j.First.Handles(path) || j.Next.Handles(path) }

// ServeHTTP serves a path of First, or else passes the request to Next.
func (j Join) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if j.First.Handles(r.URL.Path) {
		j.First.ServeHTTP(w, r)
		return
	}
	j.Next.ServeHTTP(w, r)
}
