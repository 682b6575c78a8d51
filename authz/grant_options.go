package authz

import (
	"context"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/caddy-uma/caddy-uma/authz/oauth"
	"github.com/caddy-uma/caddy-uma/authz/uripattern"
	"github.com/caddy-uma/caddy-uma/store"
)

// Keycloak's extension parameters of the UMA grant, taken on both token
// paths (they change nothing for a request without them):
//
//	permission_resource_format        id (default) or uri: the RESOURCE of a
//	                                  permission parameter is a resource URI
//	permission_resource_matching_uri  true: with uri, a registered URI is a
//	                                  pattern (* and {name}) the URI matches
//	response_permissions_limit        N > 0: at most N permissions in the answer;
//	                                  with rpt, the most recent N are kept
//	response_include_resource_name    false: no rsname in the RPT or the answer
//	submit_request                    false: a denial on Keycloak's path files no
//	                                  request with the owner (default true)

// maxPermissionsLimit bounds response_permissions_limit.
const maxPermissionsLimit = 1 << 20

// grantOptions are the extension parameters of one UMA grant request.
type grantOptions struct {
	uriFormat   bool
	matchingURI bool
	limit       int // 0: none
	omitNames   bool
	submit      bool
}

// readGrantOptions reads the extension parameters; a value Keycloak would
// not understand is 400 invalid_request naming the parameter.
func readGrantOptions(form url.Values) (grantOptions, error) {
	o := grantOptions{submit: true}
	switch form.Get("permission_resource_format") {
	case "", "id":
	case "uri":
		o.uriFormat = true
	default:
		return o, oauth.ErrInvalidRequest("permission_resource_format must be id or uri")
	}
	var err error
	if o.matchingURI, err = formBool(form, "permission_resource_matching_uri", false); err != nil {
		return o, err
	}
	include, err := formBool(form, "response_include_resource_name", true)
	if err != nil {
		return o, err
	}
	o.omitNames = !include
	if o.submit, err = formBool(form, "submit_request", true); err != nil {
		return o, err
	}
	if v := form.Get("response_permissions_limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxPermissionsLimit {
			return o, oauth.ErrInvalidRequest("response_permissions_limit must be a whole number from 1 to %d", maxPermissionsLimit)
		}
		o.limit = n
	}
	return o, nil
}

// formBool reads a true/false parameter (any case), def when absent.
func formBool(form url.Values, name string, def bool) (bool, error) {
	switch v := form.Get(name); {
	case v == "":
		return def, nil
	case strings.EqualFold(v, "true"):
		return true, nil
	case strings.EqualFold(v, "false"):
		return false, nil
	}
	return def, oauth.ErrInvalidRequest("%s must be true or false", name)
}

// shape returns the permissions of an answer: granted without names when
// asked, and at most limit of them, added to previous (an upgraded RPT's),
// of which the most recent are kept past the limit.
func (o grantOptions) shape(previous, granted []Permission) []Permission {
	if o.omitNames {
		granted = slices.Clone(granted)
		for i := range granted {
			granted[i].ResourceName = ""
		}
	}
	if o.limit > 0 && len(granted) > o.limit {
		granted = granted[:o.limit]
	}
	perms := mergePermissions(previous, granted)
	if o.limit > 0 && len(perms) > o.limit {
		perms = perms[len(perms)-o.limit:]
	}
	return perms
}

// maxURIScan bounds the resources of a resource server that
// permission_resource_format=uri reads (no index holds URIs): a resource
// server with more is refused that format, rather than matched in part.
const maxURIScan = 10000

// permissionResources returns the resources of the audience that one
// permission parameter names, by id or name, or by URI
// (permission_resource_format=uri).
func (s *Server) permissionResources(ctx context.Context, g *grantState, name string, scopes []string) ([]store.Resource, error) {
	if !g.opts.uriFormat || name == "" {
		return s.ticketlessResources(ctx, g.rs, name, scopes)
	}
	if !validText(name, false) {
		return nil, nil
	}
	all, err := s.uriCandidates(ctx, g)
	if err != nil {
		return nil, err
	}
	var found []store.Resource
	for _, res := range all {
		offers := len(scopes) == 0 || slices.ContainsFunc(scopes, func(sc string) bool { return slices.Contains(res.Scopes, sc) })
		if offers && slices.ContainsFunc(res.URIs, func(u string) bool { return uriMatches(u, name, g.opts.matchingURI) }) {
			found = append(found, res)
		}
	}
	return found, nil
}

// uriCandidates reads, once per request, the resources of the audience
// that have URIs.
func (s *Server) uriCandidates(ctx context.Context, g *grantState) ([]store.Resource, error) {
	if g.uriResources != nil {
		return *g.uriResources, nil
	}
	var withURIs []store.Resource
	q := store.ResourceQuery{ResourceServer: g.rs, Limit: ticketlessPage}
	for read := 0; ; {
		page, err := s.store.ListResources(ctx, q)
		if err != nil {
			return nil, err
		}
		for _, res := range page {
			if len(res.URIs) > 0 {
				withURIs = append(withURIs, res)
			}
		}
		if read += len(page); read > maxURIScan {
			return nil, oauth.ErrInvalidRequest("permission_resource_format=uri is served for resource servers of at most %d resources: name the resources by id or name", maxURIScan)
		}
		if len(page) < q.Limit {
			break
		}
		q.After = page[len(page)-1].ID
	}
	g.uriResources = &withURIs
	return withURIs, nil
}

// uriMatches says whether a resource's registered URI names uri: the same
// path (a trailing slash aside; a registered absolute URI is compared by
// its path), or, with matching, the registered URI as a path pattern
// ({name}, * segments; package uripattern, the rule of matchingUri and of
// the enforcement point's templates) that uri matches.
func uriMatches(registered, uri string, matching bool) bool {
	if uriPath(registered) == uriPath(uri) {
		return true
	}
	if !matching {
		return false
	}
	p, err := uripattern.Compile(registered)
	if err != nil {
		return false
	}
	target, err := uripattern.ParseTarget(uri)
	return err == nil && p.MatchTarget(target)
}

// uriPath is the cleaned path of a URI or path.
func uriPath(u string) string {
	if p, err := url.Parse(u); err == nil && p.Scheme != "" {
		u = p.EscapedPath()
	}
	if u == "" {
		return "/"
	}
	return path.Clean("/" + u)
}
