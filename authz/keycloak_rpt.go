package authz

import "github.com/lestrrat-go/jwx/v3/jwt"

// RPTs in Keycloak's layout, for the resource servers configured with
// rpt_format keycloak (Client.RPTFormat): beside our claims (iss, sub,
// aud, azp, exp, iat, jti and permissions, which our enforcement point
// and introspection read), the RPT carries typ "Bearer" and
// authorization.permissions with rsid, rsname and scopes, which
// keycloak-connect's protect() and hasPermission() check. It is signed
// with RS256 and a kid (the configuration requires signing_alg RS256 for
// such a resource server), verifiable with {issuer}/protocol/openid-connect/certs.

// keycloakPermission is one permission as Keycloak writes it: in an RPT's
// authorization.permissions and in the answer of response_mode=permissions.
type keycloakPermission struct {
	RSID   string   `json:"rsid"`
	RSName string   `json:"rsname,omitempty"`
	Scopes []string `json:"scopes"`
}

// keycloakPermissions returns perms as Keycloak writes them.
func keycloakPermissions(perms []Permission) []keycloakPermission {
	out := make([]keycloakPermission, 0, len(perms))
	for _, p := range perms {
		out = append(out, keycloakPermission{RSID: p.ResourceID, RSName: p.ResourceName, Scopes: nonNil(p.ResourceScopes)})
	}
	return out
}

// rptLayout adds Keycloak's claims to the RPT being built for rec when its
// resource server asks for them.
func (s *Server) rptLayout(b *jwt.Builder, rec rptRecord) *jwt.Builder {
	if rs, ok := s.clients[rec.ResourceServer]; !ok || rs.RPTFormat != RPTFormatKeycloak {
		return b
	}
	return b.Claim("typ", "Bearer").
		Claim("authorization", map[string]any{"permissions": keycloakPermissions(rec.Permissions)})
}
