package authz

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"

	"github.com/caddy-uma/caddy-uma/authz/oauth"
	"github.com/caddy-uma/caddy-uma/authz/secret"
	"github.com/caddy-uma/caddy-uma/store"
)

// Limits on resource descriptions.
const (
	maxScopes       = 100
	maxURIs         = 100
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

// ResourceInput is a create or update body of the protection API.
// resource_scopes and owner are read leniently: scopes as strings or as
// Keycloak's {"name": ...} objects, the owner as a string or Keycloak's
// {"id"|"name": ...} object.
type ResourceInput struct {
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

// nonNil makes a nil slice an empty one, so that JSON shows [].
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// decodeResource reads and validates a resource description body into res
// (whose ID, ResourceServer and timestamps the caller sets).
func (s *Server) decodeResource(w http.ResponseWriter, r *http.Request, caller protectionCaller, res *store.Resource) error {
	var in ResourceInput
	if err := oauth.ReadJSON(w, r, &in); err != nil {
		return err
	}
	return ApplyResource(in, caller, res)
}

// ApplyResource validates a resource description body into res, with the
// caller's reach over its owner.
func ApplyResource(in ResourceInput, caller protectionCaller, res *store.Resource) error {
	scopes, err := parseScopeList(in.ResourceScopes)
	if err != nil {
		return err
	}
	switch {
	case len(in.Name) > maxNameLen:
		return oauth.ErrInvalidRequest("name is longer than %d bytes", maxNameLen)
	case len(in.Type) > maxTextLen || len(in.Description) > maxTextLen:
		return oauth.ErrInvalidRequest("type or description is longer than %d bytes", maxTextLen)
	case len(in.URIs) > maxURIs:
		return oauth.ErrInvalidRequest("more than %d uris", maxURIs)
	case !validText(in.Name, false) || !validText(in.Type, false):
		return oauth.ErrInvalidRequest("name and type must be UTF-8 text without control or bidirectional formatting characters")
	case !validText(in.Description, true):
		return oauth.ErrInvalidRequest("description must be UTF-8 text without control (but line breaks) or bidirectional formatting characters")
	}
	if in.IconURI != "" && (!webURI(in.IconURI) || len(in.IconURI) > maxURILen) {
		return oauth.ErrInvalidRequest("icon_uri must be an absolute http or https URI")
	}
	for _, u := range in.URIs {
		if u == "" || len(u) > maxURILen || !resourceURI(u) {
			return oauth.ErrInvalidRequest("uris must be paths (/...) or absolute http or https URIs of at most %d bytes", maxURILen)
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
	case caller.actsForAnyOwner() || owner == caller.Subject:
		res.Owner = owner
	default:
		return oauth.ErrInvalidRequest("owner must be the PAT's resource owner")
	}
	if res.ID != "" && in.ID != nil && *in.ID != res.ID {
		return oauth.ErrInvalidRequest("_id in the body does not match the path")
	}
	res.Name, res.Type, res.Description, res.IconURI = in.Name, in.Type, in.Description, in.IconURI
	res.Scopes, res.URIs = scopes, in.URIs
	return nil
}

// parseScopeList reads resource_scopes: required, an array of scope
// strings (or {"name": scope} objects), without duplicates.
func parseScopeList(raw json.RawMessage) ([]string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, oauth.ErrInvalidRequest("resource_scopes is required")
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, oauth.ErrInvalidRequest("resource_scopes must be an array of strings")
	}
	if len(items) > maxScopes {
		return nil, oauth.ErrInvalidRequest("more than %d resource_scopes", maxScopes)
	}
	scopes := make([]string, 0, len(items))
	for _, it := range items {
		var sc string
		if err := json.Unmarshal(it, &sc); err != nil {
			var obj struct {
				Name string `json:"name"`
			}
			if json.Unmarshal(it, &obj) != nil || obj.Name == "" {
				return nil, oauth.ErrInvalidRequest("resource_scopes must be an array of strings")
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

// validateScope checks a scope of a resource description (oauth.ValidScope).
func validateScope(sc string) error {
	switch {
	case sc == "" || len(sc) > oauth.MaxScopeLen:
		return oauth.ErrInvalidRequest("a scope must be 1 to %d characters", oauth.MaxScopeLen)
	case !oauth.ValidScope(sc):
		return oauth.ErrInvalidRequest("scope %s has a character that scopes may not contain", oauth.Quote(sc))
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
			return "", oauth.ErrInvalidRequest("owner must be a string")
		}
		owner = obj.ID
		if owner == "" {
			owner = obj.Name
		}
	}
	if owner != "" && !ValidSubject(owner) {
		return "", oauth.ErrInvalidRequest("owner is not a valid subject: 1 to %d bytes of UTF-8 text without control or bidirectional formatting characters", MaxSubjectLen)
	}
	return owner, nil
}

func errResourceNotFound() error { return oauth.ErrNotFound("no such resource") }

// createResource registers a resource (POST {issuer}/resource_set).
func (s *Server) createResource(w http.ResponseWriter, r *http.Request, caller protectionCaller) error {
	res, err := s.RegisterResource(w, r, caller, s.decodeResource, PathResourceSet)
	if err != nil {
		return err
	}
	oauth.WriteJSON(w, http.StatusCreated, s.resourceRef(res.ID))
	return nil
}

// RegisterResource registers the resource that decode reads for the
// caller and sets Location to it under the collection path (POST, on our
// path and Keycloak's).
func (s *Server) RegisterResource(w http.ResponseWriter, r *http.Request, caller protectionCaller, decode ResourceDecoder, collection string) (store.Resource, error) {
	res := store.Resource{ResourceServer: caller.ClientID}
	if err := decode(w, r, caller, &res); err != nil {
		return res, err
	}
	now := s.now().UTC()
	res.ID = randomID()
	res.CreatedAt, res.UpdatedAt = now, now
	if err := s.store.CreateResource(r.Context(), res); err != nil {
		return res, oauth.ErrServer("could not store the resource", err)
	}
	s.log.Info("resource registered", clientField(caller.ClientID), ownerField(res.Owner), resourceField(res.ID))
	w.Header().Set("Location", s.Endpoint(collection+"/"+url.PathEscape(res.ID)))
	return res, nil
}

// listResources answers the ids of the caller's resources. The query
// parameters name, type, owner, uri and scope filter by exact match (an
// extension; the spec defines no filters).
func (s *Server) listResources(w http.ResponseWriter, r *http.Request, caller protectionCaller) error {
	q := store.ResourceQuery{ResourceServer: caller.ClientID}
	if !caller.actsForAnyOwner() {
		q.Owner = caller.Subject
	}
	params := r.URL.Query()
	if o := params.Get("owner"); o != "" {
		if q.Owner != "" && q.Owner != o {
			oauth.WriteJSON(w, http.StatusOK, []string{})
			return nil
		}
		q.Owner = o
	}
	// A name is looked up through the store's index of names (what an
	// enforcement point asks before it registers a resource); the other
	// filters are applied to pages of the result, read until the answer
	// is full.
	if q.Name = params.Get("name"); q.Name != "" && !validText(q.Name, false) {
		oauth.WriteJSON(w, http.StatusOK, []string{}) // no resource has that name
		return nil
	}
	ids := []string{}
	for q.Limit = listPage; len(ids) < maxListedResult; {
		list, err := s.store.ListResources(r.Context(), q)
		if err != nil {
			return oauth.ErrServer("could not list resources", err)
		}
		for _, res := range list {
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
		if len(list) < q.Limit {
			break
		}
		q.After = list[len(list)-1].ID
	}
	oauth.WriteJSON(w, http.StatusOK, ids)
	return nil
}

// listPage is how many resources listResources reads at a time.
const listPage = 1000

// ManagedResource returns the resource of the path's {id}, if the caller
// may manage it; any other is 404.
func (s *Server) ManagedResource(r *http.Request, caller protectionCaller) (store.Resource, error) {
	res, err := s.store.GetResource(r.Context(), r.PathValue("id"))
	if errors.Is(err, store.ErrNotFound) || (err == nil && !caller.mayManage(res)) {
		return res, errResourceNotFound()
	}
	if err != nil {
		return res, oauth.ErrServer("could not read the resource", err)
	}
	return res, nil
}

// readResource answers a resource description (GET).
func (s *Server) readResource(w http.ResponseWriter, r *http.Request, caller protectionCaller) error {
	res, err := s.ManagedResource(r, caller)
	if err != nil {
		return err
	}
	desc := toDescription(res)
	desc.UserAccessPolicyURI = s.userAccessPolicyURI(res.ID)
	oauth.WriteJSON(w, http.StatusOK, desc)
	return nil
}

// updateResource replaces a resource description (PUT).
func (s *Server) updateResource(w http.ResponseWriter, r *http.Request, caller protectionCaller) error {
	res, err := s.ReplaceResource(w, r, caller, s.decodeResource)
	if err != nil {
		return err
	}
	oauth.WriteJSON(w, http.StatusOK, s.resourceRef(res.ID))
	return nil
}

// ResourceDecoder reads a resource description of a request into res.
type ResourceDecoder func(w http.ResponseWriter, r *http.Request, caller protectionCaller, res *store.Resource) error

// ReplaceResource replaces the caller's resource of the request's path
// with the description decode reads (PUT, on our path and Keycloak's).
func (s *Server) ReplaceResource(w http.ResponseWriter, r *http.Request, caller protectionCaller, decode ResourceDecoder) (store.Resource, error) {
	res, err := s.ManagedResource(r, caller)
	if err != nil {
		return res, err
	}
	if err := decode(w, r, caller, &res); err != nil {
		return res, err
	}
	res.UpdatedAt = s.now().UTC()
	if err := s.store.UpdateResource(r.Context(), res); errors.Is(err, store.ErrNotFound) {
		return res, errResourceNotFound()
	} else if err != nil {
		return res, oauth.ErrServer("could not store the resource", err)
	}
	s.log.Info("resource updated", clientField(caller.ClientID), resourceField(res.ID))
	return res, nil
}

// deleteResource deregisters a resource (DELETE).
func (s *Server) deleteResource(w http.ResponseWriter, r *http.Request, caller protectionCaller) error {
	res, err := s.ManagedResource(r, caller)
	if err != nil {
		return err
	}
	if err := s.store.DeleteResource(r.Context(), res.ID); errors.Is(err, store.ErrNotFound) {
		return errResourceNotFound()
	} else if err != nil {
		return oauth.ErrServer("could not delete the resource", err)
	}
	s.log.Info("resource deleted", clientField(caller.ClientID), resourceField(res.ID))
	oauth.WriteNoContent(w, http.StatusNoContent)
	return nil
}

// userAccessPolicyURI is the console page of a resource, where its owner
// shares it; empty when the console is off.
func (s *Server) userAccessPolicyURI(id string) string {
	if !s.loginPages {
		return ""
	}
	return s.Endpoint(PathConsole + "/resources/" + url.PathEscape(id))
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
func randomID() string { return secret.New(16) }
