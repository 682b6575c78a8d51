package ownerapi

// Hooks for the tests in package ownerapi_test. This file is compiled
// only with the tests.

// RoutePatterns returns the "METHOD path" of every route of the owner API
// (relative to the issuer's path), for the check of docs/openapi.yaml.
func (a *API) RoutePatterns() []string {
	var out []string
	for _, rt := range a.routes() {
		for _, m := range rt.Methods {
			out = append(out, m.Name+" "+rt.Path)
		}
	}
	return out
}
