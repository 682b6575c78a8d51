package caddymodule

import (
	"encoding/json"
	"slices"
	"strconv"
	"strings"

	"github.com/caddy-uma/caddy-uma/authz/signing"
	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func init() {
	httpcaddyfile.RegisterGlobalOption("uma", parseGlobalOption)
	httpcaddyfile.RegisterHandlerDirective("uma_server", parseHandler)
	// uma_server passes every request outside the issuer's paths on, so it
	// runs after the request-rewriting and authentication middleware and
	// before the routing blocks (invoke, handle, handle_path, route) and
	// the handlers that respond (respond, reverse_proxy, file_server): a
	// catch-all "handle" or "respond" in the site cannot hide the AS.
	httpcaddyfile.RegisterDirectiveOrder("uma_server", httpcaddyfile.Before, "invoke")
}

// parseGlobalOption parses the uma global option into the uma app; see
// App.UnmarshalCaddyfile for the syntax.
func parseGlobalOption(d *caddyfile.Dispenser, existingVal any) (any, error) {
	if existingVal != nil {
		return nil, d.Err("the uma global option may appear only once")
	}
	app := new(App)
	if err := app.UnmarshalCaddyfile(d); err != nil {
		return nil, err
	}
	return httpcaddyfile.App{
		Name:  "uma",
		Value: caddyconfig.JSON(app, nil),
	}, nil
}

// UnmarshalCaddyfile sets up the uma app from the uma global option. Syntax:
//
//	uma {
//	    issuer       <url>
//	    keycloak_compat
//	    storage      badger [<dir>] | postgres <dsn>
//	    signing_alg  ES256|EdDSA|RS256
//	    key_rotation <duration>
//	    pat_ttl      <duration>
//	    ticket_ttl   <duration>
//	    rpt_ttl      <duration>
//	    refresh_ttl  <duration>
//	    pct_ttl      <duration>
//	    request_interval <duration>
//	    feed_staleness <duration>
//	    policies     <dir>
//	    policy_timeout <duration>
//	    new_resource_rate <per second>
//	    trust_issuer <issuer> {
//	        jwks_uri   <url>
//	        audience   <aud...>
//	        any_client_audience
//	        algorithms <alg...>
//	    }
//	    client <id> {
//	        secret              <bcrypt hash or plain text>
//	        resource_server
//	        scopes              <scope...>
//	        redirect_uri        <uri...>
//	        claims_redirect_uri <uri...>
//	        rpt_format          uma|keycloak
//	        push_claims
//	    }
//	    user <name> {
//	        password_hash <bcrypt hash>
//	        email         <address>
//	        name          <display name...>
//	        groups        <group...>
//	    }
//	    login_oidc <issuer> {
//	        client_id     <id>
//	        client_secret <secret>
//	        scopes        <scope...>
//	        name          <button label...>
//	    }
//	    session_ttl <duration>
//	    dynamic_registration <initial access token>
//	}
//
// issuer is required: the absolute http(s) URL, without query or fragment,
// under whose path every endpoint lives. storage names a backend, a module
// of the uma.storage namespace that parses the rest of its line (see
// BadgerStorage.UnmarshalCaddyfile and PostgresStorage.UnmarshalCaddyfile;
// postgres <dsn> is a PostgreSQL connection string); it defaults to badger in the "uma"
// folder of Caddy's data directory, and a relative <dir> is resolved
// against Caddy's working directory. signing_alg defaults to ES256.
// key_rotation defaults to 0 (never); pat_ttl to 1h; ticket_ttl and rpt_ttl
// to 5m. Durations use Go's syntax, plus d for days (e.g. 90d).
//
// refresh_ttl defaults to 1h, pct_ttl to 720h, request_interval (the
// polling interval announced with request_submitted) to 5s, policy_timeout
// to 250ms. feed_staleness (how long a node trusts what it keeps in memory,
// such as which RPTs are live, while it hears no changes from the store;
// past it, it reads the store and refuses when it cannot) defaults to 5s
// and must be positive. policies names the operator directory of sharing rules:
// <dir>/<owner>/*.rego are an owner's rules, <dir>/_system/*.rego the
// system rules; changes apply without restart. Each trust_issuer block
// trusts the claim tokens of one issuer: its keys come from jwks_uri, or
// from OpenID Connect discovery at <issuer>/.well-known/openid-configuration;
// audience lists the accepted aud values (default: any). A claim token
// counts only for the client it was issued to: its aud must contain the id
// of the client that pushes it, and its azp, if any (required with several
// audiences), must be that id; a token whose only audience is the AS's
// issuer counts for no client. any_client_audience drops that check, so
// that a token carrying one of the listed audiences counts for every
// client (clients can then push each other's tokens); it needs audience.
//
// Each client block registers one OAuth client; ids must be unique. A
// client without secret is public. secret takes a bcrypt hash from `caddy
// hash-password` (recommended) or plain text, and may be a placeholder such
// as {env.RS_API_SECRET} or {file./run/secrets/rs_api}, expanded when the
// config loads. resource_server lets the client obtain PATs and use the
// protection API; it needs a secret. scopes, redirect_uri and
// claims_redirect_uri may be repeated; their values add up.
//
// Each user block is a local account for people: its name is the login
// name and the subject (the owner of the resources registered for that
// name); password_hash takes a bcrypt hash from `caddy hash-password`; the
// e-mail address is taken as verified. login_oidc lets people log in with
// an upstream OpenID Connect provider (authorization code with PKCE;
// register {issuer}/login/callback there); their subject is its sub. With
// users or login_oidc, the AS serves the login pages, the sharing console
// at {issuer}/console, the authorization endpoint {issuer}/authorize (a
// resource server gets a PAT for the owner who consents) and the claims
// interaction endpoint {issuer}/claims (sent as redirect_user).
// session_ttl defaults to 8h. dynamic_registration turns on RFC 7591
// client registration at {issuer}/register, for requests that carry the
// given initial access token as a Bearer token; it is off by default.
//
// issuer, the storage <dir> or <dsn> and secrets may use {env.*} and {file.*}
// placeholders, expanded when the config loads; any value may use {$VAR}
// environment variables, expanded when the Caddyfile is adapted (and then
// written into the JSON config).
func (a *App) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume option name
	if d.NextArg() {
		return d.ArgErr()
	}

	seen := make(map[string]bool)
	for d.NextBlock(0) {
		sub := d.Val()
		if sub != "client" && sub != "trust_issuer" && sub != "user" {
			if seen[sub] {
				return d.Errf("%s specified more than once", sub)
			}
			seen[sub] = true
		}

		switch sub {
		case "issuer":
			if !d.AllArgs(&a.Issuer) {
				return d.ArgErr()
			}

		case "keycloak_compat":
			if d.NextArg() {
				return d.ArgErr()
			}
			a.KeycloakCompat = true

		case "storage":
			raw, err := parseStorage(d)
			if err != nil {
				return err
			}
			a.Storage = raw

		case "signing_alg":
			if !d.AllArgs(&a.SigningAlg) {
				return d.ArgErr()
			}
			if signing.CheckAlg(a.SigningAlg) != nil {
				return d.Errf("unsupported signing_alg %q (want %s)", a.SigningAlg, strings.Join(signing.Algorithms, ", "))
			}

		case "key_rotation":
			if err := parseDuration(d, &a.KeyRotation); err != nil {
				return err
			}
		case "pat_ttl":
			if err := parseDuration(d, &a.PATTTL); err != nil {
				return err
			}
		case "ticket_ttl":
			if err := parseDuration(d, &a.TicketTTL); err != nil {
				return err
			}
		case "rpt_ttl":
			if err := parseDuration(d, &a.RPTTTL); err != nil {
				return err
			}

		case "client":
			c, err := parseClient(d)
			if err != nil {
				return err
			}
			if slices.ContainsFunc(a.Clients, func(o Client) bool { return o.ID == c.ID }) {
				return d.Errf("client %q defined more than once", c.ID)
			}
			a.Clients = append(a.Clients, c)

		case "refresh_ttl":
			if err := parseDuration(d, &a.RefreshTTL); err != nil {
				return err
			}
		case "pct_ttl":
			if err := parseDuration(d, &a.PCTTTL); err != nil {
				return err
			}
		case "request_interval":
			if err := parseDuration(d, &a.RequestInterval); err != nil {
				return err
			}
		case "feed_staleness":
			if err := parseDuration(d, &a.FeedStaleness); err != nil {
				return err
			}
			if a.FeedStaleness == 0 {
				return d.Errf("feed_staleness must be positive, not 0: it is how long cached RPT answers are trusted while the store's change feed is down (default 5s)")
			}
		case "policy_timeout":
			if err := parseDuration(d, &a.PolicyTimeout); err != nil {
				return err
			}
		case "new_resource_rate":
			var raw string
			if !d.AllArgs(&raw) {
				return d.ArgErr()
			}
			v, err := strconv.ParseFloat(raw, 64)
			if err != nil || v <= 0 {
				return d.Errf("new_resource_rate must be a positive number of resources per second, not %q", raw)
			}
			a.NewResourceRate = v
		case "policies":
			if !d.AllArgs(&a.Policies) {
				return d.ArgErr()
			}
		case "trust_issuer":
			ti, err := parseTrustIssuer(d)
			if err != nil {
				return err
			}
			if slices.ContainsFunc(a.TrustedIssuers, func(o TrustedIssuer) bool { return o.Issuer == ti.Issuer }) {
				return d.Errf("trust_issuer %q defined more than once", ti.Issuer)
			}
			a.TrustedIssuers = append(a.TrustedIssuers, ti)

		case "user":
			u, err := parseUser(d)
			if err != nil {
				return err
			}
			if slices.ContainsFunc(a.Users, func(o User) bool { return o.Name == u.Name }) {
				return d.Errf("user %q defined more than once", u.Name)
			}
			a.Users = append(a.Users, u)
		case "login_oidc":
			o, err := parseLoginOIDC(d)
			if err != nil {
				return err
			}
			a.LoginOIDC = o
		case "session_ttl":
			if err := parseDuration(d, &a.SessionTTL); err != nil {
				return err
			}
		case "dynamic_registration":
			var tok string
			if !d.AllArgs(&tok) {
				return d.ArgErr()
			}
			a.DynamicRegistration = &DynamicRegistration{InitialAccessToken: tok}

		default:
			return d.Errf("unknown subdirective %q of uma", sub)
		}
	}
	return nil
}

// parseStorage parses a storage line (and its block, if any) into the JSON
// of the storage module it names; d is on the storage token. The module
// uma.storage.<backend> parses its own tokens, from its name on, so a new
// backend brings its own syntax.
func parseStorage(d *caddyfile.Dispenser) (json.RawMessage, error) {
	if !d.NextArg() {
		return nil, d.ArgErr()
	}
	name := d.Val()
	id := storageNamespace + "." + name
	if _, err := caddy.GetModule(id); err != nil {
		return nil, d.Errf("unknown storage backend %q (known backends: %s)", name, knownStorageBackends())
	}
	unm, err := caddyfile.UnmarshalModule(d, id)
	if err != nil {
		return nil, err
	}
	var warnings []caddyconfig.Warning
	raw := caddyconfig.JSONModuleObject(unm, "backend", name, &warnings)
	if raw == nil {
		return nil, d.Errf("encoding storage %s: %v", name, warnings)
	}
	return raw, nil
}

// parseTrustIssuer parses a trust_issuer block; d is on its token.
func parseTrustIssuer(d *caddyfile.Dispenser) (TrustedIssuer, error) {
	var ti TrustedIssuer
	if !d.AllArgs(&ti.Issuer) {
		return ti, d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "jwks_uri":
			if !d.AllArgs(&ti.JWKSURI) {
				return ti, d.ArgErr()
			}
		case "audience":
			if err := appendArgs(d, &ti.Audiences); err != nil {
				return ti, err
			}
		case "any_client_audience":
			if d.NextArg() {
				return ti, d.ArgErr()
			}
			ti.AnyClientAudience = true
		case "algorithms":
			if err := appendArgs(d, &ti.Algorithms); err != nil {
				return ti, err
			}
		default:
			return ti, d.Errf("unknown subdirective %q of trust_issuer", d.Val())
		}
	}
	return ti, nil
}

// parseUser parses a user block; d is on the user token.
func parseUser(d *caddyfile.Dispenser) (User, error) {
	var u User
	if !d.AllArgs(&u.Name) {
		return u, d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "password_hash":
			if !d.AllArgs(&u.PasswordHash) {
				return u, d.ArgErr()
			}
		case "email":
			if !d.AllArgs(&u.Email) {
				return u, d.ArgErr()
			}
		case "name":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return u, d.ArgErr()
			}
			u.DisplayName = strings.Join(args, " ")
		case "groups":
			if err := appendArgs(d, &u.Groups); err != nil {
				return u, err
			}
		default:
			return u, d.Errf("unknown subdirective %q of user %q", d.Val(), u.Name)
		}
	}
	if u.PasswordHash == "" {
		return u, d.Errf("user %q: password_hash is required (caddy hash-password prints one)", u.Name)
	}
	return u, nil
}

// parseLoginOIDC parses a login_oidc block; d is on its token.
func parseLoginOIDC(d *caddyfile.Dispenser) (*LoginOIDC, error) {
	o := new(LoginOIDC)
	if !d.AllArgs(&o.Issuer) {
		return nil, d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "client_id":
			if !d.AllArgs(&o.ClientID) {
				return nil, d.ArgErr()
			}
		case "client_secret":
			if !d.AllArgs(&o.ClientSecret) {
				return nil, d.ArgErr()
			}
		case "scopes":
			if err := appendArgs(d, &o.Scopes); err != nil {
				return nil, err
			}
		case "name":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return nil, d.ArgErr()
			}
			o.Name = strings.Join(args, " ")
		default:
			return nil, d.Errf("unknown subdirective %q of login_oidc", d.Val())
		}
	}
	if o.ClientID == "" {
		return nil, d.Errf("login_oidc: client_id is required")
	}
	return o, nil
}

// parseClient parses a client block; d is on the client token.
func parseClient(d *caddyfile.Dispenser) (Client, error) {
	var c Client
	if !d.AllArgs(&c.ID) {
		return c, d.ArgErr()
	}

	seen := make(map[string]bool)
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		sub := d.Val()
		switch sub {
		case "secret", "resource_server", "rpt_format", "push_claims":
			if seen[sub] {
				return c, d.Errf("%s specified more than once in client %q", sub, c.ID)
			}
			seen[sub] = true
		}

		switch sub {
		case "secret":
			if !d.AllArgs(&c.Secret) {
				return c, d.ArgErr()
			}
			if c.Secret == "" {
				return c, d.Errf("empty secret in client %q: leave secret out for a public client", c.ID)
			}
		case "resource_server":
			if d.NextArg() {
				return c, d.ArgErr()
			}
			c.ResourceServer = true
		case "scopes":
			if err := appendArgs(d, &c.Scopes); err != nil {
				return c, err
			}
		case "redirect_uri":
			if err := appendArgs(d, &c.RedirectURIs); err != nil {
				return c, err
			}
		case "claims_redirect_uri":
			if err := appendArgs(d, &c.ClaimsRedirectURIs); err != nil {
				return c, err
			}
		case "rpt_format":
			if !d.AllArgs(&c.RPTFormat) {
				return c, d.ArgErr()
			}
		case "push_claims":
			if d.NextArg() {
				return c, d.ArgErr()
			}
			c.PushClaims = true
		default:
			return c, d.Errf("unknown subdirective %q of client %q", sub, c.ID)
		}
	}
	return c, nil
}

// parseDuration parses the single duration argument of the current line.
func parseDuration(d *caddyfile.Dispenser, dst *caddy.Duration) error {
	name := d.Val()
	var s string
	if !d.AllArgs(&s) {
		return d.ArgErr()
	}
	v, err := caddy.ParseDuration(s)
	if err != nil {
		return d.Errf("bad %s duration %q: %v", name, s, err)
	}
	if v < 0 {
		return d.Errf("bad %s duration %q: negative", name, s)
	}
	*dst = caddy.Duration(v)
	return nil
}

// appendArgs appends the one or more arguments of the current line.
func appendArgs(d *caddyfile.Dispenser, dst *[]string) error {
	args := d.RemainingArgs()
	if len(args) == 0 {
		return d.ArgErr()
	}
	*dst = append(*dst, args...)
	return nil
}

// parseHandler sets up the uma_server handler; see Handler.UnmarshalCaddyfile.
func parseHandler(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	handler := new(Handler)
	err := handler.UnmarshalCaddyfile(h.Dispenser)
	return handler, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	uma_server [<matcher>]
//
// It takes no arguments and no block: the uma global option configures the
// authorization server, and is required. The handler serves the endpoints
// under the issuer's path (discovery at /.well-known/uma2-configuration,
// /token, /resource_set, /permission, /introspect, /jwks, /revoke, ...) and
// passes every other request to the next handler. By default it is ordered
// before invoke, handle and route, so the site's other directives need no
// change. Do not place it under handle_path or uri strip_prefix: the issuer's
// path must reach it unchanged.
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	if d.NextBlock(0) {
		return d.Errf("uma_server takes no block; configure the server with the uma global option")
	}
	return nil
}
