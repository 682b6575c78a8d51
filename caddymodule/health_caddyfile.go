package caddymodule

import (
	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func init() {
	caddy.RegisterModule(Health{})
	httpcaddyfile.RegisterHandlerDirective("uma_health", parseHealth)
	// uma_health answers its own paths, so it runs before uma_protect
	// (whose unmatched deny would refuse a probe on a protected site), and
	// like uma_server before the routing blocks and the handlers that
	// respond.
	httpcaddyfile.RegisterDirectiveOrder("uma_health", httpcaddyfile.Before, "invoke")
}

// parseHealth sets up the uma_health handler; see Health.UnmarshalCaddyfile
// for the syntax.
func parseHealth(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	hh := new(Health)
	err := hh.UnmarshalCaddyfile(h.Dispenser)
	return hh, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	uma_health [<matcher>] live|ready
//
// For example, on a site that only the load balancer and the kubelet
// reach:
//
//	http://:9000 {
//	    uma_health /live live
//	    uma_health /ready ready
//	}
func (h *Health) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the directive's name
	if !d.NextArg() {
		return d.Err("uma_health: the probe is missing: write uma_health live or uma_health ready")
	}
	h.Probe = d.Val()
	if h.Probe != probeLive && h.Probe != probeReady {
		return d.Errf("uma_health %q: unknown probe; write uma_health live or uma_health ready", h.Probe)
	}
	if d.NextArg() {
		return d.ArgErr()
	}
	if d.NextBlock(0) {
		return d.Errf("uma_health %s takes no block (found %q)", h.Probe, d.Val())
	}
	return nil
}

// Interface guards
var _ caddyfile.Unmarshaler = (*Health)(nil)
