package authz

import (
	"net/http"

	"github.com/caddy-uma/caddy-uma/authz/oauth"
)

// Metadata is the AS metadata document: RFC 8414 members plus the UMA
// members of the UMA 2.0 Grant and Federated Authorization specs.
type Metadata struct {
	Issuer                                 string   `json:"issuer"`
	AuthorizationEndpoint                  string   `json:"authorization_endpoint,omitempty"`
	TokenEndpoint                          string   `json:"token_endpoint"`
	JWKSURI                                string   `json:"jwks_uri"`
	RegistrationEndpoint                   string   `json:"registration_endpoint,omitempty"`
	ScopesSupported                        []string `json:"scopes_supported"`
	ResponseTypesSupported                 []string `json:"response_types_supported"`
	ResponseModesSupported                 []string `json:"response_modes_supported,omitempty"`
	GrantTypesSupported                    []string `json:"grant_types_supported"`
	TokenEndpointAuthMethodsSupported      []string `json:"token_endpoint_auth_methods_supported"`
	RevocationEndpoint                     string   `json:"revocation_endpoint"`
	RevocationEndpointAuthMethodsSupported []string `json:"revocation_endpoint_auth_methods_supported"`
	IntrospectionEndpoint                  string   `json:"introspection_endpoint"`
	IntrospectionEndpointAuthMethods       []string `json:"introspection_endpoint_auth_methods_supported"`
	CodeChallengeMethodsSupported          []string `json:"code_challenge_methods_supported,omitempty"`
	// AuthorizationResponseISSParameterSupported is RFC 9207's member: the
	// authorization endpoint's responses carry iss.
	AuthorizationResponseISSParameterSupported bool `json:"authorization_response_iss_parameter_supported,omitempty"`
	// UMA members.
	PermissionEndpoint           string   `json:"permission_endpoint"`
	ResourceRegistrationEndpoint string   `json:"resource_registration_endpoint"`
	ClaimsInteractionEndpoint    string   `json:"claims_interaction_endpoint,omitempty"`
	UMAProfilesSupported         []string `json:"uma_profiles_supported"`
	// PolicyEndpoint is Keycloak's UMA policy API, in Keycloak
	// compatibility mode (package keycloak, through Config.Discovery).
	PolicyEndpoint string `json:"policy_endpoint,omitempty"`
}

// Metadata returns the AS metadata, with absolute URLs built from the
// issuer.
func (s *Server) Metadata() Metadata {
	clientAuth := []string{"client_secret_basic", "client_secret_post"}
	m := Metadata{
		Issuer:                                 s.issuer,
		TokenEndpoint:                          s.Endpoint(PathToken),
		JWKSURI:                                s.Endpoint(PathJWKS),
		ScopesSupported:                        []string{ScopeProtection},
		ResponseTypesSupported:                 []string{},
		GrantTypesSupported:                    []string{GrantTypeClientCredentials, GrantTypeRefreshToken, GrantTypeUMATicket},
		TokenEndpointAuthMethodsSupported:      clientAuth,
		RevocationEndpoint:                     s.Endpoint(PathRevoke),
		RevocationEndpointAuthMethodsSupported: clientAuth,
		IntrospectionEndpoint:                  s.Endpoint(PathIntrospect),
		IntrospectionEndpointAuthMethods:       clientAuth,
		PermissionEndpoint:                     s.Endpoint(PathPermission),
		ResourceRegistrationEndpoint:           s.Endpoint(PathResourceSet),
		UMAProfilesSupported:                   []string{},
		ClaimsInteractionEndpoint:              s.claimsInteraction,
	}
	if s.loginPages {
		// Resource servers obtain PATs by their owners' consent.
		m.AuthorizationEndpoint = s.Endpoint(PathAuthorize)
		m.ResponseTypesSupported = []string{"code"}
		m.GrantTypesSupported = append([]string{GrantTypeAuthorizationCode}, m.GrantTypesSupported...)
		m.CodeChallengeMethodsSupported = []string{"S256"}
		m.AuthorizationResponseISSParameterSupported = true
	}
	if s.registration != nil {
		m.RegistrationEndpoint = s.Endpoint(PathRegister)
	}
	if s.discovery != nil {
		s.discovery(&m)
	}
	return m
}

// serveMetadata serves the metadata document at
// {issuer}/.well-known/uma2-configuration and at both RFC 8414 paths.
func (s *Server) serveMetadata(w http.ResponseWriter, r *http.Request) error {
	oauth.WriteJSON(w, http.StatusOK, s.Metadata())
	return nil
}

// serveJWKS serves the public signing keys.
func (s *Server) serveJWKS(w http.ResponseWriter, r *http.Request) error {
	h := w.Header()
	h.Set("Content-Type", "application/jwk-set+json")
	h.Set("Cache-Control", "public, max-age=300")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(s.keys.JWKS())
	return nil
}
