package people

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/caddy-uma/caddy-uma/authz"
	"github.com/caddy-uma/caddy-uma/authz/owners"
	"github.com/caddy-uma/caddy-uma/policies"
	"github.com/caddy-uma/caddy-uma/store"
)

// The rules pages: an owner's Rego sharing rules, an editor that reports
// compile errors at their line, and a "try it" form that evaluates the
// saved rules (with the console shares) for a made-up request, as the owner
// API's dry run (POST /owner/evaluate) does, without granting anything.
// Modules named *_test.rego are Rego tests of the rules: whenever the page
// shows (so after every save), they run (authz.Server.RuleTests, as `caddy
// uma policy test` does) and the page lists each test, passed or failed.

// newRuleTemplate is what the editor offers for a new module.
const newRuleTemplate = `package uma.share

import data.uma.lib

# Let one person read everything that only reads:
# allow contains scope if {
# 	lib.is_person("friend@example.org")
# 	some scope in lib.read_scopes
# }
`

// ruleModule is one module in the list.
type ruleModule struct {
	Name     string
	ReadOnly bool
}

// sourceLine is one line of the edited source, with its problems.
type sourceLine struct {
	Number   int
	Text     string
	Problems []string
}

// rulesPage is the data of the rules page.
type rulesPage struct {
	Modules   []ruleModule
	Name      string
	Source    string
	ReadOnly  bool
	IsNew     bool
	Errors    []*policies.CompileError
	Listing   []sourceLine
	Resources []store.Resource
	Try       tryForm
	Result    *tryResult
	// Tests are the results of the owner's Rego tests, when they have
	// some; TestsProblem says why they could not run.
	Tests        *policies.TestReport
	TestsProblem string
	TestErrors   policies.CompileErrors
}

// tryForm is the "try it" form's values.
type tryForm struct {
	Resource, Scopes, Client, Subject, Issuer, Email, Groups, Claims string
}

// tryResult is the outcome of a try.
type tryResult struct {
	Requested []string
	Granted   []string
	Decision  policies.Decision
	Reasons   []string
}

// consoleRules shows the rule modules and the editor.
func (s *Site) consoleRules(w http.ResponseWriter, r *http.Request, sess *session) {
	name := r.URL.Query().Get("name")
	data, err := s.rulesData(r, sess.Person.Subject, name)
	if err != nil {
		s.renderServerError(w, "reading rules", err)
		return
	}
	if name != "" && data.IsNew && r.URL.Query().Get("new") == "" {
		s.notFound(w, "rule module")
		return
	}
	s.renderPage(w, http.StatusOK, "rules.html", s.consolePage(r, sess, "rules", "Rules", data))
}

// consoleSaveRule saves or deletes a rule module.
func (s *Site) consoleSaveRule(w http.ResponseWriter, r *http.Request, sess *session, form url.Values) {
	owner := sess.Person.Subject
	ctx := r.Context()
	name := strings.TrimSpace(form.Get("name"))
	if form.Get("action") == "delete" {
		err := s.as.DeleteRule(ctx, owner, name)
		var ce policies.CompileErrors
		switch {
		case errors.Is(err, authz.ErrNoSuchRule):
			s.notFound(w, "rule module")
		case errors.As(err, &ce), compileBusy(err):
			msg := "The module was not deleted: your other rules do not compile without it (" + ce.Error() + ")."
			status := http.StatusBadRequest
			if compileBusy(err) {
				msg, status = busyMessage, http.StatusServiceUnavailable
			}
			data, lerr := s.rulesData(r, owner, name)
			if lerr != nil {
				s.renderServerError(w, "reading rules", lerr)
				return
			}
			p := s.consolePage(r, sess, "rules", "Rules", data)
			p.Error = msg
			s.renderPage(w, status, "rules.html", p)
		case err != nil:
			s.renderServerError(w, "deleting a rule", err)
		default:
			s.redirect(w, r, PathConsole+"/rules?done=deleted")
		}
		return
	}
	src := strings.ReplaceAll(form.Get("source"), "\r\n", "\n")
	err := s.as.PutRule(ctx, owner, name, src)
	if err == nil {
		s.redirect(w, r, PathConsole+"/rules?"+url.Values{"name": {name}, "done": {"saved"}}.Encode())
		return
	}
	data, lerr := s.rulesData(r, owner, "")
	if lerr != nil {
		s.renderServerError(w, "reading rules", lerr)
		return
	}
	_, exists := findRule(data.Modules, name)
	data.Name, data.Source, data.IsNew = name, src, !exists
	p := s.consolePage(r, sess, "rules", "Rules", data)
	status := http.StatusBadRequest
	var ce policies.CompileErrors
	switch {
	case compileBusy(err):
		p.Error, status = busyMessage, http.StatusServiceUnavailable
	case errors.As(err, &ce):
		data.Errors = ce
		data.Listing = annotate(src, name, ce)
		p.Data = data
		p.Error = "Your rules were not saved: they do not compile. The problems are shown at their lines below."
	case errors.Is(err, authz.ErrBadRuleName):
		p.Error = "Module names are 1 to 64 letters, digits, '.', '-' or '_'."
	default:
		s.renderServerError(w, "saving a rule", err)
		return
	}
	s.renderPage(w, status, "rules.html", p)
}

// busyMessage says that rules could not be compiled now.
const busyMessage = "Too many rules are being compiled right now: nothing was changed. Try again in a moment."

// compileBusy reports whether err says that rules could not be compiled now
// (too many compilations at once, or one past its time limit).
func compileBusy(err error) bool {
	return errors.Is(err, policies.ErrBusy) || errors.Is(err, policies.ErrCompileTimeout)
}

// rulesData reads an owner's modules and the one to edit (a new one when
// name is empty or unknown).
func (s *Site) rulesData(r *http.Request, owner, name string) (rulesPage, error) {
	ctx := r.Context()
	mods, err := s.as.Rules(ctx, owner)
	if err != nil {
		return rulesPage{}, err
	}
	data := rulesPage{}
	for n := range mods {
		data.Modules = append(data.Modules, ruleModule{Name: n, ReadOnly: owners.IsDirectoryRule(n)})
	}
	sort.Slice(data.Modules, func(i, j int) bool { return data.Modules[i].Name < data.Modules[j].Name })
	if src, ok := mods[name]; ok {
		data.Name, data.Source, data.ReadOnly = name, src, owners.IsDirectoryRule(name)
	} else {
		data.IsNew, data.Source = true, newRuleTemplate
		data.Name = "main"
		if _, taken := mods["main"]; taken || len(mods) > 0 {
			data.Name = ""
		}
	}
	if slices.ContainsFunc(data.Modules, func(m ruleModule) bool { return policies.IsTestModule(m.Name) }) {
		s.runRuleTests(r, owner, &data)
	}
	data.Resources, err = s.as.OwnerResources(ctx, owner)
	return data, err
}

// runRuleTests runs the owner's Rego tests into data.
func (s *Site) runRuleTests(r *http.Request, owner string, data *rulesPage) {
	report, err := s.as.RuleTests(r.Context(), owner)
	var ce policies.CompileErrors
	switch {
	case err == nil:
		data.Tests = &report
	case errors.As(err, &ce):
		data.TestsProblem, data.TestErrors = "Your tests do not compile with your rules:", ce
	case errors.Is(err, policies.ErrNoTests):
		data.TestsProblem = "Your test modules define no test: name test rules test_..."
	case compileBusy(err):
		data.TestsProblem = "Your tests were not run: too many rules are being compiled right now. Reload the page in a moment."
	default:
		data.TestsProblem = "Your tests could not be run."
	}
}

// annotate numbers the lines of a module and attaches its problems.
func annotate(src, module string, errs policies.CompileErrors) []sourceLine {
	lines := strings.Split(src, "\n")
	out := make([]sourceLine, len(lines))
	for i, l := range lines {
		out[i] = sourceLine{Number: i + 1, Text: l}
	}
	for _, e := range errs {
		if e.Module != module || e.Line < 1 || e.Line > len(out) {
			continue
		}
		msg := e.Code + ": " + e.Message
		if e.Column > 0 {
			msg = "column " + strconv.Itoa(e.Column) + ": " + msg
		}
		out[e.Line-1].Problems = append(out[e.Line-1].Problems, msg)
	}
	return out
}

// consoleTry evaluates the owner's saved rules for a made-up request.
func (s *Site) consoleTry(w http.ResponseWriter, r *http.Request, sess *session, form url.Values) {
	ctx := r.Context()
	owner := sess.Person.Subject
	data, err := s.rulesData(r, owner, form.Get("name"))
	if err != nil {
		s.renderServerError(w, "reading rules", err)
		return
	}
	data.Try = tryForm{
		Resource: form.Get("resource"), Scopes: form.Get("scopes"), Client: strings.TrimSpace(form.Get("client")),
		Subject: strings.TrimSpace(form.Get("sub")), Issuer: strings.TrimSpace(form.Get("iss")),
		Email: strings.TrimSpace(form.Get("email")), Groups: form.Get("groups"), Claims: form.Get("claims"),
	}
	p := s.consolePage(r, sess, "rules", "Rules", data)
	fail := func(msg string) {
		p.Error = msg
		p.Data = data
		s.renderPage(w, http.StatusBadRequest, "rules.html", p)
	}
	res, err := s.ownedResource(r, owner, data.Try.Resource)
	if err != nil {
		s.renderServerError(w, "reading a resource", err)
		return
	}
	if res == nil {
		fail("Choose one of your resources to try.")
		return
	}
	claims := map[string]any{}
	if c := strings.TrimSpace(data.Try.Claims); c != "" {
		if err := json.Unmarshal([]byte(c), &claims); err != nil {
			fail("Other claims must be a JSON object, such as {\"department\": \"radiology\"}.")
			return
		}
	}
	if data.Try.Email != "" {
		claims["email"] = data.Try.Email
	}
	if g := splitList(data.Try.Groups); len(g) > 0 {
		groups := make([]any, len(g))
		for i, x := range g {
			groups[i] = x
		}
		claims["groups"] = groups
	}
	scopes := splitList(data.Try.Scopes)
	for _, sc := range scopes {
		if !slices.Contains(res.Scopes, sc) {
			fail("\"" + sc + "\" is not a scope of this resource.")
			return
		}
	}
	if len(scopes) == 0 {
		scopes = res.Scopes
	}
	ev, err := s.as.Evaluate(ctx, authz.EvaluationRequest{
		Owner: owner, ResourceID: res.ID, Scopes: scopes, ClientID: data.Try.Client,
		Subject: data.Try.Subject, Issuer: data.Try.Issuer, Claims: claims,
	})
	if err != nil {
		msg := "Your rules failed on this request: " + err.Error()
		switch {
		case errors.Is(err, policies.ErrTimeout):
			msg = "Your rules did not finish within their time limit."
		case compileBusy(err):
			msg = busyMessage
		}
		fail(msg)
		return
	}
	data.Result = &tryResult{Requested: ev.Requested, Granted: ev.Granted, Decision: ev.Decision, Reasons: ev.Reasons}
	p.Data = data
	s.renderPage(w, http.StatusOK, "rules.html", p)
}

// splitList splits a list typed by a person, on commas and spaces.
func splitList(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == '\n' || r == '\r' })
}

// findRule reports whether a module of that name is listed.
func findRule(mods []ruleModule, name string) (ruleModule, bool) {
	for _, m := range mods {
		if m.Name == name {
			return m, true
		}
	}
	return ruleModule{}, false
}
