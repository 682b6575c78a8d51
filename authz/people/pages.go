package people

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/caddy-uma/caddy-uma/authz/oauth"
	"go.uber.org/zap"
)

// The pages people see (login, consent, claims gathering, the console) are
// server-rendered with html/template from embedded templates, with one
// embedded style sheet and no JavaScript. Every page is sent with
// no-store, a strict Content-Security-Policy (no script at all, forms only
// to the AS, no framing) and no Referer, since some URLs carry tickets.

//go:embed templates/*.html
var templateFS embed.FS

//go:embed assets/uma.css
var styleSheet []byte

// PathAssets is the path of the pages' style sheet.
const PathAssets = "/assets/uma.css"

// maxPageFormBytes bounds the body of a form posted from a page (a rule
// module of 64 KiB, form-encoded, fits).
const maxPageFormBytes = 256 << 10

// pageTemplates are the parsed pages, by file name.
var pageTemplates = parsePages()

var pageFuncs = template.FuncMap{
	"join": strings.Join,
	"date": func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format("2 Jan 2006")
	},
	"datetime": func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format("2 Jan 2006, 15:04 UTC")
	},
	"has": func(list []string, v string) bool {
		for _, x := range list {
			if x == v {
				return true
			}
		}
		return false
	},
	"add": func(a, b int) int { return a + b },
}

func parsePages() map[string]*template.Template {
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		panic(err)
	}
	out := make(map[string]*template.Template, len(names))
	for _, name := range names {
		base := strings.TrimPrefix(name, "templates/")
		if base == "layout.html" {
			continue
		}
		t := template.Must(template.New(base).Funcs(pageFuncs).ParseFS(templateFS, "templates/layout.html", name))
		out[base] = t
	}
	return out
}

// page is what every template gets.
type page struct {
	// Title is the page's title.
	Title string
	// Base is the issuer's path, for links.
	Base string
	// CSRF is the session's CSRF token, for forms.
	CSRF string
	// Person is who is logged in, if anyone.
	Person *person
	// Section is the console section shown, for the navigation.
	Section string
	// Pending is the number of pending requests, for the navigation.
	Pending int
	// Flash is a message about what was just done; Error what went wrong.
	Flash, Error string
	// Data is the page's own data.
	Data any
}

// renderPage writes a page. formTargets are origins besides the AS's own to
// which the page's forms lead (through a redirect), for the
// Content-Security-Policy's form-action.
func (s *Site) renderPage(w http.ResponseWriter, status int, name string, p page, formTargets ...string) {
	t, ok := pageTemplates[name]
	if !ok {
		panic("no page template " + name)
	}
	p.Base = s.base
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout", p); err != nil {
		s.log.Error("rendering a page", zap.Error(err))
		status = http.StatusServiceUnavailable
		buf.Reset()
		buf.WriteString("<!doctype html><title>Error</title><p>The page could not be shown.</p>")
	}
	pageHeaders(w.Header(), formTargets)
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// pageHeaders sets the headers of every HTML page.
func pageHeaders(h http.Header, formTargets []string) {
	formAction := "'self'"
	for _, t := range formTargets {
		if t != "" {
			formAction += " " + t
		}
	}
	h.Set("Content-Type", "text/html; charset=utf-8")
	oauth.NoStore(h)
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self' data:; "+
		"form-action "+formAction+"; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
}

// errorPage is the data of the error page.
type errorPage struct {
	Message string
	// Back is a link to offer, if any.
	Back string
}

// renderError shows an error page. It never redirects: it is what a person
// sees when the AS cannot trust where it would send them.
func (s *Site) renderError(w http.ResponseWriter, status int, title, message string) {
	s.renderPage(w, status, "error.html", page{Title: title, Data: errorPage{Message: message}})
}

// renderServerError logs err and shows a generic error page.
func (s *Site) renderServerError(w http.ResponseWriter, what string, err error) {
	s.log.Error(what, zap.Error(err))
	// The server's fault, not the person's: 503 and a moment to wait.
	w.Header().Set("Retry-After", "1")
	s.renderError(w, http.StatusServiceUnavailable, "Something went wrong",
		"The authorization server could not complete this. Try again in a moment.")
}

// serveAssets serves the style sheet.
func (s *Site) serveAssets(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "text/css; charset=utf-8")
	h.Set("Cache-Control", "public, max-age=3600")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(styleSheet)
}

// readPageForm parses a form posted from one of the AS's pages and checks
// its CSRF token against the session. On failure it has answered, and ok
// is false.
func (s *Site) readPageForm(w http.ResponseWriter, r *http.Request, sess *session) (form url.Values, ok bool) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		s.renderError(w, http.StatusMethodNotAllowed, "Not allowed", "This address only takes forms.")
		return nil, false
	}
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt != "application/x-www-form-urlencoded" {
		s.renderError(w, http.StatusUnsupportedMediaType, "Not a form", "This address only takes forms sent from its pages.")
		return nil, false
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxPageFormBytes))
	if err != nil {
		s.renderError(w, http.StatusRequestEntityTooLarge, "Too large", "The form is too large.")
		return nil, false
	}
	form, err = url.ParseQuery(string(body))
	if err != nil {
		s.renderError(w, http.StatusBadRequest, "Bad form", "The form could not be read.")
		return nil, false
	}
	if !validCSRF(sess, form.Get("csrf")) {
		s.renderError(w, http.StatusForbidden, "This form has expired",
			"The form was not sent from a page of this session, or the session has ended. Go back, reload the page and try again.")
		return nil, false
	}
	return form, true
}

// redirect answers 303 See Other to a path under the issuer.
func (s *Site) redirect(w http.ResponseWriter, r *http.Request, rel string) {
	oauth.NoStore(w.Header())
	http.Redirect(w, r, s.base+rel, http.StatusSeeOther)
}

// safeNext returns next if it is a path under the issuer (a place to go
// back to after login), and the console otherwise.
func (s *Site) safeNext(next string) string {
	def := s.base + PathConsole
	if next == "" || len(next) > 4096 || strings.ContainsAny(next, "\\\r\n\t") || strings.HasPrefix(next, "//") {
		return def
	}
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || !strings.HasPrefix(u.Path, s.base+"/") {
		return def
	}
	return next
}

// origin returns the scheme://host of an absolute URL, for form-action.
func origin(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return ""
	}
	return fmt.Sprintf("%s://%s", u.Scheme, u.Host)
}
