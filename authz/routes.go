package authz

import (
	"net/http"
	"net/url"
	"strings"

	"go.uber.org/zap"

	"github.com/caddy-uma/caddy-uma/authz/oauth"
)

// handler is an endpoint: it decodes the request, does what it asks, and
// writes the success answer; an error it returns is answered by answer,
// in one place.
type handler func(w http.ResponseWriter, r *http.Request) error

// routes is the route table of the AS, with paths relative to the issuer's
// path. Each path also has a pattern without a method, which answers the
// methods the path does not take: 405 with Allow, after the caller's PAT
// is checked where the path needs one (so that a 405 tells an anonymous
// caller nothing).
func (s *Server) routes() *http.ServeMux {
	mux := http.NewServeMux()
	handle := func(pattern string, h handler) { mux.Handle(s.Pattern(pattern), s.answer(h)) }

	// Discovery and keys. RFC 8414 section 3.1 also puts the metadata at
	// the well-known path inserted before the issuer's path.
	if s.basePath != "" {
		mux.Handle("GET "+PathOAuthMetadata+s.basePath, s.answer(s.serveMetadata))
		mux.Handle(PathOAuthMetadata+s.basePath, s.answer(s.refuseMethod(nil, oauth.ErrMethodNotAllowed, http.MethodGet, http.MethodHead)))
	}
	handle("GET "+PathUMAConfiguration, s.serveMetadata)
	handle("GET "+PathOAuthMetadata, s.serveMetadata)
	handle("GET "+PathJWKS, s.serveJWKS)
	handle(PathUMAConfiguration, s.refuseMethod(nil, oauth.ErrMethodNotAllowed, http.MethodGet, http.MethodHead))
	handle(PathOAuthMetadata, s.refuseMethod(nil, oauth.ErrMethodNotAllowed, http.MethodGet, http.MethodHead))
	handle(PathJWKS, s.refuseMethod(nil, oauth.ErrMethodNotAllowed, http.MethodGet, http.MethodHead))

	// The token endpoint and the token services of RFC 7662 and 7009.
	handle("POST "+PathToken, s.serveToken)
	handle("POST "+PathIntrospect, s.serveIntrospect)
	handle("POST "+PathRevoke, s.serveRevoke)
	handle(PathToken, s.refuseMethod(nil, oauth.ErrMethodNotAllowed, http.MethodPost))
	handle(PathIntrospect, s.refuseMethod(s.introspectionCaller, oauth.ErrMethodNotAllowed, http.MethodPost))
	handle(PathRevoke, s.refuseMethod(nil, oauth.ErrMethodNotAllowed, http.MethodPost))

	// The protection API, behind PATs.
	for _, p := range []string{PathResourceSet, PathResourceSet + "/{$}"} {
		handle("GET "+p, s.withPAT(s.listResources))
		handle("POST "+p, s.withPAT(s.createResource))
		handle(p, s.refuseMethod(s.patCaller, oauth.ErrUnsupportedMethodType, http.MethodGet, http.MethodPost))
	}
	resource := PathResourceSet + "/{id}"
	handle("GET "+resource, s.withPAT(s.readResource))
	handle("PUT "+resource, s.withPAT(s.updateResource))
	handle("DELETE "+resource, s.withPAT(s.deleteResource))
	handle(resource, s.refuseMethod(s.patCaller, oauth.ErrUnsupportedMethodType, http.MethodGet, http.MethodPut, http.MethodDelete))
	handle("POST "+PathPermission, s.withPAT(s.servePermission))
	handle(PathPermission, s.refuseMethod(s.patCaller, oauth.ErrMethodNotAllowed, http.MethodPost))

	// The owner API, behind the owner's PAT.
	for _, p := range []string{PathOwnerRules, PathOwnerRules + "/{$}"} {
		handle("GET "+p, s.withPAT(s.listRules))
		handle(p, s.refuseMethod(s.patCaller, oauth.ErrMethodNotAllowed, http.MethodGet, http.MethodHead))
	}
	rule := PathOwnerRules + "/{name}"
	handle("GET "+rule, s.withPAT(s.readRule))
	handle("PUT "+rule, s.withPAT(s.putRule))
	handle("DELETE "+rule, s.withPAT(s.deleteRule))
	handle(rule, s.refuseMethod(s.patCaller, oauth.ErrUnsupportedMethodType, http.MethodGet, http.MethodPut, http.MethodDelete))
	handle("POST "+PathOwnerEvaluate, s.withPAT(s.serveEvaluate))
	handle(PathOwnerEvaluate, s.refuseMethod(s.patCaller, oauth.ErrMethodNotAllowed, http.MethodPost))
	for _, p := range []string{PathOwnerRequests, PathOwnerRequests + "/{$}"} {
		handle("GET "+p, s.withPAT(s.listRequests))
		handle(p, s.refuseMethod(s.patCaller, oauth.ErrMethodNotAllowed, http.MethodGet, http.MethodHead))
	}
	request := PathOwnerRequests + "/{id}"
	handle("GET "+request, s.withPAT(s.readRequest))
	handle("POST "+request, s.withPAT(s.decideRequest))
	handle(request, s.refuseMethod(s.patCaller, oauth.ErrUnsupportedMethodType, http.MethodGet, http.MethodPost))

	if s.registration != nil {
		handle("POST "+PathRegister, s.serveRegister)
		handle(PathRegister, s.refuseMethod(nil, oauth.ErrMethodNotAllowed, http.MethodPost))
	}
	return mux
}

// Pattern returns a route pattern ("[METHOD ]path", the path relative to
// the issuer's) with the issuer's path inserted.
func (s *Server) Pattern(pattern string) string {
	if method, path, ok := strings.Cut(pattern, " "); ok {
		return method + " " + s.basePath + path
	}
	return s.basePath + pattern
}

// answer adapts a handler: an error it returns is written as an OAuth
// error answer, and logged when it is the server's fault.
func (s *Server) answer(h handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r); err != nil {
			s.writeError(w, err)
		}
	})
}

// writeError writes err as an OAuth error answer. A server fault is logged
// with its cause, which the answer never shows.
func (s *Server) writeError(w http.ResponseWriter, err error) {
	e := oauth.AsError(err)
	if e.Status >= 500 {
		s.log.Error(e.Description, zap.String("code", string(e.Code)), zap.Error(e.Cause()))
	}
	oauth.WriteError(w, e)
}

// refuseMethod answers a method the path does not take with refuse (405
// and Allow), after authenticate, when given, accepted the caller.
func (s *Server) refuseMethod(authenticate func(r *http.Request) error, refuse func(allow ...string) *oauth.Error, allow ...string) handler {
	return func(w http.ResponseWriter, r *http.Request) error {
		if authenticate != nil {
			if err := authenticate(r); err != nil {
				return err
			}
		}
		return refuse(allow...)
	}
}

// patCaller authenticates a protection API caller, for refuseMethod.
func (s *Server) patCaller(r *http.Request) error {
	_, err := s.requirePAT(r)
	return err
}

// introspectionCaller authenticates an introspection caller that sent a
// PAT, for refuseMethod.
func (s *Server) introspectionCaller(r *http.Request) error {
	if _, ok := oauth.BearerToken(r); ok {
		return s.patCaller(r)
	}
	return nil
}

// RelativePath returns a request path relative to the issuer's path, and
// whether it lies under it. Paths that are not clean (empty segments, "."
// or "..") lie under no route table.
func (s *Server) RelativePath(path string) (string, bool) {
	rel, ok := strings.CutPrefix(path, s.basePath)
	if !ok || rel == "" || rel[0] != '/' {
		return "", false
	}
	if strings.Contains(rel, "//") || strings.Contains(rel+"/", "/./") || strings.Contains(rel+"/", "/../") {
		return "", false
	}
	return rel, true
}

// lookup returns the handler of a request, or nil when the request's path
// is not one of the AS's endpoints.
func (s *Server) lookup(r *http.Request) http.Handler { return s.Route(s.mux, r) }

// Route returns the handler of r in mux, a route table built with Pattern,
// or nil when r's path has no route there. Package people routes its pages
// with it.
func (s *Server) Route(mux *http.ServeMux, r *http.Request) http.Handler {
	if _, ok := s.RelativePath(r.URL.Path); !ok && r.URL.Path != PathOAuthMetadata+s.basePath {
		return nil
	}
	if _, pattern := mux.Handler(r); pattern == "" {
		return nil
	}
	return mux
}

// Handles reports whether path is one of the AS's endpoints.
func (s *Server) Handles(path string) bool {
	return s.lookup(&http.Request{Method: http.MethodGet, URL: &url.URL{Path: path}}) != nil
}

// ServeHTTP serves the AS endpoints. Other paths get a 404 in OAuth error
// format.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := s.lookup(r)
	if h == nil {
		s.writeError(w, oauth.ErrNotFound("no such endpoint"))
		return
	}
	h.ServeHTTP(w, r)
}
