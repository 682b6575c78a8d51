package caddymodule

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/caddy-uma/caddy-uma/authz/oauth"
	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
	"go.uber.org/zap"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func init() {
	caddy.RegisterModule(DemoIdP{})
	httpcaddyfile.RegisterHandlerDirective("uma_demo_idp", parseDemoIdP)
	httpcaddyfile.RegisterDirectiveOrder("uma_demo_idp", httpcaddyfile.Before, "invoke")
}

// DemoIdP is a tiny OpenID provider for demos and tests: it mints a signed
// ID token for whoever asks, for any subject, e-mail address and audience.
// It exists so that the UMA flow can be walked with curl (push the token
// as a claim token at the token endpoint, with the uma app trusting this
// issuer). NEVER use it in production: anyone who reaches it can become
// anyone.
//
// Under the path of its issuer URL it serves:
//
//	GET  {issuer}/.well-known/openid-configuration   issuer and jwks_uri
//	GET  {issuer}/jwks                               its public key
//	POST {issuer}/id_token                           form: sub, aud (required), email,
//	                                                 email_verified (default true), name,
//	                                                 groups (repeatable) -> {"id_token": ...}
//
// and passes every other request to the next handler. Its ES256 key is
// generated when the first config that names the issuer loads and kept in
// memory (across reloads, not restarts).
type DemoIdP struct {
	// Issuer is the issuer URL of the ID tokens (required); the endpoints
	// live under its path.
	Issuer string `json:"issuer,omitempty"`

	// TokenTTL is the lifetime of the ID tokens. Default: 5m.
	TokenTTL caddy.Duration `json:"token_ttl,omitempty"`

	issuer string
	path   string // the issuer's path, without a trailing slash
	key    *demoKey
	logger *zap.Logger
}

// demoKey is an in-memory signing key, shared across reloads.
type demoKey struct {
	kid     string
	private *ecdsa.PrivateKey
	jwks    []byte
}

// Destruct forgets the key.
func (*demoKey) Destruct() error { return nil }

// demoKeys holds the keys of the demo issuers, keyed by issuer.
var demoKeys = caddy.NewUsagePool()

// CaddyModule returns the Caddy module information.
func (DemoIdP) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.uma_demo_idp",
		New: func() caddy.Module { return new(DemoIdP) },
	}
}

// Provision loads or generates the signing key.
func (p *DemoIdP) Provision(ctx caddy.Context) error {
	p.logger = ctx.Logger()
	p.issuer = strings.TrimSuffix(caddy.NewReplacer().ReplaceKnown(p.Issuer, ""), "/")
	u, err := url.Parse(p.issuer)
	if err != nil || !u.IsAbs() || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("uma_demo_idp: issuer %q must be an absolute http(s) URL without query", p.Issuer)
	}
	p.path = strings.TrimSuffix(u.EscapedPath(), "/")
	val, _, err := demoKeys.LoadOrNew(p.issuer, newDemoKey)
	if err != nil {
		return fmt.Errorf("uma_demo_idp: %w", err)
	}
	p.key = val.(*demoKey)
	p.logger.Warn("uma_demo_idp mints ID tokens for anyone who asks: for demos only, never in production",
		zap.String("issuer", p.issuer))
	return nil
}

// ServeHTTP serves the provider's endpoints and passes anything else on.
func (p *DemoIdP) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	rel, ok := strings.CutPrefix(r.URL.Path, p.path)
	if !ok {
		return next.ServeHTTP(w, r)
	}
	switch rel {
	case "/.well-known/openid-configuration":
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			return caddyhttp.Error(http.StatusMethodNotAllowed, errors.New("use GET"))
		}
		oauth.WriteJSON(w, http.StatusOK, map[string]any{
			"issuer":                                p.issuer,
			"jwks_uri":                              p.issuer + "/jwks",
			"id_token_endpoint":                     p.issuer + "/id_token",
			"id_token_signing_alg_values_supported": []string{"ES256"},
			"subject_types_supported":               []string{"public"},
			"response_types_supported":              []string{"id_token"},
		})
	case "/jwks":
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			return caddyhttp.Error(http.StatusMethodNotAllowed, errors.New("use GET"))
		}
		w.Header().Set("Content-Type", "application/jwk-set+json")
		_, _ = w.Write(p.key.jwks)
	case "/id_token":
		return p.mint(w, r)
	default:
		return next.ServeHTTP(w, r)
	}
	return nil
}

// Cleanup releases the key.
func (p *DemoIdP) Cleanup() error {
	if p.key == nil {
		return nil
	}
	p.key = nil
	_, err := demoKeys.Delete(p.issuer)
	return err
}

// mint answers POST {issuer}/id_token with a signed ID token.
func (p *DemoIdP) mint(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		return caddyhttp.Error(http.StatusMethodNotAllowed, errors.New("use POST"))
	}
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	if err := r.ParseForm(); err != nil {
		oauth.WriteError(w, oauth.ErrInvalidRequest("a form body is expected"))
		return nil
	}
	f := r.PostForm
	sub, aud := f.Get("sub"), f.Get("aud")
	if sub == "" || aud == "" {
		oauth.WriteError(w, oauth.ErrInvalidRequest("sub and aud are required"))
		return nil
	}
	ttl := time.Duration(p.TokenTTL)
	if ttl <= 0 {
		ttl = 5 * time.Minute
	}
	now := time.Now()
	claims := map[string]any{
		"iss": p.issuer, "sub": sub, "aud": aud,
		"iat": now.Unix(), "exp": now.Add(ttl).Unix(),
	}
	if email := f.Get("email"); email != "" {
		claims["email"] = email
		claims["email_verified"] = f.Get("email_verified") != "false"
	}
	if name := f.Get("name"); name != "" {
		claims["name"] = name
	}
	if groups := f["groups"]; len(groups) > 0 {
		claims["groups"] = groups
	}
	tok, err := p.sign(claims)
	if err != nil {
		p.logger.Error("minting a demo ID token", zap.Error(err))
		oauth.WriteError(w, oauth.ErrServer("could not sign the ID token", err))
		return nil
	}
	p.logger.Info("minted a demo ID token", zap.String("sub", sub), zap.String("aud", aud))
	oauth.WriteJSON(w, http.StatusOK, map[string]any{
		"id_token": string(tok), "token_type": "N_A", "expires_in": int(ttl.Seconds()),
	})
	return nil
}

// sign signs claims as an ID token with the provider's key.
func (p *DemoIdP) sign(claims map[string]any) ([]byte, error) {
	payload, err := json.Marshal(claims)
	if err != nil {
		return nil, err
	}
	hdr := jws.NewHeaders()
	if err := hdr.Set(jws.KeyIDKey, p.key.kid); err != nil {
		return nil, err
	}
	if err := hdr.Set(jws.TypeKey, "JWT"); err != nil {
		return nil, err
	}
	tok, err := jws.Sign(payload, jws.WithKey(jwa.ES256(), p.key.private, jws.WithProtectedHeaders(hdr)))
	if err != nil {
		return nil, fmt.Errorf("signing an ID token: %w", err)
	}
	return tok, nil
}

// newDemoKey generates an ES256 key and its JWKS.
func newDemoKey() (caddy.Destructor, error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		return nil, err
	}
	k := &demoKey{kid: "demo-" + hex.EncodeToString(b), private: priv}
	pub, err := jwk.Import(priv.Public())
	if err != nil {
		return nil, err
	}
	for name, v := range map[string]any{jwk.KeyIDKey: k.kid, jwk.AlgorithmKey: jwa.ES256(), jwk.KeyUsageKey: jwk.ForSignature} {
		if err := pub.Set(name, v); err != nil {
			return nil, err
		}
	}
	set := jwk.NewSet()
	if err := set.AddKey(pub); err != nil {
		return nil, err
	}
	if k.jwks, err = json.Marshal(set); err != nil {
		return nil, err
	}
	return k, nil
}

// parseDemoIdP sets up the uma_demo_idp handler; see
// DemoIdP.UnmarshalCaddyfile.
func parseDemoIdP(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	p := new(DemoIdP)
	err := p.UnmarshalCaddyfile(h.Dispenser)
	return p, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	uma_demo_idp [<matcher>] <issuer_url> {
//	    token_ttl <duration>
//	}
//
// A demo OpenID provider, for demos and tests only: it mints ID tokens for
// anyone who asks. It serves <issuer_url>/.well-known/openid-configuration,
// <issuer_url>/jwks and POST <issuer_url>/id_token (form: sub, aud,
// email, email_verified, name, groups) under the path of its issuer URL,
// and passes other requests on. token_ttl defaults to 5m. Trust it in the
// uma global option with trust_issuer <issuer_url> { audience <client_id> }.
func (p *DemoIdP) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume directive name
	if !d.AllArgs(&p.Issuer) {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		switch d.Val() {
		case "token_ttl":
			if err := parseDuration(d, &p.TokenTTL); err != nil {
				return err
			}
		default:
			return d.Errf("unknown subdirective %q of uma_demo_idp", d.Val())
		}
	}
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner           = (*DemoIdP)(nil)
	_ caddy.CleanerUpper          = (*DemoIdP)(nil)
	_ caddyhttp.MiddlewareHandler = (*DemoIdP)(nil)
	_ caddyfile.Unmarshaler       = (*DemoIdP)(nil)
)
