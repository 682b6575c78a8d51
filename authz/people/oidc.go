package people

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"time"

	"go.uber.org/zap"
	"golang.org/x/oauth2"

	"github.com/caddy-uma/caddy-uma/authz"
	"github.com/caddy-uma/caddy-uma/authz/claimtoken"
	"github.com/caddy-uma/caddy-uma/authz/metadata"
	"github.com/caddy-uma/caddy-uma/authz/oauth"
	"github.com/caddy-uma/caddy-uma/authz/secret"
	"github.com/caddy-uma/caddy-uma/authz/urlcheck"
)

// Login through an upstream OpenID Connect provider: the authorization
// code flow with PKCE (S256), state and nonce. The provider's
// configuration is discovered on first use (and again after a failure, at
// most every oidcRetryInterval); its ID tokens are verified with jwx v3
// through package claimtoken: signature under the provider's JWKS (fetched
// and refreshed, re-fetched on an unknown kid), iss equal to the
// configured issuer, aud holding our client id (and azp equal to it when
// there are several audiences), exp, iat, and the nonce of this login.

// oidcRetryInterval is the least time between two discovery attempts.
const oidcRetryInterval = 10 * time.Second

// oidcPendingTTL is how long a login at the provider may take.
const oidcPendingTTL = 10 * time.Minute

// oidcPending is a login at the provider in progress, kept in the
// browser's session.
type oidcPending struct {
	State    string `json:"state"`
	Nonce    string `json:"nonce"`
	Verifier string `json:"verifier"`
	Next     string `json:"next"`
	Expires  int64  `json:"exp"`
}

// oidcClient is the AS as a client of the upstream provider.
type oidcClient struct {
	cfg         OIDCLogin
	redirectURI string
	http        *http.Client
	now         func() time.Time
	log         *zap.Logger
	ctx         context.Context
	cancel      context.CancelFunc

	mu       sync.Mutex
	meta     *metadata.OpenIDConfiguration
	verifier *claimtoken.Verifier
	lastTry  time.Time
	lastErr  error
}

func newOIDCClient(ctx context.Context, cfg OIDCLogin, redirectURI string, hc *http.Client, now func() time.Time, log *zap.Logger) (*oidcClient, error) {
	u, err := url.Parse(cfg.Issuer)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("issuer %q must be an absolute http(s) URL without query or fragment", cfg.Issuer)
	}
	if u.Scheme == "http" && !urlcheck.Loopback(u.Hostname()) {
		return nil, fmt.Errorf("issuer %q must use https (http only on loopback)", cfg.Issuer)
	}
	if cfg.ClientID == "" {
		return nil, errors.New("client_id is required")
	}
	if hc == nil {
		hc = &http.Client{Timeout: 10 * time.Second}
	}
	if len(cfg.Scopes) == 0 {
		cfg.Scopes = []string{"email", "profile"}
	}
	octx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	return &oidcClient{cfg: cfg, redirectURI: redirectURI, http: hc, now: now, log: log, ctx: octx, cancel: cancel}, nil
}

func (o *oidcClient) close() {
	o.cancel()
	o.mu.Lock()
	v := o.verifier
	o.mu.Unlock()
	if v != nil {
		_ = v.Close()
	}
}

// displayName is the provider's name on the login button.
func (o *oidcClient) displayName() string {
	if o.cfg.Name != "" {
		return o.cfg.Name
	}
	if u, err := url.Parse(o.cfg.Issuer); err == nil {
		return u.Host
	}
	return o.cfg.Issuer
}

// metadata returns the provider's configuration and an ID token verifier,
// discovering them if needed.
func (o *oidcClient) metadata(ctx context.Context) (*metadata.OpenIDConfiguration, *claimtoken.Verifier, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.meta != nil {
		return o.meta, o.verifier, nil
	}
	if !o.lastTry.IsZero() && o.now().Sub(o.lastTry) < oidcRetryInterval {
		return nil, nil, o.lastErr
	}
	o.lastTry = o.now()
	meta, err := o.discover(ctx)
	if err == nil {
		o.verifier, err = claimtoken.NewVerifier(o.ctx, []claimtoken.Issuer{{
			Issuer: o.cfg.Issuer, JWKSURI: meta.JWKSURI, Audiences: []string{o.cfg.ClientID},
		}}, claimtoken.Options{HTTPClient: o.http, Now: o.now, Logger: o.log})
	}
	if err != nil {
		o.lastErr = err
		o.log.Warn("OpenID provider discovery failed", zap.String("issuer", o.cfg.Issuer), zap.Error(err))
		return nil, nil, err
	}
	o.meta = meta
	return meta, o.verifier, nil
}

func (o *oidcClient) discover(ctx context.Context) (*metadata.OpenIDConfiguration, error) {
	meta, err := metadata.FetchOpenID(ctx, o.http, o.cfg.Issuer)
	if err != nil {
		return nil, err
	}
	if meta.AuthorizationEndpoint == "" || meta.TokenEndpoint == "" {
		return nil, fmt.Errorf("the configuration of %q has no authorization_endpoint or token_endpoint: the code flow needs both", o.cfg.Issuer)
	}
	return meta, nil
}

// oauth2Config is the provider as golang.org/x/oauth2 sees it: the code
// flow's endpoints, the AS's client and the scopes asked for.
func (o *oidcClient) oauth2Config(meta *metadata.OpenIDConfiguration) *oauth2.Config {
	c := &oauth2.Config{
		ClientID:     o.cfg.ClientID,
		ClientSecret: o.cfg.ClientSecret,
		Endpoint:     oauth2.Endpoint{AuthURL: meta.AuthorizationEndpoint, TokenURL: meta.TokenEndpoint, AuthStyle: oauth2.AuthStyleInHeader},
		RedirectURL:  o.redirectURI,
		Scopes:       append([]string{"openid"}, o.cfg.Scopes...),
	}
	if o.cfg.ClientSecret == "" {
		// A public client names itself in the body (PKCE only).
		c.Endpoint.AuthStyle = oauth2.AuthStyleInParams
	}
	return c
}

// serveLoginOIDC starts a login at the provider: it keeps state, nonce and
// PKCE verifier in the browser's session and redirects there.
func (s *Site) serveLoginOIDC(w http.ResponseWriter, r *http.Request) {
	o := s.oidc
	meta, _, err := o.metadata(r.Context())
	if err != nil {
		s.renderError(w, http.StatusBadGateway, "The identity provider is unavailable",
			"The identity provider "+o.displayName()+" cannot be reached. Try again in a moment.")
		return
	}
	sess, err := s.ensureSession(w, r)
	if err != nil {
		s.renderServerError(w, "starting a session", err)
		return
	}
	pending := &oidcPending{
		State: secret.New(24), Nonce: secret.New(24), Verifier: oauth2.GenerateVerifier(),
		Next: s.safeNext(r.URL.Query().Get("next")), Expires: s.now().Add(oidcPendingTTL).Unix(),
	}
	sess.OIDC = pending
	if err := s.saveSession(r.Context(), sess); err != nil {
		s.renderServerError(w, "saving a session", err)
		return
	}
	target := o.oauth2Config(meta).AuthCodeURL(pending.State,
		oauth2.S256ChallengeOption(pending.Verifier), oauth2.SetAuthURLParam("nonce", pending.Nonce))
	oauth.NoStore(w.Header())
	http.Redirect(w, r, target, http.StatusFound)
}

// serveLoginCallback completes a login at the provider: it checks the
// state against the session, exchanges the code (with the PKCE verifier),
// verifies the ID token and logs the person in.
func (s *Site) serveLoginCallback(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	sess, err := s.loadSession(r)
	if err != nil {
		s.renderServerError(w, "reading a session", err)
		return
	}
	failed := func(msg string) {
		s.renderError(w, http.StatusBadRequest, "The login did not complete", msg)
	}
	if sess == nil || sess.OIDC == nil || !secret.Equal(q.Get("state"), sess.OIDC.State) {
		failed("This login was not started in this browser, or it was already completed. Start again from the login page.")
		return
	}
	pending := *sess.OIDC
	sess.OIDC = nil // single use
	if err := s.saveSession(r.Context(), sess); err != nil {
		s.renderServerError(w, "saving a session", err)
		return
	}
	if s.now().Unix() >= pending.Expires {
		failed("The login took too long. Start again from the login page.")
		return
	}
	if e := q.Get("error"); e != "" {
		s.log.Info("OpenID login refused by the provider", zap.String("error", e))
		failed("The identity provider did not log you in (" + e + ").")
		return
	}
	code := q.Get("code")
	if code == "" {
		failed("The identity provider sent no authorization code.")
		return
	}
	p, err := s.oidc.exchange(r.Context(), code, pending)
	if err != nil {
		s.log.Warn("OpenID login failed", zap.Error(err))
		failed("The identity provider's answer could not be verified.")
		return
	}
	p.AuthTime = s.now().Unix()
	s.loginAs(w, r, sess, p, pending.Next)
}

// idTokenClaimsDropped are ID token claims that say nothing about the
// person.
var idTokenClaimsDropped = []string{"aud", "exp", "iat", "nbf", "nonce", "at_hash", "c_hash", "auth_time", "azp", "sid", "jti", "acr", "amr"}

// exchange redeems an authorization code at the provider and returns the
// person of its verified ID token.
func (o *oidcClient) exchange(ctx context.Context, code string, pending oidcPending) (*person, error) {
	meta, verifier, err := o.metadata(ctx)
	if err != nil {
		return nil, err
	}
	ctx = context.WithValue(ctx, oauth2.HTTPClient, o.http)
	tok, err := o.oauth2Config(meta).Exchange(ctx, code, oauth2.VerifierOption(pending.Verifier))
	if err != nil {
		return nil, fmt.Errorf("redeeming the code: %w", err)
	}
	idToken, _ := tok.Extra("id_token").(string)
	if idToken == "" {
		return nil, errors.New("the token response has no id_token")
	}
	claims, err := verifier.Verify(ctx, claimtoken.FormatIDToken, idToken, o.cfg.ClientID)
	if err != nil {
		return nil, fmt.Errorf("verifying the ID token: %w", err)
	}
	nonce, _ := claims.Values["nonce"].(string)
	if !secret.Equal(nonce, pending.Nonce) {
		return nil, errors.New("the ID token's nonce is not this login's")
	}
	// aud and azp were checked for this client by the verifier.
	if claims.Subject == "" || !authz.ValidSubject(claims.Subject) {
		return nil, errors.New("the ID token has no usable sub")
	}
	p := &person{Subject: claims.Subject, Issuer: claims.Issuer, Method: "oidc", Claims: map[string]any{}}
	for k, v := range claims.Values {
		if !slices.Contains(idTokenClaimsDropped, k) {
			p.Claims[k] = v
		}
	}
	p.Name, _ = claims.Values["name"].(string)
	if p.Name == "" {
		p.Name, _ = claims.Values["preferred_username"].(string)
	}
	// As in the rules' library, an address counts unless the provider
	// says it is not verified.
	p.Email, _ = claims.Values["email"].(string)
	p.EmailVerified = true
	if v, ok := claims.Values["email_verified"]; ok {
		p.EmailVerified = v == true || v == "true"
	}
	if gs, ok := claims.Values["groups"].([]any); ok {
		for _, g := range gs {
			if str, ok := g.(string); ok {
				p.Groups = append(p.Groups, str)
			}
		}
	}
	return p, nil
}
