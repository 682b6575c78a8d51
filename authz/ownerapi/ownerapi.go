// Package ownerapi is the owner API of the authorization server: a
// resource owner manages their sharing rules and the requests sent to them
// over HTTP, with their PAT. The owner is the PAT's subject (for a PAT a
// resource server obtained with its own client credentials, the resource
// server itself). It is not UMA protocol: it uses the AS (package authz)
// through its exported API only, and serves a route table of its own
// (Server.Mux) under the issuer, joined with the AS's paths by Endpoints.
//
//	GET    {issuer}/owner/rules            list the owner's rules
//	GET    {issuer}/owner/rules/{name}     one rule
//	PUT    {issuer}/owner/rules/{name}     create or replace (Rego text, or {"source": ...})
//	DELETE {issuer}/owner/rules/{name}     delete
//	POST   {issuer}/owner/evaluate         dry run: the decision for a given input
//	POST   {issuer}/owner/tests            run the owner's Rego tests (*_test.rego rules)
//	GET    {issuer}/owner/requests         requests sent to the owner
//	GET    {issuer}/owner/requests/{id}    one request
//	POST   {issuer}/owner/requests/{id}    {"decision": "approve" | "deny"}
package ownerapi

import (
	"errors"
	"io"
	"mime"
	"net/http"
	"sort"

	"github.com/caddy-uma/caddy-uma/authz"
	"github.com/caddy-uma/caddy-uma/authz/oauth"
	"github.com/caddy-uma/caddy-uma/authz/owners"
	"github.com/caddy-uma/caddy-uma/policies"
)

// The owner API's paths, relative to the issuer's path.
const (
	PathRules    = "/owner/rules"
	PathEvaluate = "/owner/evaluate"
	PathTests    = "/owner/tests"
	PathRequests = "/owner/requests"
)

// API serves the owner API of one AS.
type API struct {
	as *authz.Server
	// paths is its route table, served as the AS serves its own.
	paths authz.Paths
}

// New returns the owner API of as.
func New(as *authz.Server) *API {
	a := &API{as: as}
	a.paths = as.Table(a.routes())
	return a
}

// routes is the owner API's route table, behind the owner's PAT.
func (a *API) routes() []authz.Route {
	pat := a.as.WithPAT
	methodRefusal, protectionRefusal := oauth.ErrMethodNotAllowed, oauth.ErrUnsupportedMethodType
	on := func(name string, h authz.Handler) authz.Method { return authz.Method{Name: name, Handler: h} }
	get, post, put, del := http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete
	patCaller := a.as.AuthenticatePAT
	return []authz.Route{
		{Path: PathRules, Methods: []authz.Method{on(get, pat(a.listRules))}, Refuse: methodRefusal, Authenticate: patCaller, Collection: true},
		{Path: PathRules + "/{name}", Methods: []authz.Method{on(get, pat(a.readRule)), on(put, pat(a.putRule)), on(del, pat(a.deleteRule))}, Refuse: protectionRefusal, Authenticate: patCaller},
		{Path: PathEvaluate, Methods: []authz.Method{on(post, pat(a.serveEvaluate))}, Refuse: methodRefusal, Authenticate: patCaller},
		{Path: PathTests, Methods: []authz.Method{on(post, pat(a.runTests))}, Refuse: methodRefusal, Authenticate: patCaller},
		{Path: PathRequests, Methods: []authz.Method{on(get, pat(a.listRequests))}, Refuse: methodRefusal, Authenticate: patCaller, Collection: true},
		{Path: PathRequests + "/{id}", Methods: []authz.Method{on(get, pat(a.readRequest)), on(post, pat(a.decideRequest))}, Refuse: protectionRefusal, Authenticate: patCaller},
	}
}

// Handles reports whether path is one of its paths.
func (a *API) Handles(path string) bool { return a.paths.Handles(path) }

// ServeHTTP serves its paths; any other gets a 404 in OAuth error format,
// as the AS answers (join it with the AS's paths with authz.Join).
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.paths.ServeHTTP(w, r) }

// ruleView is a rule module in the owner API.
type ruleView struct {
	Name     string `json:"name"`
	Source   string `json:"source"`
	ReadOnly bool   `json:"read_only,omitempty"`
}

func (a *API) listRules(w http.ResponseWriter, r *http.Request, caller authz.PATCaller) error {
	mods, err := a.as.Rules(r.Context(), caller.Subject)
	if err != nil {
		return oauth.ErrServer("could not list the rules", err)
	}
	out := []ruleView{}
	for name, src := range mods {
		out = append(out, ruleView{Name: name, Source: src, ReadOnly: owners.IsDirectoryRule(name)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	oauth.WriteJSON(w, http.StatusOK, map[string]any{"rules": out})
	return nil
}

func errNoSuchRule() error { return oauth.ErrNotFound("no such rule") }

func (a *API) readRule(w http.ResponseWriter, r *http.Request, caller authz.PATCaller) error {
	name := r.PathValue("name")
	mods, err := a.as.Rules(r.Context(), caller.Subject)
	if err != nil {
		return oauth.ErrServer("could not read the rules", err)
	}
	src, ok := mods[name]
	if !ok {
		return errNoSuchRule()
	}
	oauth.WriteJSON(w, http.StatusOK, ruleView{Name: name, Source: src})
	return nil
}

func (a *API) putRule(w http.ResponseWriter, r *http.Request, caller authz.PATCaller) error {
	name := r.PathValue("name")
	src, err := readRuleSource(w, r)
	if err != nil {
		return err
	}
	err = a.as.PutRule(r.Context(), caller.Subject, name, src)
	if e := authz.RulesUnavailable(err); e != nil {
		return e
	}
	var ce policies.CompileErrors
	switch {
	case errors.As(err, &ce):
		return authz.RulesRefused(ce)
	case errors.Is(err, authz.ErrBadRuleName):
		return oauth.ErrInvalidRequest("%v", err)
	case err != nil:
		return oauth.ErrServer("could not save the rule", err)
	}
	oauth.WriteJSON(w, http.StatusOK, ruleView{Name: name, Source: src})
	return nil
}

func (a *API) deleteRule(w http.ResponseWriter, r *http.Request, caller authz.PATCaller) error {
	err := a.as.DeleteRule(r.Context(), caller.Subject, r.PathValue("name"))
	if e := authz.RulesUnavailable(err); e != nil {
		return e
	}
	var ce policies.CompileErrors
	switch {
	case errors.Is(err, authz.ErrNoSuchRule):
		return errNoSuchRule()
	case errors.As(err, &ce):
		return authz.RulesRefused(ce)
	case err != nil:
		return oauth.ErrServer("could not delete the rule", err)
	}
	oauth.WriteNoContent(w, http.StatusNoContent)
	return nil
}

// runTests runs the owner's Rego tests: 200 with the report, passed or
// failed; 400 when they do not compile; 404 when there are none.
func (a *API) runTests(w http.ResponseWriter, r *http.Request, caller authz.PATCaller) error {
	report, err := a.as.RuleTests(r.Context(), caller.Subject)
	if e := authz.RulesUnavailable(err); e != nil {
		return e
	}
	var ce policies.CompileErrors
	switch {
	case errors.Is(err, policies.ErrNoTests):
		return oauth.ErrNotFound("no tests: save Rego tests as rules named *_test.rego, with rules named test_*")
	case errors.As(err, &ce):
		return authz.RulesRefused(ce)
	case err != nil:
		return oauth.ErrServer("could not run the tests", err)
	}
	oauth.WriteJSON(w, http.StatusOK, report)
	return nil
}

// readRuleSource reads a rule from a text body, or a JSON {"source": ...}.
func readRuleSource(w http.ResponseWriter, r *http.Request) (string, error) {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt == "application/json" {
		var in struct {
			Source *string `json:"source"`
		}
		if err := oauth.ReadJSON(w, r, &in); err != nil {
			return "", err
		}
		if in.Source == nil {
			return "", oauth.ErrInvalidRequest("source is required")
		}
		return *in.Source, nil
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, oauth.MaxBodyBytes))
	if err != nil {
		return "", oauth.ErrInvalidRequest("the rule is larger than %d bytes", oauth.MaxBodyBytes)
	}
	return string(body), nil
}

// evaluateRequest is a dry-run input.
type evaluateRequest struct {
	ResourceID      string   `json:"resource_id"`
	Scopes          []string `json:"scopes"`
	ClientID        string   `json:"client_id"`
	RequestingParty struct {
		Sub string `json:"sub"`
		Iss string `json:"iss"`
	} `json:"requesting_party"`
	Claims  map[string]any `json:"claims"`
	Request map[string]any `json:"request"`
	// Rules, when given, are evaluated instead of the owner's saved rules
	// (try before saving).
	Rules map[string]string `json:"rules"`
}

// serveEvaluate evaluates the owner's rules for a given input, on one of
// the owner's resources, without granting anything.
func (a *API) serveEvaluate(w http.ResponseWriter, r *http.Request, caller authz.PATCaller) error {
	var in evaluateRequest
	if err := oauth.ReadJSON(w, r, &in); err != nil {
		return err
	}
	ev, err := a.as.Evaluate(r.Context(), authz.EvaluationRequest{
		Owner: caller.Subject, ResourceID: in.ResourceID, Scopes: in.Scopes, ClientID: in.ClientID,
		Subject: in.RequestingParty.Sub, Issuer: in.RequestingParty.Iss, Claims: in.Claims, Request: in.Request,
		Rules: in.Rules,
	})
	if e := authz.RulesUnavailable(err); e != nil {
		return e
	}
	var ce policies.CompileErrors
	switch {
	case errors.Is(err, authz.ErrNoSuchResource):
		return oauth.New(oauth.InvalidResourceID).WithDescription("no such resource of this owner")
	case errors.As(err, &ce):
		return authz.RulesRefused(ce)
	case errors.Is(err, policies.ErrTimeout):
		return oauth.ErrInvalidRequest("the rules did not finish within their time limit")
	case authz.RulesFailed(err):
		return oauth.ErrInvalidRequest("the rules failed: %v", err)
	case err != nil:
		return oauth.ErrServer("could not evaluate the rules", err)
	}
	oauth.WriteJSON(w, http.StatusOK, map[string]any{"decision": ev.Decision, "requested": ev.Requested, "granted": nonNil(ev.Granted)})
	return nil
}

func (a *API) listRequests(w http.ResponseWriter, r *http.Request, caller authz.PATCaller) error {
	reqs, err := a.as.Requests(r.Context(), caller.Subject)
	if err != nil {
		return oauth.ErrServer("could not list the requests", err)
	}
	if status := r.URL.Query().Get("status"); status != "" {
		kept := reqs[:0]
		for _, q := range reqs {
			if q.Status == status {
				kept = append(kept, q)
			}
		}
		reqs = kept
	}
	oauth.WriteJSON(w, http.StatusOK, map[string]any{"requests": append([]authz.AccessRequest{}, reqs...)})
	return nil
}

func errNoSuchRequest() error { return oauth.ErrNotFound("no such request") }

func (a *API) readRequest(w http.ResponseWriter, r *http.Request, caller authz.PATCaller) error {
	req, err := a.as.Request(r.Context(), caller.Subject, r.PathValue("id"))
	if err != nil {
		return errNoSuchRequest()
	}
	oauth.WriteJSON(w, http.StatusOK, req)
	return nil
}

func (a *API) decideRequest(w http.ResponseWriter, r *http.Request, caller authz.PATCaller) error {
	var in struct {
		Decision string `json:"decision"`
	}
	if err := oauth.ReadJSON(w, r, &in); err != nil {
		return err
	}
	if in.Decision != "approve" && in.Decision != "deny" {
		return oauth.ErrInvalidRequest("decision must be approve or deny")
	}
	req, err := a.as.DecideRequest(r.Context(), caller.Subject, r.PathValue("id"), in.Decision == "approve")
	switch {
	case errors.Is(err, authz.ErrNoSuchRequest):
		return errNoSuchRequest()
	case errors.Is(err, authz.ErrRequestDecided):
		return oauth.ErrInvalidRequest("request already %s", req.Status).WithStatus(http.StatusConflict)
	case err != nil:
		return oauth.ErrServer("could not decide the request", err)
	}
	oauth.WriteJSON(w, http.StatusOK, req)
	return nil
}

// nonNil returns list, or an empty list for nil: a JSON array, never null.
func nonNil(list []string) []string {
	if list == nil {
		return []string{}
	}
	return list
}
