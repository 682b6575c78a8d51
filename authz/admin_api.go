package authz

import (
	"errors"
	"net/http"
	"net/url"
	"strings"

	"go.uber.org/zap"

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
	AdminPathClients        = "/clients"
	AdminPathTokens         = "/tokens"
	AdminPathKeys           = "/keys"
	AdminPathKeysRotate     = "/keys/rotate"
	AdminPathPolicies       = "/policies"
	AdminPathPoliciesReload = "/policies/reload"
	AdminPathResources      = "/resources"
	AdminPathBackup         = "/backup"
)

// adminRouteTable lists the operator's API's paths.
func (s *Server) adminRouteTable() []route {
	refuse := oauth.ErrMethodNotAllowed
	return []route{
		{path: AdminPathClients, methods: []method{onGet(s.adminListClients), onPost(s.adminAddClient)}, refuse: refuse},
		{path: AdminPathClients + "/{id}", methods: []method{onDelete(s.adminRemoveClient)}, refuse: refuse},
		{path: AdminPathTokens, methods: []method{onGet(s.adminListTokens), onDelete(s.adminRevokeTokens)}, refuse: refuse},
		{path: AdminPathKeys, methods: []method{onGet(s.adminListKeys)}, refuse: refuse},
		{path: AdminPathKeysRotate, methods: []method{onPost(s.adminRotateKeys)}, refuse: refuse},
		{path: AdminPathPolicies, methods: []method{onGet(s.adminPolicyStatus)}, refuse: refuse},
		{path: AdminPathPoliciesReload, methods: []method{onPost(s.adminReloadPolicies)}, refuse: refuse},
		{path: AdminPathResources, methods: []method{onGet(s.adminListResources)}, refuse: refuse},
		{path: AdminPathBackup, methods: []method{onGet(s.adminBackup)}, refuse: refuse},
	}
}

// AdminHandler returns the operator's API mounted at prefix (such as
// "/uma"): the paths above under it, and a 404 for any other path.
func (s *Server) AdminHandler(prefix string) http.Handler {
	prefix = strings.TrimRight(prefix, "/")
	mux := http.NewServeMux()
	for _, rt := range s.adminRouteTable() {
		s.register(mux, rt, prefix+rt.path)
	}
	mux.Handle("/", s.answer(func(http.ResponseWriter, *http.Request) error {
		return oauth.ErrNotFound("no such operator endpoint; see docs/openapi.yaml")
	}))
	return mux
}

func (s *Server) adminListClients(w http.ResponseWriter, r *http.Request) error {
	clients, err := s.Clients(r.Context())
	if err != nil {
		return oauth.ErrServer("could not list the clients", err)
	}
	oauth.WriteJSON(w, http.StatusOK, map[string]any{"clients": clients})
	return nil
}

// clientAdded is the answer to a registration through the operator's API.
type clientAdded struct {
	ClientInfo
	// ClientSecret is shown once.
	ClientSecret string `json:"client_secret,omitempty"`
}

func (s *Server) adminAddClient(w http.ResponseWriter, r *http.Request) error {
	var md ClientMetadata
	if err := oauth.ReadJSON(w, r, &md); err != nil {
		return err
	}
	c, secret, err := s.RegisterClient(r.Context(), md)
	if err != nil {
		return err
	}
	oauth.WriteJSON(w, http.StatusCreated, clientAdded{ClientInfo: c, ClientSecret: secret})
	return nil
}

func (s *Server) adminRemoveClient(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	revoked, err := s.RemoveClient(r.Context(), id)
	switch {
	case errors.Is(err, ErrNoSuchClient):
		return oauth.ErrNotFound("no client registered at run time has the id " + oauth.Quote(id))
	case errors.Is(err, ErrConfiguredClient):
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

func (s *Server) adminListTokens(w http.ResponseWriter, r *http.Request) error {
	f, err := tokenFilter(r.URL.Query())
	if err != nil {
		return err
	}
	toks, err := s.Tokens(r.Context(), f)
	if err != nil {
		return oauth.ErrServer("could not list the tokens", err)
	}
	oauth.WriteJSON(w, http.StatusOK, map[string]any{"tokens": nonNil(toks)})
	return nil
}

func (s *Server) adminRevokeTokens(w http.ResponseWriter, r *http.Request) error {
	f, err := tokenFilter(r.URL.Query())
	if err != nil {
		return err
	}
	toks, err := s.RevokeTokens(r.Context(), f)
	if err != nil {
		return oauth.ErrServer("could not revoke the tokens", err)
	}
	oauth.WriteJSON(w, http.StatusOK, map[string]any{"revoked": nonNil(toks)})
	return nil
}

func (s *Server) adminListKeys(w http.ResponseWriter, r *http.Request) error {
	oauth.WriteJSON(w, http.StatusOK, map[string]any{"keys": s.SigningKeys()})
	return nil
}

func (s *Server) adminRotateKeys(w http.ResponseWriter, r *http.Request) error {
	keys, err := s.RotateKeys(r.Context())
	if err != nil {
		return oauth.ErrServer("could not rotate the signing keys", err)
	}
	oauth.WriteJSON(w, http.StatusOK, map[string]any{"keys": keys})
	return nil
}

func (s *Server) adminPolicyStatus(w http.ResponseWriter, r *http.Request) error {
	oauth.WriteJSON(w, http.StatusOK, s.PolicyStatus())
	return nil
}

func (s *Server) adminReloadPolicies(w http.ResponseWriter, r *http.Request) error {
	st, err := s.ReloadPolicies(r.Context())
	switch {
	case errors.Is(err, ErrNoPolicyDirectory):
		return oauth.ErrNotFound("no policies directory is configured: set policies in the uma global option")
	case err != nil:
		return oauth.ErrServer("could not read the policies directory", err)
	}
	oauth.WriteJSON(w, http.StatusOK, st)
	return nil
}

func (s *Server) adminListResources(w http.ResponseWriter, r *http.Request) error {
	owner := r.URL.Query().Get("owner")
	if owner == "" {
		return oauth.ErrInvalidRequest("owner is required: the subject whose resources to list")
	}
	res, err := s.OwnerResources(r.Context(), owner)
	if err != nil {
		return oauth.ErrServer("could not list the resources", err)
	}
	oauth.WriteJSON(w, http.StatusOK, map[string]any{"resources": nonNil(res)})
	return nil
}

// adminBackup streams a dump. A failure before the first byte is an
// error answer; one later cuts the dump short, without its end line, and
// restore (and backup, before it keeps the file) refuses such a dump.
func (s *Server) adminBackup(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Content-Type", "application/x-ndjson")
	oauth.NoStore(w.Header())
	cw := &committedWriter{w: w}
	if _, err := s.Backup(r.Context(), cw, s.issuer); err != nil {
		if !cw.committed {
			w.Header().Del("Content-Type")
			return oauth.ErrServer("could not read the store", err)
		}
		s.log.Error("backup cut short", zap.Error(err))
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
