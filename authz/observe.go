package authz

import (
	"net/http"
	"time"

	"github.com/caddy-uma/caddy-uma/authz/audit"
	"github.com/caddy-uma/caddy-uma/authz/oauth"
	"github.com/caddy-uma/caddy-uma/authz/owners"
	"github.com/caddy-uma/caddy-uma/policies"
)

// Observer receives what the AS measures, for metrics: every answer of the
// token endpoint, and every compilation and evaluation of rules. Its
// methods are called on the request path, from many goroutines at once:
// they must be cheap and safe for concurrent use.
type Observer interface {
	policies.Observer
	// TokenAnswered reports one answer of the token endpoint.
	TokenAnswered(audit.TokenAnswer)
}

// Grant types of an audit.TokenAnswer besides the GrantType constants.
const (
	GrantTypeNone  = "none"
	GrantTypeOther = "other"
)

// nopObserver is the Observer of a Server without one.
type nopObserver struct{}

func (nopObserver) Compiled(time.Duration, error)   {}
func (nopObserver) Evaluated(time.Duration, error)  {}
func (nopObserver) TokenAnswered(audit.TokenAnswer) {}

// Every answer of the token endpoint is reported to the Observer and
// written to the audit trail (Config.Audit, in the format of package
// audit). tokenAudit gathers, while the request is answered, what it
// decided.

// auditOutcomes are the audit outcomes of the decision on one resource,
// by the history's outcome.
var auditOutcomes = map[string]string{
	OutcomeGranted: audit.Granted,
	OutcomePartly:  audit.PartlyGranted,
	OutcomeRefused: audit.Refused,
	OutcomeError:   audit.Failed,
}

// tokenAudit gathers what one token request decided, for its audit line
// and the Observer.
type tokenAudit struct {
	start     time.Time
	grantType string
	client    string
	subject   string
	issuer    string
	decisions []audit.Decision
	// submitted says that the owner was asked, in an answer whose code
	// does not say so (Keycloak's access_denied, request_submitted).
	submitted bool
}

// decided records the evaluation of the owner's rules on one resource of
// a UMA grant request (err: it failed). It does nothing on a nil
// tokenAudit.
func (a *tokenAudit) decided(g *grantState, p requestedPermission, ev owners.Evaluation, err error) {
	if a == nil {
		return
	}
	a.subject, a.issuer = g.proc.Subject, g.proc.RqPIssuer
	d := audit.Decision{
		Owner: p.res.Owner, ResourceID: p.res.ID, Requested: p.scopes, Granted: ev.Granted,
		Outcome: auditOutcomes[ev.Outcome(err)],
	}
	if err == nil {
		d.GrantedBy, d.RefusedBy = decidedBy(ev)
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
func decidedBy(ev owners.Evaluation) (map[string][]string, map[string]string) {
	matching := ev.MatchingShares()
	granted := make(map[string][]string, len(ev.Granted))
	for _, sc := range ev.Granted {
		shares, rules := ev.GrantedBy(sc, matching)
		var by []string
		for _, sh := range shares {
			by = append(by, audit.GrantedByShare(sh.ID))
		}
		if rules {
			by = append(by, audit.GrantedByRules)
		}
		granted[sc] = by
	}
	refused := make(map[string]string, len(ev.Missing))
	for _, sc := range ev.Missing {
		refused[sc] = string(ev.RefusedBy(sc))
	}
	return granted, refused
}

// startTokenAudit begins the audit of a token request.
func (s *Server) startTokenAudit() *tokenAudit {
	return &tokenAudit{start: time.Now(), grantType: GrantTypeNone}
}

// finishTokenAudit reports the answer to a token request, err (nil when
// tokens were issued), to the Observer and the audit trail.
func (s *Server) finishTokenAudit(a *tokenAudit, form map[string][]string, err error) {
	var code oauth.Code
	status := http.StatusOK
	if err != nil {
		e := s.answerError(err)
		code, status = e.Code, e.Status
	}
	answer := audit.TokenAnswer{GrantType: a.grantType, Code: code, Elapsed: time.Since(a.start)}
	if a.grantType == GrantTypeUMATicket {
		answer.Decision = audit.DecisionOf(code)
		if a.submitted && answer.Decision == audit.GrantRequestDenied {
			answer.Decision = audit.GrantRequestSubmitted
		}
	}
	s.observer.TokenAnswered(answer)
	audit.Write(s.audit, audit.Record{
		TokenAnswer: answer, ClientID: a.client, RequestingParty: a.subject, RequestingPartyIssuer: a.issuer,
		Scope: form["scope"], Status: status, Decisions: a.decisions,
	})
}
