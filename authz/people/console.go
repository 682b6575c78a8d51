package people

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/caddy-uma/caddy-uma/authz"
	"github.com/caddy-uma/caddy-uma/authz/owners"
	"github.com/caddy-uma/caddy-uma/store"
	"go.uber.org/zap"
)

// The sharing console, {issuer}/console: server-rendered pages where a
// logged-in person manages what they own. The owner of every page and
// action is the person's subject (a local user's name, or the OpenID
// provider's sub), and everything is looked up under that owner: another
// owner's resource, share, request or rule is "not found" (404), and
// nothing changes.
//
//	GET  /console                       -> /console/resources
//	GET  /console/resources             my resources, their scopes and who can do what now
//	GET  /console/resources/{id}        one resource: its shares, what my rules grant, the share form
//	POST /console/shares                share a resource with a person
//	POST /console/shares/revoke         revoke a share (and the tokens it granted)
//	GET  /console/shared-with-me        what others share with me
//	GET  /console/requests              requests sent to me
//	POST /console/requests/decide       approve or deny one
//	GET  /console/rules[?name=]         my sharing rules, an editor
//	POST /console/rules                 save or delete a rule module
//	POST /console/rules/try             try my rules on a made-up request
//	GET  /console/history               recent access decisions on my resources
//
// Every POST carries the session's CSRF token; pages answer GET and HEAD.

// consolePage fills in what every console page shows.
func (s *Site) consolePage(r *http.Request, sess *session, section, title string, data any) page {
	p := page{Title: title, CSRF: sess.CSRF, Person: sess.Person, Section: section, Data: data}
	if reqs, err := s.as.Requests(r.Context(), sess.Person.Subject); err == nil {
		for _, q := range reqs {
			if q.Status == authz.RequestPending {
				p.Pending++
			}
		}
	}
	p.Flash = flashes[r.URL.Query().Get("done")]
	return p
}

// flashes are the messages shown after an action, by the done parameter
// of the redirect.
var flashes = map[string]string{
	"shared":   "Shared.",
	"revoked":  "The share is revoked, and the tokens it granted no longer work.",
	"approved": "Approved: the person can now have the access they asked for.",
	"denied":   "Denied.",
	"saved":    "Your rules are saved and in force.",
	"deleted":  "The rule module is deleted.",
}

// resourceView is a resource with who can do what with it.
type resourceView struct {
	store.Resource
	Shares  []authz.Share
	Access  ruleAccess
	Pending int
}

// resourcesPage is the data of the resources page.
type resourcesPage struct {
	Resources []resourceView
	HasRules  bool
}

func (s *Site) consoleResources(w http.ResponseWriter, r *http.Request, sess *session) {
	ctx := r.Context()
	owner := sess.Person.Subject
	list, err := s.as.OwnerResources(ctx, owner)
	if err != nil {
		s.renderServerError(w, "listing resources", err)
		return
	}
	shares, err := s.as.Shares(ctx, owner)
	if err != nil {
		s.renderServerError(w, "listing shares", err)
		return
	}
	reqs, err := s.as.Requests(ctx, owner)
	if err != nil {
		s.renderServerError(w, "listing requests", err)
		return
	}
	actx, cancel := context.WithTimeout(ctx, accessTimeout)
	defer cancel()
	access := s.newAccessCheck(actx, owner)
	data := resourcesPage{HasRules: access.hasRules}
	for _, res := range list {
		v := resourceView{Resource: res, Access: access.of(actx, res)}
		for _, sh := range shares {
			if sh.ResourceID == res.ID {
				v.Shares = append(v.Shares, sh)
			}
		}
		for _, q := range reqs {
			if q.ResourceID == res.ID && q.Status == authz.RequestPending {
				v.Pending++
			}
		}
		data.Resources = append(data.Resources, v)
	}
	sort.SliceStable(data.Resources, func(i, j int) bool {
		return strings.ToLower(data.Resources[i].Name) < strings.ToLower(data.Resources[j].Name)
	})
	s.renderPage(w, http.StatusOK, "resources.html", s.consolePage(r, sess, "resources", "My resources", data))
}

// resourcePage is the data of one resource's page.
type resourcePage struct {
	Resource store.Resource
	Shares   []authz.Share
	Requests []authz.AccessRequest
	Clients  []string
	Access   ruleAccess
	Today    string
	// Form keeps what was typed when a share was refused.
	Form shareForm
}

// shareForm is the share form's values.
type shareForm struct {
	Person  string
	Scopes  []string
	Expires string
	Client  string
}

// ownedResource returns one of owner's resources, or nil.
func (s *Site) ownedResource(r *http.Request, owner, id string) (*store.Resource, error) {
	res, err := s.as.OwnerResource(r.Context(), owner, id)
	if errors.Is(err, authz.ErrNoSuchResource) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &res, nil
}

func (s *Site) notFound(w http.ResponseWriter, what string) {
	s.renderError(w, http.StatusNotFound, "Not found", "You have no such "+what+".")
}

func (s *Site) consoleResource(w http.ResponseWriter, r *http.Request, sess *session) {
	res, err := s.ownedResource(r, sess.Person.Subject, r.PathValue("id"))
	if err != nil {
		s.renderServerError(w, "reading a resource", err)
		return
	}
	if res == nil {
		s.notFound(w, "resource")
		return
	}
	s.renderResource(w, r, sess, res, http.StatusOK, "", shareForm{})
}

func (s *Site) renderResource(w http.ResponseWriter, r *http.Request, sess *session, res *store.Resource, status int, errMsg string, form shareForm) {
	ctx := r.Context()
	owner := sess.Person.Subject
	shares, err := s.as.ResourceShares(ctx, owner, res.ID)
	if err != nil {
		s.renderServerError(w, "listing shares", err)
		return
	}
	reqs, err := s.as.Requests(ctx, owner)
	if err != nil {
		s.renderServerError(w, "listing requests", err)
		return
	}
	data := resourcePage{Resource: *res, Shares: shares, Today: s.now().UTC().Format("2006-01-02"), Form: form}
	for _, q := range reqs {
		if q.ResourceID == res.ID && q.Status == authz.RequestPending {
			data.Requests = append(data.Requests, q)
		}
	}
	data.Clients = s.as.RequestingPartyClients()
	actx, cancel := context.WithTimeout(ctx, accessTimeout)
	defer cancel()
	data.Access = s.newAccessCheck(actx, owner).of(actx, *res)
	title := res.Name
	if title == "" {
		title = res.ID
	}
	p := s.consolePage(r, sess, "resources", title, data)
	p.Error = errMsg
	s.renderPage(w, status, "resource.html", p)
}

// consoleShare shares a resource with a person.
func (s *Site) consoleShare(w http.ResponseWriter, r *http.Request, sess *session, form url.Values) {
	owner := sess.Person.Subject
	res, err := s.ownedResource(r, owner, form.Get("resource"))
	if err != nil {
		s.renderServerError(w, "reading a resource", err)
		return
	}
	if res == nil {
		s.notFound(w, "resource")
		return
	}
	f := shareForm{
		Person: strings.TrimSpace(form.Get("person")), Scopes: form["scope"],
		Expires: strings.TrimSpace(form.Get("expires")), Client: strings.TrimSpace(form.Get("client")),
	}
	refuse := func(msg string) { s.renderResource(w, r, sess, res, http.StatusBadRequest, msg, f) }
	sh := authz.Share{Owner: owner, ResourceID: res.ID, Scopes: f.Scopes, Client: f.Client}
	switch {
	case f.Person == "":
		refuse("Say who to share with: an e-mail address or an identifier.")
		return
	case strings.ContainsAny(f.Person, " \t\r\n") || len(f.Person) > authz.MaxSubjectLen:
		refuse("An e-mail address or identifier has no spaces.")
		return
	case strings.Contains(f.Person, "@"):
		sh.Email = owners.NormalizeEmail(f.Person)
	default:
		sh.Subject = f.Person
	}
	if len(f.Scopes) == 0 {
		refuse("Choose at least one thing they may do.")
		return
	}
	for _, sc := range f.Scopes {
		if !slices.Contains(res.Scopes, sc) {
			refuse("That is not a scope of this resource.")
			return
		}
	}
	if f.Expires != "" {
		day, err := time.Parse("2006-01-02", f.Expires)
		if err != nil {
			refuse("The end date must be a date (YYYY-MM-DD).")
			return
		}
		sh.ExpiresAt = day.Add(24 * time.Hour) // through the end of that day, UTC
		if !sh.ExpiresAt.After(s.now()) {
			refuse("The end date is in the past.")
			return
		}
	}
	if _, known := s.as.Client(r.Context(), sh.Client); sh.Client != "" && !known {
		refuse("There is no such application.")
		return
	}
	if sh.Subject == owner {
		refuse("You already have every access to your own resources.")
		return
	}
	if _, err := s.as.AddShare(r.Context(), sh); err != nil {
		s.renderServerError(w, "sharing", err)
		return
	}
	s.log.Info("shared in the console", zap.String("owner", owner), zap.String("resource_id", res.ID))
	s.redirect(w, r, PathConsole+"/resources/"+url.PathEscape(res.ID)+"?done=shared")
}

// consoleRevoke revokes a share.
func (s *Site) consoleRevoke(w http.ResponseWriter, r *http.Request, sess *session, form url.Values) {
	resID := form.Get("resource")
	_, _, err := s.as.RevokeShare(r.Context(), sess.Person.Subject, resID, form.Get("share"))
	if errors.Is(err, authz.ErrNoSuchShare) {
		s.notFound(w, "share")
		return
	}
	if err != nil {
		s.renderServerError(w, "revoking a share", err)
		return
	}
	s.redirect(w, r, PathConsole+"/resources/"+url.PathEscape(resID)+"?done=revoked")
}

// sharedItem is a share with me, with its resource.
type sharedItem struct {
	authz.Share
	ResourceName string
	ResourceType string
}

func (s *Site) consoleSharedWithMe(w http.ResponseWriter, r *http.Request, sess *session) {
	p := sess.Person
	email := ""
	if p.EmailVerified {
		email = p.Email
	}
	shares, err := s.as.SharedWith(r.Context(), p.Subject, email)
	if err != nil {
		s.renderServerError(w, "listing shares", err)
		return
	}
	var items []sharedItem
	for _, sh := range shares {
		it := sharedItem{Share: sh}
		if res, err := s.as.OwnerResource(r.Context(), sh.Owner, sh.ResourceID); err == nil {
			it.ResourceName, it.ResourceType = res.Name, res.Type
		}
		if it.ResourceName == "" {
			it.ResourceName = sh.ResourceID
		}
		items = append(items, it)
	}
	s.renderPage(w, http.StatusOK, "shared.html", s.consolePage(r, sess, "shared", "Shared with me", items))
}

// requestsPage is the data of the requests page.
type requestsPage struct {
	Pending, Decided []authz.AccessRequest
}

func (s *Site) consoleRequests(w http.ResponseWriter, r *http.Request, sess *session) {
	reqs, err := s.as.Requests(r.Context(), sess.Person.Subject)
	if err != nil {
		s.renderServerError(w, "listing requests", err)
		return
	}
	var data requestsPage
	for _, q := range reqs {
		if q.Status == authz.RequestPending {
			data.Pending = append(data.Pending, q)
		} else {
			data.Decided = append(data.Decided, q)
		}
	}
	s.renderPage(w, http.StatusOK, "requests.html", s.consolePage(r, sess, "requests", "Requests", data))
}

func (s *Site) consoleDecide(w http.ResponseWriter, r *http.Request, sess *session, form url.Values) {
	decision := form.Get("decision")
	if decision != "approve" && decision != "deny" {
		s.renderError(w, http.StatusBadRequest, "Bad form", "Approve or deny.")
		return
	}
	_, err := s.as.DecideRequest(r.Context(), sess.Person.Subject, form.Get("request"), decision == "approve")
	switch {
	case errors.Is(err, authz.ErrNoSuchRequest):
		s.notFound(w, "request")
	case errors.Is(err, authz.ErrRequestDecided):
		s.redirect(w, r, PathConsole+"/requests")
	case err != nil:
		s.renderServerError(w, "deciding a request", err)
	case decision == "approve":
		s.redirect(w, r, PathConsole+"/requests?done=approved")
	default:
		s.redirect(w, r, PathConsole+"/requests?done=denied")
	}
}

func (s *Site) consoleHistory(w http.ResponseWriter, r *http.Request, sess *session) {
	hist, err := s.as.History(r.Context(), sess.Person.Subject, 200)
	if err != nil {
		s.renderServerError(w, "reading the history", err)
		return
	}
	s.renderPage(w, http.StatusOK, "history.html", s.consolePage(r, sess, "history", "History", hist))
}
