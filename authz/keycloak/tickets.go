package keycloak

import (
	"encoding/base64"
	"errors"
	"net/http"
	"slices"
	"strings"

	"github.com/caddy-uma/caddy-uma/authz"
	"github.com/caddy-uma/caddy-uma/authz/oauth"
	"github.com/caddy-uma/caddy-uma/store"
)

// Keycloak's permission tickets ({issuer}/authz/protection/permission/
// ticket): the owner's grants and the requests waiting for the owner, one
// ticket per resource, scope and requester. They are the AS's shares
// (authz.Share) and access requests (authz.AccessRequest), seen through
// Keycloak's representation:
//
//   - a granted ticket is one scope of a share: POST with granted=true
//     shares that scope with the requester; PUT with granted=false or
//     DELETE takes the scope out of the share (revoking the share and the
//     tokens it granted, and sharing the other scopes again);
//   - a ticket with granted=false is one scope of a pending request: POST
//     with granted=false files a request for the owner; PUT with
//     granted=true approves that scope (a share restricted to the
//     requesting client, as the console's approval); PUT with
//     granted=false or DELETE denies it. The other scopes of the request
//     stay pending, as a request of their own.
//
// A ticket's reach is a PAT's (authz.PATCaller.MayManage): an owner's PAT
// manages the tickets of the owner's resources registered by its resource
// server; a resource server's own PAT (client credentials) those of all of
// its resources, acting for their owners, as a Keycloak resource server
// does for resources it manages remotely.

// keycloakTicket is Keycloak's PermissionTicketRepresentation. A scope's
// id is its name.
type keycloakTicket struct {
	ID            string `json:"id"`
	Owner         string `json:"owner"`
	Resource      string `json:"resource"`
	Scope         string `json:"scope"`
	Granted       bool   `json:"granted"`
	Requester     string `json:"requester"`
	OwnerName     string `json:"ownerName,omitempty"`
	ResourceName  string `json:"resourceName,omitempty"`
	ScopeName     string `json:"scopeName,omitempty"`
	RequesterName string `json:"requesterName,omitempty"`
}

// keycloakTicketInput is a create or update body.
type keycloakTicketInput struct {
	ID        string `json:"id"`
	Resource  string `json:"resource"`
	Requester string `json:"requester"`
	Granted   *bool  `json:"granted"`
	Scope     string `json:"scope"`
	ScopeName string `json:"scopeName"`
}

// Ticket ids name what they are a view of: kind, resource, share or
// request id, scope.
const (
	ticketOfShare   = "g"
	ticketOfRequest = "r"
)

type ticketRef struct {
	kind, resource, id, scope string
}

func (t ticketRef) String() string {
	return base64.RawURLEncoding.EncodeToString([]byte(t.kind + sep + t.resource + sep + t.id + sep + t.scope))
}

// sep separates the parts of a ticket id.
const sep = "\x00"

func parseTicketRef(s string) (ticketRef, bool) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(s) > 4*authz.MaxURILen {
		return ticketRef{}, false
	}
	parts := strings.Split(string(b), sep)
	if len(parts) != 4 || (parts[0] != ticketOfShare && parts[0] != ticketOfRequest) || parts[1] == "" || parts[2] == "" || parts[3] == "" {
		return ticketRef{}, false
	}
	return ticketRef{kind: parts[0], resource: parts[1], id: parts[2], scope: parts[3]}, true
}

func errNoSuchTicket() error { return oauth.ErrNotFound("no such permission ticket") }

// createTicket grants a scope to a requester (granted=true) or
// files a pending request for the owner (granted absent or false), and
// answers the ticket.
func (c *Compat) createTicket(w http.ResponseWriter, r *http.Request, caller authz.PATCaller) error {
	var in keycloakTicketInput
	if err := oauth.ReadJSON(w, r, &in); err != nil {
		return err
	}
	if in.Resource == "" {
		return oauth.ErrInvalidRequest("resource is required")
	}
	res, err := c.store.GetResource(r.Context(), in.Resource)
	if errors.Is(err, store.ErrNotFound) || (err == nil && !caller.MayManage(res)) {
		return oauth.New(oauth.InvalidResourceID).WithDescription("resource " + oauth.Quote(in.Resource) + " is not registered by this resource server")
	}
	if err != nil {
		return oauth.ErrServer("could not read the resource", err)
	}
	if in.Requester == "" || !authz.ValidSubject(in.Requester) {
		return oauth.ErrInvalidRequest("requester is required: the subject of the requesting party, 1 to %d bytes of text", authz.MaxSubjectLen)
	}
	scope := in.ScopeName
	if scope == "" {
		scope = in.Scope
	}
	if scope == "" {
		return oauth.New(oauth.InvalidScope).WithDescription("scopeName (or scope) is required")
	}
	if !slices.Contains(res.Scopes, scope) {
		return oauth.New(oauth.InvalidScope).WithDescription("scope " + oauth.Quote(scope) + " is not registered on resource " + oauth.Quote(res.ID))
	}
	if in.Granted == nil || !*in.Granted {
		req, err := c.as.FileRequest(r.Context(), authz.AccessRequest{Owner: res.Owner, ResourceID: res.ID, ResourceName: res.Name,
			Scopes: []string{scope}, ClientID: "", Subject: in.Requester})
		if err != nil {
			return oauth.ErrServer("could not file the request", err)
		}
		if req.Status != authz.RequestPending {
			return oauth.ErrInvalidRequest("this request was already decided").WithStatus(http.StatusConflict)
		}
		oauth.WriteJSON(w, http.StatusOK, requestTickets(res, req, false)[0])
		return nil
	}
	shares, err := c.as.ResourceShares(r.Context(), res.Owner, res.ID)
	if err != nil {
		return oauth.ErrServer("could not read the shares", err)
	}
	for _, sh := range shares {
		if sh.Subject == in.Requester && sh.Client == "" && slices.Contains(sh.Scopes, scope) && sh.ExpiresAt.IsZero() {
			return oauth.ErrInvalidRequest("the requester already has this permission").WithStatus(http.StatusConflict)
		}
	}
	sh, err := c.as.AddShare(r.Context(), authz.Share{Owner: res.Owner, ResourceID: res.ID, Subject: in.Requester, Scopes: []string{scope}})
	if err != nil {
		return oauth.ErrServer("could not store the share", err)
	}
	c.log.Info("permission granted through a Keycloak ticket", clientField(caller.ClientID), ownerField(res.Owner), resourceField(res.ID))
	oauth.WriteJSON(w, http.StatusOK, shareTickets(res, sh, false)[0])
	return nil
}

// updateTicket grants (granted=true) or takes back (false) the
// permission of a ticket, and answers 204.
func (c *Compat) updateTicket(w http.ResponseWriter, r *http.Request, caller authz.PATCaller) error {
	var in keycloakTicketInput
	if err := oauth.ReadJSON(w, r, &in); err != nil {
		return err
	}
	if in.ID == "" {
		return oauth.ErrInvalidRequest("id is required: the ticket to update")
	}
	if in.Granted == nil {
		return oauth.ErrInvalidRequest("granted is required")
	}
	if err := c.decideTicket(r, caller, in.ID, *in.Granted); err != nil {
		return err
	}
	oauth.WriteNoContent(w, http.StatusNoContent)
	return nil
}

// deleteTicket takes back a granted ticket or denies a pending
// one.
func (c *Compat) deleteTicket(w http.ResponseWriter, r *http.Request, caller authz.PATCaller) error {
	if err := c.decideTicket(r, caller, r.PathValue("id"), false); err != nil {
		return err
	}
	oauth.WriteNoContent(w, http.StatusNoContent)
	return nil
}

// decideTicket grants or takes back the permission of ticket id.
func (c *Compat) decideTicket(r *http.Request, caller authz.PATCaller, id string, grant bool) error {
	ref, ok := parseTicketRef(id)
	if !ok {
		return errNoSuchTicket()
	}
	ctx := r.Context()
	res, err := c.store.GetResource(ctx, ref.resource)
	if errors.Is(err, store.ErrNotFound) || (err == nil && !caller.MayManage(res)) {
		return errNoSuchTicket()
	}
	if err != nil {
		return oauth.ErrServer("could not read the resource", err)
	}
	if ref.kind == ticketOfRequest {
		// One scope of a pending request: its other scopes stay pending.
		err := c.as.DecideRequestScope(ctx, res.Owner, res.ID, ref.id, ref.scope, grant)
		switch {
		case errors.Is(err, authz.ErrNoSuchRequest):
			return errNoSuchTicket()
		case err != nil:
			return oauth.ErrServer("could not decide the request", err)
		}
		return nil
	}
	shares, err := c.as.ResourceShares(ctx, res.Owner, res.ID)
	if err != nil {
		return oauth.ErrServer("could not read the shares", err)
	}
	i := slices.IndexFunc(shares, func(sh authz.Share) bool { return sh.ID == ref.id && slices.Contains(sh.Scopes, ref.scope) })
	if i < 0 {
		return errNoSuchTicket()
	}
	if grant {
		return nil // granted already
	}
	sh := shares[i]
	if _, _, err := c.as.RevokeShare(ctx, res.Owner, res.ID, sh.ID); errors.Is(err, authz.ErrNoSuchShare) {
		return errNoSuchTicket()
	} else if err != nil {
		return oauth.ErrServer("could not revoke the share", err)
	}
	if rest := slices.DeleteFunc(slices.Clone(sh.Scopes), func(sc string) bool { return sc == ref.scope }); len(rest) > 0 {
		// The other scopes of the share stay shared.
		again := sh
		again.Scopes = rest
		if _, err := c.as.AddShare(ctx, again); err != nil {
			return oauth.ErrServer("could not store the share", err)
		}
	}
	c.log.Info("permission revoked through a Keycloak ticket", clientField(caller.ClientID), ownerField(res.Owner), resourceField(res.ID))
	return nil
}

// keycloakTicketQuery is the list query of Keycloak's tickets.
type keycloakTicketQuery struct {
	scope, resource, owner, requester string
	granted                           *bool
	names                             bool
	first, max                        int
}

func (q keycloakTicketQuery) matches(t keycloakTicket) bool {
	return (q.scope == "" || t.Scope == q.scope) && (q.requester == "" || t.Requester == q.requester) &&
		(q.granted == nil || t.Granted == *q.granted)
}

// listTickets answers the tickets of the resources within the
// caller's reach: the grants (shares), then the pending requests, from
// first, at most max (Keycloak's defaults: 0 and 100). With resourceId or
// owner, one owner's shares and requests are read; a resource server's own
// PAT without either reads those of every owner of its resources (each
// owner's records once).
func (c *Compat) listTickets(w http.ResponseWriter, r *http.Request, caller authz.PATCaller) error {
	params := r.URL.Query()
	q := keycloakTicketQuery{scope: params.Get("scopeId"), resource: params.Get("resourceId"), owner: params.Get("owner"),
		requester: params.Get("requester"), names: keycloakBool(params.Get("returnNames"))}
	if g := params.Get("granted"); g != "" {
		b := keycloakBool(g)
		q.granted = &b
	}
	var err error
	if q.first, err = keycloakInt(params, "first", 0); err != nil {
		return err
	}
	if q.max, err = keycloakInt(params, "max", keycloakDefaultMax); err != nil {
		return err
	}
	q.first = max(q.first, 0)
	if q.max < 0 || q.max > authz.MaxListedResult {
		q.max = authz.MaxListedResult
	}
	ctx := r.Context()
	owners := []string{}
	switch {
	case !caller.ActsForAnyOwner():
		if q.owner != "" && q.owner != caller.Subject {
			oauth.WriteJSON(w, http.StatusOK, []keycloakTicket{})
			return nil
		}
		owners = append(owners, caller.Subject)
	case q.owner != "":
		owners = append(owners, q.owner)
	case q.resource != "":
		res, err := c.store.GetResource(ctx, q.resource)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return oauth.ErrServer("could not read the resource", err)
		}
		if err == nil && caller.MayManage(res) {
			owners = append(owners, res.Owner)
		}
	default:
		seen := map[string]bool{}
		err := c.eachResource(r, store.ResourceQuery{ResourceServer: caller.ClientID}, func(res store.Resource) bool {
			if !seen[res.Owner] {
				seen[res.Owner] = true
				owners = append(owners, res.Owner)
			}
			return len(owners) < authz.MaxListedResult
		})
		if err != nil {
			return err
		}
	}
	resources := map[string]*store.Resource{}
	reach := func(id string) (store.Resource, bool, error) {
		if q.resource != "" && id != q.resource {
			return store.Resource{}, false, nil
		}
		if res, ok := resources[id]; ok {
			return *res, true, nil
		}
		res, err := c.store.GetResource(ctx, id)
		if errors.Is(err, store.ErrNotFound) || (err == nil && !caller.MayManage(res)) {
			return store.Resource{}, false, nil
		}
		if err != nil {
			return res, false, oauth.ErrServer("could not read the resource", err)
		}
		resources[id] = &res
		return res, true, nil
	}
	out := []keycloakTicket{}
	skipped := 0
	add := func(ts []keycloakTicket) bool {
		for _, t := range ts {
			if !q.matches(t) {
				continue
			}
			if skipped < q.first {
				skipped++
				continue
			}
			out = append(out, t)
			if len(out) >= q.max {
				return false
			}
		}
		return true
	}
	for _, owner := range owners {
		shares, err := c.as.Shares(ctx, owner)
		if err != nil {
			return oauth.ErrServer("could not read the shares", err)
		}
		for _, sh := range shares {
			res, ok, err := reach(sh.ResourceID)
			if err != nil {
				return err
			}
			if ok && !add(shareTickets(res, sh, q.names)) {
				break
			}
		}
		if len(out) >= q.max {
			break
		}
		reqs, err := c.as.Requests(ctx, owner)
		if err != nil {
			return oauth.ErrServer("could not read the requests", err)
		}
		for _, req := range reqs {
			if req.Status != authz.RequestPending {
				continue
			}
			res, ok, err := reach(req.ResourceID)
			if err != nil {
				return err
			}
			if ok && !add(requestTickets(res, req, q.names)) {
				break
			}
		}
		if len(out) >= q.max {
			break
		}
	}
	oauth.WriteJSON(w, http.StatusOK, out)
	return nil
}

// shareTickets are the granted tickets of a share, one per scope.
func shareTickets(res store.Resource, sh authz.Share, names bool) []keycloakTicket {
	requester := sh.Subject
	if requester == "" {
		requester = sh.Email
	}
	out := make([]keycloakTicket, 0, len(sh.Scopes))
	for _, sc := range sh.Scopes {
		t := keycloakTicket{ID: ticketRef{ticketOfShare, res.ID, sh.ID, sc}.String(), Owner: res.Owner, Resource: res.ID,
			Scope: sc, Granted: true, Requester: requester}
		out = append(out, withNames(t, res, names))
	}
	return out
}

// requestTickets are the tickets of a request, one per scope.
func requestTickets(res store.Resource, req authz.AccessRequest, names bool) []keycloakTicket {
	out := make([]keycloakTicket, 0, len(req.Scopes))
	for _, sc := range req.Scopes {
		t := keycloakTicket{ID: ticketRef{ticketOfRequest, res.ID, req.ID, sc}.String(), Owner: res.Owner, Resource: res.ID,
			Scope: sc, Granted: req.Status == authz.RequestApproved, Requester: req.Subject}
		out = append(out, withNames(t, res, names))
	}
	return out
}

// withNames adds the names of returnNames=true: a subject is its own name.
func withNames(t keycloakTicket, res store.Resource, names bool) keycloakTicket {
	if names {
		t.OwnerName, t.ResourceName, t.ScopeName, t.RequesterName = t.Owner, res.Name, t.Scope, t.Requester
	}
	return t
}
