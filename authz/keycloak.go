package authz

import (
	"context"
	"fmt"
	"net/http"
	"path"
	"strings"
)

// Keycloak compatibility (Config.KeycloakCompat): Keycloak's paths, served
// under the issuer beside ours, so that clients written for Keycloak
// Authorization Services (gocloak, keycloak-connect, keycloak-js) work
// with a URL change. The issuer's path must be /realms/{realm}, as
// Keycloak's, since those clients build it from a server URL and a realm.
// A request that arrives on a Keycloak path is answered as Keycloak
// answers (see keycloakRequest); our own paths keep standard UMA.
const (
	KeycloakPathToken            = "/protocol/openid-connect/token"
	KeycloakPathIntrospect       = "/protocol/openid-connect/token/introspect"
	KeycloakPathCerts            = "/protocol/openid-connect/certs"
	KeycloakPathResourceSet      = "/authz/protection/resource_set"
	KeycloakPathPermission       = "/authz/protection/permission"
	KeycloakPathPermissionTicket = "/authz/protection/permission/ticket"
	KeycloakPathUMAPolicy        = "/authz/protection/uma-policy"
)

// RPT formats of a resource server (Client.RPTFormat).
const (
	// RPTFormatUMA is our layout: permissions with resource_id and
	// resource_scopes.
	RPTFormatUMA = "uma"
	// RPTFormatKeycloak is Keycloak's: typ "Bearer" and
	// authorization.permissions with rsid, rsname and scopes.
	RPTFormatKeycloak = "keycloak"
)

// KeycloakRealm returns the realm of an issuer path /…/realms/{realm}, or
// an error that says what compat mode needs.
func KeycloakRealm(issuerPath string) (string, error) {
	parent, realm := path.Split(strings.TrimSuffix(issuerPath, "/"))
	if realm == "" || !strings.HasSuffix(parent, "/realms/") {
		return "", fmt.Errorf("keycloak_compat: the issuer's path is %q, but Keycloak's clients build it as {server}/realms/{realm}: use an issuer such as https://auth.example.com/realms/demo", issuerPath)
	}
	return realm, nil
}

// keycloakRoutes are Keycloak's paths, relative to the issuer's path.
func (s *Server) keycloakRoutes() []route {
	return append(s.keycloakTokenRoutes(), s.keycloakProtectionRoutes()...)
}

type keycloakKey struct{}

// asKeycloak marks the requests of h as arriving on a Keycloak path.
func asKeycloak(h handler) handler {
	return func(w http.ResponseWriter, r *http.Request) error {
		return h(w, r.WithContext(context.WithValue(r.Context(), keycloakKey{}, true)))
	}
}

// keycloakRequest says that r arrived on one of Keycloak's paths, and is
// answered as Keycloak answers.
func keycloakRequest(r *http.Request) bool {
	v, _ := r.Context().Value(keycloakKey{}).(bool)
	return v
}
