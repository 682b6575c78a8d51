package keycloak

// Hooks for the tests in package keycloak_test. This file is compiled
// only with the tests.

// RoutePatterns returns the "METHOD path" of every route of Keycloak's
// paths (relative to the issuer's path), for the check of
// docs/openapi.yaml.
func (c *Compat) RoutePatterns() []string {
	var out []string
	for _, rt := range c.routes() {
		for _, m := range rt.Methods {
			out = append(out, m.Name+" "+rt.Path)
		}
	}
	return out
}
