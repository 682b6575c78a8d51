package authz

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"slices"

	"github.com/caddy-uma/caddy-uma/authz/oauth"
	"github.com/caddy-uma/caddy-uma/store"
)

// Limits on permission requests.
const (
	maxPermissionsPerTicket = 50
	maxRequestContextBytes  = 2048
)

// permissionRequestBody is one member of a permission endpoint body
// (Federated Authorization section 4.1). Claims is Keycloak's extension:
// request context the resource server attaches to the ticket, which
// owners' rules read as input.request.
type permissionRequestBody struct {
	ResourceID     *string         `json:"resource_id"`
	ResourceScopes *[]string       `json:"resource_scopes"`
	Claims         json.RawMessage `json:"claims"`
}

// servePermission is the permission endpoint: it turns requested
// permissions on the caller's resources into one permission ticket.
func (s *Server) servePermission(w http.ResponseWriter, r *http.Request, caller protectionCaller) error {
	var raw json.RawMessage
	if err := oauth.ReadJSON(w, r, &raw); err != nil {
		return err
	}
	var reqs []permissionRequestBody
	notRequests := oauth.ErrInvalidRequest("the body must be a permission request object or an array of them")
	if trimmed := bytes.TrimSpace(raw); len(trimmed) > 0 && trimmed[0] == '[' {
		if err := json.Unmarshal(trimmed, &reqs); err != nil {
			return notRequests
		}
		if len(reqs) == 0 {
			return oauth.ErrInvalidRequest("the array of permission requests is empty")
		}
	} else {
		var one permissionRequestBody
		if err := json.Unmarshal(trimmed, &one); err != nil {
			return notRequests
		}
		reqs = []permissionRequestBody{one}
	}
	if len(reqs) > maxPermissionsPerTicket {
		return oauth.ErrInvalidRequest("at most %d permission requests per ticket", maxPermissionsPerTicket)
	}
	t := ticket{ResourceServer: caller.ClientID}
	for i, pr := range reqs {
		if pr.ResourceID == nil || *pr.ResourceID == "" {
			return oauth.ErrInvalidRequest("permission request %d: resource_id is required", i)
		}
		if pr.ResourceScopes == nil {
			return oauth.ErrInvalidRequest("permission request %d: resource_scopes is required", i)
		}
		res, err := s.store.GetResource(r.Context(), *pr.ResourceID)
		if errors.Is(err, store.ErrNotFound) || (err == nil && !caller.mayManage(res)) {
			return oauth.New(oauth.InvalidResourceID).
				WithDescription("resource " + oauth.Quote(*pr.ResourceID) + " is not registered by this resource server")
		}
		if err != nil {
			return oauth.ErrServer("could not read the resource", err)
		}
		if err := addToTicket(&t, res, *pr.ResourceScopes); err != nil {
			return err
		}
		if len(pr.Claims) > 0 && string(pr.Claims) != "null" {
			if err := mergeRequestContext(&t, pr.Claims); err != nil {
				return err
			}
		}
	}
	tk, err := s.sealTicket(t)
	if err != nil {
		return oauth.ErrServer("could not issue a ticket", err)
	}
	oauth.WriteJSON(w, http.StatusCreated, map[string]string{"ticket": tk})
	return nil
}

// addToTicket adds scopes on res to a ticket: every scope must be one of
// res's, and a ticket covers the resources of one owner.
func addToTicket(t *ticket, res store.Resource, scopes []string) error {
	if t.Owner == "" {
		t.Owner = res.Owner
	} else if t.Owner != res.Owner {
		return oauth.ErrInvalidRequest("a ticket covers the resources of one resource owner; request one ticket per owner")
	}
	for _, sc := range scopes {
		if !slices.Contains(res.Scopes, sc) {
			return oauth.New(oauth.InvalidScope).
				WithDescription("scope " + oauth.Quote(sc) + " is not registered on resource " + oauth.Quote(res.ID))
		}
	}
	t.Permissions = mergePermission(t.Permissions, res.ID, scopes)
	return nil
}

// mergePermission adds scopes on a resource to perms, merging repeated
// resources.
func mergePermission(perms []PermissionRequest, id string, scopes []string) []PermissionRequest {
	for i := range perms {
		if perms[i].ResourceID == id {
			perms[i].Scopes = appendNew(perms[i].Scopes, scopes...)
			return perms
		}
	}
	return append(perms, PermissionRequest{ResourceID: id, Scopes: nonNil(appendNew(nil, scopes...))})
}

// mergeRequestContext reads a "claims" member: an object whose values are
// strings or arrays of strings.
func mergeRequestContext(t *ticket, raw json.RawMessage) error {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return oauth.ErrInvalidRequest("claims must be an object of strings or arrays of strings")
	}
	if t.Request == nil {
		t.Request = map[string][]string{}
	}
	for k, v := range m {
		var vals []string
		if err := json.Unmarshal(v, &vals); err != nil {
			var one string
			if err := json.Unmarshal(v, &one); err != nil {
				return oauth.ErrInvalidRequest("claims member %s must be a string or an array of strings", oauth.Quote(k))
			}
			vals = []string{one}
		}
		t.Request[k] = append(t.Request[k], vals...)
	}
	if requestContextSize(t.Request) > maxRequestContextBytes {
		return oauth.ErrInvalidRequest("claims are larger than %d bytes", maxRequestContextBytes)
	}
	return nil
}

// requestContextSize is the size of a ticket's request context, bounded
// by maxRequestContextBytes.
func requestContextSize(request map[string][]string) int {
	size := 0
	for k, vals := range request {
		size += len(k)
		for _, v := range vals {
			size += len(v)
		}
	}
	return size
}
