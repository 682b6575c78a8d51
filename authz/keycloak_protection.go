package authz

import (
	"net/http"

	"github.com/caddy-uma/caddy-uma/authz/oauth"
)

// keycloakProtectionRoutes are Keycloak's protection API paths: resource
// registration in Keycloak's representation (keycloak_resources.go), the
// permission endpoint (ours: an array or an object, items with claims),
// the owner's permission tickets (keycloak_tickets.go) and the UMA policies
// a resource server sets for an owner (keycloak_policy.go).
func (s *Server) keycloakProtectionRoutes() []route {
	kc := func(h func(w http.ResponseWriter, r *http.Request, caller protectionCaller) error) handler {
		return asKeycloak(s.withPAT(h))
	}
	refusal := oauth.ErrUnsupportedMethodType
	return []route{
		{path: KeycloakPathResourceSet, methods: []method{onGet(kc(s.listKeycloakResources)), onPost(kc(s.createKeycloakResource))}, refuse: refusal, authenticate: s.patCaller, collection: true},
		{path: KeycloakPathResourceSet + "/{id}", methods: []method{onGet(kc(s.readKeycloakResource)), onPut(kc(s.updateKeycloakResource)), onDelete(kc(s.deleteResource))}, refuse: refusal, authenticate: s.patCaller},
		{path: KeycloakPathPermission, methods: []method{onPost(kc(s.servePermission))}, refuse: oauth.ErrMethodNotAllowed, authenticate: s.patCaller},
		{path: KeycloakPathPermissionTicket, methods: []method{onGet(kc(s.listKeycloakTickets)), onPost(kc(s.createKeycloakTicket)), onPut(kc(s.updateKeycloakTicket))}, refuse: refusal, authenticate: s.patCaller, collection: true},
		{path: KeycloakPathPermissionTicket + "/{id}", methods: []method{onDelete(kc(s.deleteKeycloakTicket))}, refuse: refusal, authenticate: s.patCaller},
		{path: KeycloakPathUMAPolicy, methods: []method{onGet(kc(s.listKeycloakPolicies))}, refuse: refusal, authenticate: s.patCaller, collection: true},
		{path: KeycloakPathUMAPolicy + "/{id}", methods: []method{onGet(kc(s.readKeycloakPolicy)), onPost(kc(s.createKeycloakPolicy)), onPut(kc(s.updateKeycloakPolicy)), onDelete(kc(s.deleteKeycloakPolicy))}, refuse: refusal, authenticate: s.patCaller},
	}
}
