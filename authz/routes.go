package authz

import (
	"errors"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-uma/caddy-uma/authz/oauth"
	"github.com/caddy-uma/caddy-uma/store"
)

// handler is an endpoint: it decodes the request, does what it asks, and
// writes the success answer; an error it returns is answered by answer,
// in one place.
type handler func(w http.ResponseWriter, r *http.Request) error

// route is one path of the route table: its handler per method, and how
// the other methods are refused.
type route struct {
	path    string
	methods []method
	refuse  func(allow ...string) *oauth.Error
	// authenticate, when set, checks the caller before a refusal.
	authenticate func(*http.Request) error
	// collection says that path + "/" is the same collection.
	collection bool
}

// method is the handler of one method of a route.
type method struct {
	name string
	h    handler
}

func onGet(h handler) method    { return method{http.MethodGet, h} }
func onPost(h handler) method   { return method{http.MethodPost, h} }
func onPut(h handler) method    { return method{http.MethodPut, h} }
func onDelete(h handler) method { return method{http.MethodDelete, h} }

// routeTable lists the AS's paths, relative to the issuer's path.
func (s *Server) routeTable() []route {
	pat := s.withPAT
	oauthRefusal, protectionRefusal := oauth.ErrMethodNotAllowed, oauth.ErrUnsupportedMethodType
	routes := []route{
		// Discovery and keys.
		{path: PathUMAConfiguration, methods: []method{onGet(s.serveMetadata)}, refuse: oauthRefusal},
		{path: PathOAuthMetadata, methods: []method{onGet(s.serveMetadata)}, refuse: oauthRefusal},
		{path: PathJWKS, methods: []method{onGet(s.serveJWKS)}, refuse: oauthRefusal},
		// The token endpoint and the token services of RFC 7662 and 7009.
		{path: PathToken, methods: []method{onPost(s.serveToken)}, refuse: oauthRefusal},
		{path: PathIntrospect, methods: []method{onPost(s.serveIntrospect)}, refuse: oauthRefusal, authenticate: s.introspectionCaller},
		{path: PathRevoke, methods: []method{onPost(s.serveRevoke)}, refuse: oauthRefusal},
		// The protection API, behind PATs.
		{path: PathResourceSet, methods: []method{onGet(pat(s.listResources)), onPost(pat(s.createResource))}, refuse: protectionRefusal, authenticate: s.patCaller, collection: true},
		{path: PathResourceSet + "/{id}", methods: []method{onGet(pat(s.readResource)), onPut(pat(s.updateResource)), onDelete(pat(s.deleteResource))}, refuse: protectionRefusal, authenticate: s.patCaller},
		{path: PathPermission, methods: []method{onPost(pat(s.servePermission))}, refuse: oauthRefusal, authenticate: s.patCaller},
		// The owner API, behind the owner's PAT.
		{path: PathOwnerRules, methods: []method{onGet(pat(s.listRules))}, refuse: oauthRefusal, authenticate: s.patCaller, collection: true},
		{path: PathOwnerRules + "/{name}", methods: []method{onGet(pat(s.readRule)), onPut(pat(s.putRule)), onDelete(pat(s.deleteRule))}, refuse: protectionRefusal, authenticate: s.patCaller},
		{path: PathOwnerEvaluate, methods: []method{onPost(pat(s.serveEvaluate))}, refuse: oauthRefusal, authenticate: s.patCaller},
		{path: PathOwnerTests, methods: []method{onPost(pat(s.runTests))}, refuse: oauthRefusal, authenticate: s.patCaller},
		{path: PathOwnerRequests, methods: []method{onGet(pat(s.listRequests))}, refuse: oauthRefusal, authenticate: s.patCaller, collection: true},
		{path: PathOwnerRequests + "/{id}", methods: []method{onGet(pat(s.readRequest)), onPost(pat(s.decideRequest))}, refuse: protectionRefusal, authenticate: s.patCaller},
	}
	if s.registration != nil {
		routes = append(routes, route{path: PathRegister, methods: []method{onPost(s.serveRegister)}, refuse: oauthRefusal})
	}
	return routes
}

// routes builds the mux of the route table. Each path also gets a pattern
// without a method, which answers the methods the path does not take: 405
// with Allow, after the caller's PAT is checked where the path needs one
// (so that a 405 tells an anonymous caller nothing). RFC 8414 section 3.1
// also puts the metadata at the well-known path inserted before the
// issuer's path.
func (s *Server) routes() *http.ServeMux {
	mux := http.NewServeMux()
	table := s.routeTable()
	if s.basePath != "" {
		inserted := route{path: PathOAuthMetadata + s.basePath, methods: []method{onGet(s.serveMetadata)}, refuse: oauth.ErrMethodNotAllowed}
		s.register(mux, inserted, inserted.path)
	}
	for _, rt := range table {
		s.register(mux, rt, s.basePath+rt.path)
		if rt.collection {
			s.register(mux, rt, s.basePath+rt.path+"/{$}")
		}
	}
	return mux
}

// register adds a route's patterns at path to mux.
func (s *Server) register(mux *http.ServeMux, rt route, path string) {
	var allow []string
	for _, m := range rt.methods {
		mux.Handle(m.name+" "+path, s.answer(m.h))
		allow = append(allow, m.name)
		if m.name == http.MethodGet {
			allow = append(allow, http.MethodHead)
		}
	}
	mux.Handle(path, s.answer(func(w http.ResponseWriter, r *http.Request) error {
		if rt.authenticate != nil {
			if err := rt.authenticate(r); err != nil {
				return err
			}
		}
		return rt.refuse(allow...)
	}))
}

// patCaller authenticates a protection API caller.
func (s *Server) patCaller(r *http.Request) error {
	_, err := s.requirePAT(r)
	return err
}

// introspectionCaller authenticates an introspection caller that sent a
// PAT (others authenticate as clients, in the form).
func (s *Server) introspectionCaller(r *http.Request) error {
	if _, ok := oauth.BearerToken(r); ok {
		return s.patCaller(r)
	}
	return nil
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
	e := s.answerError(err)
	if e.Cause() != nil && !errors.Is(e.Cause(), store.ErrNoSpace) {
		s.faults.log(s.log, e)
	}
	oauth.WriteError(w, e)
}

// WriteError writes err as the AS's endpoints answer errors: an OAuth
// error answer; a server fault is logged with its cause (rate-limited),
// which the answer never shows; a write refused for want of disk space is
// a 503 with Retry-After. The operator's API (package admin) answers with
// it.
func (s *Server) WriteError(w http.ResponseWriter, err error) { s.writeError(w, err) }

// answerError returns the answer to err: err as an OAuth error, and a
// write refused for want of disk space as 503 with its Retry-After.
func (s *Server) answerError(err error) *oauth.Error {
	e := oauth.AsError(err)
	if errors.Is(e.Cause(), store.ErrNoSpace) {
		// The store refuses writes until disk space returns: the store
		// logs it, once; the client comes back in a while.
		return oauth.ErrUnavailable("the server cannot store anything now", noSpaceRetryAfter, e.Cause())
	}
	return e
}

// noSpaceRetryAfter is the Retry-After of writes refused for want of disk
// space, in seconds.
const noSpaceRetryAfter = 30

// faultLogInterval is how often one kind of server fault is logged: a
// fault that lasts (a store or an issuer down) answers every request, and
// would otherwise log every one.
const faultLogInterval = 10 * time.Second

// faultLog logs server faults, each description at most once per
// faultLogInterval, with the number of answers left unlogged since.
type faultLog struct {
	now func() time.Time

	mu   sync.Mutex
	last map[string]faultSeen
}

type faultSeen struct {
	at         time.Time
	suppressed int
}

func (f *faultLog) log(log *zap.Logger, e *oauth.Error) {
	now := f.now()
	f.mu.Lock()
	seen := f.last[e.Description]
	if !seen.at.IsZero() && now.Sub(seen.at) < faultLogInterval {
		seen.suppressed++
		f.last[e.Description] = seen
		f.mu.Unlock()
		return
	}
	if f.last == nil || len(f.last) > 1000 {
		f.last = map[string]faultSeen{}
	}
	f.last[e.Description] = faultSeen{at: now}
	f.mu.Unlock()
	log.Error(e.Description, zap.String("code", string(e.Code)), zap.Error(e.Cause()), zap.Int("suppressed", seen.suppressed))
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
