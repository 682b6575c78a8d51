package authz

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"sort"
	"strings"

	"github.com/caddy-uma/caddy-uma/policies"
	"github.com/caddy-uma/caddy-uma/store"
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
//	GET    {issuer}/owner/requests         requests sent to the owner
//	POST   {issuer}/owner/requests/{id}    {"decision": "approve" | "deny"}
const (
	PathOwnerRules    = "/owner/rules"
	PathOwnerEvaluate = "/owner/evaluate"
	PathOwnerRequests = "/owner/requests"
)

// IssuePAT issues a PAT with which resource server clientID acts for
// owner: what the authorization code flow issues after the owner's
// consent.
func (s *Server) IssuePAT(ctx context.Context, clientID, owner string) (string, error) {
	c, ok := s.clients[clientID]
	if !ok || !c.ResourceServer {
		return "", fmt.Errorf("client %q is not a resource server", clientID)
	}
	if !validOwnerName(owner) {
		return "", fmt.Errorf("invalid owner")
	}
	return s.issueToken(ctx, tokenRecord{Kind: kindAccess, ClientID: clientID, Subject: owner, Scopes: []string{ScopeProtection}}, s.patTTL)
}

// ownerRoute returns the owner API handler of a relative path, or nil.
func (s *Server) ownerRoute(rel string) http.HandlerFunc {
	switch rel {
	case PathOwnerRules, PathOwnerRules + "/":
		return s.withOwner(s.serveRuleList)
	case PathOwnerEvaluate:
		return s.withOwner(s.serveEvaluate)
	case PathOwnerRequests, PathOwnerRequests + "/":
		return s.withOwner(s.serveRequestList)
	}
	if name, ok := strings.CutPrefix(rel, PathOwnerRules+"/"); ok && name != "" && !strings.Contains(name, "/") {
		return s.withOwner(func(w http.ResponseWriter, r *http.Request, owner string) { s.serveRule(w, r, owner, name) })
	}
	if id, ok := strings.CutPrefix(rel, PathOwnerRequests+"/"); ok && id != "" && !strings.Contains(id, "/") {
		return s.withOwner(func(w http.ResponseWriter, r *http.Request, owner string) { s.serveRequestDecision(w, r, owner, id) })
	}
	return nil
}

func (s *Server) withOwner(h func(http.ResponseWriter, *http.Request, string)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		caller, err := s.requirePAT(r)
		if err != nil {
			writeError(w, err)
			return
		}
		h(w, r, caller.Subject)
	}
}

// ruleView is a rule module in the owner API.
type ruleView struct {
	Name     string `json:"name"`
	Source   string `json:"source"`
	ReadOnly bool   `json:"read_only,omitempty"`
}

func (s *Server) serveRuleList(w http.ResponseWriter, r *http.Request, owner string) {
	if !allowGet(w, r) {
		return
	}
	mods, err := s.Rules(r.Context(), owner)
	if err != nil {
		s.log.Error("listing rules", errField(err))
		writeError(w, errServer("could not list the rules"))
		return
	}
	out := []ruleView{}
	for name, src := range mods {
		out = append(out, ruleView{Name: name, Source: src, ReadOnly: strings.HasPrefix(name, dirModulePrefix)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	writeJSON(w, http.StatusOK, map[string]any{"rules": out})
}

// compileErrorResponse is a 400 listing where rules do not compile.
type compileErrorResponse struct {
	Code        string                   `json:"error"`
	Description string                   `json:"error_description"`
	Errors      []*policies.CompileError `json:"errors"`
}

func (s *Server) serveRule(w http.ResponseWriter, r *http.Request, owner, name string) {
	ctx := r.Context()
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		mods, err := s.Rules(ctx, owner)
		if err != nil {
			writeError(w, errServer("could not read the rules"))
			return
		}
		src, ok := mods[name]
		if !ok {
			writeError(w, &oauthError{Status: http.StatusNotFound, Code: "not_found", Description: "no such rule"})
			return
		}
		writeJSON(w, http.StatusOK, ruleView{Name: name, Source: src})
	case http.MethodPut:
		src, err := readRuleSource(w, r)
		if err != nil {
			writeError(w, err)
			return
		}
		err = s.PutRule(ctx, owner, name, src)
		var ce policies.CompileErrors
		switch {
		case errors.As(err, &ce):
			writeJSON(w, http.StatusBadRequest, compileErrorResponse{Code: "invalid_request", Description: ce.Error(), Errors: ce})
		case errors.Is(err, errBadRuleName):
			writeError(w, errInvalidRequest("%v", err))
		case err != nil:
			s.log.Error("saving a rule", errField(err))
			writeError(w, errServer("could not save the rule"))
		default:
			writeJSON(w, http.StatusOK, ruleView{Name: name, Source: src})
		}
	case http.MethodDelete:
		err := s.DeleteRule(ctx, owner, name)
		switch {
		case errors.Is(err, errNoSuchRule):
			writeError(w, &oauthError{Status: http.StatusNotFound, Code: "not_found", Description: "no such rule"})
		case err != nil:
			s.log.Error("deleting a rule", errField(err))
			writeError(w, errServer("could not delete the rule"))
		default:
			noStore(w.Header())
			w.WriteHeader(http.StatusNoContent)
		}
	default:
		writeError(w, errUnsupportedMethod(http.MethodGet, http.MethodPut, http.MethodDelete))
	}
}

// readRuleSource reads a rule from a text body, or a JSON {"source": ...}.
func readRuleSource(w http.ResponseWriter, r *http.Request) (string, error) {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt == "application/json" {
		var in struct {
			Source *string `json:"source"`
		}
		if err := readJSON(w, r, &in); err != nil {
			return "", err
		}
		if in.Source == nil {
			return "", errInvalidRequest("source is required")
		}
		return *in.Source, nil
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	if err != nil {
		return "", errInvalidRequest("the rule is larger than %d bytes", maxBodyBytes)
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
func (s *Server) serveEvaluate(w http.ResponseWriter, r *http.Request, owner string) {
	if r.Method != http.MethodPost {
		writeError(w, errMethod(http.MethodPost))
		return
	}
	var in evaluateRequest
	if err := readJSON(w, r, &in); err != nil {
		writeError(w, err)
		return
	}
	ctx := r.Context()
	res, err := s.store.GetResource(ctx, in.ResourceID)
	if errors.Is(err, store.ErrNotFound) || (err == nil && res.Owner != owner) {
		writeError(w, &oauthError{Status: http.StatusBadRequest, Code: "invalid_resource_id", Description: "no such resource of this owner"})
		return
	}
	if err != nil {
		writeError(w, errServer("could not read the resource"))
		return
	}
	scopes := in.Scopes
	if len(scopes) == 0 {
		scopes = res.Scopes
	}
	shares, err := s.sharesOf(ctx, owner, res.ID)
	if err != nil {
		writeError(w, errServer("could not read the shares"))
		return
	}
	input := policies.Input{
		Resource: policies.Resource{ID: res.ID, Name: res.Name, Type: res.Type, Owner: owner, Scopes: res.Scopes, URIs: res.URIs},
		Scopes:   scopes, ClientID: in.ClientID, Subject: in.RequestingParty.Sub, Issuer: in.RequestingParty.Iss,
		Claims: in.Claims, Request: in.Request, Shares: policyShares(shares), Now: s.now(),
	}
	var dec policies.Decision
	if in.Rules != nil {
		// Unsaved rules: a throwaway engine with the same system rules.
		trial := policies.NewEngine(policies.Options{Timeout: s.policyTimeout})
		if err = trial.SetSystemModules(s.rules.engine.SystemModules()); err == nil {
			if err = trial.SetOwnerModules(owner, in.Rules); err == nil {
				dec, err = trial.Evaluate(ctx, owner, input)
			}
		}
	} else {
		if err = s.ensureRules(ctx, owner); err == nil {
			dec, err = s.rules.engine.Evaluate(ctx, owner, input)
		}
	}
	var ce policies.CompileErrors
	switch {
	case errors.As(err, &ce):
		writeJSON(w, http.StatusBadRequest, compileErrorResponse{Code: "invalid_request", Description: ce.Error(), Errors: ce})
		return
	case errors.Is(err, policies.ErrTimeout):
		writeError(w, errInvalidRequest("the rules did not finish within their time limit"))
		return
	case err != nil:
		writeError(w, errInvalidRequest("the rules failed: %v", err))
		return
	}
	var granted []string
	for _, sc := range scopes {
		for _, g := range dec.Granted {
			if g == sc {
				granted = append(granted, sc)
			}
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"decision": dec, "requested": scopes, "granted": nonNil(granted)})
}

func (s *Server) serveRequestList(w http.ResponseWriter, r *http.Request, owner string) {
	if !allowGet(w, r) {
		return
	}
	reqs, err := s.Requests(r.Context(), owner)
	if err != nil {
		s.log.Error("listing requests", errField(err))
		writeError(w, errServer("could not list the requests"))
		return
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
	writeJSON(w, http.StatusOK, map[string]any{"requests": append([]AccessRequest{}, reqs...)})
}

func (s *Server) serveRequestDecision(w http.ResponseWriter, r *http.Request, owner, id string) {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		req, err := s.getRequest(r.Context(), owner, id)
		if err != nil {
			writeError(w, &oauthError{Status: http.StatusNotFound, Code: "not_found", Description: "no such request"})
			return
		}
		writeJSON(w, http.StatusOK, req)
		return
	case http.MethodPost:
	default:
		writeError(w, errUnsupportedMethod(http.MethodGet, http.MethodPost))
		return
	}
	var in struct {
		Decision string `json:"decision"`
	}
	if err := readJSON(w, r, &in); err != nil {
		writeError(w, err)
		return
	}
	if in.Decision != "approve" && in.Decision != "deny" {
		writeError(w, errInvalidRequest("decision must be approve or deny"))
		return
	}
	req, err := s.DecideRequest(r.Context(), owner, id, in.Decision == "approve")
	switch {
	case errors.Is(err, errNoSuchRequest):
		writeError(w, &oauthError{Status: http.StatusNotFound, Code: "not_found", Description: "no such request"})
	case err != nil && req.Status != RequestPending && req.ID != "":
		writeError(w, &oauthError{Status: http.StatusConflict, Code: "invalid_request", Description: err.Error()})
	case err != nil:
		s.log.Error("deciding a request", errField(err))
		writeError(w, errServer("could not decide the request"))
	default:
		writeJSON(w, http.StatusOK, req)
	}
}
