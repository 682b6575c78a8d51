package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/caddy-uma/caddy-uma/authz"
	"github.com/caddy-uma/caddy-uma/authz/oauth"
	"github.com/caddy-uma/caddy-uma/authz/people"
	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// Handler serves the endpoints of the uma app's authorization server:
// requests for a path under the issuer's path (and the issuer's RFC 8414
// metadata path) go to the server, every other request to the next handler.
// It has no options; the uma app holds the configuration, so it requires
// the uma app to be configured.
//
// Put it on the site whose address matches the issuer, and not under a
// directive that strips a path prefix (handle_path, uri strip_prefix): the
// server matches the request path against the issuer's path.
type Handler struct {
	// live returns the authorization server of the uma app, waiting up to
	// startWait for the app to start; nil if it has not.
	live func(ctx context.Context) authz.Paths
}

// startWait bounds how long a request waits for the uma app to start (see
// App.awaitRunning) before it gets 503.
const startWait = 5 * time.Second

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.uma_server",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision looks up the uma app of the config.
func (h *Handler) Provision(ctx caddy.Context) error {
	app, err := umaApp(ctx, "uma_server")
	if err != nil {
		return err
	}
	h.live = func(ctx context.Context) authz.Paths {
		// Return a nil interface, not a typed nil value.
		if srv := app.awaitRunning(ctx, startWait); srv != nil {
			paths := authz.Join{First: app.state.ownerAPI.Load(), Next: people.Endpoints{AS: srv, Site: app.state.pages.Load()}}
			if kc := app.state.keycloak.Load(); kc != nil {
				return authz.Join{First: kc, Next: paths}
			}
			return paths
		}
		return nil
	}
	return nil
}

// ServeHTTP serves the request with the authorization server if it is one of
// its paths, and passes it to next otherwise. If the uma app has not started
// (after waiting up to startWait for it, as it may take a moment at every
// start and reload), it answers every request with 503 and the OAuth error
// temporarily_unavailable.
func (h Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	srv := h.live(r.Context())
	if srv == nil {
		oauth.WriteError(w, oauth.ErrUnavailable("the authorization server is starting", 1, nil))
		return nil
	}
	if !srv.Handles(r.URL.Path) {
		return next.ServeHTTP(w, r)
	}
	srv.ServeHTTP(w, r)
	return nil
}

// umaApp returns the uma app of the config for the module named who. An
// app that is configured but failed to load gives its own error, first.
func umaApp(ctx caddy.Context, who string) (*App, error) {
	val, err := ctx.AppIfConfigured("uma")
	if errors.Is(err, caddy.ErrNotConfigured) {
		return nil, fmt.Errorf("%s needs the uma app: add the uma global option (Caddyfile) or apps.uma (JSON): %w", who, err)
	}
	if err != nil {
		return nil, err
	}
	return val.(*App), nil
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
	_ caddyfile.Unmarshaler       = (*Handler)(nil)
)
