package authz

import (
	"errors"
	"io"
	"mime"
	"net/http"
	"sort"

	"github.com/caddy-uma/caddy-uma/authz/oauth"
	"github.com/caddy-uma/caddy-uma/authz/owners"
	"github.com/caddy-uma/caddy-uma/policies"
)

// The owner API lets a resource owner manage their sharing rules and the
// requests sent to them. It is protected by the owner's PAT: the owner is
// the PAT's subject (for a PAT a resource server obtained with its own
// client credentials, the resource server itself).
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
const (
	PathOwnerRules    = "/owner/rules"
	PathOwnerEvaluate = "/owner/evaluate"
	PathOwnerTests    = "/owner/tests"
	PathOwnerRequests = "/owner/requests"
)

// ruleView is a rule module in the owner API.
type ruleView struct {
	Name     string `json:"name"`
	Source   string `json:"source"`
	ReadOnly bool   `json:"read_only,omitempty"`
}

func (s *Server) listRules(w http.ResponseWriter, r *http.Request, caller protectionCaller) error {
	mods, err := s.Rules(r.Context(), caller.Subject)
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

// errRulesRefused is the 400 that lists where rules do not compile.
func errRulesRefused(ce policies.CompileErrors) error {
	e := oauth.ErrInvalidRequest("%s", ce.Error())
	e.Problems = ce
	return e
}

func (s *Server) readRule(w http.ResponseWriter, r *http.Request, caller protectionCaller) error {
	name := r.PathValue("name")
	mods, err := s.Rules(r.Context(), caller.Subject)
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

func (s *Server) putRule(w http.ResponseWriter, r *http.Request, caller protectionCaller) error {
	name := r.PathValue("name")
	src, err := readRuleSource(w, r)
	if err != nil {
		return err
	}
	err = s.PutRule(r.Context(), caller.Subject, name, src)
	if e := compileUnavailable(err); e != nil {
		return e
	}
	var ce policies.CompileErrors
	switch {
	case errors.As(err, &ce):
		return errRulesRefused(ce)
	case errors.Is(err, ErrBadRuleName):
		return oauth.ErrInvalidRequest("%v", err)
	case err != nil:
		return oauth.ErrServer("could not save the rule", err)
	}
	oauth.WriteJSON(w, http.StatusOK, ruleView{Name: name, Source: src})
	return nil
}

func (s *Server) deleteRule(w http.ResponseWriter, r *http.Request, caller protectionCaller) error {
	err := s.DeleteRule(r.Context(), caller.Subject, r.PathValue("name"))
	if e := compileUnavailable(err); e != nil {
		return e
	}
	var ce policies.CompileErrors
	switch {
	case errors.Is(err, ErrNoSuchRule):
		return errNoSuchRule()
	case errors.As(err, &ce):
		return errRulesRefused(ce)
	case err != nil:
		return oauth.ErrServer("could not delete the rule", err)
	}
	oauth.WriteNoContent(w, http.StatusNoContent)
	return nil
}

// runTests runs the owner's Rego tests: 200 with the report, passed or
// failed; 400 when they do not compile; 404 when there are none.
func (s *Server) runTests(w http.ResponseWriter, r *http.Request, caller protectionCaller) error {
	report, err := s.RuleTests(r.Context(), caller.Subject)
	if e := compileUnavailable(err); e != nil {
		return e
	}
	var ce policies.CompileErrors
	switch {
	case errors.Is(err, policies.ErrNoTests):
		return oauth.ErrNotFound("no tests: save Rego tests as rules named *_test.rego, with rules named test_*")
	case errors.As(err, &ce):
		return errRulesRefused(ce)
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
func (s *Server) serveEvaluate(w http.ResponseWriter, r *http.Request, caller protectionCaller) error {
	var in evaluateRequest
	if err := oauth.ReadJSON(w, r, &in); err != nil {
		return err
	}
	ev, err := s.Evaluate(r.Context(), EvaluationRequest{
		Owner: caller.Subject, ResourceID: in.ResourceID, Scopes: in.Scopes, ClientID: in.ClientID,
		Subject: in.RequestingParty.Sub, Issuer: in.RequestingParty.Iss, Claims: in.Claims, Request: in.Request,
		Rules: in.Rules,
	})
	if e := compileUnavailable(err); e != nil {
		return e
	}
	var ce policies.CompileErrors
	switch {
	case errors.Is(err, ErrNoSuchResource):
		return oauth.New(oauth.InvalidResourceID).WithDescription("no such resource of this owner")
	case errors.As(err, &ce):
		return errRulesRefused(ce)
	case errors.Is(err, policies.ErrTimeout):
		return oauth.ErrInvalidRequest("the rules did not finish within their time limit")
	case errors.As(err, new(rulesFailed)):
		return oauth.ErrInvalidRequest("the rules failed: %v", err)
	case err != nil:
		return oauth.ErrServer("could not evaluate the rules", err)
	}
	oauth.WriteJSON(w, http.StatusOK, map[string]any{"decision": ev.Decision, "requested": ev.Requested, "granted": nonNil(ev.Granted)})
	return nil
}

func (s *Server) listRequests(w http.ResponseWriter, r *http.Request, caller protectionCaller) error {
	reqs, err := s.Requests(r.Context(), caller.Subject)
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
	oauth.WriteJSON(w, http.StatusOK, map[string]any{"requests": append([]AccessRequest{}, reqs...)})
	return nil
}

func errNoSuchRequest() error { return oauth.ErrNotFound("no such request") }

func (s *Server) readRequest(w http.ResponseWriter, r *http.Request, caller protectionCaller) error {
	req, err := s.Request(r.Context(), caller.Subject, r.PathValue("id"))
	if err != nil {
		return errNoSuchRequest()
	}
	oauth.WriteJSON(w, http.StatusOK, req)
	return nil
}

func (s *Server) decideRequest(w http.ResponseWriter, r *http.Request, caller protectionCaller) error {
	var in struct {
		Decision string `json:"decision"`
	}
	if err := oauth.ReadJSON(w, r, &in); err != nil {
		return err
	}
	if in.Decision != "approve" && in.Decision != "deny" {
		return oauth.ErrInvalidRequest("decision must be approve or deny")
	}
	req, err := s.DecideRequest(r.Context(), caller.Subject, r.PathValue("id"), in.Decision == "approve")
	switch {
	case errors.Is(err, ErrNoSuchRequest):
		return errNoSuchRequest()
	case errors.Is(err, ErrRequestDecided):
		return oauth.ErrInvalidRequest("request already %s", req.Status).WithStatus(http.StatusConflict)
	case err != nil:
		return oauth.ErrServer("could not decide the request", err)
	}
	oauth.WriteJSON(w, http.StatusOK, req)
	return nil
}
