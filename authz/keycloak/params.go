package keycloak

import (
	"context"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/caddy-uma/caddy-uma/authz"
	"github.com/caddy-uma/caddy-uma/authz/oauth"
	"github.com/caddy-uma/caddy-uma/authz/uripattern"
	"github.com/caddy-uma/caddy-uma/store"
)

// Keycloak's extension parameters of the UMA grant, taken on every token
// path (authz.Config.GrantOptions; they change nothing for a request
// without them):
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

// GrantOptions returns authz.Config.GrantOptions: it reads Keycloak's
// extension parameters of a UMA grant request, whose URIs
// (permission_resource_format=uri) name resources of st. A value Keycloak
// would not understand is 400 invalid_request naming the parameter.
func GrantOptions(st store.Store) func(form url.Values) (authz.GrantOptions, error) {
	return func(form url.Values) (authz.GrantOptions, error) {
		var o authz.GrantOptions
		uriFormat := false
		switch form.Get("permission_resource_format") {
		case "", "id":
		case "uri":
			uriFormat = true
		default:
			return o, oauth.ErrInvalidRequest("permission_resource_format must be id or uri")
		}
		matching, err := formBool(form, "permission_resource_matching_uri", false)
		if err != nil {
			return o, err
		}
		include, err := formBool(form, "response_include_resource_name", true)
		if err != nil {
			return o, err
		}
		o.OmitNames = !include
		submit, err := formBool(form, "submit_request", true)
		if err != nil {
			return o, err
		}
		o.NoRequests = !submit
		if v := form.Get("response_permissions_limit"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > maxPermissionsLimit {
				return o, oauth.ErrInvalidRequest("response_permissions_limit must be a whole number from 1 to %d", maxPermissionsLimit)
			}
			o.Limit = n
		}
		if uriFormat {
			o.FindResources = (&uriFinder{store: st, matching: matching}).find
		}
		return o, nil
	}
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

// maxURIScan bounds the resources of a resource server that
// permission_resource_format=uri reads (no index holds URIs): a resource
// server with more is refused that format, rather than matched in part.
const maxURIScan = 10000

// uriPage is how many resources uriCandidates reads at a time.
const uriPage = 256

// uriFinder finds the resources of one grant request by URI
// (permission_resource_format=uri).
type uriFinder struct {
	store    store.Store
	matching bool
	// withURIs are the audience's resources with URIs, once read.
	withURIs *[]store.Resource
}

// find returns the resources of rs that one permission parameter names by
// URI, and that offer one of scopes (any, without scopes).
func (f *uriFinder) find(ctx context.Context, rs, name string, scopes []string) ([]store.Resource, error) {
	if !authz.ValidText(name, false) {
		return nil, nil
	}
	all, err := f.candidates(ctx, rs)
	if err != nil {
		return nil, err
	}
	var found []store.Resource
	for _, res := range all {
		offers := len(scopes) == 0 || slices.ContainsFunc(scopes, func(sc string) bool { return slices.Contains(res.Scopes, sc) })
		if offers && slices.ContainsFunc(res.URIs, func(u string) bool { return uriMatches(u, name, f.matching) }) {
			found = append(found, res)
		}
	}
	return found, nil
}

// candidates reads, once per request, the resources of the audience rs
// that have URIs.
func (f *uriFinder) candidates(ctx context.Context, rs string) ([]store.Resource, error) {
	if f.withURIs != nil {
		return *f.withURIs, nil
	}
	var withURIs []store.Resource
	q := store.ResourceQuery{ResourceServer: rs, Limit: uriPage}
	for read := 0; ; {
		page, err := f.store.ListResources(ctx, q)
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
	f.withURIs = &withURIs
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
