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

// decided records ev, the evaluation of the owner's rules on one resource
// of a UMA grant request (err: it failed). It does nothing on a nil
// tokenAudit.
func (a *tokenAudit) decided(ev owners.Evaluation, err error) {
	if a == nil {
		return
	}
	a.subject, a.issuer = ev.Subject, ev.Issuer
	a.decisions = append(a.decisions, audit.NewDecision(ev, err))
}

// requestSubmitted records that the answer asked the owner. It does
// nothing on a nil tokenAudit.
func (a *tokenAudit) requestSubmitted() {
	if a != nil {
		a.submitted = true
	}
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
