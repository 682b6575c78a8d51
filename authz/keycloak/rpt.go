package keycloak

import "github.com/caddy-uma/caddy-uma/authz"

// RPTs in Keycloak's layout, for the resource servers configured with
// rpt_format keycloak (authz.Client.RPTFormat): beside the AS's claims
// (iss, sub, aud, azp, exp, iat, jti and permissions, which our
// enforcement point and introspection read), the RPT carries typ "Bearer"
// and authorization.permissions with rsid, rsname and scopes, which
// keycloak-connect's protect() and hasPermission() check. It is signed
// with RS256 and a kid (the AS requires signing_alg RS256 for such a
// resource server), verifiable with {issuer}/protocol/openid-connect/certs.

// RPTClaims is authz.Config.RPTClaims: Keycloak's claims in the RPTs for
// a resource server whose RPTFormat is authz.RPTFormatKeycloak, none for
// others.
func RPTClaims(rs authz.Client, perms []authz.Permission) map[string]any {
	if rs.RPTFormat != authz.RPTFormatKeycloak {
		return nil
	}
	return map[string]any{
		"typ":           "Bearer",
		"authorization": map[string]any{"permissions": authz.GrantedPermissions(perms)},
	}
}
