package authz

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"slices"

	"github.com/caddy-uma/caddy-uma/store"
)

// Limits on permission requests.
const (
	maxPermissionsPerTicket = 50
	maxRequestContextBytes  = 2048
)

// permissionRequest is one member of a permission endpoint body
// (Federated Authorization section 4.1). Claims is Keycloak's extension:
// request context the resource server attaches to the ticket, which
// owners' rules read as input.request.
type permissionRequest struct {
	ResourceID     *string         `json:"resource_id"`
	ResourceScopes *[]string       `json:"resource_scopes"`
	Claims         json.RawMessage `json:"claims"`
}

// servePermission is the permission endpoint: it turns requested
// permissions on the caller's resources into one permission ticket.
func (s *Server) servePermission(w http.ResponseWriter, r *http.Request) {
	caller, err := s.requirePAT(r)
	if err != nil {
		writeError(w, err)
		return
	}
	if r.Method != http.MethodPost {
		writeError(w, errMethod(http.MethodPost))
		return
	}
	var raw json.RawMessage
	if err := readJSON(w, r, &raw); err != nil {
		writeError(w, err)
		return
	}
	var reqs []permissionRequest
	if trimmed := bytes.TrimSpace(raw); len(trimmed) > 0 && trimmed[0] == '[' {
		if err := json.Unmarshal(trimmed, &reqs); err != nil {
			writeError(w, errInvalidRequest("the body must be a permission request object or an array of them"))
			return
		}
		if len(reqs) == 0 {
			writeError(w, errInvalidRequest("the array of permission requests is empty"))
			return
		}
	} else {
		var one permissionRequest
		if err := json.Unmarshal(trimmed, &one); err != nil {
			writeError(w, errInvalidRequest("the body must be a permission request object or an array of them"))
			return
		}
		reqs = []permissionRequest{one}
	}
	if len(reqs) > maxPermissionsPerTicket {
		writeError(w, errInvalidRequest("at most %d permission requests per ticket", maxPermissionsPerTicket))
		return
	}
	t := ticket{ResourceServer: caller.ClientID}
	for i, pr := range reqs {
		if pr.ResourceID == nil || *pr.ResourceID == "" {
			writeError(w, errInvalidRequest("permission request %d: resource_id is required", i))
			return
		}
		if pr.ResourceScopes == nil {
			writeError(w, errInvalidRequest("permission request %d: resource_scopes is required", i))
			return
		}
		res, err := s.store.GetResource(r.Context(), *pr.ResourceID)
		if errors.Is(err, store.ErrNotFound) || (err == nil && !caller.mayManage(res)) {
			writeError(w, &oauthError{Status: http.StatusBadRequest, Code: "invalid_resource_id",
				Description: "resource " + quote(*pr.ResourceID) + " is not registered by this resource server"})
			return
		}
		if err != nil {
			s.log.Error("reading a resource", errField(err))
			writeError(w, errServer("could not read the resource"))
			return
		}
		if t.Owner == "" {
			t.Owner = res.Owner
		} else if t.Owner != res.Owner {
			writeError(w, errInvalidRequest("a ticket covers the resources of one resource owner; request one ticket per owner"))
			return
		}
		for _, sc := range *pr.ResourceScopes {
			if !slices.Contains(res.Scopes, sc) {
				writeError(w, &oauthError{Status: http.StatusBadRequest, Code: "invalid_scope",
					Description: "scope " + quote(sc) + " is not registered on resource " + quote(res.ID)})
				return
			}
		}
		t.Permissions = mergePermission(t.Permissions, res.ID, *pr.ResourceScopes)
		if len(pr.Claims) > 0 && string(pr.Claims) != "null" {
			if err := mergeRequestContext(&t, pr.Claims); err != nil {
				writeError(w, err)
				return
			}
		}
	}
	tk, err := s.sealTicket(t)
	if err != nil {
		s.log.Error("sealing a ticket", errField(err))
		writeError(w, errServer("could not issue a ticket"))
		return
	}
	writeJSON(w, http.StatusCreated, map[string]string{"ticket": tk})
}

// mergePermission adds scopes on a resource to perms, merging repeated
// resources.
func mergePermission(perms []ticketPermission, id string, scopes []string) []ticketPermission {
	for i := range perms {
		if perms[i].ResourceID == id {
			for _, sc := range scopes {
				if !slices.Contains(perms[i].Scopes, sc) {
					perms[i].Scopes = append(perms[i].Scopes, sc)
				}
			}
			return perms
		}
	}
	var uniq []string
	for _, sc := range scopes {
		if !slices.Contains(uniq, sc) {
			uniq = append(uniq, sc)
		}
	}
	return append(perms, ticketPermission{ResourceID: id, Scopes: nonNil(uniq)})
}

// mergeRequestContext reads a "claims" member: an object whose values are
// strings or arrays of strings.
func mergeRequestContext(t *ticket, raw json.RawMessage) error {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return errInvalidRequest("claims must be an object of strings or arrays of strings")
	}
	if t.Request == nil {
		t.Request = map[string][]string{}
	}
	size := 0
	for k, v := range m {
		var vals []string
		if err := json.Unmarshal(v, &vals); err != nil {
			var one string
			if err := json.Unmarshal(v, &one); err != nil {
				return errInvalidRequest("claims member %s must be a string or an array of strings", quote(k))
			}
			vals = []string{one}
		}
		t.Request[k] = append(t.Request[k], vals...)
	}
	for k, vals := range t.Request {
		size += len(k)
		for _, v := range vals {
			size += len(v)
		}
	}
	if size > maxRequestContextBytes {
		return errInvalidRequest("claims are larger than %d bytes", maxRequestContextBytes)
	}
	return nil
}
