package keycloak

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/caddy-uma/caddy-uma/authz"
	"github.com/caddy-uma/caddy-uma/authz/oauth"
	"github.com/caddy-uma/caddy-uma/authz/uripattern"
	"github.com/caddy-uma/caddy-uma/store"
)

// Resource registration as Keycloak serves it ({issuer}/authz/protection/
// resource_set): its representation (scopes and owner as objects,
// displayName, ownerManagedAccess), its answers (201 with the whole
// representation, 204 to an update) and its list query. The resources are
// the AS's: the same store records, the same validation
// (authz.ApplyResource) and the same reach of a PAT (authz.PATCaller.
// MayManage) as on its path.
//
// What Keycloak keeps and caddy-uma does not: attributes (read and
// ignored), scope ids (a scope's id is its name, here and in permission
// tickets), and ownerManagedAccess=false (every owner manages access to
// their resources in the console; the member is read and ignored, and
// answered true for a resource a person owns). displayName is kept in our
// description member.

// keycloakScope is a scope as Keycloak represents it. Scopes have no ids
// of their own here: the id is the name.
type keycloakScope struct {
	ID   string `json:"id,omitempty"`
	Name string `json:"name"`
}

// keycloakOwner is an owner as Keycloak represents it: its subject is both
// the id and the name.
type keycloakOwner struct {
	ID   string `json:"id"`
	Name string `json:"name,omitempty"`
}

// keycloakResource is Keycloak's representation of a resource
// (UmaResourceRepresentation; with deep=true listing, scopes again under
// "scopes", as its ResourceRepresentation has them).
type keycloakResource struct {
	ID                 string          `json:"_id"`
	Name               string          `json:"name"`
	DisplayName        string          `json:"displayName,omitempty"`
	Type               string          `json:"type,omitempty"`
	URIs               []string        `json:"uris"`
	ResourceScopes     []keycloakScope `json:"resource_scopes"`
	Scopes             []keycloakScope `json:"scopes,omitempty"`
	IconURI            string          `json:"icon_uri,omitempty"`
	Owner              keycloakOwner   `json:"owner"`
	OwnerManagedAccess bool            `json:"ownerManagedAccess"`
}

func toKeycloakResource(r store.Resource) keycloakResource {
	scopes := make([]keycloakScope, 0, len(r.Scopes))
	for _, sc := range r.Scopes {
		scopes = append(scopes, keycloakScope{ID: sc, Name: sc})
	}
	return keycloakResource{
		ID: r.ID, Name: r.Name, DisplayName: r.Description, Type: r.Type, URIs: nonNil(r.URIs),
		ResourceScopes: scopes, IconURI: r.IconURI,
		Owner:              keycloakOwner{ID: r.Owner, Name: r.Owner},
		OwnerManagedAccess: r.Owner != r.ResourceServer,
	}
}

// keycloakResourceInput is a create or update body in Keycloak's shape:
// ours (scopes as strings or {"name": ...} objects, the owner as a string
// or {"id"|"name": ...}) with Keycloak's members.
type keycloakResourceInput struct {
	authz.ResourceInput
	DisplayName *string         `json:"displayName"`
	Scopes      json.RawMessage `json:"scopes"`
	// URI is the single uri of older Keycloak clients.
	URI                string              `json:"uri"`
	OwnerManagedAccess *bool               `json:"ownerManagedAccess"`
	Attributes         map[string][]string `json:"attributes"`
}

// decodeKeycloakResource reads a Keycloak resource body into res.
func decodeKeycloakResource(w http.ResponseWriter, r *http.Request, caller authz.PATCaller, res *store.Resource) error {
	var in keycloakResourceInput
	if err := oauth.ReadJSON(w, r, &in); err != nil {
		return err
	}
	ours := in.ResourceInput
	if isAbsent(ours.ResourceScopes) {
		// Keycloak's resources may have no scopes, and its clients send
		// them under either name.
		ours.ResourceScopes = in.Scopes
		if isAbsent(ours.ResourceScopes) {
			ours.ResourceScopes = json.RawMessage("[]")
		}
	}
	if ours.Description == "" && in.DisplayName != nil {
		ours.Description = *in.DisplayName
	}
	if in.URI != "" && !slices.Contains(ours.URIs, in.URI) {
		ours.URIs = append(ours.URIs, in.URI)
	}
	return authz.ApplyResource(ours, caller, res)
}

func isAbsent(raw json.RawMessage) bool { return len(raw) == 0 || string(raw) == "null" }

// createResource registers a resource and answers 201 with its
// representation.
func (c *Compat) createResource(w http.ResponseWriter, r *http.Request, caller authz.PATCaller) error {
	res, err := c.as.RegisterResource(w, r, caller, decodeKeycloakResource, PathResourceSet)
	if err != nil {
		return err
	}
	oauth.WriteJSON(w, http.StatusCreated, toKeycloakResource(res))
	return nil
}

// readResource answers a resource's representation.
func (c *Compat) readResource(w http.ResponseWriter, r *http.Request, caller authz.PATCaller) error {
	res, err := c.as.ManagedResource(r, caller)
	if err != nil {
		return err
	}
	oauth.WriteJSON(w, http.StatusOK, toKeycloakResource(res))
	return nil
}

// updateResource replaces a resource and answers 204, as Keycloak.
func (c *Compat) updateResource(w http.ResponseWriter, r *http.Request, caller authz.PATCaller) error {
	if _, err := c.as.ReplaceResource(w, r, caller, decodeKeycloakResource); err != nil {
		return err
	}
	oauth.WriteNoContent(w, http.StatusNoContent)
	return nil
}

// keycloakDefaultMax is how many resources a Keycloak list answers without
// max (Keycloak's Constants.DEFAULT_MAX_RESULTS); max=-1 means all of
// them, up to authz.MaxListedResult.
const keycloakDefaultMax = 100

// keycloakResourceQuery is the list query of Keycloak's resource_set.
type keycloakResourceQuery struct {
	id, name, uri, owner, typ, scope string
	exactName, matchingURI, deep     bool
	first, max                       int
}

func parseKeycloakResourceQuery(params url.Values) (keycloakResourceQuery, error) {
	q := keycloakResourceQuery{
		id: params.Get("_id"), name: params.Get("name"), uri: params.Get("uri"), owner: params.Get("owner"),
		typ: params.Get("type"), scope: params.Get("scope"),
		exactName: keycloakBool(params.Get("exactName")), matchingURI: keycloakBool(params.Get("matchingUri")),
		deep: keycloakBool(params.Get("deep")), max: keycloakDefaultMax,
	}
	var err error
	if q.first, err = keycloakInt(params, "first", 0); err != nil {
		return q, err
	}
	if q.max, err = keycloakInt(params, "max", keycloakDefaultMax); err != nil {
		return q, err
	}
	q.first = max(q.first, 0)
	if q.max < 0 || q.max > authz.MaxListedResult {
		q.max = authz.MaxListedResult
	}
	return q, nil
}

// keycloakBool reads a boolean query parameter as Keycloak (Java's
// Boolean.valueOf): "true" in any case is true, anything else false.
func keycloakBool(v string) bool { return strings.EqualFold(v, "true") }

// keycloakInt reads an integer query parameter, def when absent.
func keycloakInt(params url.Values, name string, def int) (int, error) {
	v := params.Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, oauth.ErrInvalidRequest("%s must be an integer", name)
	}
	return n, nil
}

// matches reports whether res passes the query's filters but the uri
// pattern fallback: name (a case-insensitive substring, or exactly with
// exactName), uri (one of its uris, exactly), type, scope and _id.
func (q keycloakResourceQuery) matches(res store.Resource) bool {
	switch {
	case q.id != "" && res.ID != q.id:
		return false
	case q.name != "" && q.exactName && res.Name != q.name:
		return false
	case q.name != "" && !q.exactName && !strings.Contains(strings.ToLower(res.Name), strings.ToLower(q.name)):
		return false
	case q.typ != "" && res.Type != q.typ:
		return false
	case q.scope != "" && !slices.Contains(res.Scopes, q.scope):
		return false
	}
	return true
}

// listKeycloakResources answers Keycloak's list query: the ids of the
// matching resources, or with deep=true their representations, from
// first, at most max. The caller's reach is ours (an owner's PAT lists the
// owner's resources of this resource server; a resource server's own PAT
// all of its resources, or one owner's with owner=).
//
// exactName and _id are answered through the store's indexes; a substring
// name, uri, type or scope filter reads the caller's resources of this
// resource server in pages (as Keycloak, which queries its database with
// LIKE), stopping once the answer is full.
func (c *Compat) listResources(w http.ResponseWriter, r *http.Request, caller authz.PATCaller) error {
	q, err := parseKeycloakResourceQuery(r.URL.Query())
	if err != nil {
		return err
	}
	sq := store.ResourceQuery{ResourceServer: caller.ClientID}
	if !caller.ActsForAnyOwner() {
		sq.Owner = caller.Subject
	}
	if q.owner != "" {
		if sq.Owner != "" && sq.Owner != q.owner {
			return writeResources(w, q, nil)
		}
		sq.Owner = q.owner
	}
	if q.name != "" && q.exactName {
		if !authz.ValidText(q.name, false) {
			return writeResources(w, q, nil) // no resource has that name
		}
		sq.Name = q.name
	}
	var found []store.Resource
	if q.max == 0 {
		return writeResources(w, q, nil)
	}
	if q.id != "" {
		res, err := c.store.GetResource(r.Context(), q.id)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return oauth.ErrServer("could not read the resource", err)
		}
		if err == nil && caller.MayManage(res) && (sq.Owner == "" || res.Owner == sq.Owner) && q.matches(res) &&
			(q.uri == "" || slices.Contains(res.URIs, q.uri)) && q.first == 0 {
			found = append(found, res)
		}
		return writeResources(w, q, found)
	}
	skipped := 0
	err = c.eachResource(r, sq, func(res store.Resource) bool {
		if !q.matches(res) || (q.uri != "" && !slices.Contains(res.URIs, q.uri)) {
			return true
		}
		if skipped < q.first {
			skipped++
			return true
		}
		found = append(found, res)
		return len(found) < q.max
	})
	if err != nil {
		return err
	}
	if len(found) == 0 && q.matchingURI && q.uri != "" {
		// Keycloak's fallback: the resource whose uri pattern matches
		// the path best.
		if res, ok, err := c.matchResourceURI(r, sq, q); err != nil {
			return err
		} else if ok {
			found = append(found, res)
		}
	}
	return writeResources(w, q, found)
}

// eachResource calls f with the resources of sq, in pages, until f returns
// false or they run out.
func (c *Compat) eachResource(r *http.Request, sq store.ResourceQuery, f func(store.Resource) bool) error {
	for sq.Limit = listPage; ; {
		list, err := c.store.ListResources(r.Context(), sq)
		if err != nil {
			return oauth.ErrServer("could not list resources", err)
		}
		for _, res := range list {
			if !f(res) {
				return nil
			}
		}
		if len(list) < sq.Limit {
			return nil
		}
		sq.After = list[len(list)-1].ID
	}
}

// matchResourceURI returns the resource of sq whose uris match the query's
// uri as a path pattern ({name}, {name...} and * segments; see
// uripattern), the most specific first, then the smallest id. It reads
// the resources of sq that have uris, as Keycloak does.
func (c *Compat) matchResourceURI(r *http.Request, sq store.ResourceQuery, q keycloakResourceQuery) (store.Resource, bool, error) {
	target, err := uripattern.ParseTarget(q.uri)
	if err != nil {
		return store.Resource{}, false, nil // a path no pattern matches
	}
	var best store.Resource
	bestSpec, found := 0, false
	err = c.eachResource(r, sq, func(res store.Resource) bool {
		if len(res.URIs) == 0 || !q.matches(res) {
			return true
		}
		for _, u := range res.URIs {
			p, err := uripattern.Compile(u)
			if err != nil {
				continue
			}
			if !p.MatchTarget(target) {
				continue
			}
			if spec := p.Specificity(); !found || spec > bestSpec || spec == bestSpec && res.ID < best.ID {
				best, bestSpec, found = res, spec, true
			}
		}
		return true
	})
	return best, found, err
}

// writeResources answers a list: ids, or representations with deep=true.
func writeResources(w http.ResponseWriter, q keycloakResourceQuery, found []store.Resource) error {
	if !q.deep {
		ids := make([]string, 0, len(found))
		for _, res := range found {
			ids = append(ids, res.ID)
		}
		oauth.WriteJSON(w, http.StatusOK, ids)
		return nil
	}
	out := make([]keycloakResource, 0, len(found))
	for _, res := range found {
		kr := toKeycloakResource(res)
		kr.Scopes = kr.ResourceScopes
		out = append(out, kr)
	}
	oauth.WriteJSON(w, http.StatusOK, out)
	return nil
}

// listPage is how many resources a list reads at a time.
const listPage = 1000

// nonNil makes a nil slice an empty one, so that JSON shows [].
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
