package caddymodule

import (
	"strconv"
	"strings"

	"github.com/caddy-uma/caddy-uma/authz/oauth"
	"github.com/caddy-uma/caddy-uma/authz/pep"
	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("uma_protect", parseProtect)
	// uma_protect runs after the directives that rewrite the request and
	// authenticate (rewrite, uri, basic_auth, forward_auth) and before the
	// routing blocks and the handlers that respond (handle, route,
	// respond, reverse_proxy, file_server): a "handle" block in the same
	// site cannot reach its upstream around it. Registered after
	// uma_server (caddyfile.go), it lands between uma_server and invoke,
	// so the AS endpoints of a site that has both stay reachable.
	httpcaddyfile.RegisterDirectiveOrder("uma_protect", httpcaddyfile.Before, "invoke")
}

// parseProtect sets up the uma_protect handler; see
// Protect.UnmarshalCaddyfile.
func parseProtect(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	p := new(Protect)
	err := p.UnmarshalCaddyfile(h.Dispenser)
	return p, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	uma_protect [<matcher>] {
//	    as                  <issuer_url> | co-hosted
//	    resource_server     <client_id>
//	    client_secret       <secret>
//	    realm               <name>
//	    mode                enforcing|permissive|disabled
//	    unmatched           deny|pass
//	    strip_authorization
//	    method_override     strip|keep
//	    rpt_cache_size      <n>
//	    revocation_check    <duration>|off
//	    registered_uris     <refresh_interval>|off
//	    timeout             <duration>
//	    method              <METHOD> <scope...>
//	    match               all|any
//	    resource <path_pattern> {
//	        owner   <value>
//	        name    <value>
//	        type    <value>
//	        scopes  <scope...>
//	        method  <METHOD> <scope...>
//	        match   all|any
//	        context <name> <value>
//	    }
//	}
//
// as names the authorization server: co-hosted for the uma app of this
// Caddy (configured by the uma global option), or the issuer URL of a
// remote UMA 2.0 authorization server (ours on another host, Keycloak's
// https://host/realms/<realm>, ...), whose discovery document is at
// <issuer_url>/.well-known/uma2-configuration. A bare co-hosted line is
// the same as "as co-hosted". resource_server (alias client_id, required)
// is the client id of this resource server at the authorization server:
// co-hosted, a client of the uma app with resource_server set; it is the
// audience RPTs must carry. client_secret (remote only, required there)
// obtains PATs with the client_credentials grant; as, resource_server and
// client_secret may use {env.*} and {file.*} placeholders.
//
// realm is the realm of the UMA challenge (default: the resource server's
// client id). mode is enforcing (default), permissive (decide and log, but
// let everything through) or disabled. unmatched says what happens to
// requests that map to no resource: deny (default, 403) or pass (they go
// on unauthenticated). strip_authorization removes the Authorization
// header before the next handler. method_override strip (default) removes
// the headers X-HTTP-Method-Override, X-HTTP-Method and X-Method-Override
// and the query parameter _method before the next handler, so that a
// read-only RPT cannot make an upstream that honours them run a DELETE;
// keep passes them on, and the overriding method decides the scopes. rpt_cache_size bounds the cache of
// verified RPTs (default 10000). revocation_check (remote only, default
// 1m) is how long a verified RPT is trusted before it is introspected
// again; off checks JWT RPTs by signature only. Co-hosted, a revoked RPT
// is refused at once. registered_uris is how often the resources this
// resource server registered through the protection API are listed again
// to match requests by their uris (default 5s co-hosted, 30s remote), or
// off. timeout bounds the authorization server calls of one request
// (default 5s).
//
// method maps a request method to the scopes it needs, one method per
// line; the default map is GET and HEAD read, POST, PUT and PATCH write,
// DELETE delete, and the first method line replaces it whole. Methods
// without a scope (OPTIONS, ...) are refused with 403 on protected paths:
// exclude them with the matcher (uma_protect @notoptions { ... }) if
// needed. match all (default) needs every scope of the method, match any
// one of them. At the top level, method and match apply to resources
// without their own and to resources matched by registered uris.
//
// Each resource block is a resource template, tried in order. Its path
// pattern has literal segments, {name} for one segment, * for one
// anonymous segment, and as the last segment {name...} or * for the rest:
// /api/records/{owner}/{id}. owner (required), name (default: the request
// path) and type are values with the pattern's parameters ({owner}) and
// Caddy placeholders ({http.request.header.X-Owner}); a request whose
// owner expands to nothing is refused with 403, and a placeholder that is
// neither a parameter of the pattern nor one of Caddy's request, vars,
// regexp, auth, env, file, time or system placeholders is an error. scopes are the scopes
// registered on the resource (default: those of the method map). Each
// context line names a request value sent with the permission ticket,
// which the owner's rules read as input.request.<name>: context ip
// {http.request.remote.host}.
//
// A matched resource is registered at the authorization server on first
// sight (once, for concurrent requests). An authorized request sets the
// placeholders {http.auth.uma.subject}, {http.auth.uma.client},
// {http.auth.uma.scopes}, {http.auth.uma.resource_id},
// {http.auth.uma.owner} and {http.auth.user.id}; pass them to an upstream
// with reverse_proxy's header_up.
//
// uma_protect is ordered before invoke, handle, route and the handlers
// that respond, such as reverse_proxy.
func (p *Protect) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	seen := map[string]bool{}
	for d.NextBlock(0) {
		sub := d.Val()
		if sub == "co-hosted" || sub == "co_hosted" {
			sub = "as"
		}
		if sub == "client_id" {
			sub = "resource_server"
		}
		if sub != "resource" && sub != "method" {
			if seen[sub] {
				return d.Errf("%s specified more than once", sub)
			}
			seen[sub] = true
		}
		switch sub {
		case "as":
			if v := d.Val(); v == "co-hosted" || v == "co_hosted" {
				if d.NextArg() {
					return d.ArgErr()
				}
				p.CoHosted = true
				continue
			}
			var as string
			if !d.AllArgs(&as) {
				return d.ArgErr()
			}
			if as == "co-hosted" || as == "co_hosted" {
				p.CoHosted = true
			} else {
				p.AS = as
			}
		case "resource_server":
			if !d.AllArgs(&p.ResourceServer) {
				return d.ArgErr()
			}
		case "client_secret":
			if !d.AllArgs(&p.ClientSecret) {
				return d.ArgErr()
			}
		case "realm":
			if !d.AllArgs(&p.Realm) {
				return d.ArgErr()
			}
		case "mode":
			if !d.AllArgs(&p.Mode) {
				return d.ArgErr()
			}
			switch p.Mode {
			case "enforcing", "permissive", "disabled":
			default:
				return d.Errf("unknown mode %q (want enforcing, permissive or disabled)", p.Mode)
			}
		case "unmatched":
			if !d.AllArgs(&p.Unmatched) {
				return d.ArgErr()
			}
			if p.Unmatched != "deny" && p.Unmatched != "pass" {
				return d.Errf("unknown unmatched %q (want deny or pass)", p.Unmatched)
			}
		case "strip_authorization":
			if d.NextArg() {
				return d.ArgErr()
			}
			p.StripAuthorization = true
		case "method_override":
			if !d.AllArgs(&p.MethodOverride) {
				return d.ArgErr()
			}
			if p.MethodOverride != "strip" && p.MethodOverride != "keep" {
				return d.Errf("unknown method_override %q (want strip or keep)", p.MethodOverride)
			}
		case "rpt_cache_size":
			var s string
			if !d.AllArgs(&s) {
				return d.ArgErr()
			}
			n, err := strconv.Atoi(s)
			if err != nil || n < 1 {
				return d.Errf("bad rpt_cache_size %q: want a positive number", s)
			}
			p.RPTCacheSize = n
		case "revocation_check":
			if err := parseDurationOrOff(d, &p.RevocationCheck); err != nil {
				return err
			}
		case "registered_uris":
			if err := parseDurationOrOff(d, &p.RegisteredURIs); err != nil {
				return err
			}
		case "timeout":
			if err := parseDuration(d, &p.Timeout); err != nil {
				return err
			}
			if p.Timeout == 0 {
				return d.Errf("timeout must be positive")
			}
		case "method":
			if err := parseMethod(d, &p.Methods); err != nil {
				return err
			}
		case "match":
			if err := parseMatch(d, &p.Match); err != nil {
				return err
			}
		case "resource":
			res, err := parseProtectedResource(d)
			if err != nil {
				return err
			}
			p.Resources = append(p.Resources, res)
		default:
			return d.Errf("unknown subdirective %q of uma_protect", d.Val())
		}
	}
	return nil
}

// parseProtectedResource parses a resource block; d is on its token.
func parseProtectedResource(d *caddyfile.Dispenser) (ProtectedResource, error) {
	var res ProtectedResource
	if !d.NextArg() {
		return res, d.ArgErr()
	}
	res.Path = d.Val()
	if d.NextArg() {
		return res, d.ArgErr()
	}
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		sub := d.Val()
		if sub != "method" && sub != "context" && sub != "scopes" {
			if seen[sub] {
				return res, d.Errf("%s specified more than once in resource %s", sub, res.Path)
			}
			seen[sub] = true
		}
		switch sub {
		case "owner":
			if !d.AllArgs(&res.Owner) {
				return res, d.ArgErr()
			}
		case "name":
			if !d.AllArgs(&res.Name) {
				return res, d.ArgErr()
			}
		case "type":
			if !d.AllArgs(&res.Type) {
				return res, d.ArgErr()
			}
		case "scopes":
			if err := appendArgs(d, &res.Scopes); err != nil {
				return res, err
			}
		case "method":
			if err := parseMethod(d, &res.Methods); err != nil {
				return res, err
			}
		case "match":
			if err := parseMatch(d, &res.Match); err != nil {
				return res, err
			}
		case "context":
			var name, value string
			if !d.AllArgs(&name, &value) {
				return res, d.ArgErr()
			}
			if res.Context == nil {
				res.Context = map[string]string{}
			}
			if _, dup := res.Context[name]; dup {
				return res, d.Errf("context %s specified more than once in resource %s", name, res.Path)
			}
			res.Context[name] = value
		default:
			return res, d.Errf("unknown subdirective %q of resource %s", sub, res.Path)
		}
	}
	if res.Owner == "" {
		return res, d.Errf("resource %s needs an owner", res.Path)
	}
	if err := pep.CheckTemplate(pep.Template{Path: res.Path, Owner: res.Owner, Name: res.Name, Type: res.Type, Context: res.Context}, knownPlaceholder); err != nil {
		return res, d.Err(err.Error())
	}
	return res, nil
}

// parseMethod parses "method <METHOD> <scope...>" into m.
func parseMethod(d *caddyfile.Dispenser, m *map[string][]string) error {
	args := d.RemainingArgs()
	if len(args) < 2 {
		return d.Errf("method needs a method and at least one scope: method GET read")
	}
	method := strings.ToUpper(args[0])
	if *m == nil {
		*m = map[string][]string{}
	}
	if _, dup := (*m)[method]; dup {
		return d.Errf("method %s mapped more than once", method)
	}
	for _, s := range args[1:] {
		if !oauth.ValidScope(s) {
			return d.Errf("method %s: %q is not a valid scope", method, s)
		}
	}
	(*m)[method] = args[1:]
	return nil
}

func parseMatch(d *caddyfile.Dispenser, dst *string) error {
	if !d.AllArgs(dst) {
		return d.ArgErr()
	}
	if *dst != "all" && *dst != "any" {
		return d.Errf("unknown match %q (want all or any)", *dst)
	}
	return nil
}

// parseDurationOrOff parses a duration argument, or off (stored as -1).
func parseDurationOrOff(d *caddyfile.Dispenser, dst *caddy.Duration) error {
	name := d.Val()
	if d.CountRemainingArgs() == 1 {
		d.NextArg()
		if d.Val() == "off" {
			*dst = -1
			return nil
		}
		d.Prev()
	}
	if err := parseDuration(d, dst); err != nil {
		return err
	}
	if *dst == 0 {
		return d.Errf("%s must be positive, or off", name)
	}
	return nil
}
