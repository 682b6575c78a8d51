// Package audit is what the authorization server reports of every answer
// of its token endpoint: its TokenAnswer, the few values that metrics
// count (package authz hands it to its Observer), within its Record, the
// audit trail's line. Package authz gathers each answer's Record and
// writes it with Write: one line of the audit logger, at info level,
// message "token request", with the fields
//
//	grant_type        the request's grant type (an authz.GrantType constant, none or other)
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
package audit

import (
	"maps"
	"slices"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/caddy-uma/caddy-uma/authz/oauth"
	"github.com/caddy-uma/caddy-uma/authz/owners"
)

// Message is the message of every audit line.
const Message = "token request"

// Issued is the outcome of a token request that issued tokens, other than
// a UMA grant.
const Issued = "issued"

// Outcomes of the decision on one resource.
const (
	Granted       = "granted"
	PartlyGranted = "partly_granted"
	Refused       = "refused"
	// Failed: the owner's rules could not be evaluated.
	Failed = "failed"
)

// GrantedByRules is what granted a scope that the owner's rules granted.
const GrantedByRules = "rules"

// GrantedByShare is what granted a scope that the owner's share with id
// granted.
func GrantedByShare(id string) string { return "share:" + id }

// TokenAnswer is one answer of the token endpoint, as an Observer sees it:
// only values from small fixed sets, fit for metric labels.
type TokenAnswer struct {
	// GrantType is the request's grant_type: one of the authz.GrantType
	// constants, authz.GrantTypeNone when it named none,
	// authz.GrantTypeOther for any other value.
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

// DecisionOf returns the decision a UMA grant's answer code stands for,
// or "" when the answer is no decision.
func DecisionOf(code oauth.Code) GrantDecision {
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

// Record is one answer of the token endpoint, for the audit trail.
type Record struct {
	TokenAnswer
	// ClientID is the authenticated client; "" when authentication
	// failed.
	ClientID string
	// RequestingParty is the requesting party's subject, and
	// RequestingPartyIssuer who vouched for it, when known.
	RequestingParty, RequestingPartyIssuer string
	// Scope are the values of the scope parameter as sent: the line has
	// the scope when it was sent once.
	Scope []string
	// Status is the answer's HTTP status.
	Status int
	// Decisions are the decisions of a UMA grant request, one per
	// resource.
	Decisions []Decision
}

// Decision is the decision on one resource of a UMA grant request.
type Decision struct {
	Owner, ResourceID  string
	Requested, Granted []string
	// Outcome is Granted, PartlyGranted, Refused or Failed.
	Outcome string
	// GrantedBy says, per granted scope, what granted it: GrantedByShare
	// of each share, GrantedByRules.
	GrantedBy map[string][]string
	// RefusedBy says, per scope not granted, why: an owners.Refusal
	// (system_rules, owner_deny, ask_owner, unidentified or no_match).
	RefusedBy map[string]string
}

// outcomes are the outcomes of the decision on one resource, by the
// history's outcome.
var outcomes = map[string]string{
	owners.OutcomeGranted: Granted,
	owners.OutcomePartly:  PartlyGranted,
	owners.OutcomeRefused: Refused,
	owners.OutcomeError:   Failed,
}

// NewDecision returns the decision of ev, the evaluation of the owner's
// rules on one resource of a UMA grant request (err: it failed), with what
// granted each scope and what refused the others.
func NewDecision(ev owners.Evaluation, err error) Decision {
	d := Decision{Owner: ev.Resource.Owner, ResourceID: ev.Resource.ID, Requested: ev.Requested, Granted: ev.Granted,
		Outcome: outcomes[ev.Outcome(err)]}
	if err != nil {
		return d
	}
	matching := ev.MatchingShares()
	d.GrantedBy = make(map[string][]string, len(ev.Granted))
	for _, sc := range ev.Granted {
		shares, rules := ev.GrantedBy(sc, matching)
		var by []string
		for _, sh := range shares {
			by = append(by, GrantedByShare(sh.ID))
		}
		if rules {
			by = append(by, GrantedByRules)
		}
		d.GrantedBy[sc] = by
	}
	d.RefusedBy = make(map[string]string, len(ev.Missing))
	for _, sc := range ev.Missing {
		d.RefusedBy[sc] = string(ev.RefusedBy(sc))
	}
	return d
}

// Write writes the audit line of r to log, at info level.
func Write(log *zap.Logger, r Record) {
	c := log.Check(zapcore.InfoLevel, Message)
	if c == nil {
		return
	}
	outcome := string(r.Decision)
	switch {
	case outcome != "":
	case r.Code != "":
		outcome = string(r.Code)
	default:
		outcome = Issued
	}
	fields := []zapcore.Field{zap.String("grant_type", r.GrantType)}
	if r.ClientID != "" {
		fields = append(fields, zap.String("client_id", r.ClientID))
	}
	if r.RequestingParty != "" {
		fields = append(fields, zap.String("requesting_party", r.RequestingParty))
		if r.RequestingPartyIssuer != "" {
			fields = append(fields, zap.String("requesting_party_issuer", r.RequestingPartyIssuer))
		}
	}
	if len(r.Scope) == 1 {
		fields = append(fields, zap.String("scope", r.Scope[0]))
	}
	fields = append(fields, zap.String("outcome", outcome))
	if r.Code != "" {
		fields = append(fields, zap.String("code", string(r.Code)))
	}
	fields = append(fields, zap.Int("status", r.Status))
	if len(r.Decisions) > 0 {
		fields = append(fields, zap.Array("decisions", decisions(r.Decisions)))
	}
	c.Write(fields...)
}

// decisions encodes the decisions of an audit line.
type decisions []Decision

func (ds decisions) MarshalLogArray(enc zapcore.ArrayEncoder) error {
	for _, d := range ds {
		if err := enc.AppendObject(d); err != nil {
			return err
		}
	}
	return nil
}

// MarshalLogObject encodes d as an object of the decisions of an audit
// line.
func (d Decision) MarshalLogObject(enc zapcore.ObjectEncoder) error {
	enc.AddString("owner", d.Owner)
	enc.AddString("resource_id", d.ResourceID)
	_ = enc.AddArray("requested", stringArray(d.Requested))
	_ = enc.AddArray("granted", stringArray(d.Granted))
	enc.AddString("outcome", d.Outcome)
	if d.Outcome == Failed {
		enc.AddString("error", "the owner's rules could not be evaluated")
		return nil
	}
	_ = enc.AddObject("granted_by", scopeMap[[]string](d.GrantedBy))
	_ = enc.AddObject("refused_by", scopeMap[string](d.RefusedBy))
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
type scopeMap[V string | []string] map[string]V

func (m scopeMap[V]) MarshalLogObject(enc zapcore.ObjectEncoder) error {
	for _, k := range slices.Sorted(maps.Keys(m)) {
		switch v := any(m[k]).(type) {
		case string:
			enc.AddString(k, v)
		case []string:
			_ = enc.AddArray(k, stringArray(v))
		}
	}
	return nil
}
