package authz

import (
	"time"

	"github.com/caddy-uma/caddy-uma/authz/oauth"
	"github.com/caddy-uma/caddy-uma/policies"
)

// Observer receives what the AS measures, for metrics: every answer of the
// token endpoint, and every compilation and evaluation of rules. Its
// methods are called on the request path, from many goroutines at once:
// they must be cheap and safe for concurrent use.
type Observer interface {
	policies.Observer
	// TokenAnswered reports one answer of the token endpoint.
	TokenAnswered(TokenAnswer)
}

// TokenAnswer is one answer of the token endpoint, as an Observer sees it:
// only values from small fixed sets, fit for metric labels.
type TokenAnswer struct {
	// GrantType is the request's grant_type: one of the GrantType
	// constants, GrantTypeNone when it named none, GrantTypeOther for
	// any other value.
	GrantType string
	// Code is the error code of the answer, "" when tokens were issued
	// (or, for Keycloak's response_mode=decision, access granted).
	Code oauth.Code
	// Decision is the outcome of a UMA grant request whose permissions
	// were decided; "" for other grants and for requests refused before
	// (a bad ticket or client, a server fault).
	Decision GrantDecision
	// Elapsed is how long the answer took.
	Elapsed time.Duration
}

// Grant types of a TokenAnswer besides the GrantType constants.
const (
	GrantTypeNone  = "none"
	GrantTypeOther = "other"
)

// GrantDecision is the outcome of a UMA grant request (UMA Grant section
// 3.3): a metric label and the outcome of its audit line.
type GrantDecision string

// Outcomes of a UMA grant request.
const (
	// GrantGranted: an RPT (something was granted).
	GrantGranted GrantDecision = "granted"
	// GrantNeedInfo: need_info, more about the requesting party is needed.
	GrantNeedInfo GrantDecision = "need_info"
	// GrantRequestSubmitted: request_submitted, the owner was asked.
	GrantRequestSubmitted GrantDecision = "request_submitted"
	// GrantRequestDenied: request_denied (and Keycloak's access_denied
	// of the ticketless form): nothing was granted.
	GrantRequestDenied GrantDecision = "request_denied"
)

// grantDecision returns the decision a UMA grant's answer code stands
// for, or "" when the answer is no decision.
func grantDecision(code oauth.Code) GrantDecision {
	switch code {
	case "":
		return GrantGranted
	case oauth.NeedInfo:
		return GrantNeedInfo
	case oauth.RequestSubmitted:
		return GrantRequestSubmitted
	case oauth.RequestDenied, oauth.AccessDenied:
		return GrantRequestDenied
	}
	return ""
}

// nopObserver is the Observer of a Server without one.
type nopObserver struct{}

func (nopObserver) Compiled(time.Duration, error)  {}
func (nopObserver) Evaluated(time.Duration, error) {}
func (nopObserver) TokenAnswered(TokenAnswer)      {}
