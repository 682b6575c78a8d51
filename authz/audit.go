package authz

import (
	"net/http"
	"slices"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/caddy-uma/caddy-uma/authz/oauth"
	"github.com/caddy-uma/caddy-uma/authz/owners"
)

// The audit trail: every answer of the token endpoint is one line of the
// audit logger (Config.Audit), at info level, message "token request":
//
//	grant_type        the request's grant type (a GrantType constant, none or other)
//	client_id         the authenticated client (absent when authentication failed)
//	requesting_party  the requesting party's subject, and requesting_party_issuer, when known
//	scope             the scope parameter, when sent
//	outcome           granted, need_info, request_submitted or request_denied for the
//	                  UMA grant; issued or the error code for the others
//	code, status      the answer's error code (absent on success) and HTTP status
//	decisions         for the UMA grant, one object per resource decided: owner,
//	                  resource_id, requested, granted, outcome (granted,
//	                  partly_granted, refused, or failed when the owner's rules
//	                  could not be evaluated), granted_by {scope: ["share:<id>",
//	                  "rules"]} and refused_by {scope: system_rules|owner_deny|
//	                  ask_owner|unidentified|no_match}
//
// It never holds a token, a ticket, a claim token or a secret.

// Audit values of granted_by, and of the outcome of a token request that
// issued tokens.
const (
	auditByRules       = "rules"
	auditBySharePrefix = "share:"
	auditIssued        = "issued"
)

// auditOutcomes are the audit outcomes of the decision on one resource,
// by the history's outcome.
var auditOutcomes = map[string]string{
	OutcomeGranted: "granted",
	OutcomePartly:  "partly_granted",
	OutcomeRefused: "refused",
	OutcomeError:   "failed",
}

// tokenAudit gathers what one token request decided, for its audit line
// and the Observer.
type tokenAudit struct {
	start     time.Time
	grantType string
	client    string
	subject   string
	issuer    string
	decisions []auditDecision
	// submitted says that the owner was asked, in an answer whose code
	// does not say so (Keycloak's access_denied, request_submitted).
	submitted bool
}

// auditDecision is the decision on one resource of a UMA grant request.
type auditDecision struct {
	owner, resourceID  string
	requested, granted []string
	outcome            string // a value of auditOutcomes
	grantedBy          map[string][]string
	refusedBy          map[string]owners.Refusal
	failed             bool
}

// decided records the evaluation of the owner's rules on one resource of
// a UMA grant request (err: it failed). It does nothing on a nil
// tokenAudit.
func (a *tokenAudit) decided(g *grantState, p requestedPermission, ev owners.Evaluation, err error) {
	if a == nil {
		return
	}
	a.subject, a.issuer = g.proc.Subject, g.proc.RqPIssuer
	d := auditDecision{
		owner: p.res.Owner, resourceID: p.res.ID, requested: p.scopes, granted: ev.Granted,
		outcome: auditOutcomes[ev.Outcome(err)], failed: err != nil,
	}
	if err == nil {
		d.grantedBy, d.refusedBy = decidedBy(ev)
	}
	a.decisions = append(a.decisions, d)
}

// requestSubmitted records that the answer asked the owner. It does
// nothing on a nil tokenAudit.
func (a *tokenAudit) requestSubmitted() {
	if a != nil {
		a.submitted = true
	}
}

// decidedBy says, per requested scope, what granted it (the owner's shares
// by id, the owner's rules) or what refused it.
func decidedBy(ev owners.Evaluation) (map[string][]string, map[string]owners.Refusal) {
	matching := ev.MatchingShares()
	granted := make(map[string][]string, len(ev.Granted))
	for _, sc := range ev.Granted {
		shares, rules := ev.GrantedBy(sc, matching)
		var by []string
		for _, sh := range shares {
			by = append(by, auditBySharePrefix+sh.ID)
		}
		if rules {
			by = append(by, auditByRules)
		}
		granted[sc] = by
	}
	refused := make(map[string]owners.Refusal, len(ev.Missing))
	for _, sc := range ev.Missing {
		refused[sc] = ev.RefusedBy(sc)
	}
	return granted, refused
}

// startTokenAudit begins the audit of a token request.
func (s *Server) startTokenAudit() *tokenAudit {
	return &tokenAudit{start: time.Now(), grantType: GrantTypeNone}
}

// finishTokenAudit reports the answer to a token request, err (nil when
// tokens were issued), to the Observer and the audit log.
func (s *Server) finishTokenAudit(a *tokenAudit, form map[string][]string, err error) {
	var code oauth.Code
	status := http.StatusOK
	if err != nil {
		e := s.answerError(err)
		code, status = e.Code, e.Status
	}
	var decision GrantDecision
	if a.grantType == GrantTypeUMATicket {
		decision = grantDecision(code)
		if a.submitted && decision == GrantRequestDenied {
			decision = GrantRequestSubmitted
		}
	}
	s.observer.TokenAnswered(TokenAnswer{GrantType: a.grantType, Code: code, Decision: decision, Elapsed: time.Since(a.start)})

	c := s.audit.Check(zapcore.InfoLevel, "token request")
	if c == nil {
		return
	}
	outcome := string(decision)
	switch {
	case outcome != "":
	case code != "":
		outcome = string(code)
	default:
		outcome = auditIssued
	}
	fields := []zapcore.Field{zap.String("grant_type", a.grantType)}
	if a.client != "" {
		fields = append(fields, clientField(a.client))
	}
	if a.subject != "" {
		fields = append(fields, requestingPartyField(a.subject))
		if a.issuer != "" {
			fields = append(fields, zap.String("requesting_party_issuer", a.issuer))
		}
	}
	if scope := form["scope"]; len(scope) == 1 {
		fields = append(fields, zap.String("scope", scope[0]))
	}
	fields = append(fields, zap.String("outcome", outcome))
	if code != "" {
		fields = append(fields, zap.String("code", string(code)))
	}
	fields = append(fields, zap.Int("status", status))
	if len(a.decisions) > 0 {
		fields = append(fields, zap.Array("decisions", auditDecisions(a.decisions)))
	}
	c.Write(fields...)
}

// auditDecisions encodes the decisions of an audit line.
type auditDecisions []auditDecision

func (ds auditDecisions) MarshalLogArray(enc zapcore.ArrayEncoder) error {
	for _, d := range ds {
		if err := enc.AppendObject(d); err != nil {
			return err
		}
	}
	return nil
}

func (d auditDecision) MarshalLogObject(enc zapcore.ObjectEncoder) error {
	enc.AddString("owner", d.owner)
	enc.AddString("resource_id", d.resourceID)
	_ = enc.AddArray("requested", stringArray(d.requested))
	_ = enc.AddArray("granted", stringArray(d.granted))
	enc.AddString("outcome", d.outcome)
	if d.failed {
		enc.AddString("error", "the owner's rules could not be evaluated")
		return nil
	}
	_ = enc.AddObject("granted_by", scopeMap[[]string](d.grantedBy))
	_ = enc.AddObject("refused_by", scopeMap[owners.Refusal](d.refusedBy))
	return nil
}

// stringArray encodes strings, an empty list as [].
type stringArray []string

func (ss stringArray) MarshalLogArray(enc zapcore.ArrayEncoder) error {
	for _, s := range ss {
		enc.AppendString(s)
	}
	return nil
}

// scopeMap encodes what decided each scope, in the scopes' order.
type scopeMap[V owners.Refusal | []string] map[string]V

func (m scopeMap[V]) MarshalLogObject(enc zapcore.ObjectEncoder) error {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		switch v := any(m[k]).(type) {
		case owners.Refusal:
			enc.AddString(k, string(v))
		case []string:
			_ = enc.AddArray(k, stringArray(v))
		}
	}
	return nil
}
