package keycloak

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/caddy-uma/caddy-uma/authz"
	"github.com/caddy-uma/caddy-uma/authz/oauth"
	"github.com/caddy-uma/caddy-uma/store"
)

// Keycloak's ticketless form of the UMA grant, taken on every token path
// (authz.GrantOptions.Ticketless and Decide, set by GrantOptions):
//
//	permission=RESOURCE#SCOPE,SCOPE   the permissions asked for, without a ticket
//	                                  (RESOURCE by id or name, or by URI with
//	                                  permission_resource_format=uri); repeated
//	audience=CLIENT                   the resource server asked (default: the client)
//	response_mode=decision            {"result": true} when every scope is granted
//	response_mode=permissions         the granted permissions, no token

// maxTicketlessResources bounds the resources a ticketless request may
// name.
const maxTicketlessResources = 100

// responseMode reads response_mode: the authz.GrantOptions.Decide that
// answers in that mode, nil for tokens.
func responseMode(form url.Values) (func(w http.ResponseWriter, all bool, granted []authz.Permission) error, error) {
	switch form.Get("response_mode") {
	case "":
		return nil, nil
	case "decision":
		return func(w http.ResponseWriter, all bool, _ []authz.Permission) error {
			if !all {
				return errNotAuthorized()
			}
			oauth.WriteJSON(w, http.StatusOK, map[string]bool{"result": true})
			return nil
		}, nil
	case "permissions":
		return func(w http.ResponseWriter, _ bool, granted []authz.Permission) error {
			if len(granted) == 0 {
				return errNotAuthorized()
			}
			oauth.WriteJSON(w, http.StatusOK, authz.GrantedPermissions(granted))
			return nil
		}, nil
	}
	return nil, oauth.ErrInvalidRequest("response_mode must be decision or permissions")
}

// ticketless reads the permissions of one ticketless request.
type ticketless struct {
	store store.Store
	form  url.Values
	// byURI, when set, finds the resources a permission names by URI
	// (permission_resource_format=uri).
	byURI func(ctx context.Context, rs, name string, scopes []string) ([]store.Resource, error)
}

// permissions reads Keycloak's permission=RESOURCE#SCOPE,SCOPE
// parameters (resource by id or name) at the audience resource server
// (default: the client itself). Without permission parameters, every
// resource of the audience is asked for. A name that matches no resource,
// or a scope a resource does not offer, is left out rather than refused:
// an error would tell any client which resources exist, across all owners;
// what is left out is simply not granted.
func (t *ticketless) permissions(ctx context.Context, clientID string, isResourceServer func(id string) bool) (string, []authz.RequestedResource, error) {
	rs := t.form.Get("audience")
	if rs == "" {
		rs = clientID
	}
	if !isResourceServer(rs) {
		return "", nil, oauth.ErrInvalidRequest("audience is not a resource server of this authorization server")
	}
	if len(t.form["permission"]) > maxTicketlessResources {
		return "", nil, oauth.ErrInvalidRequest("at most %d resources per request", maxTicketlessResources)
	}
	var perms []authz.RequestedResource
	add := func(res store.Resource, scopes []string) {
		for i := range perms {
			if perms[i].Resource.ID == res.ID {
				perms[i].Scopes = appendNew(perms[i].Scopes, scopes...)
				return
			}
		}
		perms = append(perms, authz.RequestedResource{Resource: res, Scopes: scopes})
	}
	if len(t.form["permission"]) == 0 {
		all, err := t.store.ListResources(ctx, store.ResourceQuery{ResourceServer: rs, Limit: maxTicketlessResources + 1})
		if err != nil {
			return "", nil, oauth.ErrServer("could not list the resources", err)
		}
		for _, res := range all {
			add(res, nil)
		}
	}
	for _, p := range t.form["permission"] {
		name, scopeList, _ := strings.Cut(p, "#")
		var scopes []string
		for _, sc := range strings.Split(scopeList, ",") {
			if sc = strings.TrimSpace(sc); sc != "" {
				scopes = append(scopes, sc)
			}
		}
		var found []store.Resource
		var err error
		if t.byURI != nil && name != "" {
			found, err = t.byURI(ctx, rs, name, scopes)
		} else {
			found, err = t.resources(ctx, rs, name, scopes)
		}
		var refused *oauth.Error
		switch {
		case errors.As(err, &refused):
			return "", nil, refused
		case err != nil:
			return "", nil, oauth.ErrServer("could not list the resources", err)
		}
		for _, res := range found {
			var have []string
			for _, sc := range scopes {
				if slices.Contains(res.Scopes, sc) {
					have = append(have, sc)
				}
			}
			add(res, have)
		}
		if len(perms) > maxTicketlessResources {
			break
		}
	}
	if len(perms) > maxTicketlessResources {
		return "", nil, oauth.ErrInvalidRequest("at most %d resources per request", maxTicketlessResources)
	}
	if len(perms) == 0 {
		return "", nil, errNotAuthorized()
	}
	return rs, perms, nil
}

// ticketlessPage is how many resources resources reads at a time.
const ticketlessPage = 256

// resources returns, in ID order, the resources of the resource server
// rs that one permission parameter names and that offer one of scopes (or
// any scope, without scopes): the resource of that ID and those of that
// name, looked up through the store's indexes, or, for an empty name,
// every resource of rs, read a page at a time. It stops past
// maxTicketlessResources: more are refused anyway. A name that no
// resource can have (see authz.ValidText) finds none without asking the
// store.
func (t *ticketless) resources(ctx context.Context, rs, name string, scopes []string) ([]store.Resource, error) {
	if name != "" && !authz.ValidText(name, false) {
		return nil, nil
	}
	offers := func(res store.Resource) bool {
		return len(scopes) == 0 || slices.ContainsFunc(scopes, func(sc string) bool { return slices.Contains(res.Scopes, sc) })
	}
	var found []store.Resource
	q := store.ResourceQuery{ResourceServer: rs, Name: name, Limit: ticketlessPage}
	for len(found) <= maxTicketlessResources {
		page, err := t.store.ListResources(ctx, q)
		if err != nil {
			return nil, err
		}
		for _, res := range page {
			if offers(res) {
				found = append(found, res)
			}
		}
		if len(page) < q.Limit {
			break
		}
		q.After = page[len(page)-1].ID
	}
	if name == "" {
		return found, nil
	}
	byID, err := t.store.GetResource(ctx, name)
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		return nil, err
	case byID.ResourceServer == rs && offers(byID):
		i, dup := slices.BinarySearchFunc(found, byID.ID, func(r store.Resource, id string) int { return strings.Compare(r.ID, id) })
		if !dup {
			found = slices.Insert(found, i, byID)
		}
	}
	return found, nil
}
