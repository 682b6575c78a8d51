package authz

import (
	"context"
	"errors"
	"slices"

	"go.uber.org/zap"

	"github.com/caddy-uma/caddy-uma/authz/oauth"
	"github.com/caddy-uma/caddy-uma/authz/owners"
	"github.com/caddy-uma/caddy-uma/policies"
	"github.com/caddy-uma/caddy-uma/store"
)

// Owners' rules are evaluated in one place, evaluateRules: by the UMA
// grant for each requested resource (assess), and by the dry runs that
// grant nothing, the owner API's POST /owner/evaluate and the console's
// "try it" (Evaluate).

// rulesFailed wraps what the rules engine refused or failed on: the rules
// are at fault, not the server.
type rulesFailed struct{ err error }

func (e rulesFailed) Error() string { return e.err.Error() }
func (e rulesFailed) Unwrap() error { return e.err }

// evaluateRules evaluates the rules of res's owner for a requesting party
// (proc) asking for scopes on res through clientID, with the owner's
// shares of res. trial, when not nil, replaces the owner's saved rules (an
// unsaved draft, with the same system rules).
func (s *Server) evaluateRules(ctx context.Context, res store.Resource, scopes []string, clientID string, proc process, request map[string]any, trial map[string]string) (owners.Evaluation, error) {
	ev := owners.Evaluation{Resource: res, Requested: scopes, ClientID: clientID,
		Subject: proc.Subject, Issuer: proc.RqPIssuer, Claims: proc.Claims, At: s.now()}
	owner := res.Owner
	var err error
	if ev.Shares, err = s.shares.ResourceShares(ctx, owner, res.ID); err != nil {
		return ev, err
	}
	in := policies.Input{
		Resource: policies.Resource{ID: res.ID, Name: res.Name, Type: res.Type, Owner: owner, Scopes: res.Scopes, URIs: res.URIs},
		Scopes:   scopes,
		ClientID: clientID,
		Subject:  proc.Subject,
		Issuer:   proc.RqPIssuer,
		Claims:   proc.Claims,
		Pushed:   proc.PushedClaims,
		Request:  request,
		Shares:   owners.PolicyShares(ev.Shares),
		Now:      ev.At,
	}
	if trial != nil {
		// A draft is compiled as the owner asked: refused when too many
		// compilations run (policies.ErrBusy), never put in force.
		ev.Decision, err = s.engine.EvaluateDraft(ctx, owner, trial, in)
	} else {
		// Rules in force are evaluated at once; only rules not compiled
		// yet (the first use after a start or a change, or of a shard of
		// owners' rules dropped from memory) wait, here or in Evaluate.
		if err := s.rules.InForce(ctx, owner); err != nil {
			return ev, err
		}
		ev.Decision, err = s.engine.Evaluate(ctx, owner, in)
		if errors.Is(err, policies.ErrNotInForce) {
			// Compiled rules are kept for the owners evaluated most
			// recently only: compile this owner's again.
			if err := s.rules.Reload(ctx, owner); err != nil {
				return ev, err
			}
			ev.Decision, err = s.engine.Evaluate(ctx, owner, in)
		}
	}
	if err != nil {
		if compileUnavailable(err) != nil {
			return ev, err
		}
		return ev, rulesFailed{err}
	}
	for _, sc := range scopes {
		if slices.Contains(ev.Decision.Granted, sc) {
			ev.Granted = append(ev.Granted, sc)
		} else {
			ev.Missing = append(ev.Missing, sc)
		}
	}
	return ev, nil
}

// compileRetryAfter is the Retry-After, in seconds, of an answer refused
// because rules could not be compiled now.
const compileRetryAfter = 1

// compileUnavailable returns the 503 for an error of the rules engine that
// says that rules could not be compiled now (too many compilations at once,
// one that ran past its time limit, a caller gone), or nil. It is a
// refusal about the server's capacity, not the request's content: the
// answer the OAuth errors have for that is temporarily_unavailable with
// Retry-After, which clients retry as they are.
func compileUnavailable(err error) *oauth.Error {
	switch {
	case errors.Is(err, policies.ErrBusy):
		return oauth.ErrUnavailable("too many rules are being compiled at once; try again shortly", compileRetryAfter, err)
	case errors.Is(err, policies.ErrCompileTimeout):
		return oauth.ErrUnavailable("the rules could not be compiled within their time limit; try again shortly", compileRetryAfter, err)
	case errors.Is(err, policies.ErrNotInForce):
		return oauth.ErrUnavailable("too many owners' rules are being compiled at once; try again shortly", compileRetryAfter, err)
	case errors.Is(err, context.Canceled):
		return oauth.ErrUnavailable("the request was cancelled", compileRetryAfter, err)
	}
	return nil
}

// assessment is the decision of a grant request over every requested
// permission.
type assessment struct {
	granted        []Permission
	all            bool // every requested scope was granted
	requiredClaims []policies.RequiredClaim
	askOwner       []requestedPermission
	// history is the decisions for the owners' histories, which the
	// caller writes: in the grant's commit when it issues tokens,
	// otherwise through the history queue.
	history []owners.HistoryEntry
}

// assess evaluates each owner's rules for each requested permission of a
// grant request. The decisions are the assessment's history, for the
// caller to record; when assess fails, it queues them itself.
func (s *Server) assess(ctx context.Context, g *grantState, perms []requestedPermission) (assessment, error) {
	out := assessment{all: true}
	var history []owners.HistoryEntry
	handed := false
	defer func() {
		if !handed {
			s.history.Queue(history)
		}
	}()
	for _, p := range perms {
		owner := p.res.Owner
		ev, err := s.evaluateRules(ctx, p.res, p.scopes, g.client.ID, g.proc, g.request, nil)
		if err != nil {
			if e := compileUnavailable(err); e != nil {
				return out, e
			}
			if !errors.As(err, new(rulesFailed)) {
				return out, oauth.ErrServer("could not assess the request", err)
			}
			history = append(history, owners.HistoryEntry{Owner: owner, Record: ev.Record(err)})
			g.audit.decided(ev, err)
			s.log.Warn("an owner's rules failed", ownerField(owner), resourceField(p.res.ID), zap.Error(err))
			desc := "the resource owner's rules could not be evaluated"
			if errors.Is(err, policies.ErrTimeout) {
				desc = "the resource owner's rules did not finish within their time limit"
			}
			return out, oauth.New(oauth.RequestDenied).WithDescription(desc)
		}
		s.log.Info("access decision",
			ownerField(owner), resourceField(p.res.ID), clientField(g.client.ID),
			zap.String("requesting_party", g.proc.Subject),
			zap.Strings("requested", p.scopes), zap.Strings("granted", ev.Granted))
		history = append(history, owners.HistoryEntry{Owner: owner, Record: ev.Record(nil)})
		g.audit.decided(ev, nil)
		if len(ev.Granted) > 0 {
			out.granted = append(out.granted, Permission{ResourceID: p.res.ID, ResourceScopes: ev.Granted, ResourceName: p.res.Name})
		}
		if len(ev.Missing) == 0 {
			continue
		}
		out.all = false
		out.requiredClaims = append(out.requiredClaims, ev.Decision.RequiredClaims...)
		var ask []string
		for _, sc := range ev.Missing {
			if slices.Contains(ev.Decision.AskOwner, sc) && !slices.Contains(ev.Decision.Deny, sc) && !slices.Contains(ev.Decision.SystemDeny, sc) {
				ask = append(ask, sc)
			}
		}
		if len(ask) > 0 {
			out.askOwner = append(out.askOwner, requestedPermission{res: p.res, scopes: ask})
		}
	}
	if s.asksForClaims(g, out) {
		owners.MarkAskedForClaims(history)
	}
	out.history, handed = history, true
	return out, nil
}

// ErrNoSuchResource means that the owner has no resource with that id.
var ErrNoSuchResource = errors.New("no such resource of this owner")

// EvaluationRequest is a made-up request on one of an owner's resources,
// to see what the owner's rules decide without granting anything.
type EvaluationRequest struct {
	Owner      string
	ResourceID string
	// Scopes are the scopes asked for; empty means all of the resource's.
	Scopes   []string
	ClientID string
	// Subject and Issuer identify the requesting party; Claims are its
	// other claims.
	Subject string
	Issuer  string
	Claims  map[string]any
	// Request is the request context a resource server attached.
	Request map[string]any
	// Rules, when not nil, are evaluated instead of the owner's saved
	// rules (trying a draft before saving it).
	Rules map[string]string
}

// Evaluation is what an owner's rules decided for an EvaluationRequest.
type Evaluation struct {
	Resource  store.Resource
	Requested []string
	Granted   []string
	Decision  policies.Decision
	// Reasons say, one sentence each, what decided, as the history does.
	Reasons []string
}

// Evaluate evaluates an owner's rules for a made-up request, as the grant
// would, without granting or recording anything. Errors: ErrNoSuchResource,
// policies.CompileErrors (the draft rules do not compile),
// policies.ErrTimeout and other evaluation failures.
func (s *Server) Evaluate(ctx context.Context, req EvaluationRequest) (Evaluation, error) {
	var out Evaluation
	res, err := s.OwnerResource(ctx, req.Owner, req.ResourceID)
	if err != nil {
		return out, err
	}
	out.Resource, out.Requested = res, req.Scopes
	if len(out.Requested) == 0 {
		out.Requested = res.Scopes
	}
	proc := process{Subject: req.Subject, RqPIssuer: req.Issuer, Claims: req.Claims}
	ev, err := s.evaluateRules(ctx, res, out.Requested, req.ClientID, proc, req.Request, req.Rules)
	if err != nil {
		return out, err
	}
	out.Granted, out.Decision = ev.Granted, ev.Decision
	out.Reasons = ev.Record(nil).Reasons
	return out, nil
}
