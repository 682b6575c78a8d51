package authz

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/caddy-uma/caddy-uma/store"
)

// Limits on resource descriptions.
const (
	maxScopes       = 100
	maxURIs         = 100
	maxScopeLen     = 256
	maxNameLen      = 256
	maxTextLen      = 4096
	maxURILen       = 2048
	maxOwnerLen     = 256
	maxListedResult = 10000
)

// resourceDescription is the wire form of a resource description
// (Federated Authorization section 3.1), with the members caddy-uma adds:
// owner and uris, as Keycloak has them.
type resourceDescription struct {
	ID             string   `json:"_id"`
	Name           string   `json:"name,omitempty"`
	Type           string   `json:"type,omitempty"`
	Description    string   `json:"description,omitempty"`
	IconURI        string   `json:"icon_uri,omitempty"`
	ResourceScopes []string `json:"resource_scopes"`
	URIs           []string `json:"uris,omitempty"`
	Owner          string   `json:"owner,omitempty"`
	// UserAccessPolicyURI is the console page where the owner sets who may
	// do what with the resource (when the console is on).
	UserAccessPolicyURI string `json:"user_access_policy_uri,omitempty"`
}

// resourceInput is a create or update body. resource_scopes and owner are
// read leniently: scopes as strings or as Keycloak's {"name": ...}
// objects, the owner as a string or Keycloak's {"id"|"name": ...} object.
type resourceInput struct {
	ID             *string         `json:"_id"`
	Name           string          `json:"name"`
	Type           string          `json:"type"`
	Description    string          `json:"description"`
	IconURI        string          `json:"icon_uri"`
	ResourceScopes json.RawMessage `json:"resource_scopes"`
	URIs           []string        `json:"uris"`
	Owner          json.RawMessage `json:"owner"`
}

func toDescription(r store.Resource) resourceDescription {
	return resourceDescription{
		ID: r.ID, Name: r.Name, Type: r.Type, Description: r.Description, IconURI: r.IconURI,
		ResourceScopes: nonNil(r.Scopes), URIs: r.URIs, Owner: r.Owner,
	}
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// decodeResource reads and validates a resource description body into res
// (whose ID, ResourceServer and timestamps the caller sets).
func (s *Server) decodeResource(w http.ResponseWriter, r *http.Request, caller protectionCaller, res *store.Resource) error {
	var in resourceInput
	if err := readJSON(w, r, &in); err != nil {
		return err
	}
	scopes, err := parseScopeList(in.ResourceScopes)
	if err != nil {
		return err
	}
	switch {
	case len(in.Name) > maxNameLen:
		return errInvalidRequest("name is longer than %d bytes", maxNameLen)
	case len(in.Type) > maxTextLen || len(in.Description) > maxTextLen:
		return errInvalidRequest("type or description is longer than %d bytes", maxTextLen)
	case len(in.URIs) > maxURIs:
		return errInvalidRequest("more than %d uris", maxURIs)
	}
	if in.IconURI != "" {
		u, err := url.Parse(in.IconURI)
		if err != nil || !u.IsAbs() || len(in.IconURI) > maxURILen {
			return errInvalidRequest("icon_uri must be an absolute URI")
		}
	}
	for _, u := range in.URIs {
		if u == "" || len(u) > maxURILen {
			return errInvalidRequest("uris must be non-empty strings of at most %d bytes", maxURILen)
		}
	}
	owner, err := parseOwner(in.Owner)
	if err != nil {
		return err
	}
	switch {
	case owner == "":
		if res.Owner == "" {
			res.Owner = caller.Subject
		}
	case caller.actsForAnyOwner():
		res.Owner = owner
	case owner != caller.Subject:
		return errInvalidRequest("owner must be the PAT's resource owner")
	}
	if res.ID != "" && in.ID != nil && *in.ID != res.ID {
		return errInvalidRequest("_id in the body does not match the path")
	}
	res.Name, res.Type, res.Description, res.IconURI = in.Name, in.Type, in.Description, in.IconURI
	res.Scopes, res.URIs = scopes, in.URIs
	return nil
}

// parseScopeList reads resource_scopes: required, an array of scope
// strings (or {"name": scope} objects), without duplicates.
func parseScopeList(raw json.RawMessage) ([]string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, errInvalidRequest("resource_scopes is required")
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, errInvalidRequest("resource_scopes must be an array of strings")
	}
	if len(items) > maxScopes {
		return nil, errInvalidRequest("more than %d resource_scopes", maxScopes)
	}
	scopes := make([]string, 0, len(items))
	for _, it := range items {
		var sc string
		if err := json.Unmarshal(it, &sc); err != nil {
			var obj struct {
				Name string `json:"name"`
			}
			if json.Unmarshal(it, &obj) != nil || obj.Name == "" {
				return nil, errInvalidRequest("resource_scopes must be an array of strings")
			}
			sc = obj.Name
		}
		if err := validateScope(sc); err != nil {
			return nil, err
		}
		if !slices.Contains(scopes, sc) {
			scopes = append(scopes, sc)
		}
	}
	return scopes, nil
}

// validateScope checks a scope token (RFC 6749 section 3.3 scope-token).
func validateScope(sc string) error {
	if sc == "" || len(sc) > maxScopeLen {
		return errInvalidRequest("a scope must be 1 to %d characters", maxScopeLen)
	}
	for _, ch := range sc {
		if ch <= 0x20 || ch == '"' || ch == '\\' || ch == 0x7f {
			return errInvalidRequest("scope %s has a character that scopes may not contain", quote(sc))
		}
	}
	return nil
}

// parseOwner reads the optional owner member.
func parseOwner(raw json.RawMessage) (string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	var owner string
	if err := json.Unmarshal(raw, &owner); err != nil {
		var obj struct {
			ID   string `json:"id"`
			Name string `json:"name"`
		}
		if json.Unmarshal(raw, &obj) != nil {
			return "", errInvalidRequest("owner must be a string")
		}
		owner = obj.ID
		if owner == "" {
			owner = obj.Name
		}
	}
	if len(owner) > maxOwnerLen || strings.ContainsRune(owner, 0) {
		return "", errInvalidRequest("owner is not a valid subject")
	}
	return owner, nil
}

func errResourceNotFound() error {
	return &oauthError{Status: http.StatusNotFound, Code: "not_found", Description: "no such resource"}
}

func errUnsupportedMethod(allow ...string) error {
	return &oauthError{
		Status: http.StatusMethodNotAllowed, Code: "unsupported_method_type",
		Description: "use " + strings.Join(allow, ", "), Allow: strings.Join(allow, ", "),
	}
}

// serveResourceSet serves the resource registration collection: list
// (GET) and create (POST).
func (s *Server) serveResourceSet(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodPost && r.Method != http.MethodHead {
		// Authenticate first so that the 405 is not an oracle for anonymous callers.
		if _, err := s.requirePAT(r); err != nil {
			writeError(w, err)
			return
		}
		writeError(w, errUnsupportedMethod(http.MethodGet, http.MethodPost))
		return
	}
	caller, err := s.requirePAT(r)
	if err != nil {
		writeError(w, err)
		return
	}
	if r.Method == http.MethodPost {
		s.createResource(w, r, caller)
		return
	}
	s.listResources(w, r, caller)
}

func (s *Server) createResource(w http.ResponseWriter, r *http.Request, caller protectionCaller) {
	res := store.Resource{ResourceServer: caller.ClientID}
	if err := s.decodeResource(w, r, caller, &res); err != nil {
		writeError(w, err)
		return
	}
	now := s.now().UTC()
	res.ID = randomID()
	res.CreatedAt, res.UpdatedAt = now, now
	if err := s.store.CreateResource(r.Context(), res); err != nil {
		s.log.Error("registering a resource", errField(err))
		writeError(w, errServer("could not store the resource"))
		return
	}
	s.log.Info("resource registered", clientField(caller.ClientID), ownerField(res.Owner), resourceField(res.ID))
	w.Header().Set("Location", s.endpoint(PathResourceSet+"/"+url.PathEscape(res.ID)))
	writeJSON(w, http.StatusCreated, s.resourceRef(res.ID))
}

// listResources answers the ids of the caller's resources. The query
// parameters name, type, owner, uri and scope filter by exact match (an
// extension; the spec defines no filters).
func (s *Server) listResources(w http.ResponseWriter, r *http.Request, caller protectionCaller) {
	q := store.ResourceQuery{ResourceServer: caller.ClientID}
	if !caller.actsForAnyOwner() {
		q.Owner = caller.Subject
	}
	params := r.URL.Query()
	if o := params.Get("owner"); o != "" {
		if q.Owner != "" && q.Owner != o {
			writeJSON(w, http.StatusOK, []string{})
			return
		}
		q.Owner = o
	}
	list, err := s.store.ListResources(r.Context(), q)
	if err != nil {
		s.log.Error("listing resources", errField(err))
		writeError(w, errServer("could not list resources"))
		return
	}
	ids := []string{}
	for _, res := range list {
		if f := params.Get("name"); f != "" && res.Name != f {
			continue
		}
		if f := params.Get("type"); f != "" && res.Type != f {
			continue
		}
		if f := params.Get("uri"); f != "" && !slices.Contains(res.URIs, f) {
			continue
		}
		if f := params.Get("scope"); f != "" && !slices.Contains(res.Scopes, f) {
			continue
		}
		ids = append(ids, res.ID)
		if len(ids) >= maxListedResult {
			break
		}
	}
	writeJSON(w, http.StatusOK, ids)
}

// serveResource serves one registered resource: read, update, delete.
func (s *Server) serveResource(w http.ResponseWriter, r *http.Request, id string) {
	caller, err := s.requirePAT(r)
	if err != nil {
		writeError(w, err)
		return
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodPut, http.MethodDelete:
	default:
		writeError(w, errUnsupportedMethod(http.MethodGet, http.MethodPut, http.MethodDelete))
		return
	}
	res, err := s.store.GetResource(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) || (err == nil && !caller.mayManage(res)) {
		writeError(w, errResourceNotFound())
		return
	}
	if err != nil {
		s.log.Error("reading a resource", errField(err))
		writeError(w, errServer("could not read the resource"))
		return
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		desc := toDescription(res)
		desc.UserAccessPolicyURI = s.userAccessPolicyURI(res.ID)
		writeJSON(w, http.StatusOK, desc)
	case http.MethodPut:
		if err := s.decodeResource(w, r, caller, &res); err != nil {
			writeError(w, err)
			return
		}
		res.UpdatedAt = s.now().UTC()
		if err := s.store.UpdateResource(r.Context(), res); errors.Is(err, store.ErrNotFound) {
			writeError(w, errResourceNotFound())
			return
		} else if err != nil {
			s.log.Error("updating a resource", errField(err))
			writeError(w, errServer("could not store the resource"))
			return
		}
		s.log.Info("resource updated", clientField(caller.ClientID), resourceField(res.ID))
		writeJSON(w, http.StatusOK, s.resourceRef(res.ID))
	case http.MethodDelete:
		if err := s.store.DeleteResource(r.Context(), id); errors.Is(err, store.ErrNotFound) {
			writeError(w, errResourceNotFound())
			return
		} else if err != nil {
			s.log.Error("deleting a resource", errField(err))
			writeError(w, errServer("could not delete the resource"))
			return
		}
		s.log.Info("resource deleted", clientField(caller.ClientID), resourceField(id))
		noStore(w.Header())
		w.WriteHeader(http.StatusNoContent)
	}
}

// userAccessPolicyURI is the console page of a resource, where its owner
// shares it; empty when the console is off.
func (s *Server) userAccessPolicyURI(id string) string {
	if s.people == nil {
		return ""
	}
	return s.endpoint(PathConsole + "/resources/" + url.PathEscape(id))
}

// resourceRef is the body of create and update responses: _id, and
// user_access_policy_uri when the console is on.
func (s *Server) resourceRef(id string) map[string]string {
	ref := map[string]string{"_id": id}
	if u := s.userAccessPolicyURI(id); u != "" {
		ref["user_access_policy_uri"] = u
	}
	return ref
}

// randomID returns a new resource id: 128 random bits.
func randomID() string { return randomToken(16) }
