package authz

import (
	"context"
	"net/http"
	"net/url"
	"slices"

	"github.com/caddy-uma/caddy-uma/store"
)

// GrantOptions are the extension parameters of one UMA grant request, as
// Config.GrantOptions reads them (package keycloak: Keycloak's, taken on
// every token path). The zero value changes nothing.
type GrantOptions struct {
	// Ticketless, when set, names the permissions of a request without a
	// ticket (Keycloak's permission and audience parameters); without it,
	// a ticket is required.
	Ticketless Ticketless
	// Decide, when set, answers the request with its decision in place of
	// tokens (Keycloak's response_mode): all says whether every requested
	// scope was granted, granted is what was (shaped by these options).
	// The ticket is spent, and nothing is issued.
	Decide func(w http.ResponseWriter, all bool, granted []Permission) error
	// Limit, when positive, bounds the permissions of the answer: at most
	// Limit new ones, and on an upgrade (rpt), the most recent Limit.
	Limit int
	// OmitNames leaves the resources' names (rsname) out of the answer.
	OmitNames bool
	// NoRequests files no request with the owner on a refusal in a dialect
	// without interaction (Dialect.Refusal).
	NoRequests bool
}

// Ticketless reads the permissions of a UMA grant request of clientID
// that has no ticket: the resource server asked, which isResourceServer
// must accept, and each resource with the scopes asked of it (none: all of
// them, as a ticket's). An *oauth.Error it returns is the answer.
type Ticketless func(ctx context.Context, clientID string, isResourceServer func(id string) bool) (rs string, perms []RequestedResource, err error)

// RequestedResource is a resource of a grant request with the scopes
// asked of it.
type RequestedResource struct {
	Resource store.Resource
	Scopes   []string
}

// grantOptions reads the extension parameters of a UMA grant request
// (Config.GrantOptions); none without that hook.
func (s *Server) grantOptions(form url.Values) (GrantOptions, error) {
	if s.readGrantOptions == nil {
		return GrantOptions{}, nil
	}
	return s.readGrantOptions(form)
}

// shape returns the permissions of an answer: granted without names when
// asked, and at most Limit of them, added to previous (an upgraded RPT's),
// of which the most recent are kept past the limit.
func (o GrantOptions) shape(previous, granted []Permission) []Permission {
	if o.OmitNames {
		granted = slices.Clone(granted)
		for i := range granted {
			granted[i].ResourceName = ""
		}
	}
	if o.Limit > 0 && len(granted) > o.Limit {
		granted = granted[:o.Limit]
	}
	perms := mergePermissions(previous, granted)
	if o.Limit > 0 && len(perms) > o.Limit {
		perms = perms[len(perms)-o.Limit:]
	}
	return perms
}
