package caddymodule

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-uma/caddy-uma/authz"
	"github.com/caddy-uma/caddy-uma/authz/pep"
)

func init() {
	caddy.RegisterModule(Protect{})
}

// Protect is the uma_protect HTTP handler: a UMA 2.0 enforcement point in
// front of any handler, typically reverse_proxy to an API that knows
// nothing of UMA. Each request is mapped to a resource (and registered at
// the authorization server on first sight) and to the scopes its method
// needs; a request whose Authorization header carries an RPT granting them
// goes on to the next handler, and any other gets 401 with a UMA challenge
// (WWW-Authenticate: UMA realm, as_uri, ticket), or 403 with the Warning
// 199 "UMA Authorization Server Unreachable" when no permission ticket can
// be had.
//
// The authorization server is either the uma app of the same Caddy
// (co_hosted: tickets, resources and RPT checks are function calls, and a
// revoked RPT is refused at once) or any UMA 2.0 authorization server
// found through its /.well-known/uma2-configuration (as), with a PAT
// obtained by client credentials.
//
// An authorized request sets the placeholders {http.auth.uma.subject} (the
// requesting party), {http.auth.uma.client} (the client the RPT was issued
// to), {http.auth.uma.scopes} (the scopes the RPT grants on the resource,
// space-separated), {http.auth.uma.resource_id} and {http.auth.uma.owner},
// and {http.auth.user.id} (the subject, which access logs show as
// user_id). {http.auth.uma.decision} names the outcome of every request
// (authorized, passed, no_token, invalid_token, insufficient_scope,
// unmatched, method_not_mapped, no_owner, scope_not_registered,
// as_unavailable, registration_limited, ambiguous_path, ambiguous_method,
// disabled).
//
// Refusals are returned as handler errors (401, 403, 503 when too many new
// resources are registered at once, or 400 for ambiguous paths such as
// /a/../b and for method overrides that disagree), with their headers
// already set, so that handle_errors can shape the body. Refusals that
// point at a configuration mistake or an outage (no_owner, unmatched,
// method_not_mapped, scope_not_registered, registration_limited,
// as_unavailable) are logged at warn, at most one line per reason every
// 10 seconds. Tokens are never logged.
type Protect struct {
	// AS is the issuer URL of a remote authorization server; its discovery
	// document is at AS + "/.well-known/uma2-configuration" and must name
	// this issuer exactly. Placeholders such as {env.UMA_AS} are expanded
	// when the config loads. Exactly one of AS and CoHosted is required.
	AS string `json:"as,omitempty"`

	// CoHosted uses the uma app of this Caddy as the authorization server.
	CoHosted bool `json:"co_hosted,omitempty"`

	// ResourceServer is the OAuth client id of this resource server at the
	// authorization server (required). Co-hosted, it must be a client of
	// the uma app with resource_server set. It is the audience RPTs must
	// carry.
	ResourceServer string `json:"resource_server,omitempty"`

	// ClientSecret is the resource server's client secret (remote only,
	// required there): it obtains PATs with the client_credentials grant.
	// Placeholders such as {env.RS_SECRET} or {file./run/secrets/rs} are
	// expanded when the config loads; one that expands to nothing is an
	// error.
	ClientSecret string `json:"client_secret,omitempty"`

	// Realm is the realm of the UMA challenge. Default: the resource
	// server's client id.
	Realm string `json:"realm,omitempty"`

	// Mode is "enforcing" (the default), "permissive" (decide and log at
	// info level, but let every request through; no ticket is requested)
	// or "disabled" (do nothing but strip_authorization).
	Mode string `json:"mode,omitempty"`

	// Unmatched is what happens to a request that maps to no resource:
	// "deny" (the default: 403, nothing reaches the next handler) or
	// "pass" (it goes on unauthenticated, for the public parts of an API).
	// A request that matches a resource but whose method maps to no scope,
	// or whose owner expands to nothing, is always refused with 403.
	Unmatched string `json:"unmatched,omitempty"`

	// StripAuthorization removes the Authorization header from requests
	// before the next handler, so that the upstream never sees the RPT.
	StripAuthorization bool `json:"strip_authorization,omitempty"`

	// MethodOverride is what happens to the headers X-HTTP-Method-Override,
	// X-HTTP-Method and X-Method-Override and the query parameter _method,
	// with which a client asks an upstream to run another method than the
	// request's: "strip" (the default) removes them before the next handler,
	// so that a read-only RPT cannot make an upstream that honours them run
	// a DELETE; "keep" passes them on, and the overriding method then
	// decides the scopes (overrides that name different methods get 400).
	// Not looked at in disabled mode.
	MethodOverride string `json:"method_override,omitempty"`

	// RPTCacheSize bounds the cache of verified RPTs (keyed by the SHA-256
	// of the token, never kept beyond the RPT's expiry). Default: 10000.
	RPTCacheSize int `json:"rpt_cache_size,omitempty"`

	// RevocationCheck (remote only) is how long a verified RPT is trusted
	// before it is introspected again; a revoked RPT is refused at most
	// this long after its revocation. Default: 1m. A negative value turns
	// introspection off for JWT RPTs, which are then checked by signature
	// only (the AS's JWKS) and work until they expire. Co-hosted, every
	// use of a cached RPT checks it (a store read): revocation applies at
	// once.
	RevocationCheck caddy.Duration `json:"revocation_check,omitempty"`

	// RegisteredURIs is how often the resources this resource server
	// registered through the protection API are listed again, to match
	// requests against their uris. Default: 5s co-hosted, 30s remote. A
	// negative value turns this matching off.
	RegisteredURIs caddy.Duration `json:"registered_uris,omitempty"`

	// Timeout bounds the calls to the authorization server made for one
	// request. Default: 5s. Remote, after three calls in a row fail (time
	// out, cannot connect, or get 502, 503 or 504), requests are refused at
	// once (403 with the Warning) and one request probes the authorization
	// server every 5 seconds until it answers.
	Timeout caddy.Duration `json:"timeout,omitempty"`

	// Methods maps request methods to the scopes they need, for resources
	// without a map of their own and for resources matched by registered
	// uris. Default: GET and HEAD read; POST, PUT and PATCH write; DELETE
	// delete. Methods it leaves out (OPTIONS, ...) are refused with 403 on
	// protected paths.
	Methods map[string][]string `json:"methods,omitempty"`

	// Match is "all" (the default: every scope of the method is needed)
	// or "any" (one suffices), for resources matched by registered uris.
	Match string `json:"match,omitempty"`

	// Resources are the resource templates, tried in order.
	Resources []ProtectedResource `json:"resources,omitempty"`

	enforcer  *pep.Enforcer
	remoteKey string // key of the remotePool entry this handler holds
	logger    *zap.Logger
	audit     *zap.Logger
}

// ProtectedResource is a resource template: requests whose path matches
// Path are one resource, with an owner, a name and a type taken from the
// request.
type ProtectedResource struct {
	// Path is the path pattern: literal segments, {name} for one segment,
	// * for one anonymous segment, and as the last segment {name...} or *
	// for the rest of the path. For example /api/records/{owner}/{id}.
	// One trailing slash of the request path is ignored; requests with
	// dot segments, empty segments or encoded slashes are refused (400).
	Path string `json:"path,omitempty"`

	// Owner is the resource owner (required): a value with the path's
	// parameters ({owner}) and Caddy placeholders
	// ({http.request.header.X-Owner}). A request whose owner expands to
	// nothing is refused with 403. In Owner, Name, Type and Context, a
	// placeholder that is neither a parameter of Path nor one of Caddy's
	// (http.request.*, http.vars.*, http.regexp.*, http.auth.*, env.*, ...)
	// is refused when the config loads.
	Owner string `json:"owner,omitempty"`

	// Name is the resource's name, unique per owner: what the owner sees
	// and shares. Default: the request path.
	Name string `json:"name,omitempty"`

	// Type is the resource's type, optional (often a URI).
	Type string `json:"type,omitempty"`

	// Scopes are the scopes registered on the resource. Default: every
	// scope of the method map.
	Scopes []string `json:"scopes,omitempty"`

	// Methods is this resource's method-to-scope map; default: the
	// handler's.
	Methods map[string][]string `json:"methods,omitempty"`

	// Match is "all" (default) or "any".
	Match string `json:"match,omitempty"`

	// Context names request values sent with the permission ticket, which
	// the owner's rules read as input.request.<name>: for example
	// {"ip": "{http.request.remote.host}"}. Empty values are left out.
	Context map[string]string `json:"context,omitempty"`
}

// Default revocation check and registered resources refresh intervals.
const (
	coHostedURIRefresh = 5 * time.Second
	remoteURIRefresh   = 30 * time.Second
)

// remotePool shares the connection to a remote authorization server (the
// discovery document, the PAT, the JWKS cache and its goroutines) between
// the handlers of a config and across reloads, keyed by a hash of its
// settings.
var remotePool = caddy.NewUsagePool()

// sharedRemote is the pooled value.
type sharedRemote struct {
	*pep.Remote
	issuer string
}

// Destruct stops the remote's background work.
func (s sharedRemote) Destruct() error {
	remoteClosed(s.issuer)
	return s.Close()
}

// CaddyModule returns the Caddy module information.
func (Protect) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.uma_protect",
		New: func() caddy.Module { return new(Protect) },
	}
}

// Provision sets up the enforcement point and its authorization server.
func (p *Protect) Provision(ctx caddy.Context) error {
	p.logger = ctx.Logger()
	p.audit = auditLogger(ctx)
	if err := registerMetrics(ctx.GetMetricsRegistry()); err != nil {
		return fmt.Errorf("registering metrics: %w", err)
	}
	repl := caddy.NewReplacer()

	if p.ResourceServer == "" {
		return errors.New("resource_server is missing: name this resource server's client id at the authorization server (resource_server <client_id>)")
	}
	rs, err := expandSetting(repl, "resource_server", p.ResourceServer, false)
	if err != nil {
		return err
	}
	switch p.MethodOverride {
	case "", string(pep.MethodOverrideStrip), string(pep.MethodOverrideKeep):
	default:
		return fmt.Errorf("method_override %q: want strip or keep", p.MethodOverride)
	}
	realm := p.Realm
	if realm == "" {
		realm = rs
	}

	var as pep.AuthorizationServer
	uriRefresh := time.Duration(p.RegisteredURIs)
	switch {
	case p.CoHosted && p.AS != "":
		return errors.New("as and co_hosted exclude each other")
	case p.CoHosted:
		if p.ClientSecret != "" {
			return errors.New("client_secret is for a remote authorization server; co-hosted needs none")
		}
		if p.RevocationCheck != 0 {
			return errors.New("revocation_check is for a remote authorization server; co-hosted, revocation applies at once")
		}
		app, err := umaApp(ctx, "co-hosted uma_protect")
		if err != nil {
			return err
		}
		i := slices.IndexFunc(app.clients, func(c authz.Client) bool { return c.ID == rs })
		if i < 0 {
			return fmt.Errorf("resource_server %q is not a client of the uma app", rs)
		}
		if !app.clients[i].ResourceServer {
			return fmt.Errorf("client %q of the uma app is not a resource server (add resource_server to its block)", rs)
		}
		as = pep.CoHosted(rs, func(ctx context.Context) pep.LocalServer {
			// Return a nil interface, not a typed nil pointer.
			if srv := app.awaitRunning(ctx, startWait); srv != nil {
				return srv
			}
			return nil
		})
		if uriRefresh == 0 {
			uriRefresh = coHostedURIRefresh
		}
	case p.AS != "":
		issuer, err := expandSetting(repl, "as", p.AS, false)
		if err != nil {
			return err
		}
		if p.ClientSecret == "" {
			return fmt.Errorf("client_secret is missing: uma_protect with as %s needs this resource server's client secret to obtain PATs; add client_secret {env.RS_SECRET} (or the secret itself)", p.AS)
		}
		secret, err := expandSetting(repl, "client_secret", p.ClientSecret, true)
		if err != nil {
			return err
		}
		remote, key, err := p.loadRemote(issuer, rs, secret)
		if err != nil {
			return err
		}
		as, p.remoteKey = remote, key
		if uriRefresh == 0 {
			uriRefresh = remoteURIRefresh
		}
	default:
		return errors.New("an authorization server is required: as <issuer_url> or co-hosted")
	}

	cfg := pep.Config{
		AS:                 as,
		Realm:              realm,
		Methods:            p.Methods,
		Match:              pep.Match(p.Match),
		RegisteredURIs:     uriRefresh > 0,
		URIRefresh:         uriRefresh,
		Unmatched:          pep.Unmatched(p.Unmatched),
		Mode:               pep.Mode(p.Mode),
		RPTCacheSize:       p.RPTCacheSize,
		Timeout:            time.Duration(p.Timeout),
		StripAuthorization: p.StripAuthorization,
		MethodOverride:     pep.MethodOverride(p.MethodOverride),
		Expand:             expandPlaceholders,
		KnownPlaceholder:   knownPlaceholder,
		Logger:             p.logger,
		Observer:           pepObserver{},
	}
	for _, res := range p.Resources {
		cfg.Templates = append(cfg.Templates, pep.Template{
			Path: res.Path, Owner: res.Owner, Name: res.Name, Type: res.Type,
			Scopes: res.Scopes, Methods: res.Methods, Match: pep.Match(res.Match), Context: res.Context,
		})
	}
	e, err := pep.New(cfg)
	if err != nil {
		return err
	}
	p.enforcer = e
	if p.Mode == string(pep.Permissive) || p.Mode == string(pep.Disabled) {
		p.logger.Warn("uma_protect does not enforce: requests go through whatever their RPT", zap.String("mode", p.Mode))
	}
	return nil
}

// Validate checks the provisioned handler.
func (p *Protect) Validate() error {
	if p.RPTCacheSize < 0 {
		return errors.New("rpt_cache_size must not be negative")
	}
	if p.Timeout < 0 {
		return errors.New("timeout must not be negative")
	}
	return nil
}

// ServeHTTP enforces UMA on the request. Each decision is counted, timed
// and written to the audit trail.
func (p *Protect) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	start := time.Now()
	d := p.enforcer.Decide(r)
	metrics.protectRequests.WithLabelValues(string(d.Reason)).Inc()
	metrics.protectDuration.WithLabelValues(string(d.Reason)).Observe(time.Since(start).Seconds())
	auditEnforcement(p.audit, r, d)
	if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		repl.Set("http.auth.uma.decision", string(d.Reason))
		if d.ResourceID != "" {
			repl.Set("http.auth.uma.resource_id", d.ResourceID)
			repl.Set("http.auth.uma.owner", d.Owner)
		}
		if d.Authorized {
			repl.Set("http.auth.uma.subject", d.Subject)
			repl.Set("http.auth.uma.client", d.ClientID)
			repl.Set("http.auth.uma.scopes", strings.Join(d.Scopes, " "))
			repl.Set("http.auth.user.id", d.Subject)
		}
	}
	if !d.Allow {
		d.WriteHeaders(w.Header())
		err := errors.New("uma_protect: " + string(d.Reason))
		if d.Err != nil {
			err = fmt.Errorf("uma_protect: %s: %w", d.Reason, d.Err)
		}
		return caddyhttp.Error(d.Status, err)
	}
	p.enforcer.PrepareForward(r)
	return next.ServeHTTP(w, r)
}

// Cleanup stops the enforcement point's watch of registered resources and
// releases the shared remote connection.
func (p *Protect) Cleanup() error {
	if p.enforcer != nil {
		p.enforcer.Close()
	}
	if p.remoteKey == "" {
		return nil
	}
	key := p.remoteKey
	p.remoteKey = ""
	_, err := remotePool.Delete(key)
	return err
}

// loadRemote returns the shared connection to a remote authorization
// server for these settings, creating it if no running config has one.
func (p *Protect) loadRemote(issuer, clientID, secret string) (*pep.Remote, string, error) {
	settings, _ := json.Marshal([]any{issuer, clientID, secret, p.RevocationCheck, p.Timeout})
	sum := sha256.Sum256(settings)
	key := "uma_protect/remote/" + hex.EncodeToString(sum[:])
	val, _, err := remotePool.LoadOrNew(key, func() (caddy.Destructor, error) {
		hc := &http.Client{Timeout: 10 * time.Second}
		if p.Timeout > 0 {
			hc.Timeout = time.Duration(p.Timeout)
		}
		r, err := pep.NewRemote(pep.RemoteConfig{
			Issuer:          issuer,
			ClientID:        clientID,
			ClientSecret:    secret,
			HTTPClient:      hc,
			RevocationCheck: time.Duration(p.RevocationCheck),
			Logger:          p.logger.Named("remote"),
			Observer:        pepObserver{},
		})
		if err != nil {
			return nil, err
		}
		remoteOpened(issuer)
		return sharedRemote{Remote: r, issuer: issuer}, nil
	})
	if err != nil {
		return nil, "", fmt.Errorf("authorization server %s: %w", issuer, err)
	}
	return val.(sharedRemote).Remote, key, nil
}

// expandSetting expands the placeholders ({env.*}, {file.*}) of a setting
// when the config loads. Each must be known and expand to something: an
// unset variable would otherwise leave an empty secret or issuer, and the
// message names the directive, the value and the fix. A secret's value is
// never shown, only the placeholder at fault.
func expandSetting(repl *caddy.Replacer, directive, value string, secret bool) (string, error) {
	var err error
	out := pep.ExpandWith(value, func(key string) (string, bool) {
		v, ok := repl.Get(key)
		s := caddy.ToString(v)
		if err != nil || (ok && s != "") {
			return s, ok
		}
		shown := value
		if secret {
			shown = "{" + key + "}"
		}
		switch {
		case !ok:
			err = fmt.Errorf("%s %s: unknown placeholder {%s}: use {env.NAME} or {file.PATH}, or write the value itself", directive, shown, key)
		case strings.HasPrefix(key, "env."):
			err = fmt.Errorf("%s %s expands to nothing: set the environment variable %s for Caddy", directive, shown, strings.TrimPrefix(key, "env."))
		case strings.HasPrefix(key, "file."):
			err = fmt.Errorf("%s %s expands to nothing: the file %s is missing, unreadable or empty", directive, shown, strings.TrimPrefix(key, "file."))
		default:
			err = fmt.Errorf("%s %s: {%s} expands to nothing when the config loads: use {env.NAME} or {file.PATH}", directive, shown, key)
		}
		return s, ok
	})
	if err != nil {
		return "", err
	}
	return out, nil
}

// Placeholders a template value may use besides its path parameters:
// those of Caddy's replacer (caddy and modules/caddyhttp, v2.11) known
// before the next handler runs. Response, reverse_proxy and error
// placeholders are not: they expand to nothing at uma_protect.
var (
	// requestPlaceholders are the fixed names of caddyhttp's replacer.
	requestPlaceholders = []string{
		"http.request.method", "http.request.scheme", "http.request.proto", "http.request.proto_name",
		"http.request.host", "http.request.port", "http.request.hostport",
		"http.request.local", "http.request.local.host", "http.request.local.port",
		"http.request.remote", "http.request.remote.host", "http.request.remote.port",
		"http.request.uri", "http.request.uri_escaped", "http.request.uri.path", "http.request.uri.path_escaped",
		"http.request.uri.path.file", "http.request.uri.path.dir", "http.request.uri.path.file.base",
		"http.request.uri.path.file.ext", "http.request.uri.query", "http.request.uri.query_escaped",
		"http.request.uri.prefixed_query", "http.request.duration", "http.request.duration_ms",
		"http.request.uuid", "http.request.body", "http.request.body_base64",
		"http.request.orig_method", "http.request.orig_uri", "http.request.orig_uri.path",
		"http.request.orig_uri.path.file", "http.request.orig_uri.path.file_escaped",
		"http.request.orig_uri.path.dir", "http.request.orig_uri.query", "http.request.orig_uri.prefixed_query",
	}
	// globalPlaceholders are the fixed names of Caddy's global replacer.
	globalPlaceholders = []string{
		"http.shutting_down", "http.time_until_shutdown",
		"system.hostname", "system.slash", "system.os", "system.wd", "system.arch",
		"time.now", "time.now.http", "time.now.rfc3339", "time.now.common_log", "time.now.year",
		"time.now.unix", "time.now.unix_ms",
	}
	// placeholderFamilies are prefixes followed by a free name: request
	// fields, and the values other handlers and matchers set (vars, map,
	// regular expression and URL pattern matchers, authentication).
	placeholderFamilies = []string{
		"http.request.header.", "http.request.cookie.", "http.request.uri.query.", "http.request.tls.",
		"http.vars.", "http.regexp.", "http.url_pattern.", "http.auth.", "http.matchers.", "env.", "file.",
	}
	// indexedPlaceholders are prefixes followed by a number.
	indexedPlaceholders = []string{"http.request.uri.path.", "http.request.orig_uri.path.", "http.request.host.labels."}
)

// knownPlaceholder reports whether key is a Caddy placeholder that a
// uma_protect template may use.
func knownPlaceholder(key string) bool {
	if slices.Contains(requestPlaceholders, key) || slices.Contains(globalPlaceholders, key) {
		return true
	}
	for _, f := range placeholderFamilies {
		if len(key) > len(f) && strings.HasPrefix(key, f) {
			return true
		}
	}
	for _, f := range indexedPlaceholders {
		if n, ok := strings.CutPrefix(key, f); ok {
			if _, err := strconv.ParseUint(n, 10, 16); err == nil {
				return true
			}
		}
	}
	// The remote address as a network: {http.request.remote.host/24} or /24,64.
	if bits, ok := strings.CutPrefix(key, "http.request.remote.host/"); ok {
		v4, v6, _ := strings.Cut(bits, ",")
		_, err4 := strconv.ParseUint(v4, 10, 8)
		_, err6 := strconv.ParseUint(cmp.Or(v6, v4), 10, 8)
		return err4 == nil && err6 == nil
	}
	return false
}

// expandPlaceholders expands a template value: {name} is a path parameter
// of the resource's pattern, anything else a Caddy placeholder of the
// request ({http.request.header.X-Owner}, {http.request.uri.path.2}, ...).
// Unknown placeholders expand to nothing. The expansion is a single pass:
// a value taken from the request is never expanded again.
func expandPlaceholders(r *http.Request, params pep.Params, value string) string {
	repl, _ := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	return pep.ExpandWith(value, func(key string) (string, bool) {
		if v, ok := params.Get(key); ok {
			return v, true
		}
		if repl == nil {
			return "", false
		}
		v, ok := repl.Get(key)
		if !ok {
			return "", false
		}
		return caddy.ToString(v), true
	})
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Protect)(nil)
	_ caddy.Validator             = (*Protect)(nil)
	_ caddy.CleanerUpper          = (*Protect)(nil)
	_ caddyhttp.MiddlewareHandler = (*Protect)(nil)
	_ caddyfile.Unmarshaler       = (*Protect)(nil)
	_ caddy.Destructor            = sharedRemote{}
)
