package people

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-uma/caddy-uma/authz"
	"github.com/caddy-uma/caddy-uma/authz/owners"
	"github.com/caddy-uma/caddy-uma/store"
)

// What an owner's rules grant. Shares are data, and the console lists
// them; rules are code, and who they grant cannot be listed. So that an
// owner is never told that a resource is private when their rules share
// it, the console evaluates the owner's saved rules (as the grant would,
// with the shares, granting and recording nothing) for the requesting
// parties it knows of:
//
//   - the local users (with the claims they would prove: name, e-mail,
//     groups), the people of the owner's shares and requests, and the
//     people of the owner's history (with the claims recorded there);
//   - and someone not identified at all;
//
// each through no particular application and through the applications
// seen most in the owner's history, shares and requests. The page lists
// whom the rules grant what, and says that the rules may grant others too:
// people nobody knows yet, other claims, other applications.
//
// The work is bounded: at most maxAccessParties parties and
// maxAccessClients applications, maxAccessEvaluations evaluations and
// accessTimeout per page. Past a bound, or when the rules fail, the page
// says that the rules may grant access, and no more.
const (
	maxAccessParties     = 40
	maxAccessClients     = 3
	maxAccessEvaluations = 400
	accessTimeout        = 2 * time.Second
	// accessHistory is how many of the newest history entries are read for
	// the people they name.
	accessHistory = 200
)

// ruleAccess is what an owner's rules grant on one resource, as far as the
// console could tell.
type ruleAccess struct {
	// HasRules is false when the owner has no rules: then only shares
	// grant anything.
	HasRules bool
	// Grants are the known parties the rules grant something.
	Grants []ruleGrant
	// Checked is how many parties the rules were evaluated for.
	Checked int
	// Incomplete is set when not every known party could be evaluated
	// (a bound was reached, or the rules failed).
	Incomplete bool
	// RulesURL is the rules page, to try the rules there.
	RulesURL string
}

// ruleGrant is what the rules grant one party.
type ruleGrant struct {
	Who    string
	Scopes []scopeGrant
}

// scopeGrant is one scope the rules grant.
type scopeGrant struct {
	Scope string
	// Through, when set, are the only applications (of those tried) the
	// rules grant it through.
	Through []string
}

// knownParty is a requesting party the console knows of.
type knownParty struct {
	who     string
	subject string
	issuer  string
	claims  map[string]any
}

// accessCheck evaluates an owner's rules for the parties they know of,
// resource by resource, within one page's bounds.
type accessCheck struct {
	site     *Site
	owner    string
	hasRules bool
	parties  []knownParty
	clients  []string // "" (no particular application) first
	budget   int
	failed   bool
}

// newAccessCheck gathers the parties and applications owner's pages
// evaluate the rules for. An owner without rules needs none.
func (s *Site) newAccessCheck(ctx context.Context, owner string) *accessCheck {
	c := &accessCheck{site: s, owner: owner, budget: maxAccessEvaluations}
	mods, err := s.as.Rules(ctx, owner)
	if err != nil {
		// Whether rules grant anything is unknown: say they may.
		s.log.Warn("listing an owner's rules for the console", zap.Error(err))
		c.hasRules, c.failed = true, true
		return c
	}
	if c.hasRules = len(mods) > 0; !c.hasRules {
		return c
	}
	seen := map[string]bool{}
	add := func(p knownParty) {
		if p.subject == owner || len(c.parties) >= maxAccessParties {
			return
		}
		email, _ := p.claims["email"].(string)
		email = owners.NormalizeEmail(email)
		keys := []string{}
		if p.subject != "" {
			// Without the issuer: shares and lib.is_subject compare
			// subjects so.
			keys = append(keys, "sub\x00"+p.subject)
		}
		if email != "" {
			keys = append(keys, "email\x00"+email)
		}
		if len(keys) == 0 {
			return
		}
		for _, k := range keys {
			if seen[k] {
				return
			}
		}
		for _, k := range keys {
			seen[k] = true
		}
		c.parties = append(c.parties, p)
	}
	// Local users first: their claims are the fullest.
	names := make([]string, 0, len(s.users))
	for name := range s.users {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		u := s.users[name]
		p := &person{Subject: u.Name, Issuer: s.as.Issuer(), Name: u.DisplayName, Email: u.Email, EmailVerified: u.Email != "", Groups: u.Groups}
		who := u.Name
		if u.DisplayName != "" && u.DisplayName != u.Name {
			who = u.DisplayName + " (" + u.Name + ")"
		}
		add(knownParty{who: who, subject: u.Name, issuer: s.as.Issuer(), claims: p.identityClaims()})
	}
	clientUse := map[string]int{}
	recorded := func(who, subject, issuer, email, name, client string) {
		if client != "" {
			clientUse[client]++
		}
		if subject == client {
			subject = "" // a client asking for itself names nobody
		}
		claims := map[string]any{}
		if email != "" {
			claims["email"] = email
		}
		if name != "" {
			claims["name"] = name
		}
		add(knownParty{who: who, subject: subject, issuer: issuer, claims: claims})
	}
	if hist, err := s.as.History(ctx, owner, accessHistory); err == nil {
		for _, d := range hist {
			recorded(d.Who(), d.Subject, d.Issuer, d.Email, d.Name, d.ClientID)
		}
	} else {
		c.failed = true
	}
	if reqs, err := s.as.Requests(ctx, owner); err == nil {
		for _, q := range reqs {
			recorded(requestWho(q), q.Subject, q.Issuer, q.Email, q.Name, q.ClientID)
		}
	} else {
		c.failed = true
	}
	if shares, err := s.as.Shares(ctx, owner); err == nil {
		for _, sh := range shares {
			who := sh.Subject
			if sh.Email != "" {
				who = sh.Email
			}
			recorded(who, sh.Subject, "", sh.Email, "", sh.Client)
		}
	} else {
		c.failed = true
	}
	c.clients = []string{""}
	byUse := make([]string, 0, len(clientUse))
	for id := range clientUse {
		byUse = append(byUse, id)
	}
	slices.SortFunc(byUse, func(a, b string) int {
		return cmp.Or(cmp.Compare(clientUse[b], clientUse[a]), cmp.Compare(a, b))
	})
	c.clients = append(c.clients, byUse[:min(len(byUse), maxAccessClients)]...)
	// Someone not identified, last.
	c.parties = append(c.parties, knownParty{who: "anyone, even someone not identified"})
	return c
}

// requestWho names the requester of an access request.
func requestWho(q authz.AccessRequest) string {
	return authz.DecisionRecord{Subject: q.Subject, Email: q.Email, Name: q.Name, ClientID: q.ClientID}.Who()
}

// of evaluates the rules for res.
func (c *accessCheck) of(ctx context.Context, res store.Resource) ruleAccess {
	out := ruleAccess{HasRules: c.hasRules, Incomplete: c.failed, RulesURL: c.site.base + PathConsole + "/rules"}
	if !c.hasRules || c.failed {
		return out
	}
	for _, p := range c.parties {
		through := map[string][]string{} // scope -> clients that get it
		for _, client := range c.clients {
			if c.budget == 0 || ctx.Err() != nil {
				out.Incomplete = true
				return out
			}
			c.budget--
			ev, err := c.site.as.Evaluate(ctx, authz.EvaluationRequest{
				Owner: c.owner, ResourceID: res.ID, ClientID: client,
				Subject: p.subject, Issuer: p.issuer, Claims: p.claims,
			})
			if errors.Is(err, authz.ErrNoSuchResource) {
				return out // deleted meanwhile
			}
			if err != nil {
				c.site.log.Warn("evaluating an owner's rules for the console", zap.String("resource_id", res.ID), zap.Error(err))
				c.failed, out.Incomplete = true, true
				return out
			}
			for _, sc := range ev.Granted {
				if slices.Contains(ev.Decision.Allow, sc) {
					through[sc] = append(through[sc], client)
				}
			}
		}
		out.Checked++
		if len(through) == 0 {
			continue
		}
		g := ruleGrant{Who: p.who}
		for _, sc := range res.Scopes {
			clients, ok := through[sc]
			if !ok {
				continue
			}
			sg := scopeGrant{Scope: sc}
			if !slices.Contains(clients, "") {
				sg.Through = clients // only through particular applications
			}
			g.Scopes = append(g.Scopes, sg)
		}
		out.Grants = append(out.Grants, g)
	}
	return out
}
