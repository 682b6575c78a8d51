package authz

import (
	"context"
	"net/url"
	"slices"

	"github.com/caddy-uma/caddy-uma/store"
)

// GrantOptions are the extension parameters of one UMA grant request, as
// Config.GrantOptions reads them (package keycloak: Keycloak's, taken on
// every token path). The zero value changes nothing.
type GrantOptions struct {
	// FindResources, when set, finds the resources of the resource server
	// rs that a ticketless request's permission parameter names (in place
	// of by id or name), that offer one of scopes (any, without scopes).
	// An *oauth.Error it returns is the answer.
	FindResources func(ctx context.Context, rs, name string, scopes []string) ([]store.Resource, error)
	// Limit, when positive, bounds the permissions of the answer: at most
	// Limit new ones, and on an upgrade (rpt), the most recent Limit.
	Limit int
	// OmitNames leaves the resources' names (rsname) out of the answer.
	OmitNames bool
	// NoRequests files no request with the owner on a refusal in a dialect
	// without interaction (Dialect.Refusal).
	NoRequests bool
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
