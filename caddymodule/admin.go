package caddymodule

import (
	"net/http"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-uma/caddy-uma/authz/oauth"
)

func init() {
	caddy.RegisterModule(AdminAPI{})
}

// AdminPrefix is where the admin.api.uma module mounts the operator's API
// on Caddy's admin endpoint.
const AdminPrefix = "/uma"

// AdminAPI is the admin.api.uma module: the operator's API of the uma app
// (package authz/admin) on Caddy's admin endpoint, under /uma/.
// Caddy loads it with every config, like every admin.api module; it needs
// no configuration. It answers as Caddy's admin endpoint is reachable (by
// default localhost:2019, with Caddy's Host and Origin checks; remote
// admin with client certificates; nothing at all with `admin off`), and
// has no authentication of its own.
//
//	GET    /uma/clients, POST /uma/clients, DELETE /uma/clients/{id}
//	GET    /uma/tokens?client_id=&subject=, DELETE /uma/tokens?...
//	GET    /uma/keys, POST /uma/keys/rotate
//	GET    /uma/policies, POST /uma/policies/reload
//	GET    /uma/resources?owner=
//	GET    /uma/backup
//
// docs/openapi.yaml describes each route; `caddy uma` calls them.
type AdminAPI struct {
	app *App
}

// CaddyModule returns the Caddy module information.
func (AdminAPI) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.uma",
		New: func() caddy.Module { return new(AdminAPI) },
	}
}

// Provision finds the config's uma app, if it has one. A config without
// one is no error: the routes then answer 404.
func (a *AdminAPI) Provision(ctx caddy.Context) error {
	app, err := ctx.AppIfConfigured("uma")
	if err == nil {
		a.app = app.(*App)
	}
	return nil
}

// Routes returns the operator's API's route.
func (a *AdminAPI) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{{Pattern: AdminPrefix + "/", Handler: caddy.AdminHandlerFunc(a.serve)}}
}

// adminStartWait is how long a request waits for the uma app to start.
const adminStartWait = 5 * time.Second

// serve answers every request itself, errors included (OAuth error
// objects), so it never returns an error for Caddy to write.
func (a *AdminAPI) serve(w http.ResponseWriter, r *http.Request) error {
	if a.app == nil {
		oauth.WriteError(w, oauth.ErrNotFound("this Caddy's config has no uma app: add the uma global option (apps.uma in JSON)"))
		return nil
	}
	if a.app.awaitRunning(r.Context(), adminStartWait) == nil {
		oauth.WriteError(w, oauth.ErrUnavailable("the authorization server is not running yet", 1, nil))
		return nil
	}
	a.app.state.operator.Load().Handler(AdminPrefix).ServeHTTP(w, r)
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner = (*AdminAPI)(nil)
	_ caddy.AdminRouter = (*AdminAPI)(nil)
)
