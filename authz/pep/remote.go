package pep

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/caddy-uma/caddy-uma/authz/jwks"
	"github.com/caddy-uma/caddy-uma/authz/metadata"
	"github.com/caddy-uma/caddy-uma/authz/oauth"
	"github.com/caddy-uma/caddy-uma/authz/urlcheck"
)

// RemoteConfig configures Remote.
type RemoteConfig struct {
	// Issuer is the AS's issuer identifier. Its UMA discovery document is
	// at Issuer + "/.well-known/uma2-configuration", and must name exactly
	// this issuer.
	Issuer string
	// ClientID and ClientSecret are the resource server's client
	// credentials: they obtain PATs (client_credentials, scope
	// uma_protection) with HTTP Basic authentication.
	ClientID     string
	ClientSecret string
	// HTTPClient makes every call; nil means a client with a 10s timeout.
	// Its transport is wrapped in the circuit breaker (the client itself
	// is not changed).
	HTTPClient *http.Client
	// RevocationCheck is how long a verified RPT is trusted before it is
	// introspected again; a revoked RPT is refused at most this long after
	// its revocation. Zero means DefaultRevocationCheck. A negative value
	// turns introspection of JWT RPTs off: they are checked by signature
	// only (with the AS's JWKS) and a revoked one works until it expires.
	// RPTs that are not JWTs are always introspected.
	RevocationCheck time.Duration
	// MinKeyRefresh is the least time between two fetches of the JWKS
	// caused by a token with an unknown kid (default 30s). Until the JWKS
	// was ever fetched, failed fetches are retried sooner: after 1s,
	// doubling up to MinKeyRefresh.
	MinKeyRefresh time.Duration
	// RetryInterval is how long after a failed discovery or PAT request
	// requests fail fast instead of asking again (default 2s).
	RetryInterval time.Duration
	// BreakerThreshold is how many calls to the AS in a row must fail (a
	// timeout, no connection, or 502, 503, 504) before every call fails at
	// once (default DefaultBreakerThreshold, 3; negative: no breaker).
	// BreakerCoolDown is how long it then waits before one call probes the
	// AS (default DefaultBreakerCoolDown, 5s); the first answer closes it.
	BreakerThreshold int
	BreakerCoolDown  time.Duration
	// Logger receives failures; nil means none.
	Logger *zap.Logger
	// Observer receives every call to the AS (counted by the circuit
	// breaker: none when it is off) and each opening and closing of the
	// breaker, for metrics; nil means none.
	Observer Observer
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Defaults of Remote.
const (
	DefaultRevocationCheck = time.Minute
	defaultMinKeyRefresh   = jwks.DefaultMinRefresh
	defaultRetryInterval   = 2 * time.Second
	defaultHTTPTimeout     = 10 * time.Second
	// discoveryTTL is how long a discovery document is used before it is
	// fetched again (the old one stays in use if that fails).
	discoveryTTL = time.Hour
	// patRenewal is the share of a PAT's lifetime after which it is renewed.
	patRenewal = 0.8
	// defaultPATLifetime is assumed for a PAT without expires_in.
	defaultPATLifetime = 5 * time.Minute
	// maxResponseBytes bounds AS responses.
	maxResponseBytes = 1 << 20
	// maxRegisteredResources bounds the resources read for their uris.
	maxRegisteredResources = 1000
	// clockSkew is allowed on nbf and iat of JWT RPTs (not on exp).
	clockSkew = 30 * time.Second
)

// Remote is the AuthorizationServer of a resource server protected by a
// UMA 2.0 AS over HTTP (ours on another host, Keycloak, ...). It is safe
// for concurrent use. Close releases its background work.
type Remote struct {
	issuer          string
	clientID        string
	secret          string
	http            *http.Client
	revocationCheck time.Duration
	retry           time.Duration
	log             *zap.Logger
	now             func() time.Time
	minKeyRefresh   time.Duration
	breaker         *breaker // nil when off

	mu               sync.Mutex
	keys             *jwks.Set // of keysURL, created on first use
	keysURL          string
	closed           bool
	md               *metadata.UMAConfiguration
	mdFetched        time.Time
	mdFailed         time.Time
	mdErr            error
	pat              string
	patRenewAt       time.Time
	patExpires       time.Time
	patFailed        time.Time
	patErr           error
	introspectBasic  bool // introspection wants client authentication, not the PAT
	registeredFlight flightGroup[string]
	discoveryFlight  flightGroup[*metadata.UMAConfiguration]
	patFlight        flightGroup[string]
}

// NewRemote returns a Remote for cfg. It does not contact the AS: discovery,
// the PAT and the JWKS are fetched when first needed.
func NewRemote(cfg RemoteConfig) (*Remote, error) {
	if err := urlcheck.Absolute(cfg.Issuer, false); err != nil {
		return nil, fmt.Errorf("issuer %q: %w", cfg.Issuer, err)
	}
	if cfg.ClientID == "" || cfg.ClientSecret == "" {
		return nil, errors.New("a client id and a client secret are required")
	}
	r := &Remote{
		issuer:          cfg.Issuer,
		clientID:        cfg.ClientID,
		secret:          cfg.ClientSecret,
		revocationCheck: cfg.RevocationCheck,
		retry:           cfg.RetryInterval,
		log:             cfg.Logger,
		now:             cfg.Now,
		minKeyRefresh:   cfg.MinKeyRefresh,
	}
	hc := http.Client{Timeout: defaultHTTPTimeout}
	if cfg.HTTPClient != nil {
		hc = *cfg.HTTPClient
	}
	if r.revocationCheck == 0 {
		r.revocationCheck = DefaultRevocationCheck
	}
	if r.retry <= 0 {
		r.retry = defaultRetryInterval
	}
	if r.log == nil {
		r.log = zap.NewNop()
	}
	if r.now == nil {
		r.now = time.Now
	}
	if r.minKeyRefresh <= 0 {
		r.minKeyRefresh = defaultMinKeyRefresh
	}
	if cfg.BreakerThreshold >= 0 {
		next := hc.Transport
		if next == nil {
			next = http.DefaultTransport
		}
		r.breaker = &breaker{
			next: next, threshold: cfg.BreakerThreshold, coolDown: cfg.BreakerCoolDown,
			now: r.now, log: r.log.With(zap.String("issuer", r.issuer)),
			observer: cfg.Observer, issuer: r.issuer,
		}
		if r.breaker.observer == nil {
			r.breaker.observer = nopObserver{}
		}
		if r.breaker.threshold == 0 {
			r.breaker.threshold = DefaultBreakerThreshold
		}
		if r.breaker.coolDown <= 0 {
			r.breaker.coolDown = DefaultBreakerCoolDown
		}
		hc.Transport = r.breaker
	}
	r.http = &hc
	return r, nil
}

// failureLevel is the level of a failed call's log line: debug while the
// breaker is open, which logged the outage once.
func (r *Remote) failureLevel() zapcore.Level {
	if r.breaker != nil && r.breaker.isOpen() {
		return zapcore.DebugLevel
	}
	return zapcore.WarnLevel
}

// Close stops the key cache. JWT RPTs are not verified afterwards.
func (r *Remote) Close() error {
	r.mu.Lock()
	keys := r.keys
	r.keys, r.closed = nil, true
	r.mu.Unlock()
	if keys == nil {
		return nil
	}
	return keys.Close()
}

// callTimeout bounds a call shared by concurrent requests.
func (r *Remote) callTimeout() time.Duration {
	if r.http.Timeout > 0 {
		return r.http.Timeout
	}
	return defaultHTTPTimeout
}

// unavailable wraps err as ErrUnavailable.
func unavailable(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrUnavailable, fmt.Sprintf(format, args...))
}

// Issuer returns the configured issuer, once discovery has confirmed it.
func (r *Remote) Issuer(ctx context.Context) (string, error) {
	if _, err := r.metadata(ctx); err != nil {
		return "", err
	}
	return r.issuer, nil
}

// metadata returns the discovery document, fetching it when there is none
// or it is older than discoveryTTL.
func (r *Remote) metadata(ctx context.Context) (*metadata.UMAConfiguration, error) {
	now := r.now()
	r.mu.Lock()
	md, fetched, failed, lastErr := r.md, r.mdFetched, r.mdFailed, r.mdErr
	r.mu.Unlock()
	if md != nil && now.Sub(fetched) < discoveryTTL {
		return md, nil
	}
	if now.Sub(failed) < r.retry {
		if md != nil {
			return md, nil
		}
		return nil, lastErr
	}
	got, err := r.discoveryFlight.do("", func() (*metadata.UMAConfiguration, error) {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.callTimeout())
		defer cancel()
		got, err := r.discover(ctx)
		r.mu.Lock()
		defer r.mu.Unlock()
		if err != nil {
			r.mdFailed, r.mdErr = r.now(), err
			r.log.Log(r.failureLevel(), "UMA discovery failed", zap.String("issuer", r.issuer), zap.Error(err))
			return nil, err
		}
		r.md, r.mdFetched = got, r.now()
		return got, nil
	})
	if err != nil {
		if md != nil {
			return md, nil // keep using the previous document
		}
		return nil, err
	}
	return got, nil
}

// discover fetches the UMA discovery document. The token, permission and
// resource registration endpoints are required; an invalid jwks_uri or
// introspection_endpoint is ignored (with a warning), but one of them must
// remain.
func (r *Remote) discover(ctx context.Context) (*metadata.UMAConfiguration, error) {
	md, err := metadata.FetchUMA(ctx, r.http, r.issuer)
	if err != nil {
		return nil, unavailable("%v", err)
	}
	for _, e := range []struct{ name, url string }{
		{"token_endpoint", md.TokenEndpoint},
		{"permission_endpoint", md.PermissionEndpoint},
		{"resource_registration_endpoint", md.ResourceRegistrationEndpoint},
	} {
		if err := metadata.Endpoint(r.issuer, e.url); err != nil {
			return nil, unavailable("discovery: %s: %v", e.name, err)
		}
	}
	for _, e := range []struct {
		name string
		url  *string
	}{
		{"jwks_uri", &md.JWKSURI},
		{"introspection_endpoint", &md.IntrospectionEndpoint},
	} {
		if *e.url == "" {
			continue
		}
		if err := metadata.Endpoint(r.issuer, *e.url); err != nil {
			r.log.Warn("ignoring an invalid endpoint of the discovery document", zap.String("member", e.name), zap.Error(err))
			*e.url = ""
		}
	}
	if md.JWKSURI == "" && md.IntrospectionEndpoint == "" {
		return nil, unavailable("discovery: neither jwks_uri nor introspection_endpoint: RPTs cannot be checked")
	}
	return md, nil
}

// send performs req and reads the response body, at most maxResponseBytes.
func (r *Remote) send(req *http.Request) (int, []byte, error) {
	resp, err := r.http.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes+1))
	if err != nil {
		return 0, nil, err
	}
	if len(body) > maxResponseBytes {
		return 0, nil, fmt.Errorf("response larger than %d bytes", maxResponseBytes)
	}
	return resp.StatusCode, body, nil
}

// protectionToken returns a PAT, obtaining one when there is none or the
// current one is due for renewal. A failed renewal keeps the current PAT
// while it lasts.
func (r *Remote) protectionToken(ctx context.Context) (string, error) {
	now := r.now()
	r.mu.Lock()
	pat, renewAt, expires, failed, lastErr := r.pat, r.patRenewAt, r.patExpires, r.patFailed, r.patErr
	r.mu.Unlock()
	if pat != "" && now.Before(renewAt) {
		return pat, nil
	}
	if now.Sub(failed) < r.retry {
		if pat != "" && now.Before(expires) {
			return pat, nil
		}
		return "", lastErr
	}
	got, err := r.patFlight.do("", func() (string, error) {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.callTimeout())
		defer cancel()
		tok, lifetime, err := r.requestPAT(ctx)
		r.mu.Lock()
		defer r.mu.Unlock()
		if err != nil {
			r.patFailed, r.patErr = r.now(), err
			r.log.Log(r.failureLevel(), "obtaining a PAT failed", zap.String("issuer", r.issuer), zap.String("client_id", r.clientID), zap.Error(err))
			return "", err
		}
		t := r.now()
		r.pat = tok
		r.patRenewAt = t.Add(time.Duration(float64(lifetime) * patRenewal))
		r.patExpires = t.Add(lifetime)
		return tok, nil
	})
	if err != nil {
		if pat != "" && now.Before(expires) {
			return pat, nil
		}
		return "", err
	}
	return got, nil
}

// dropPAT forgets pat after the AS refused it, so that the next call
// obtains a new one. A PAT obtained meanwhile is kept.
func (r *Remote) dropPAT(pat string) {
	r.mu.Lock()
	if r.pat == pat {
		r.pat, r.patRenewAt, r.patExpires, r.patFailed = "", time.Time{}, time.Time{}, time.Time{}
	}
	r.mu.Unlock()
}

// requestPAT runs the client_credentials grant for scope uma_protection.
// An AS that refuses the scope (Keycloak makes uma_protection a role) is
// asked again without it.
func (r *Remote) requestPAT(ctx context.Context) (string, time.Duration, error) {
	md, err := r.metadata(ctx)
	if err != nil {
		return "", 0, err
	}
	for _, scope := range []string{"uma_protection", ""} {
		form := url.Values{"grant_type": {"client_credentials"}}
		if scope != "" {
			form.Set("scope", scope)
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, md.TokenEndpoint, strings.NewReader(form.Encode()))
		if err != nil {
			return "", 0, unavailable("token request: %v", err)
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Accept", "application/json")
		req.SetBasicAuth(url.QueryEscape(r.clientID), url.QueryEscape(r.secret))
		status, body, err := r.send(req)
		if err != nil {
			return "", 0, unavailable("token request: %v", err)
		}
		var resp struct {
			AccessToken string     `json:"access_token"`
			TokenType   string     `json:"token_type"`
			ExpiresIn   int64      `json:"expires_in"`
			Error       oauth.Code `json:"error"`
		}
		_ = json.Unmarshal(body, &resp)
		if status == http.StatusBadRequest && resp.Error == oauth.InvalidScope && scope != "" {
			continue
		}
		if status != http.StatusOK {
			return "", 0, unavailable("token endpoint answered %d %s to the client_credentials grant of %q", status, resp.Error, r.clientID)
		}
		if resp.AccessToken == "" || !strings.EqualFold(resp.TokenType, "Bearer") {
			return "", 0, unavailable("token endpoint answered no Bearer access_token")
		}
		lifetime := time.Duration(resp.ExpiresIn) * time.Second
		if lifetime <= 0 {
			lifetime = defaultPATLifetime
		}
		return resp.AccessToken, lifetime, nil
	}
	return "", 0, unavailable("the uma_protection scope was refused")
}

// protectionCall sends a protection API request with the PAT. On a 401 it
// obtains a new PAT and tries once more.
func (r *Remote) protectionCall(ctx context.Context, method, endpoint string, body []byte, contentType string) (int, []byte, error) {
	for attempt := 0; ; attempt++ {
		pat, err := r.protectionToken(ctx)
		if err != nil {
			return 0, nil, err
		}
		var rd io.Reader
		if body != nil {
			rd = bytes.NewReader(body)
		}
		req, err := http.NewRequestWithContext(ctx, method, endpoint, rd)
		if err != nil {
			return 0, nil, unavailable("%s %s: %v", method, endpoint, err)
		}
		if contentType != "" {
			req.Header.Set("Content-Type", contentType)
		}
		req.Header.Set("Accept", "application/json")
		req.Header.Set("Authorization", "Bearer "+pat)
		status, respBody, err := r.send(req)
		if err != nil {
			return 0, nil, unavailable("%s %s: %v", method, endpoint, err)
		}
		if status == http.StatusUnauthorized && attempt == 0 {
			r.dropPAT(pat)
			continue
		}
		return status, respBody, nil
	}
}

// oauthErrorCode returns the error member of an OAuth error body.
func oauthErrorCode(body []byte) oauth.Code {
	var e struct {
		Error oauth.Code `json:"error"`
	}
	_ = json.Unmarshal(body, &e)
	return e.Error
}

// RequestTicket posts the permission request: one object, or an array for
// several permissions, with the request context as the "claims" member of
// the first (Keycloak's extension, which our AS reads too).
func (r *Remote) RequestTicket(ctx context.Context, perms []Permission, request map[string][]string) (string, error) {
	md, err := r.metadata(ctx)
	if err != nil {
		return "", err
	}
	type permissionRequest struct {
		ResourceID     string              `json:"resource_id"`
		ResourceScopes []string            `json:"resource_scopes"`
		Claims         map[string][]string `json:"claims,omitempty"`
	}
	reqs := make([]permissionRequest, 0, len(perms))
	for i, p := range perms {
		pr := permissionRequest{ResourceID: p.ResourceID, ResourceScopes: nonNil(p.Scopes)}
		if i == 0 && len(request) > 0 {
			pr.Claims = request
		}
		reqs = append(reqs, pr)
	}
	var body []byte
	if len(reqs) == 1 {
		body, err = json.Marshal(reqs[0])
	} else {
		body, err = json.Marshal(reqs)
	}
	if err != nil {
		return "", err
	}
	status, resp, err := r.protectionCall(ctx, http.MethodPost, md.PermissionEndpoint, body, "application/json")
	if err != nil {
		return "", err
	}
	if status == http.StatusBadRequest && oauthErrorCode(resp) == oauth.InvalidResourceID {
		return "", fmt.Errorf("%w: the permission endpoint answered invalid_resource_id", ErrUnknownResource)
	}
	if status != http.StatusCreated && status != http.StatusOK {
		return "", unavailable("the permission endpoint answered %d %s", status, oauthErrorCode(resp))
	}
	var tk struct {
		Ticket string `json:"ticket"`
	}
	if err := json.Unmarshal(resp, &tk); err != nil || tk.Ticket == "" {
		return "", unavailable("the permission endpoint answered no ticket")
	}
	return tk.Ticket, nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// resourceDescription is a resource as the registration endpoint returns
// it, read leniently: scopes as strings or {"name": ...} objects (Keycloak),
// the owner as a string or an {"id", "name"} object.
type resourceDescription struct {
	ID     string            `json:"_id"`
	Name   string            `json:"name"`
	Type   string            `json:"type"`
	Scopes []json.RawMessage `json:"resource_scopes"`
	URIs   []string          `json:"uris"`
	Owner  json.RawMessage   `json:"owner"`
}

func (d resourceDescription) scopes() []string {
	var out []string
	for _, raw := range d.Scopes {
		var s string
		if json.Unmarshal(raw, &s) != nil {
			var obj struct {
				Name string `json:"name"`
			}
			if json.Unmarshal(raw, &obj) != nil {
				continue
			}
			s = obj.Name
		}
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}

// owners returns the names the owner member gives the owner.
func (d resourceDescription) owners() []string {
	var s string
	if json.Unmarshal(d.Owner, &s) == nil {
		return []string{s}
	}
	var obj struct {
		ID   string `json:"id"`
		Name string `json:"name"`
	}
	if json.Unmarshal(d.Owner, &obj) == nil {
		return []string{obj.ID, obj.Name}
	}
	return nil
}

// EnsureResource finds the resource registered under (owner, name) with
// the list filters name and owner (an extension that our AS and Keycloak
// support; the description read back is checked either way), and
// registers it when there is none. Concurrent calls in this process for one
// name share one registration; two processes that register the same name
// at the same moment may still create two resources.
func (r *Remote) EnsureResource(ctx context.Context, res Resource) (string, error) {
	return r.registeredFlight.do(res.Owner+"\x00"+res.Name+"\x00"+res.Type, func() (string, error) {
		md, err := r.metadata(ctx)
		if err != nil {
			return "", err
		}
		base := strings.TrimSuffix(md.ResourceRegistrationEndpoint, "/")
		q := url.Values{"name": {res.Name}, "exactName": {"true"}, "owner": {res.Owner}}
		status, body, err := r.protectionCall(ctx, http.MethodGet, base+"?"+q.Encode(), nil, "")
		if err != nil {
			return "", err
		}
		if status != http.StatusOK {
			return "", unavailable("listing resources answered %d %s", status, oauthErrorCode(body))
		}
		var ids []string
		if err := json.Unmarshal(body, &ids); err != nil {
			return "", unavailable("listing resources: not an array of ids")
		}
		for i, id := range ids {
			if i >= 20 {
				break
			}
			desc, raw, err := r.readResource(ctx, base, id)
			if errors.Is(err, ErrUnknownResource) {
				continue
			}
			if err != nil {
				return "", err
			}
			if desc.Name != res.Name || !slices.Contains(desc.owners(), res.Owner) {
				continue
			}
			if err := r.addScopes(ctx, base, id, desc, raw, res.Scopes); err != nil {
				return "", err
			}
			return id, nil
		}
		return r.createResource(ctx, base, res)
	})
}

// readResource reads one resource description, and its raw members.
func (r *Remote) readResource(ctx context.Context, base, id string) (resourceDescription, map[string]json.RawMessage, error) {
	var desc resourceDescription
	status, body, err := r.protectionCall(ctx, http.MethodGet, base+"/"+url.PathEscape(id), nil, "")
	if err != nil {
		return desc, nil, err
	}
	if status == http.StatusNotFound {
		return desc, nil, ErrUnknownResource
	}
	if status != http.StatusOK {
		return desc, nil, unavailable("reading a resource answered %d %s", status, oauthErrorCode(body))
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(body, &desc); err != nil {
		return desc, nil, unavailable("reading a resource: %v", err)
	}
	_ = json.Unmarshal(body, &raw)
	if desc.ID == "" {
		desc.ID = id
	}
	return desc, raw, nil
}

// addScopes updates a resource that lacks some of scopes, keeping every
// other member as it was (PUT is a full replacement).
func (r *Remote) addScopes(ctx context.Context, base, id string, desc resourceDescription, raw map[string]json.RawMessage, scopes []string) error {
	have := desc.scopes()
	merged := slices.Clone(have)
	for _, s := range scopes {
		if !slices.Contains(merged, s) {
			merged = append(merged, s)
		}
	}
	if len(merged) == len(have) {
		return nil
	}
	enc, _ := json.Marshal(merged)
	raw["resource_scopes"] = enc
	delete(raw, "user_access_policy_uri")
	body, err := json.Marshal(raw)
	if err != nil {
		return err
	}
	status, resp, err := r.protectionCall(ctx, http.MethodPut, base+"/"+url.PathEscape(id), body, "application/json")
	if err != nil {
		return err
	}
	if status != http.StatusOK && status != http.StatusCreated && status != http.StatusNoContent {
		return unavailable("updating the scopes of a resource answered %d %s", status, oauthErrorCode(resp))
	}
	r.log.Info("added scopes to a registered resource", zap.String("resource_id", id), zap.Strings("scopes", merged))
	return nil
}

func (r *Remote) createResource(ctx context.Context, base string, res Resource) (string, error) {
	desc := map[string]any{
		"name":            res.Name,
		"resource_scopes": nonNil(res.Scopes),
		"owner":           res.Owner,
		// Keycloak: let the owner manage access (UMA sharing).
		"ownerManagedAccess": true,
	}
	if res.Type != "" {
		desc["type"] = res.Type
	}
	body, err := json.Marshal(desc)
	if err != nil {
		return "", err
	}
	status, resp, err := r.protectionCall(ctx, http.MethodPost, base+"/", body, "application/json")
	if err != nil {
		return "", err
	}
	if status != http.StatusCreated && status != http.StatusOK {
		return "", unavailable("registering a resource answered %d %s", status, oauthErrorCode(resp))
	}
	var created struct {
		ID string `json:"_id"`
	}
	if err := json.Unmarshal(resp, &created); err != nil || created.ID == "" {
		return "", unavailable("registering a resource answered no _id")
	}
	r.log.Info("resource registered on first sight", zap.String("resource_id", created.ID), zap.String("owner", res.Owner))
	return created.ID, nil
}

// RegisteredResources lists this resource server's resources and reads
// each (at most maxRegisteredResources), keeping those with uris.
func (r *Remote) RegisteredResources(ctx context.Context) ([]Resource, error) {
	md, err := r.metadata(ctx)
	if err != nil {
		return nil, err
	}
	base := strings.TrimSuffix(md.ResourceRegistrationEndpoint, "/")
	status, body, err := r.protectionCall(ctx, http.MethodGet, base+"/", nil, "")
	if err != nil {
		return nil, err
	}
	if status != http.StatusOK {
		return nil, unavailable("listing resources answered %d %s", status, oauthErrorCode(body))
	}
	var ids []string
	if err := json.Unmarshal(body, &ids); err != nil {
		return nil, unavailable("listing resources: not an array of ids")
	}
	if len(ids) > maxRegisteredResources {
		r.log.Warn("too many registered resources: only the first are matched by uris",
			zap.Int("resources", len(ids)), zap.Int("limit", maxRegisteredResources))
		ids = ids[:maxRegisteredResources]
	}
	var out []Resource
	for _, id := range ids {
		desc, _, err := r.readResource(ctx, base, id)
		if errors.Is(err, ErrUnknownResource) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if len(desc.URIs) == 0 {
			continue
		}
		owner := ""
		if o := desc.owners(); len(o) > 0 {
			owner = o[0]
		}
		out = append(out, Resource{ID: desc.ID, Owner: owner, Name: desc.Name, Type: desc.Type, Scopes: desc.scopes(), URIs: desc.URIs})
	}
	return out, nil
}

// RecheckInterval is the revocation check interval: negative when
// revocation checks are off.
func (r *Remote) RecheckInterval() time.Duration { return r.revocationCheck }

// VerifyRPT checks an RPT. A JWT is first verified locally with the AS's
// JWKS (signature, iss, aud, exp, nbf); unless revocation checks are off,
// it is then introspected, which also tells whether it was revoked. The
// introspection answer can only narrow what the JWT says (see narrow): the
// requesting party and the client stay the JWT's, which matters with
// Keycloak, whose RPT introspection names neither. Opaque RPTs, and JWTs
// while the AS's keys cannot be had, are introspected only.
func (r *Remote) VerifyRPT(ctx context.Context, token string) (*RPT, error) {
	md, err := r.metadata(ctx)
	if err != nil {
		return nil, err
	}
	if strings.Count(token, ".") == 2 && md.JWKSURI != "" {
		rpt, err := r.verifyJWT(ctx, md, token)
		switch {
		case errors.Is(err, ErrInvalidRPT):
			return nil, err
		case err != nil && md.IntrospectionEndpoint == "":
			return nil, err
		case err == nil && (r.revocationCheck < 0 || md.IntrospectionEndpoint == ""):
			return rpt, nil
		case err == nil:
			in, err := r.introspect(ctx, md, token)
			if err != nil {
				return nil, err
			}
			return narrow(rpt, in)
		}
		// Keys unavailable: introspect.
	}
	if md.IntrospectionEndpoint == "" {
		return nil, ErrInvalidRPT // an opaque token the AS offers no way to check
	}
	return r.introspect(ctx, md, token)
}

// Recheck introspects a cached RPT again; a JWT verified locally keeps its
// identity and is narrowed by the answer.
func (r *Remote) Recheck(ctx context.Context, token string, rpt *RPT) (*RPT, error) {
	md, err := r.metadata(ctx)
	if err != nil {
		return nil, err
	}
	if md.IntrospectionEndpoint == "" {
		return rpt, nil
	}
	in, err := r.introspect(ctx, md, token)
	if err != nil {
		return nil, err
	}
	if rpt.verified != nil {
		return narrow(rpt.verified, in)
	}
	return in, nil
}

// narrow returns the locally verified JWT RPT v as the introspection
// answer in allows it: introspection can revoke and narrow, never widen or
// change who the token is for. The subject, the client and the id stay
// v's (an answer that names another one revokes the token); each of v's
// permissions keeps the scopes that an introspected permission on the same
// resource also grants, within both of their time bounds, and is dropped
// when the answer has none on its resource; the expiry is the earlier.
func narrow(v, in *RPT) (*RPT, error) {
	for _, pair := range [][2]string{{v.Subject, in.Subject}, {v.ClientID, in.ClientID}, {v.ID, in.ID}} {
		if pair[1] != "" && pair[1] != pair[0] {
			return nil, fmt.Errorf("%w: introspection describes another token", ErrInvalidRPT)
		}
	}
	out := &RPT{ID: v.ID, Subject: v.Subject, ClientID: v.ClientID, ExpiresAt: earlier(v.ExpiresAt, in.ExpiresAt), verified: v}
	for _, p := range v.Permissions {
		for _, q := range in.Permissions {
			if q.ResourceID != p.ResourceID {
				continue
			}
			var scopes []string
			for _, s := range p.Scopes {
				if slices.Contains(q.Scopes, s) {
					scopes = append(scopes, s)
				}
			}
			if len(scopes) == 0 && len(p.Scopes) > 0 {
				continue
			}
			nbf := p.NotBefore
			if q.NotBefore.After(nbf) {
				nbf = q.NotBefore
			}
			out.Permissions = append(out.Permissions, Permission{
				ResourceID: p.ResourceID, Scopes: scopes, ExpiresAt: earlier(p.ExpiresAt, q.ExpiresAt), NotBefore: nbf,
			})
		}
	}
	return out, nil
}

// earlier returns the earlier of two bounds, zero meaning none.
func earlier(a, b time.Time) time.Time {
	if a.IsZero() || (!b.IsZero() && b.Before(a)) {
		return b
	}
	return a
}

// rptClaims are the members of a JWT RPT or of an introspection response
// that make an RPT: the permissions are ours (permissions) or Keycloak's
// (authorization.permissions), read leniently (Keycloak names their
// members rsid and scopes).
type rptClaims struct {
	Subject       string            `json:"sub"`
	ClientID      string            `json:"client_id"`
	AZP           string            `json:"azp"`
	ExpiresAt     float64           `json:"exp"`
	NotBefore     float64           `json:"nbf"`
	JTI           string            `json:"jti"`
	Permissions   *[]wirePermission `json:"permissions"`
	Authorization struct {
		Permissions *[]wirePermission `json:"permissions"`
	} `json:"authorization"`
}

// rpt maps the claims onto an RPT: the client is client_id, else azp
// (Keycloak); the RPT's nbf bounds each permission's. Claims without
// permissions are an access token but not an RPT (Federated Authorization
// section 5.1 requires them of an active RPT): ErrInvalidRPT.
func (c *rptClaims) rpt() (*RPT, error) {
	perms := c.Permissions
	if perms == nil {
		perms = c.Authorization.Permissions
	}
	if perms == nil {
		return nil, ErrInvalidRPT
	}
	rpt := &RPT{ID: c.JTI, Subject: c.Subject, ClientID: c.ClientID}
	if rpt.ClientID == "" {
		rpt.ClientID = c.AZP
	}
	if c.ExpiresAt > 0 {
		rpt.ExpiresAt = time.Unix(int64(c.ExpiresAt), 0)
	}
	var nbf time.Time
	if c.NotBefore > 0 {
		nbf = time.Unix(int64(c.NotBefore), 0)
	}
	for _, p := range *perms {
		perm := p.permission()
		if !nbf.IsZero() && (perm.NotBefore.IsZero() || perm.NotBefore.Before(nbf)) {
			perm.NotBefore = nbf
		}
		rpt.Permissions = append(rpt.Permissions, perm)
	}
	return rpt, nil
}

// introspection is an RFC 7662 response with UMA permissions.
type introspection struct {
	rptClaims
	Active   bool            `json:"active"`
	Issuer   string          `json:"iss"`
	Audience json.RawMessage `json:"aud"`
}

// wirePermission is a permission of an RPT or an introspection response.
type wirePermission struct {
	ResourceID     string   `json:"resource_id"`
	RSID           string   `json:"rsid"`
	ResourceScopes []string `json:"resource_scopes"`
	Scopes         []string `json:"scopes"`
	ExpiresAt      float64  `json:"exp"`
	NotBefore      float64  `json:"nbf"`
}

func (p wirePermission) permission() Permission {
	out := Permission{ResourceID: p.ResourceID, Scopes: p.ResourceScopes}
	if out.ResourceID == "" {
		out.ResourceID = p.RSID
	}
	if out.Scopes == nil {
		out.Scopes = p.Scopes
	}
	if p.ExpiresAt > 0 {
		out.ExpiresAt = time.Unix(int64(p.ExpiresAt), 0)
	}
	if p.NotBefore > 0 {
		out.NotBefore = time.Unix(int64(p.NotBefore), 0)
	}
	return out
}

// audiences reads an aud member: a string or an array of strings.
func audiences(raw json.RawMessage) []string {
	if len(raw) == 0 {
		return nil
	}
	var one string
	if json.Unmarshal(raw, &one) == nil {
		return []string{one}
	}
	var many []string
	_ = json.Unmarshal(raw, &many)
	return many
}

func (r *Remote) introspect(ctx context.Context, md *metadata.UMAConfiguration, token string) (*RPT, error) {
	form := url.Values{"token": {token}, "token_type_hint": {"requesting_party_token"}}
	body := []byte(form.Encode())
	const ct = "application/x-www-form-urlencoded"

	r.mu.Lock()
	basic := r.introspectBasic
	r.mu.Unlock()
	var status int
	var resp []byte
	var err error
	if !basic {
		status, resp, err = r.protectionCall(ctx, http.MethodPost, md.IntrospectionEndpoint, body, ct)
		if err != nil {
			return nil, err
		}
	}
	if basic || status == http.StatusUnauthorized || status == http.StatusForbidden {
		// Keycloak authenticates introspection callers as clients.
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, md.IntrospectionEndpoint, bytes.NewReader(body))
		if err != nil {
			return nil, unavailable("introspection: %v", err)
		}
		req.Header.Set("Content-Type", ct)
		req.Header.Set("Accept", "application/json")
		req.SetBasicAuth(url.QueryEscape(r.clientID), url.QueryEscape(r.secret))
		if status, resp, err = r.send(req); err != nil {
			return nil, unavailable("introspection: %v", err)
		}
		if status == http.StatusOK && !basic {
			r.mu.Lock()
			r.introspectBasic = true
			r.mu.Unlock()
		}
	}
	if status != http.StatusOK {
		return nil, unavailable("introspection answered %d %s", status, oauthErrorCode(resp))
	}
	var in introspection
	if err := json.Unmarshal(resp, &in); err != nil {
		return nil, unavailable("introspection: decoding: %v", err)
	}
	now := r.now()
	switch {
	case !in.Active:
		return nil, ErrInvalidRPT
	case in.Issuer != "" && in.Issuer != r.issuer:
		return nil, ErrInvalidRPT
	case len(in.Audience) > 0 && !slices.Contains(audiences(in.Audience), r.clientID):
		return nil, ErrInvalidRPT
	case in.ExpiresAt > 0 && !now.Before(time.Unix(int64(in.ExpiresAt), 0)):
		return nil, ErrInvalidRPT
	}
	return in.rpt()
}
