package admin

import (
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"go.uber.org/zap"

	"github.com/caddy-uma/caddy-uma/authz"
	"github.com/caddy-uma/caddy-uma/authz/oauth"
)

// The operator's API over HTTP, relative to the prefix it is mounted at
// (Caddy's admin endpoint mounts it at /uma, as the admin.api.uma module):
//
//	GET    /clients                 the clients, configured and registered
//	POST   /clients                 register a client (RFC 7591 metadata)
//	DELETE /clients/{id}            remove a registered client, revoking its tokens
//	GET    /tokens?client_id=&subject=     the live tokens of a client or subject
//	DELETE /tokens?client_id=&subject=     revoke them
//	GET    /keys                    the published signing keys
//	POST   /keys/rotate             make a new signing key current
//	GET    /policies                the rules that do not compile, the directory's state
//	POST   /policies/reload         read the operator directory now
//	GET    /resources?owner=        an owner's registered resources
//	GET    /backup                  a dump of the store, from one snapshot
//
// Answers are JSON (the backup: JSON lines); errors are OAuth error
// objects (error, error_description) with their status, and a method a
// path does not take is a 405 with Allow. It has no authentication of its
// own: whoever reaches it is the operator, so it must only be reachable as
// Caddy's admin endpoint is (a local address or socket, or remote admin
// with client certificates).

// Paths of the operator's API, relative to its prefix.
const (
	PathClients        = "/clients"
	PathTokens         = "/tokens"
	PathKeys           = "/keys"
	PathKeysRotate     = "/keys/rotate"
	PathPolicies       = "/policies"
	PathPoliciesReload = "/policies/reload"
	PathResources      = "/resources"
	PathBackup         = "/backup"
)

// handler is an endpoint: it writes the success answer; an error it
// returns is answered in one place (authz.Server.WriteError).
type handler func(w http.ResponseWriter, r *http.Request) error

// route is one path of the operator's API, with its handler per method.
type route struct {
	path    string
	methods map[string]handler
}

// routes lists the operator's API's paths.
func (a *API) routes() []route {
	return []route{
		{PathClients, map[string]handler{http.MethodGet: a.listClients, http.MethodPost: a.addClient}},
		{PathClients + "/{id}", map[string]handler{http.MethodDelete: a.removeClient}},
		{PathTokens, map[string]handler{http.MethodGet: a.listTokens, http.MethodDelete: a.revokeTokens}},
		{PathKeys, map[string]handler{http.MethodGet: a.listKeys}},
		{PathKeysRotate, map[string]handler{http.MethodPost: a.rotateKeys}},
		{PathPolicies, map[string]handler{http.MethodGet: a.policyStatus}},
		{PathPoliciesReload, map[string]handler{http.MethodPost: a.reloadPolicies}},
		{PathResources, map[string]handler{http.MethodGet: a.listResources}},
		{PathBackup, map[string]handler{http.MethodGet: a.backup}},
	}
}

// Patterns returns the routes of the operator's API, "METHOD path" with
// the path relative to its prefix: what docs/openapi.yaml documents.
func Patterns() []string {
	var out []string
	for _, rt := range (&API{}).routes() {
		for m := range rt.methods {
			out = append(out, m+" "+rt.path)
		}
	}
	slices.Sort(out)
	return out
}

// Handler returns the operator's API mounted at prefix (such as "/uma"):
// the paths above under it, a 405 with Allow for a method a path does not
// take, and a 404 for any other path.
func (a *API) Handler(prefix string) http.Handler {
	prefix = strings.TrimRight(prefix, "/")
	mux := http.NewServeMux()
	for _, rt := range a.routes() {
		var allow []string
		for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodDelete} {
			if h := rt.methods[m]; h != nil {
				mux.Handle(m+" "+prefix+rt.path, a.answer(h))
				allow = append(allow, m)
				if m == http.MethodGet {
					allow = append(allow, http.MethodHead)
				}
			}
		}
		mux.Handle(prefix+rt.path, a.answer(func(http.ResponseWriter, *http.Request) error {
			return oauth.ErrMethodNotAllowed(allow...)
		}))
	}
	mux.Handle("/", a.answer(func(http.ResponseWriter, *http.Request) error {
		return oauth.ErrNotFound("no such operator endpoint; see docs/openapi.yaml")
	}))
	return mux
}

// answer adapts a handler: an error it returns is written as the AS's
// endpoints write theirs.
func (a *API) answer(h handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r); err != nil {
			a.as.WriteError(w, err)
		}
	})
}

func (a *API) listClients(w http.ResponseWriter, r *http.Request) error {
	clients, err := a.as.Clients(r.Context())
	if err != nil {
		return oauth.ErrServer("could not list the clients", err)
	}
	oauth.WriteJSON(w, http.StatusOK, map[string]any{"clients": clients})
	return nil
}

// ClientAdded is the answer to a registration through the operator's API.
type ClientAdded struct {
	authz.ClientInfo
	// ClientSecret is shown once.
	ClientSecret string `json:"client_secret,omitempty"`
}

func (a *API) addClient(w http.ResponseWriter, r *http.Request) error {
	var md authz.ClientMetadata
	if err := oauth.ReadJSON(w, r, &md); err != nil {
		return err
	}
	c, secret, err := a.as.RegisterClient(r.Context(), md)
	if err != nil {
		return err
	}
	oauth.WriteJSON(w, http.StatusCreated, ClientAdded{ClientInfo: c, ClientSecret: secret})
	return nil
}

func (a *API) removeClient(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	revoked, err := a.RemoveClient(r.Context(), id)
	switch {
	case errors.Is(err, authz.ErrNoSuchClient):
		return oauth.ErrNotFound("no client registered at run time has the id " + oauth.Quote(id))
	case errors.Is(err, authz.ErrConfiguredClient):
		return oauth.ErrInvalidRequest("client %s is configured, not registered at run time: remove it from the configuration", oauth.Quote(id))
	case err != nil:
		return oauth.ErrServer("could not remove the client", err)
	}
	oauth.WriteJSON(w, http.StatusOK, map[string]any{"client_id": id, "revoked_tokens": len(revoked)})
	return nil
}

// tokenFilter reads the filter of the tokens endpoints from the query.
func tokenFilter(q url.Values) (TokenFilter, error) {
	f := TokenFilter{ClientID: q.Get("client_id"), Subject: q.Get("subject")}
	for name := range q {
		if name != "client_id" && name != "subject" {
			return f, oauth.ErrInvalidRequest("unknown parameter %s: use client_id and subject", oauth.Quote(name))
		}
	}
	if f == (TokenFilter{}) {
		return f, oauth.ErrInvalidRequest("client_id or subject is required: %s", ErrEmptyTokenFilter)
	}
	return f, nil
}

func (a *API) listTokens(w http.ResponseWriter, r *http.Request) error {
	f, err := tokenFilter(r.URL.Query())
	if err != nil {
		return err
	}
	toks, err := a.Tokens(r.Context(), f)
	if err != nil {
		return oauth.ErrServer("could not list the tokens", err)
	}
	oauth.WriteJSON(w, http.StatusOK, map[string]any{"tokens": nonNil(toks)})
	return nil
}

func (a *API) revokeTokens(w http.ResponseWriter, r *http.Request) error {
	f, err := tokenFilter(r.URL.Query())
	if err != nil {
		return err
	}
	toks, err := a.RevokeTokens(r.Context(), f)
	if err != nil {
		return oauth.ErrServer("could not revoke the tokens", err)
	}
	oauth.WriteJSON(w, http.StatusOK, map[string]any{"revoked": nonNil(toks)})
	return nil
}

func (a *API) listKeys(w http.ResponseWriter, r *http.Request) error {
	oauth.WriteJSON(w, http.StatusOK, map[string]any{"keys": a.as.SigningKeys()})
	return nil
}

func (a *API) rotateKeys(w http.ResponseWriter, r *http.Request) error {
	keys, err := a.RotateKeys(r.Context())
	if err != nil {
		return oauth.ErrServer("could not rotate the signing keys", err)
	}
	oauth.WriteJSON(w, http.StatusOK, map[string]any{"keys": keys})
	return nil
}

func (a *API) policyStatus(w http.ResponseWriter, r *http.Request) error {
	oauth.WriteJSON(w, http.StatusOK, a.as.PolicyStatus())
	return nil
}

func (a *API) reloadPolicies(w http.ResponseWriter, r *http.Request) error {
	st, err := a.as.ReloadPolicies(r.Context())
	switch {
	case errors.Is(err, authz.ErrNoPolicyDirectory):
		return oauth.ErrNotFound("no policies directory is configured: set policies in the uma global option")
	case err != nil:
		return oauth.ErrServer("could not read the policies directory", err)
	}
	oauth.WriteJSON(w, http.StatusOK, st)
	return nil
}

func (a *API) listResources(w http.ResponseWriter, r *http.Request) error {
	owner := r.URL.Query().Get("owner")
	if owner == "" {
		return oauth.ErrInvalidRequest("owner is required: the subject whose resources to list")
	}
	res, err := a.as.OwnerResources(r.Context(), owner)
	if err != nil {
		return oauth.ErrServer("could not list the resources", err)
	}
	oauth.WriteJSON(w, http.StatusOK, map[string]any{"resources": nonNil(res)})
	return nil
}

// backup streams a dump. A failure before the first byte is an error
// answer; one later cuts the dump short, without its end line, and
// restore (and backup, before it keeps the file) refuses such a dump.
func (a *API) backup(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Content-Type", "application/x-ndjson")
	oauth.NoStore(w.Header())
	cw := &committedWriter{w: w}
	if _, err := a.Backup(r.Context(), cw); err != nil {
		if !cw.committed {
			w.Header().Del("Content-Type")
			return oauth.ErrServer("could not read the store", err)
		}
		a.log.Error("backup cut short", zap.Error(err))
	}
	return nil
}

// committedWriter records whether anything was written.
type committedWriter struct {
	w         http.ResponseWriter
	committed bool
}

func (c *committedWriter) Write(p []byte) (int, error) {
	c.committed = true
	return c.w.Write(p)
}

// nonNil returns s, or an empty slice for nil: a JSON [] rather than null.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
