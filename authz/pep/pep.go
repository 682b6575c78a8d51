// Package pep is a UMA 2.0 enforcement point (the resource server's side of
// UMA Grant section 3 and Federated Authorization), as plain net/http with
// no Caddy imports: it maps a request to a resource and scopes, checks the
// request's RPT, and answers a UMA challenge (401 with a permission ticket)
// when the RPT is missing or does not cover the request.
//
// Per request, an Enforcer:
//
//  1. maps the request to a resource and the scopes it needs, using only
//     the URL, the method and headers, never the token: the first
//     Template whose path pattern matches (its owner, name and type are
//     expanded from the request; the resource is registered at the AS on
//     first sight), else the resources this resource server registered
//     through the protection API whose uris match; the method gives the
//     scopes (GET/HEAD read, POST/PUT/PATCH write, DELETE delete unless
//     configured). A request that maps to nothing is refused with 403, or
//     passed on when Config.Unmatched is UnmatchedPass;
//  2. takes the RPT from the Authorization header (RFC 6750 Bearer, the
//     header only) and verifies it through the AuthorizationServer,
//     caching verified RPTs (bounded, keyed by the SHA-256 of the token,
//     never beyond their expiry); a cached RPT is checked for revocation
//     on every use when co-hosted, and every RecheckInterval when remote;
//  3. lets the request through when the RPT grants the needed scopes on
//     the resource (all of them, or any one with MatchAny);
//  4. otherwise, whether the token was missing, invalid, expired, revoked
//     or insufficient, requests a fresh permission ticket and answers 401
//     with WWW-Authenticate: UMA realm="...", as_uri="...", ticket="...";
//     if no ticket can be had, it answers 403 with the Warning header
//     199 - "UMA Authorization Server Unreachable".
//
// Tokens are never logged, and no error returned by this package contains
// one.
package pep

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/caddy-uma/caddy-uma/authz/jwsform"
	"github.com/caddy-uma/caddy-uma/authz/oauth"
)

// Mode says what an Enforcer does with its decisions.
type Mode string

// Enforcement modes.
const (
	// Enforcing refuses what is not authorized (the default).
	Enforcing Mode = "enforcing"
	// Permissive decides and logs, but lets every request through. No
	// ticket is requested.
	Permissive Mode = "permissive"
	// Disabled does nothing.
	Disabled Mode = "disabled"
)

// Match says whether a request needs every scope its method maps to, or
// any one of them.
type Match string

// Scope matching.
const (
	MatchAll Match = "all"
	MatchAny Match = "any"
)

// Unmatched says what happens to a request that maps to no resource.
type Unmatched string

// Handling of unmatched requests.
const (
	// UnmatchedDeny answers 403 (the default): nothing reaches the
	// protected handler unless a resource covers it.
	UnmatchedDeny Unmatched = "deny"
	// UnmatchedPass lets the request through unauthenticated.
	UnmatchedPass Unmatched = "pass"
)

// ErrRegistrationLimited is what an AuthorizationServer's EnsureResource
// returns when it registers no more resources for now: the request gets
// 503 with Retry-After.
var ErrRegistrationLimited = errors.New("pep: too many new resources; try again later")

// Defaults.
const (
	DefaultRPTCacheSize = 10000
	DefaultTimeout      = 5 * time.Second
	// DefaultURIRefresh is how often the resources registered with uris
	// are listed again.
	DefaultURIRefresh = 30 * time.Second
	// resourceIDTTL is how long the id of a template's resource is
	// remembered before EnsureResource is asked again.
	resourceIDTTL = time.Minute
	// maxResourceIDs bounds the cache of resource ids.
	maxResourceIDs = 10000
	// unboundedRPTTTL caches an RPT without an expiry of its own.
	unboundedRPTTTL = 5 * time.Minute
	// maxContextValue and maxContextSize bound the request context sent
	// with a ticket (our AS accepts 2 KiB of names and values).
	maxContextValue = 512
	maxContextSize  = 1536
)

// DefaultMethods returns the default method-to-scope map: GET and HEAD
// read, POST, PUT and PATCH write, DELETE delete. Other methods (OPTIONS,
// ...) map to nothing and are refused with 403 on a protected path.
func DefaultMethods() map[string][]string {
	return map[string][]string{
		http.MethodGet:    {"read"},
		http.MethodHead:   {"read"},
		http.MethodPost:   {"write"},
		http.MethodPut:    {"write"},
		http.MethodPatch:  {"write"},
		http.MethodDelete: {"delete"},
	}
}

// Template maps the requests whose path matches Path to a resource.
type Template struct {
	// Path is the path pattern (see pattern.go): /api/records/{owner}/{id}.
	Path string
	// Owner, Name and Type are expanded per request by the Expander:
	// {owner} is the path parameter owner. Owner is required and must not
	// expand to nothing (such a request is refused with 403). Name
	// defaults to the request path; Type is optional.
	Owner string
	Name  string
	Type  string
	// Scopes are the scopes registered on the resource; default: every
	// scope of Methods.
	Scopes []string
	// Methods maps request methods to the scopes they need; nil means the
	// Config's Methods.
	Methods map[string][]string
	// Match says whether every mapped scope is needed (default) or one.
	Match Match
	// Context names request values that travel with the permission ticket
	// as request context for the owner's rules (input.request): name ->
	// value, expanded like Owner. Empty values are left out.
	Context map[string]string
}

// Expander expands a value of a Template (owner, name, type, context) for
// a request whose path captured params. It must expand in a single pass:
// a value taken from the request is never expanded again.
type Expander func(r *http.Request, params Params, value string) string

// Config configures an Enforcer.
type Config struct {
	// AS is the authorization server (required).
	AS AuthorizationServer
	// Realm is the realm of challenges; empty leaves it out.
	Realm string
	// Templates map requests to resources, first match wins.
	Templates []Template
	// Methods is the method-to-scope map of Templates without one and of
	// resources matched by their registered uris; nil means
	// DefaultMethods.
	Methods map[string][]string
	// Match applies to resources matched by their registered uris.
	Match Match
	// RegisteredURIs enables matching the uris of the resources this
	// resource server registered through the protection API, listed
	// again every URIRefresh (default 30s); co-hosted, the AS's change
	// feed updates them change by change instead, and they are listed
	// again only when changes may have been missed.
	RegisteredURIs bool
	URIRefresh     time.Duration
	// Unmatched says what happens to requests that map to no resource;
	// default UnmatchedDeny.
	Unmatched Unmatched
	// Mode is Enforcing (default), Permissive or Disabled.
	Mode Mode
	// RPTCacheSize bounds the cache of verified RPTs (default 10000).
	RPTCacheSize int
	// Timeout bounds the AS calls made for one request (default 5s).
	Timeout time.Duration
	// StripAuthorization removes the Authorization header before Handler
	// passes the request on.
	StripAuthorization bool
	// MethodOverride is MethodOverrideStrip (default: method override
	// headers and ?_method are removed before the protected handler) or
	// MethodOverrideKeep (they stay, and the overriding method decides the
	// scopes).
	MethodOverride MethodOverride
	// Expand expands template values; nil means ExpandPlain.
	Expand Expander
	// KnownPlaceholder reports whether a template value may name key in
	// braces when key is no parameter of the template's path pattern: New
	// refuses a template with any other. nil means the keys of ExpandPlain
	// when Expand is nil, and any key otherwise.
	KnownPlaceholder func(key string) bool
	// Logger receives decisions (debug), permissive refusals (info), and
	// at warn, at most one line per reason every 10 seconds (with the
	// number left out since), refusals that point at a configuration
	// mistake or an outage: no_owner, unmatched, method_not_mapped,
	// scope_not_registered, registration_limited and as_unavailable; nil
	// means none.
	Logger *zap.Logger
	// Observer receives the lookups of the RPT cache, for metrics; nil
	// means none.
	Observer Observer
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Enforcer is a UMA enforcement point. It is safe for concurrent use.
type Enforcer struct {
	as        AuthorizationServer
	realm     string
	templates []*template
	methods   map[string][]string
	anyScope  bool
	unmatched Unmatched
	mode      Mode
	uris      *uriIndex
	timeout   time.Duration
	expand    Expander
	strip     bool
	override  MethodOverride
	log       *zap.Logger
	limit     *logLimiter
	observer  Observer
	now       func() time.Time

	rpts        *lru[[32]byte, cachedRPT]
	resourceIDs *lru[string, string]
	ensures     flightGroup[string]
}

// template is a compiled Template.
type template struct {
	index    int
	pattern  pattern
	owner    string
	name     string
	typ      string
	scopes   []string
	methods  map[string][]string
	anyScope bool
	context  []contextValue
}

type contextValue struct{ name, value string }

// cachedRPT is an entry of the RPT cache: a verified RPT and when it was
// last checked for revocation.
type cachedRPT struct {
	rpt     *RPT
	checked time.Time
}

// New returns an Enforcer for cfg.
func New(cfg Config) (*Enforcer, error) {
	if cfg.AS == nil && cfg.Mode != Disabled {
		return nil, errors.New("no authorization server configured")
	}
	e := &Enforcer{
		as:        cfg.AS,
		realm:     cfg.Realm,
		unmatched: cfg.Unmatched,
		mode:      cfg.Mode,
		timeout:   cfg.Timeout,
		expand:    cfg.Expand,
		strip:     cfg.StripAuthorization,
		override:  cfg.MethodOverride,
		log:       cfg.Logger,
		observer:  cfg.Observer,
		now:       cfg.Now,
	}
	if e.observer == nil {
		e.observer = nopObserver{}
	}
	switch e.mode {
	case "":
		e.mode = Enforcing
	case Enforcing, Permissive, Disabled:
	default:
		return nil, fmt.Errorf("unknown mode %q (want %s, %s or %s)", cfg.Mode, Enforcing, Permissive, Disabled)
	}
	switch e.unmatched {
	case "":
		e.unmatched = UnmatchedDeny
	case UnmatchedDeny, UnmatchedPass:
	default:
		return nil, fmt.Errorf("unknown unmatched handling %q (want %s or %s)", cfg.Unmatched, UnmatchedDeny, UnmatchedPass)
	}
	switch e.override {
	case "":
		e.override = MethodOverrideStrip
	case MethodOverrideStrip, MethodOverrideKeep:
	default:
		return nil, fmt.Errorf("unknown method override handling %q (want %s or %s)", cfg.MethodOverride, MethodOverrideStrip, MethodOverrideKeep)
	}
	var err error
	if e.anyScope, err = parseMatch(cfg.Match); err != nil {
		return nil, err
	}
	if strings.ContainsFunc(cfg.Realm, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return nil, errors.New("realm must not contain control characters")
	}
	e.methods = cfg.Methods
	if e.methods == nil {
		e.methods = DefaultMethods()
	}
	if err := checkMethods(e.methods); err != nil {
		return nil, err
	}
	if e.timeout <= 0 {
		e.timeout = DefaultTimeout
	}
	if e.expand == nil {
		e.expand = ExpandPlain
	}
	if e.log == nil {
		e.log = zap.NewNop()
	}
	if e.now == nil {
		e.now = time.Now
	}
	e.limit = newLogLimiter(e.now)
	known := cfg.KnownPlaceholder
	if known == nil {
		known = func(string) bool { return true }
		if cfg.Expand == nil {
			known = plainPlaceholder
		}
	}
	size := cfg.RPTCacheSize
	if size <= 0 {
		size = DefaultRPTCacheSize
	}
	e.rpts = newLRU[[32]byte, cachedRPT](size)
	e.resourceIDs = newLRU[string, string](maxResourceIDs)
	for i, t := range cfg.Templates {
		ct, err := compileTemplate(i, t, e.methods, known)
		if err != nil {
			return nil, err
		}
		e.templates = append(e.templates, ct)
	}
	if cfg.RegisteredURIs {
		refresh := cfg.URIRefresh
		if refresh <= 0 {
			refresh = DefaultURIRefresh
		}
		e.uris = newURIIndex(cfg.AS, refresh, e.timeout, e.now, e.log)
	}
	return e, nil
}

// Close stops what the Enforcer runs in the background: the watch of the
// AS's changes of registered resources (co-hosted, with RegisteredURIs).
// Decide keeps working after Close, listing the registered resources again
// once they are older than URIRefresh.
func (e *Enforcer) Close() {
	e.uris.close()
}

func parseMatch(m Match) (bool, error) {
	switch m {
	case "", MatchAll:
		return false, nil
	case MatchAny:
		return true, nil
	}
	return false, fmt.Errorf("unknown scope match %q (want %s or %s)", m, MatchAll, MatchAny)
}

// checkMethods validates a method-to-scope map.
func checkMethods(m map[string][]string) error {
	for method, scopes := range m {
		if method == "" || strings.ContainsFunc(method, func(r rune) bool { return r <= ' ' || r >= 0x7f }) {
			return fmt.Errorf("invalid method %q", method)
		}
		if len(scopes) == 0 {
			return fmt.Errorf("method %s maps to no scope", method)
		}
		for _, s := range scopes {
			if !oauth.ValidScope(s) {
				return fmt.Errorf("method %s: %q is not a valid scope", method, s)
			}
		}
	}
	return nil
}

func compileTemplate(i int, t Template, defaultMethods map[string][]string, known func(string) bool) (*template, error) {
	p, err := compilePattern(t.Path)
	if err != nil {
		return nil, fmt.Errorf("resource %d: %w", i+1, err)
	}
	if strings.TrimSpace(t.Owner) == "" {
		return nil, fmt.Errorf("resource %s: an owner is required", t.Path)
	}
	if err := checkPlaceholders(t, p, known); err != nil {
		return nil, err
	}
	ct := &template{index: i, pattern: p, owner: t.Owner, name: t.Name, typ: t.Type, methods: t.Methods}
	if ct.methods == nil {
		ct.methods = defaultMethods
	}
	if err := checkMethods(ct.methods); err != nil {
		return nil, fmt.Errorf("resource %s: %w", t.Path, err)
	}
	if ct.anyScope, err = parseMatch(t.Match); err != nil {
		return nil, fmt.Errorf("resource %s: %w", t.Path, err)
	}
	ct.scopes = slices.Clone(t.Scopes)
	for _, s := range ct.scopes {
		if !oauth.ValidScope(s) {
			return nil, fmt.Errorf("resource %s: %q is not a valid scope", t.Path, s)
		}
	}
	methodNames := slices.Sorted(maps.Keys(ct.methods))
	for _, m := range methodNames {
		for _, s := range ct.methods[m] {
			if len(t.Scopes) == 0 {
				if !slices.Contains(ct.scopes, s) {
					ct.scopes = append(ct.scopes, s)
				}
			} else if !slices.Contains(ct.scopes, s) {
				return nil, fmt.Errorf("resource %s: method %s needs scope %q, which is not among its scopes %v", t.Path, m, s, t.Scopes)
			}
		}
	}
	names := slices.Sorted(maps.Keys(t.Context))
	for _, n := range names {
		if n == "" || len(n) > 64 {
			return nil, fmt.Errorf("resource %s: invalid context name %q", t.Path, n)
		}
		ct.context = append(ct.context, contextValue{name: n, value: t.Context[n]})
	}
	return ct, nil
}

// Reason names the outcome of a decision: a log field and a metric label.
type Reason string

// Reasons.
const (
	// The request goes on.
	ReasonAuthorized Reason = "authorized" // a valid RPT covers it
	ReasonPassed     Reason = "passed"     // it maps to no resource and Unmatched is pass
	ReasonDisabled   Reason = "disabled"   // Mode is Disabled
	// 401 with a ticket.
	ReasonNoToken      Reason = "no_token"                      // no Bearer token
	ReasonInvalidToken Reason = Reason(oauth.InvalidToken)      // not a valid, live RPT for this resource server
	ReasonInsufficient Reason = Reason(oauth.InsufficientScope) // a valid RPT that does not cover the request
	// 403.
	ReasonUnmatched          Reason = "unmatched"            // maps to no resource
	ReasonMethodNotMapped    Reason = "method_not_mapped"    // the method maps to no scope
	ReasonNoOwner            Reason = "no_owner"             // the owner expanded to nothing
	ReasonScopeNotRegistered Reason = "scope_not_registered" // a registered resource lacks the method's scope
	ReasonUnavailable        Reason = "as_unavailable"       // no ticket could be had (with Warning)
	ReasonBusy               Reason = "registration_limited" // too many new resources at once: 503, Retry-After
	// 400.
	ReasonAmbiguousPath   Reason = "ambiguous_path"   // dot or empty segments, encoded slashes
	ReasonAmbiguousMethod Reason = "ambiguous_method" // method overrides that disagree (MethodOverrideKeep)
)

// warnReasons are the refusals logged at warn (rate-limited): they point
// at a configuration mistake or an outage, not at a client.
var warnReasons = map[Reason]bool{
	ReasonNoOwner: true, ReasonUnmatched: true, ReasonMethodNotMapped: true,
	ReasonScopeNotRegistered: true, ReasonBusy: true, ReasonUnavailable: true,
}

// Decision is the outcome of Decide for one request.
type Decision struct {
	// Allow says that the request goes on to the protected handler.
	Allow bool
	// Reason names the outcome. In Permissive mode a refused request is
	// allowed and keeps the reason it would have been refused for.
	Reason Reason
	// Status is the response status of a refused request: 401, 403 or
	// 400 (0 when allowed).
	Status int
	// Challenge is the WWW-Authenticate value of a 401.
	Challenge string
	// Warning is the Warning header of a 403 sent because the AS could not
	// be reached.
	Warning string
	// Err is what went wrong, for logs (it never contains a token).
	Err error

	// Authorized is true when a valid RPT covered the request; then the
	// fields below describe it.
	Authorized bool
	// Subject is the requesting party (the RPT's sub), ClientID the
	// client the RPT was issued to.
	Subject  string
	ClientID string
	// ResourceID and Owner are the resource the request mapped to (set
	// whenever it mapped to one).
	ResourceID string
	Owner      string
	// Needed are the scopes the request needs on the resource (all of
	// them, or one with MatchAny), set whenever it mapped to one.
	Needed []string
	// Scopes are the scopes the RPT grants on the resource, sorted.
	Scopes []string
}

// WriteHeaders sets the response headers of a refused request:
// WWW-Authenticate and Cache-Control for a challenge, Warning when the AS
// could not be reached.
func (d *Decision) WriteHeaders(h http.Header) {
	if d.Challenge != "" {
		h.Set("WWW-Authenticate", d.Challenge)
		// The ticket is single-use.
		h.Set("Cache-Control", "no-store")
	}
	if d.Warning != "" {
		h.Set("Warning", d.Warning)
	}
	if d.Reason == ReasonBusy {
		h.Set("Retry-After", "1")
	}
}

// Respond writes the response of a refused request: its headers and
// status, with no body.
func (d *Decision) Respond(w http.ResponseWriter) {
	d.WriteHeaders(w.Header())
	w.WriteHeader(d.Status)
}

// refuse returns a decision refusing the request with status.
func refuse(status int, reason Reason, err error) Decision {
	return Decision{Status: status, Reason: reason, Err: err}
}

// Handler returns next behind the enforcement point: refused requests get
// Decision.Respond; allowed ones go to next, prepared by PrepareForward
// (the Authorization header removed if Config.StripAuthorization, method
// overrides unless kept), with the decision in their context (see
// DecisionFrom).
func (e *Enforcer) Handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d := e.Decide(r)
		if !d.Allow {
			d.Respond(w)
			return
		}
		e.PrepareForward(r)
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), decisionKey{}, &d)))
	})
}

type decisionKey struct{}

// DecisionFrom returns the decision Handler made for the request of ctx.
func DecisionFrom(ctx context.Context) (*Decision, bool) {
	d, ok := ctx.Value(decisionKey{}).(*Decision)
	return d, ok
}

// Decide decides on a request. It requests a permission ticket when the
// request needs one (in Enforcing mode), and may register the request's
// resource at the AS.
func (e *Enforcer) Decide(r *http.Request) Decision {
	if e.mode == Disabled {
		return Decision{Allow: true, Reason: ReasonDisabled}
	}
	ctx, cancel := withLazyDeadline(r.Context(), e.timeout)
	defer cancel()
	d := e.decide(ctx, r)
	if !d.Allow && e.mode == Permissive {
		if c := e.log.Check(zapcore.InfoLevel, "permissive mode: request would be refused"); c != nil {
			c.Write(decisionFields(r, d)...)
		}
		d.Allow = true
		d.Status, d.Challenge, d.Warning = 0, "", ""
		return d
	}
	lvl, suppressed := zapcore.DebugLevel, -1
	if warnReasons[d.Reason] {
		if n, ok := e.limit.allow(string(d.Reason)); ok {
			lvl, suppressed = zapcore.WarnLevel, n
		}
	}
	if c := e.log.Check(lvl, "uma decision"); c != nil {
		fields := decisionFields(r, d)
		if suppressed >= 0 {
			fields = append(fields, zap.Int("suppressed", suppressed))
		}
		c.Write(fields...)
	}
	return d
}

func decisionFields(r *http.Request, d Decision) []zap.Field {
	fields := []zap.Field{
		zap.String("reason", string(d.Reason)),
		zap.String("method", r.Method),
		zap.String("path", r.URL.Path),
	}
	if d.ResourceID != "" {
		fields = append(fields, zap.String("resource_id", d.ResourceID), zap.String("owner", d.Owner))
	}
	if d.Authorized {
		fields = append(fields, zap.String("subject", d.Subject), zap.String("client_id", d.ClientID))
	}
	if d.Err != nil {
		fields = append(fields, zap.Error(d.Err))
	}
	return fields
}

// target is what a request maps to.
type target struct {
	tpl        *template // nil for a resource matched by its registered uris
	cacheKey   string    // the resource id cache key of a template's resource
	resourceID string
	owner      string
	name       string
	typ        string
	scopes     []string
	anyScope   bool
	request    map[string][]string
}

func (e *Enforcer) decide(ctx context.Context, r *http.Request) Decision {
	t, d, ok := e.mapRequest(ctx, r)
	if !ok {
		return d
	}
	now := e.now()
	reason := ReasonNoToken
	var verifyErr error
	if tok, ok := BearerToken(r); ok {
		rpt, err := e.rpt(ctx, tok, now)
		switch {
		case err == nil:
			granted, found := rpt.grantedScopes(t.resourceID, now)
			if found && covers(granted, t.scopes, t.anyScope) {
				return Decision{
					Allow: true, Reason: ReasonAuthorized, Authorized: true,
					Subject: rpt.Subject, ClientID: rpt.ClientID,
					ResourceID: t.resourceID, Owner: t.owner, Needed: t.scopes, Scopes: granted,
				}
			}
			reason = ReasonInsufficient
		case errors.Is(err, ErrInvalidRPT):
			reason = ReasonInvalidToken
		default:
			// The RPT could not be checked: refuse it, as if invalid.
			reason, verifyErr = ReasonInvalidToken, err
			if n, ok := e.limit.allow("rpt_unverifiable"); ok {
				e.log.Warn("could not verify an RPT", zap.Error(err), zap.Int("suppressed", n))
			}
		}
	}
	d = Decision{Reason: reason, ResourceID: t.resourceID, Owner: t.owner, Needed: t.scopes, Err: verifyErr}
	if e.mode == Permissive {
		d.Status = http.StatusUnauthorized
		return d
	}
	ticket, asURI, err := e.ticket(ctx, &t)
	d.ResourceID = t.resourceID
	if err != nil {
		d.Status, d.Reason, d.Warning, d.Err = http.StatusForbidden, ReasonUnavailable, WarningUnreachable, err
		return d
	}
	d.Status = http.StatusUnauthorized
	d.Challenge = Challenge(e.realm, asURI, ticket)
	return d
}

// mapRequest maps r to a resource and scopes. When it cannot, it returns
// the decision and false.
func (e *Enforcer) mapRequest(ctx context.Context, r *http.Request) (target, Decision, bool) {
	segs, err := splitPath(r.URL)
	if err != nil {
		return target{}, refuse(http.StatusBadRequest, ReasonAmbiguousPath, err), false
	}
	method, err := e.effectiveMethod(r)
	if err != nil {
		return target{}, refuse(http.StatusBadRequest, ReasonAmbiguousMethod, err), false
	}
	var params Params
	for _, tpl := range e.templates {
		var ok bool
		if params, ok = tpl.pattern.match(r.Host, segs, params[:0]); !ok {
			continue
		}
		return e.mapTemplate(ctx, r, method, tpl, params)
	}
	if e.uris != nil {
		res, ok, err := e.uris.match(ctx, r.Host, segs)
		if err != nil && !ok {
			// The registered resources could not be listed: the request
			// may be one of them, so it is not treated as unmatched.
			return target{}, Decision{Status: http.StatusForbidden, Reason: ReasonUnavailable,
				Warning: WarningUnreachable, Err: err}, false
		}
		if ok {
			return e.mapRegistered(method, res)
		}
	}
	if e.unmatched == UnmatchedPass {
		return target{}, Decision{Allow: true, Reason: ReasonPassed}, false
	}
	return target{}, refuse(http.StatusForbidden, ReasonUnmatched, nil), false
}

func (e *Enforcer) mapTemplate(ctx context.Context, r *http.Request, method string, tpl *template, params Params) (target, Decision, bool) {
	scopes, ok := tpl.methods[method]
	if !ok {
		return target{}, refuse(http.StatusForbidden, ReasonMethodNotMapped, nil), false
	}
	owner := e.expand(r, params, tpl.owner)
	if owner == "" {
		return target{}, refuse(http.StatusForbidden, ReasonNoOwner, fmt.Errorf("the owner of %s expanded to nothing", tpl.pattern.Raw)), false
	}
	name := r.URL.Path
	if tpl.name != "" {
		name = e.expand(r, params, tpl.name)
	}
	if name == "" {
		name = r.URL.Path
	}
	typ := ""
	if tpl.typ != "" {
		typ = e.expand(r, params, tpl.typ)
	}
	key := strconv.Itoa(tpl.index) + "\x00" + owner + "\x00" + name + "\x00" + typ
	id, err := e.ensureResource(ctx, key, Resource{Owner: owner, Name: name, Type: typ, Scopes: tpl.scopes})
	if errors.Is(err, ErrRegistrationLimited) {
		return target{}, refuse(http.StatusServiceUnavailable, ReasonBusy, err), false
	}
	if err != nil {
		return target{}, Decision{Status: http.StatusForbidden, Reason: ReasonUnavailable,
			Warning: WarningUnreachable, Owner: owner, Err: fmt.Errorf("registering the resource: %w", err)}, false
	}
	var request map[string][]string
	size := 0
	for _, cv := range tpl.context {
		v := e.expand(r, params, cv.value)
		if v == "" {
			continue
		}
		if len(v) > maxContextValue || size+len(cv.name)+len(v) > maxContextSize {
			// The ticket carries the context, and travels in a response
			// header: leave out what would make it too large.
			e.log.Debug("request context value left out: too large", zap.String("name", cv.name), zap.Int("bytes", len(v)))
			continue
		}
		size += len(cv.name) + len(v)
		if request == nil {
			request = make(map[string][]string, len(tpl.context))
		}
		request[cv.name] = []string{v}
	}
	return target{
		tpl: tpl, cacheKey: key, resourceID: id, owner: owner, name: name, typ: typ,
		scopes: scopes, anyScope: tpl.anyScope, request: request,
	}, Decision{}, true
}

func (e *Enforcer) mapRegistered(method string, res Resource) (target, Decision, bool) {
	scopes, ok := e.methods[method]
	if !ok {
		return target{}, refuse(http.StatusForbidden, ReasonMethodNotMapped, nil), false
	}
	for _, s := range scopes {
		if !slices.Contains(res.Scopes, s) {
			return target{}, refuse(http.StatusForbidden, ReasonScopeNotRegistered,
				fmt.Errorf("registered resource %s does not offer scope %q that %s needs", res.ID, s, method)), false
		}
	}
	return target{resourceID: res.ID, owner: res.Owner, scopes: scopes, anyScope: e.anyScope}, Decision{}, true
}

// ensureResource returns the id of a template's resource, registering it
// on first sight.
func (e *Enforcer) ensureResource(ctx context.Context, key string, res Resource) (string, error) {
	if id, ok := e.resourceIDs.get(key, e.now()); ok {
		return id, nil
	}
	return e.ensures.do(key, func() (string, error) {
		// Shared by concurrent requests: not bound to the first one's
		// cancellation.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), e.timeout)
		defer cancel()
		id, err := e.as.EnsureResource(ctx, res)
		if err != nil {
			return "", err
		}
		e.resourceIDs.put(key, id, e.now().Add(resourceIDTTL))
		return id, nil
	})
}

// ticket requests a permission ticket for t and returns it with the AS's
// issuer. A resource that has disappeared since it was cached is
// registered again, once.
func (e *Enforcer) ticket(ctx context.Context, t *target) (string, string, error) {
	asURI, err := e.as.Issuer(ctx)
	if err != nil {
		return "", "", err
	}
	perms := []Permission{{ResourceID: t.resourceID, Scopes: t.scopes}}
	tk, err := e.as.RequestTicket(ctx, perms, t.request)
	if errors.Is(err, ErrUnknownResource) {
		if t.tpl == nil {
			e.uris.invalidate(t.resourceID)
			return "", "", err
		}
		e.resourceIDs.remove(t.cacheKey)
		id, ensureErr := e.ensureResource(ctx, t.cacheKey, Resource{Owner: t.owner, Name: t.name, Type: t.typ, Scopes: t.tpl.scopes})
		if ensureErr != nil {
			return "", "", ensureErr
		}
		perms[0].ResourceID, t.resourceID = id, id
		tk, err = e.as.RequestTicket(ctx, perms, t.request)
	}
	if err != nil {
		return "", "", err
	}
	return tk, asURI, nil
}

// rpt returns the verified RPT for token, from the cache when it can.
func (e *Enforcer) rpt(ctx context.Context, token string, now time.Time) (*RPT, error) {
	key := sha256.Sum256([]byte(token))
	c, ok := e.rpts.get(key, now)
	e.observer.CachedRPT(ok)
	if ok {
		iv := e.as.RecheckInterval()
		if iv < 0 || (iv > 0 && now.Sub(c.checked) < iv) {
			return c.rpt, nil
		}
		rpt, err := e.as.Recheck(ctx, token, c.rpt)
		if err != nil {
			if errors.Is(err, ErrInvalidRPT) {
				e.rpts.remove(key)
			}
			return nil, err
		}
		if iv > 0 || rpt != c.rpt {
			e.rpts.put(key, cachedRPT{rpt: rpt, checked: now}, rptExpiry(rpt, now))
		}
		return rpt, nil
	}
	// Only the exact token the AS issued: the cache key is the token's
	// bytes, so a copy spelled otherwise comes here and is refused.
	if err := jwsform.Check(token); err != nil {
		if errors.Is(err, jwsform.ErrHighS) {
			if n, ok := e.limit.allow("rpt_high_s"); ok {
				e.log.Warn("refused an RPT whose ECDSA signature is not in low-S form: it was altered, or the AS does not normalise S (then sign RPTs with RS256, PS256 or EdDSA)",
					zap.Int("suppressed", n))
			}
		}
		return nil, fmt.Errorf("%w: %w", ErrInvalidRPT, err)
	}
	rpt, err := e.as.VerifyRPT(ctx, token)
	if err != nil {
		return nil, err
	}
	if !rpt.ExpiresAt.IsZero() && !now.Before(rpt.ExpiresAt) {
		return nil, ErrInvalidRPT
	}
	e.rpts.put(key, cachedRPT{rpt: rpt, checked: now}, rptExpiry(rpt, now))
	return rpt, nil
}

// rptExpiry is when a cached RPT leaves the cache: its expiry, or
// unboundedRPTTTL from now for an RPT without one.
func rptExpiry(rpt *RPT, now time.Time) time.Time {
	if rpt.ExpiresAt.IsZero() {
		return now.Add(unboundedRPTTTL)
	}
	return rpt.ExpiresAt
}

// ExpandPlain is the default Expander. In a value, {name} is the path
// parameter name, {header.Name} a request header, {query.name} a query
// parameter, {remote_host} the client's IP address and {method} the
// request method; anything else in braces expands to nothing.
func ExpandPlain(r *http.Request, params Params, value string) string {
	return expandBraces(value, func(key string) (string, bool) {
		if v, ok := params.Get(key); ok {
			return v, true
		}
		switch {
		case strings.HasPrefix(key, "header."):
			return r.Header.Get(key[len("header."):]), true
		case strings.HasPrefix(key, "query."):
			return r.URL.Query().Get(key[len("query."):]), true
		case key == "remote_host":
			host, _, err := net.SplitHostPort(r.RemoteAddr)
			if err != nil {
				return r.RemoteAddr, true
			}
			return host, true
		case key == "method":
			return r.Method, true
		}
		return "", false
	})
}

// ExpandWith replaces each {key} of s with lookup(key), in one pass: a
// value that lookup returns is never expanded again. Keys lookup does not
// know expand to nothing; a brace without its pair is kept. Expanders use
// it with their own lookup.
func ExpandWith(s string, lookup func(key string) (string, bool)) string {
	return expandBraces(s, lookup)
}

// expandBraces implements ExpandWith.
func expandBraces(s string, lookup func(key string) (string, bool)) string {
	if !strings.Contains(s, "{") {
		return s
	}
	var b strings.Builder
	for {
		open := strings.IndexByte(s, '{')
		if open < 0 {
			break
		}
		end := strings.IndexByte(s[open:], '}')
		if end < 0 {
			break
		}
		b.WriteString(s[:open])
		v, _ := lookup(s[open+1 : open+end])
		b.WriteString(v)
		s = s[open+end+1:]
	}
	b.WriteString(s)
	return b.String()
}
