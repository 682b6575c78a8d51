package owners

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/caddy-uma/caddy-uma/policies"
	"github.com/caddy-uma/caddy-uma/store"
)

// Evaluation is one evaluation of an owner's rules on one resource for a
// requesting party: what was asked, the owner's shares the rules saw, and
// what they decided. The history and the audit trail explain decisions
// from it.
type Evaluation struct {
	// Resource is the resource; Requested the scopes asked for on it.
	Resource  store.Resource
	Requested []string
	// ClientID is the client that asked. Subject, Issuer and Claims
	// describe the requesting party, as far as known.
	ClientID string
	Subject  string
	Issuer   string
	Claims   map[string]any
	// Shares are the owner's shares of the resource.
	Shares   []Share
	Decision policies.Decision
	// Granted are the requested scopes the rules grant; Missing those
	// they do not.
	Granted []string
	Missing []string
	// At is when the rules were evaluated.
	At time.Time
}

// Record describes the evaluation (or its failure, err) in plain words,
// for the owner's history.
func (ev Evaluation) Record(err error) DecisionRecord {
	rec := DecisionRecord{
		At: ev.At.UTC(), ResourceID: ev.Resource.ID, ResourceName: ev.Resource.Name, ClientID: ev.ClientID,
		Subject: ev.Subject, Issuer: ev.Issuer, Requested: ev.Requested, Granted: ev.Granted,
	}
	rec.Email, _ = ev.Claims["email"].(string)
	rec.Name, _ = ev.Claims["name"].(string)
	rec.Outcome = ev.Outcome(err)
	if err != nil {
		rec.Reasons = []string{"Your rules could not be evaluated (they failed or took too long), so nothing was granted."}
		return rec
	}
	matching := ev.MatchingShares()
	for _, sc := range ev.Granted {
		shares, rules := ev.GrantedBy(sc, matching)
		var by []string
		for _, sh := range shares {
			by = append(by, "your share with "+shareWho(sh))
		}
		if rules {
			by = append(by, "your sharing rules")
		}
		rec.Reasons = append(rec.Reasons, fmt.Sprintf("%q was granted by %s.", sc, strings.Join(by, " and ")))
	}
	for _, sc := range ev.Missing {
		switch ev.RefusedBy(sc) {
		case RefusedBySystem:
			rec.Reasons = append(rec.Reasons, fmt.Sprintf("%q was refused by the server's rules, which apply to everyone.", sc))
		case RefusedByDeny:
			rec.Reasons = append(rec.Reasons, fmt.Sprintf("%q was refused by a deny in your sharing rules.", sc))
		case RefusedAskOwner:
			rec.Reasons = append(rec.Reasons, fmt.Sprintf("%q needs your approval: the request was sent to you.", sc))
		case RefusedUnidentified:
			rec.Reasons = append(rec.Reasons, fmt.Sprintf("%q was not granted: the requester was not identified, and nothing shares it with anyone unidentified.", sc))
		default:
			rec.Reasons = append(rec.Reasons, fmt.Sprintf("%q was not granted: no share or rule gives it to this person.", sc))
		}
	}
	if len(ev.Granted) == 0 && len(ev.Decision.RequiredClaims) > 0 {
		rec.Reasons = append(rec.Reasons, "Your rules asked for more information about the requester.")
	}
	return rec
}

// Outcome is the outcome of the evaluation (or its failure, err):
// OutcomeError, OutcomeGranted, OutcomePartly or OutcomeRefused.
func (ev Evaluation) Outcome(err error) string {
	switch {
	case err != nil:
		return OutcomeError
	case len(ev.Missing) == 0:
		return OutcomeGranted
	case len(ev.Granted) > 0:
		return OutcomePartly
	}
	return OutcomeRefused
}

// GrantedBy says what granted the scope sc: the matching shares
// (MatchingShares) that hold it, and whether the owner's rules did (they
// did when no share did).
func (ev Evaluation) GrantedBy(sc string, matching []Share) (shares []Share, rules bool) {
	for _, sh := range matching {
		if slices.Contains(sh.Scopes, sc) {
			shares = append(shares, sh)
		}
	}
	return shares, len(shares) == 0 || slices.Contains(ev.Decision.Allow, sc)
}

// Refusal says why a scope was not granted: a value of the audit trail's
// refused_by.
type Refusal string

// Refusals.
const (
	// RefusedBySystem: the server's system rules deny it, to everyone.
	RefusedBySystem Refusal = "system_rules"
	// RefusedByDeny: a deny in the owner's rules.
	RefusedByDeny Refusal = "owner_deny"
	// RefusedAskOwner: the owner's rules ask the owner to approve it.
	RefusedAskOwner Refusal = "ask_owner"
	// RefusedUnidentified: the requesting party was not identified, and
	// nothing shares it with anyone unidentified.
	RefusedUnidentified Refusal = "unidentified"
	// RefusedNoMatch: no share or rule gives it to this requesting party.
	RefusedNoMatch Refusal = "no_match"
)

// RefusedBy says why the scope sc was not granted.
func (ev Evaluation) RefusedBy(sc string) Refusal {
	switch {
	case slices.Contains(ev.Decision.SystemDeny, sc):
		return RefusedBySystem
	case slices.Contains(ev.Decision.Deny, sc):
		return RefusedByDeny
	case slices.Contains(ev.Decision.AskOwner, sc):
		return RefusedAskOwner
	case ev.Subject == "" || ev.Subject == ev.ClientID:
		return RefusedUnidentified
	}
	return RefusedNoMatch
}

// MarkAskedForClaims marks the decisions of a request that was answered
// need_info: nothing is decided until the requester answers.
func MarkAskedForClaims(decisions []HistoryEntry) {
	for i := range decisions {
		rec := &decisions[i].Record
		if rec.Outcome != OutcomeRefused {
			continue
		}
		rec.Outcome = OutcomeAsked
		if rec.Subject == "" || rec.Subject == rec.ClientID {
			rec.Reasons = []string{"The requester was not identified yet, so they were asked who they are; nothing is decided until they answer."}
		} else {
			rec.Reasons = []string{"Your rules asked for more information about the requester; nothing is decided until they answer."}
		}
	}
}

// shareWho names the person of a share.
func shareWho(sh Share) string {
	if sh.Email != "" {
		return sh.Email
	}
	return sh.Subject
}

// MatchingShares returns the shares that apply to the requesting party
// through the client at the time of the evaluation: the same test as the
// rules' library (data.uma.lib.shared_scopes), used here only to explain
// decisions.
func (ev Evaluation) MatchingShares() []Share {
	email := VerifiedEmail(ev.Claims)
	var out []Share
	for _, sh := range ev.Shares {
		if !sh.ExpiresAt.IsZero() && !ev.At.Before(sh.ExpiresAt) {
			continue
		}
		if sh.Client != "" && sh.Client != ev.ClientID {
			continue
		}
		if (sh.Subject != "" && ev.Subject != "" && sh.Subject == ev.Subject) ||
			(sh.Email != "" && email != "" && NormalizeEmail(sh.Email) == email) {
			out = append(out, sh)
		}
	}
	return out
}
