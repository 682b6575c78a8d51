package people

import (
	"net/http"
	"net/url"

	"github.com/caddy-uma/caddy-uma/authz/oauth"
)

// routes is the route table of the pages, with paths relative to the
// issuer's path. A path's pattern without a method answers the methods it
// does not take: 405 with Allow (after login, for the console).
func (s *Site) routes() *http.ServeMux {
	mux := http.NewServeMux()
	handle := func(pattern string, h http.HandlerFunc) { mux.HandleFunc(s.as.Pattern(pattern), h) }
	handle("GET "+PathAssets, s.serveAssets)
	handle(PathAssets, refuseJSON(http.MethodGet, http.MethodHead))

	handle(PathLogin, s.serveLogin)
	handle(PathLogout, s.serveLogout)
	if s.oidc != nil {
		handle("GET "+PathLoginOIDC, s.serveLoginOIDC)
		handle(PathLoginOIDC, refuseJSON(http.MethodGet, http.MethodHead))
		handle("GET "+PathLoginCallback, s.serveLoginCallback)
		handle(PathLoginCallback, refuseJSON(http.MethodGet, http.MethodHead))
	}

	handle("GET "+PathAuthorize, s.serveAuthorize)
	handle("POST "+PathAuthorize, s.serveAuthorize)
	handle(PathAuthorize, s.refusePage(false, "Use GET.", "GET, POST"))
	handle("GET "+PathClaims, s.serveClaims)
	handle("POST "+PathClaims, s.finishInteraction)
	handle(PathClaims, s.refusePage(false, "Use GET.", "GET, POST"))

	// The console: pages (GET) and the forms they post (POST).
	const showsOnly, formsOnly = "This page only shows things.", "This address only takes forms."
	page := func(path string, h func(http.ResponseWriter, *http.Request, *session)) {
		handle("GET "+PathConsole+path, s.withPerson(h))
		handle(PathConsole+path, s.refusePage(true, showsOnly, "GET, HEAD"))
	}
	form := func(path string, h func(http.ResponseWriter, *http.Request, *session, url.Values)) {
		handle("POST "+PathConsole+path, s.withForm(h))
		handle(PathConsole+path, s.withPerson(func(w http.ResponseWriter, r *http.Request, sess *session) {
			s.readPageForm(w, r, sess) // answers 405
		}))
	}
	home := func(w http.ResponseWriter, r *http.Request, _ *session) {
		s.redirect(w, r, PathConsole+"/resources")
	}
	page("", home)
	page("/{$}", home)
	page("/resources", s.consoleResources)
	page("/resources/{id}", s.consoleResource)
	page("/shared-with-me", s.consoleSharedWithMe)
	page("/requests", s.consoleRequests)
	page("/history", s.consoleHistory)
	form("/shares", s.consoleShare)
	form("/shares/revoke", s.consoleRevoke)
	form("/requests/decide", s.consoleDecide)
	form("/rules/try", s.consoleTry)
	handle("GET "+PathConsole+"/rules", s.withPerson(s.consoleRules))
	handle("POST "+PathConsole+"/rules", s.withForm(s.consoleSaveRule))
	handle(PathConsole+"/rules", s.refusePage(true, "Use GET or POST.", "GET, HEAD, POST"))
	return mux
}

// withPerson runs h for a logged-in person, and sends anyone else to the
// login page (GET) or answers 403.
func (s *Site) withPerson(h func(http.ResponseWriter, *http.Request, *session)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if sess := s.requirePerson(w, r); sess != nil {
			h(w, r, sess)
		}
	}
}

// withForm runs h with the form a logged-in person posted from one of the
// pages, its CSRF token checked.
func (s *Site) withForm(h func(http.ResponseWriter, *http.Request, *session, url.Values)) http.HandlerFunc {
	return s.withPerson(func(w http.ResponseWriter, r *http.Request, sess *session) {
		if form, ok := s.readPageForm(w, r, sess); ok {
			h(w, r, sess, form)
		}
	})
}

// refusePage answers a method a page does not take with a 405 page (after
// login, when loggedIn).
func (s *Site) refusePage(loggedIn bool, message, allow string) http.HandlerFunc {
	refuse := func(w http.ResponseWriter) {
		w.Header().Set("Allow", allow)
		s.renderError(w, http.StatusMethodNotAllowed, "Not allowed", message)
	}
	if loggedIn {
		return s.withPerson(func(w http.ResponseWriter, _ *http.Request, _ *session) { refuse(w) })
	}
	return func(w http.ResponseWriter, _ *http.Request) { refuse(w) }
}

// refuseJSON answers a method an address that is not a page does not take
// (the style sheet, the login redirects) in OAuth error format.
func refuseJSON(allow ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		oauth.WriteError(w, oauth.ErrMethodNotAllowed(allow...))
	}
}
