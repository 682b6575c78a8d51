package authz

import "github.com/caddy-uma/caddy-uma/authz/oauth"

// keycloakTokenRoutes are Keycloak's token, introspection and key paths.
func (s *Server) keycloakTokenRoutes() []route {
	refusal := oauth.ErrMethodNotAllowed
	return []route{
		{path: KeycloakPathToken, methods: []method{onPost(asKeycloak(s.serveToken))}, refuse: refusal},
		{path: KeycloakPathIntrospect, methods: []method{onPost(asKeycloak(s.serveIntrospect))}, refuse: refusal, authenticate: s.introspectionCaller},
		{path: KeycloakPathCerts, methods: []method{onGet(s.serveJWKS)}, refuse: refusal},
	}
}
