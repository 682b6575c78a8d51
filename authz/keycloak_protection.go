package authz

import (
	"net/http"

	"github.com/caddy-uma/caddy-uma/authz/oauth"
)

// keycloakProtectionRoutes are Keycloak's protection API paths.
func (s *Server) keycloakProtectionRoutes() []route {
	kc := func(h func(w http.ResponseWriter, r *http.Request, caller protectionCaller) error) handler {
		return asKeycloak(s.withPAT(h))
	}
	refusal := oauth.ErrUnsupportedMethodType
	return []route{
		{path: KeycloakPathResourceSet, methods: []method{onGet(kc(s.listResources)), onPost(kc(s.createResource))}, refuse: refusal, authenticate: s.patCaller, collection: true},
		{path: KeycloakPathResourceSet + "/{id}", methods: []method{onGet(kc(s.readResource)), onPut(kc(s.updateResource)), onDelete(kc(s.deleteResource))}, refuse: refusal, authenticate: s.patCaller},
		{path: KeycloakPathPermission, methods: []method{onPost(kc(s.servePermission))}, refuse: oauth.ErrMethodNotAllowed, authenticate: s.patCaller},
	}
}
