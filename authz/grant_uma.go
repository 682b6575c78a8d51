package authz

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"go.uber.org/zap"

	"github.com/caddy-uma/caddy-uma/authz/claimtoken"
	"github.com/caddy-uma/caddy-uma/authz/oauth"
	"github.com/caddy-uma/caddy-uma/authz/owners"
	"github.com/caddy-uma/caddy-uma/authz/secret"
	"github.com/caddy-uma/caddy-uma/policies"
	"github.com/caddy-uma/caddy-uma/store"
)

// The UMA grant (UMA 2.0 Grant section 3.3) at the token endpoint, with
// Keycloak's ticketless extension (permission, audience, response_mode).
//
// Partial grants: an RPT is issued whenever at least one requested scope is
// granted, and it holds exactly what was granted. need_info,
// request_submitted and request_denied answer only requests of which
// nothing at all is granted.

// nsProcess is the Records namespace of authorization processes: the
// claims gathered so far for a ticket that was rotated.
const nsProcess = "process"

// process is what an authorization process has gathered about the
// requesting party.
type process struct {
	ClientID  string         `json:"client_id"`
	Subject   string         `json:"sub,omitempty"`
	RqPIssuer string         `json:"iss,omitempty"`
	Claims    map[string]any `json:"claims,omitempty"`
	// KeepClaims is the requesting party's consent, given at the claims
	// interaction endpoint, to having the claims kept: the grant then
	// issues a PCT.
	KeepClaims bool `json:"keep,omitempty"`
	// PushedClaims are claims the client asserted itself (a push_claims
	// client, Dialect.PushedClaims): never an identity, and apart from
	// Claims; the rules see them as input.pushed_claims.
	PushedClaims map[string]any `json:"pushed_claims,omitempty"`
}

// Maximum resources a ticketless request may name.
const maxTicketlessResources = 100

// Response modes of Keycloak's ticketless extension.
const (
	responseModeDecision    = "decision"
	responseModePermissions = "permissions"
)

// grantState is one UMA grant request being decided.
type grantState struct {
	*tokenRequest
	ticket ticket
	proc   process
	procID string
	pushed bool // a claim token was pushed and verified in this request
	// spent says that the ticket's use is recorded; until then, the commit
	// of the answer records it (ticketUsedWrite).
	spent   bool
	mode    string
	rs      string
	request map[string]any
	// opts are the extension parameters (grant_options.go).
	opts GrantOptions
	// pushedClaims are the claims a push_claims client asserted in this
	// request, for the process once it is loaded.
	pushedClaims map[string]any
}

// requestedPermission is one resource with the scopes requested on it.
type requestedPermission struct {
	res    store.Resource
	scopes []string
}

// errNotAuthorized is Keycloak's answer to a ticketless request that is
// not (fully) granted.
func errNotAuthorized(detail string) *oauth.Error {
	desc := "not_authorized"
	if detail != "" {
		desc += ": " + detail
	}
	return oauth.New(oauth.AccessDenied).WithDescription(desc)
}

func (s *Server) grantUMATicket(w http.ResponseWriter, t *tokenRequest) error {
	if d := dialectOf(t.r); d != nil && d.UMAGrant != nil {
		return d.UMAGrant(t.r, t.form, func() error { return s.umaGrant(w, t) })
	}
	return s.umaGrant(w, t)
}

// umaGrant decides a UMA grant request.
func (s *Server) umaGrant(w http.ResponseWriter, t *tokenRequest) error {
	ctx := t.r.Context()
	g := &grantState{tokenRequest: t, mode: t.form.Get("response_mode")}
	switch g.mode {
	case "", responseModeDecision, responseModePermissions:
	default:
		return oauth.ErrInvalidRequest("response_mode must be decision or permissions")
	}
	var err error
	if g.opts, err = s.grantOptions(t.form); err != nil {
		return err
	}
	if (t.form.Get("claim_token") == "") != (t.form.Get("claim_token_format") == "") {
		return oauth.ErrInvalidRequest("claim_token and claim_token_format go together")
	}

	// The permissions asked for: a ticket, or Keycloak's ticketless form.
	raw := t.form.Get("ticket")
	var tk ticket
	switch {
	case raw != "":
		if tk, err = s.openGrantTicket(g.client.ID, raw); err != nil {
			return err
		}
	case len(t.form["permission"]) > 0 || t.form.Get("audience") != "":
	default:
		return oauth.ErrInvalidRequest("ticket is required")
	}
	// A pushed claim token is verified before the ticket is consumed: when
	// its issuer's keys cannot be had, the answer is 503 and the client
	// retries with the same ticket.
	pushed, err := s.verifyClaimToken(ctx, g)
	if err != nil {
		return err
	}
	var perms []requestedPermission
	if raw != "" {
		perms, err = s.redeemTicket(ctx, g, tk)
	} else {
		perms, err = s.ticketlessPermissions(ctx, g)
	}
	if err != nil {
		return err
	}
	if err := s.addClientScopes(g, perms); err != nil {
		return err
	}

	// Claims: the process's, a PCT's, a pushed claim token's.
	if err := s.gatherClaims(ctx, g, pushed); err != nil {
		var ne *needInfo
		if errors.As(err, &ne) {
			return s.needInfo(ctx, g, ne.description, nil)
		}
		return err
	}
	// The requesting party a person's token identified, and pushed claims.
	if err := s.identify(g); err != nil {
		return err
	}

	// Previously granted permissions, for an upgrade.
	previous, previousJTI := s.upgradable(ctx, g)

	outcome, err := s.assess(ctx, g, perms)
	if err != nil {
		var oe *oauth.Error
		if errors.As(err, &oe) && oe.Code == oauth.RequestDenied {
			// The rules failed: a decision all the same, which spends the
			// ticket (a fault of the server, 503, leaves it to retry).
			if serr := s.spendTicket(ctx, g); serr != nil {
				return serr
			}
		}
		return err
	}
	if g.mode != "" || len(outcome.granted) == 0 {
		// Nothing issued: the decisions need not be durable before the
		// answer (issueGrant commits them with the tokens otherwise).
		s.history.Queue(outcome.history)
	}
	if g.mode != "" {
		if err := s.spendTicket(ctx, g); err != nil {
			return err
		}
	}

	switch g.mode {
	case responseModeDecision:
		if !outcome.all {
			return errNotAuthorized("")
		}
		oauth.WriteJSON(w, http.StatusOK, map[string]bool{"result": true})
		return nil
	case responseModePermissions:
		if len(outcome.granted) == 0 {
			return errNotAuthorized("")
		}
		oauth.WriteJSON(w, http.StatusOK, GrantedPermissions(g.opts.shape(nil, outcome.granted)))
		return nil
	}

	if len(outcome.granted) == 0 {
		if g.ticket.ResourceServer == "" {
			// Ticketless: Keycloak's one answer, whatever the reason, so
			// that it tells nothing about what exists.
			return errNotAuthorized("")
		}
		return s.refusal(ctx, g, outcome)
	}
	return s.issueGrant(w, g, outcome, previous, previousJTI)
}

// upgradable returns the live permissions of the rpt parameter's RPT, when
// it is one of this client's for the same resource server (Grant section
// 3.3.1): the new RPT adds to them.
func (s *Server) upgradable(ctx context.Context, g *grantState) ([]Permission, string) {
	raw := g.form.Get("rpt")
	if raw == "" {
		return nil, ""
	}
	jti, rec, err := s.parseRPT(ctx, raw)
	if err != nil || rec.ClientID != g.client.ID || rec.ResourceServer != g.rs {
		return nil, ""
	}
	return livePermissions(rec.Permissions, s.now()), jti
}

func invalidGrant(desc string) error { return oauth.New(oauth.InvalidGrant).WithDescription(desc) }

// openGrantTicket opens a ticket presented by clientID, without consuming
// it.
func (s *Server) openGrantTicket(clientID, raw string) (ticket, error) {
	t, err := s.openTicket(raw)
	switch {
	case err != nil:
		return t, invalidGrant("the ticket is invalid or has expired")
	case t.Client != "" && t.Client != clientID:
		return t, invalidGrant("the ticket belongs to another client")
	}
	return t, nil
}

// errTicketUsed is the answer to a ticket that was already used.
func errTicketUsed() error { return invalidGrant("the ticket was already used") }

// redeemTicket checks that an opened ticket was not used and loads its
// process. The ticket is spent by the commit of the answer: the tokens'
// (issueGrant), the next ticket's (rotateTicket), or its own
// (spendTicket), of which exactly one of concurrent redemptions commits.
func (s *Server) redeemTicket(ctx context.Context, g *grantState, t ticket) ([]requestedPermission, error) {
	used, err := s.ticketWasUsed(ctx, t)
	switch {
	case err != nil:
		return nil, oauth.ErrServer("could not redeem the ticket", err)
	case used:
		return nil, errTicketUsed()
	}
	g.ticket, g.rs = t, t.ResourceServer
	if g.proc, g.procID, err = s.loadProcess(ctx, g.client.ID, t.Process); err != nil {
		return nil, oauth.ErrServer("could not read the authorization process", err)
	}
	if len(t.Request) > 0 {
		g.request = make(map[string]any, len(t.Request))
		for k, v := range t.Request {
			if len(v) == 1 {
				g.request[k] = v[0]
			} else {
				g.request[k] = v
			}
		}
	}
	var perms []requestedPermission
	for _, p := range t.Permissions {
		res, err := s.store.GetResource(ctx, p.ResourceID)
		if errors.Is(err, store.ErrNotFound) {
			continue // deregistered since the ticket was issued
		}
		if err != nil {
			return nil, oauth.ErrServer("could not read a resource", err)
		}
		var scopes []string
		for _, sc := range p.Scopes {
			if slices.Contains(res.Scopes, sc) {
				scopes = append(scopes, sc)
			}
		}
		perms = append(perms, requestedPermission{res: res, scopes: scopes})
	}
	if len(perms) == 0 {
		return nil, invalidGrant("the ticket's resources are no longer registered")
	}
	return perms, nil
}

// spendTicket records the use of the grant's ticket on its own, for an
// answer that commits nothing else (request_denied, the response modes) or
// before the owner is asked.
func (s *Server) spendTicket(ctx context.Context, g *grantState) error {
	if g.ticket.ID == "" || g.spent {
		return nil
	}
	err := s.consumeTicket(ctx, g.ticket)
	switch {
	case errors.Is(err, ErrTicketUsed):
		return errTicketUsed()
	case err != nil:
		return oauth.ErrServer("could not redeem the ticket", err)
	}
	g.spent = true
	return nil
}

// ticketWrites returns the write that spends the grant's ticket within
// the commit of the answer, if it is not spent yet.
func ticketWrites(g *grantState) []store.Write {
	if g.ticket.ID == "" || g.spent {
		return nil
	}
	return []store.Write{ticketUsedWrite(g.ticket)}
}

// loadProcess returns the authorization process id of a ticket, or a new
// process for clientID when id is empty or the process has ended.
func (s *Server) loadProcess(ctx context.Context, clientID, id string) (process, string, error) {
	proc := process{ClientID: clientID}
	if id == "" {
		return proc, "", nil
	}
	val, err := s.store.Get(ctx, nsProcess, id)
	if errors.Is(err, store.ErrNotFound) {
		return proc, id, nil
	}
	if err != nil {
		return proc, id, fmt.Errorf("reading a process: %w", err)
	}
	if err := json.Unmarshal(val, &proc); err != nil {
		return proc, id, fmt.Errorf("decoding a process: %w", err)
	}
	return proc, id, nil
}

// ticketlessPermissions reads Keycloak's permission=RESOURCE#SCOPE,SCOPE
// parameters (resource by id or name) at the audience resource server
// (default: the client itself). Without permission parameters, every
// resource of the audience is asked for. A name that matches no resource,
// or a scope a resource does not offer, is left out rather than refused:
// an error would tell any client which resources exist, across all owners;
// what is left out is simply not granted.
func (s *Server) ticketlessPermissions(ctx context.Context, g *grantState) ([]requestedPermission, error) {
	g.rs = g.form.Get("audience")
	if g.rs == "" {
		g.rs = g.client.ID
	}
	if rs, ok := s.clients[g.rs]; !ok || !rs.ResourceServer {
		return nil, oauth.ErrInvalidRequest("audience is not a resource server of this authorization server")
	}
	if len(g.form["permission"]) > maxTicketlessResources {
		return nil, oauth.ErrInvalidRequest("at most %d resources per request", maxTicketlessResources)
	}
	g.proc = process{ClientID: g.client.ID}
	var perms []requestedPermission
	add := func(res store.Resource, scopes []string) {
		for i := range perms {
			if perms[i].res.ID == res.ID {
				perms[i].scopes = appendNew(perms[i].scopes, scopes...)
				return
			}
		}
		perms = append(perms, requestedPermission{res: res, scopes: scopes})
	}
	if len(g.form["permission"]) == 0 {
		all, err := s.store.ListResources(ctx, store.ResourceQuery{ResourceServer: g.rs, Limit: maxTicketlessResources + 1})
		if err != nil {
			return nil, oauth.ErrServer("could not list the resources", err)
		}
		for _, res := range all {
			add(res, nil)
		}
	}
	for _, p := range g.form["permission"] {
		name, scopeList, _ := strings.Cut(p, "#")
		var scopes []string
		for _, sc := range strings.Split(scopeList, ",") {
			if sc = strings.TrimSpace(sc); sc != "" {
				scopes = append(scopes, sc)
			}
		}
		var found []store.Resource
		var err error
		if g.opts.FindResources != nil && name != "" {
			found, err = g.opts.FindResources(ctx, g.rs, name, scopes)
		} else {
			found, err = s.ticketlessResources(ctx, g.rs, name, scopes)
		}
		var refused *oauth.Error
		switch {
		case errors.As(err, &refused):
			return nil, refused
		case err != nil:
			return nil, oauth.ErrServer("could not list the resources", err)
		}
		for _, res := range found {
			var have []string
			for _, sc := range scopes {
				if slices.Contains(res.Scopes, sc) {
					have = append(have, sc)
				}
			}
			add(res, have)
		}
		if len(perms) > maxTicketlessResources {
			break
		}
	}
	if len(perms) > maxTicketlessResources {
		return nil, oauth.ErrInvalidRequest("at most %d resources per request", maxTicketlessResources)
	}
	if len(perms) == 0 {
		return nil, errNotAuthorized("")
	}
	return perms, nil
}

// ticketlessPage is how many resources ticketlessResources reads at a
// time.
const ticketlessPage = 256

// ticketlessResources returns, in ID order, the resources of the resource
// server rs that one permission parameter names and that offer one of
// scopes (or any scope, without scopes): the resource of that ID and those
// of that name, looked up through the store's indexes, or, for an empty
// name, every resource of rs, read a page at a time. It stops past
// maxTicketlessResources: more are refused anyway. A name that no
// resource can have (see validText) finds none without asking the store.
func (s *Server) ticketlessResources(ctx context.Context, rs, name string, scopes []string) ([]store.Resource, error) {
	if name != "" && !validText(name, false) {
		return nil, nil
	}
	offers := func(res store.Resource) bool {
		return len(scopes) == 0 || slices.ContainsFunc(scopes, func(sc string) bool { return slices.Contains(res.Scopes, sc) })
	}
	var found []store.Resource
	q := store.ResourceQuery{ResourceServer: rs, Name: name, Limit: ticketlessPage}
	for len(found) <= maxTicketlessResources {
		page, err := s.store.ListResources(ctx, q)
		if err != nil {
			return nil, err
		}
		for _, res := range page {
			if offers(res) {
				found = append(found, res)
			}
		}
		if len(page) < q.Limit {
			break
		}
		q.After = page[len(page)-1].ID
	}
	if name == "" {
		return found, nil
	}
	byID, err := s.store.GetResource(ctx, name)
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		return nil, err
	case byID.ResourceServer == rs && offers(byID):
		i, dup := slices.BinarySearchFunc(found, byID.ID, func(r store.Resource, id string) int { return strings.Compare(r.ID, id) })
		if !dup {
			found = slices.Insert(found, i, byID)
		}
	}
	return found, nil
}

// addClientScopes applies the scope parameter (Grant section 3.3.4): a
// scope matching no resource is invalid_scope; a scope the client
// pre-registered is added to every resource that offers it; others are
// ignored. A resource with no scope requested at all asks for all of its
// scopes.
func (s *Server) addClientScopes(g *grantState, perms []requestedPermission) error {
	for _, sc := range strings.Fields(g.form.Get("scope")) {
		available := false
		for i := range perms {
			if !slices.Contains(perms[i].res.Scopes, sc) {
				continue
			}
			available = true
			if slices.Contains(g.client.Scopes, sc) {
				perms[i].scopes = appendNew(perms[i].scopes, sc)
			}
		}
		if !available {
			return oauth.New(oauth.InvalidScope).WithDescription("scope " + oauth.Quote(sc) + " is not available on the requested resources")
		}
	}
	for i := range perms {
		if len(perms[i].scopes) == 0 {
			perms[i].scopes = slices.Clone(perms[i].res.Scopes)
		}
	}
	return nil
}

// needInfo is a bad claim token: the answer is need_info.
type needInfo struct{ description string }

func (e *needInfo) Error() string { return e.description }

// pushedToken is the outcome of verifying a pushed claim token: its claims,
// or why it was refused.
type pushedToken struct {
	claims  claimtoken.Claims
	refused *needInfo
}

// verifyClaimToken verifies the pushed claim token, if any (nil when none
// was pushed). A token that is refused is not an error here: its refusal
// is answered need_info once the ticket is redeemed. When its issuer's keys
// cannot be fetched, the error is 503 temporarily_unavailable: the token
// may well be good, and the client should send it again, with the same
// ticket, after Retry-After.
func (s *Server) verifyClaimToken(ctx context.Context, g *grantState) (_ *pushedToken, err error) {
	token := strings.TrimSpace(g.form.Get("claim_token"))
	if token == "" {
		return nil, nil
	}
	if d := dialectOf(g.r); d != nil && d.PushedClaims != nil {
		// The dialect's reading: claims the client asserts, not a token.
		client := g.client.Client
		client.Secret = ""
		claims, ok, err := d.PushedClaims(client, g.form.Get("claim_token_format"), token)
		if ok || err != nil {
			g.pushedClaims = claims
			return nil, err
		}
	}
	if s.claimTokens == nil {
		return &pushedToken{refused: &needInfo{"claim tokens are not accepted: this authorization server trusts no issuer"}}, nil
	}
	claims, err := s.claimTokens.Verify(ctx, g.form.Get("claim_token_format"), token, g.client.ID)
	if errors.Is(err, claimtoken.ErrKeysUnavailable) {
		s.log.Debug("claim token issuer's keys unavailable", clientField(g.client.ID), zap.String("reason", err.Error()))
		return nil, claimKeysUnavailable(err)
	}
	if err != nil {
		s.log.Info("claim token refused", clientField(g.client.ID), zap.String("reason", err.Error()))
		return &pushedToken{refused: &needInfo{"the claim token was not accepted: " + err.Error()}}, nil
	}
	return &pushedToken{claims: claims}, nil
}

// gatherClaims merges the claims of a PCT and of a pushed claim token into
// the process's.
func (s *Server) gatherClaims(ctx context.Context, g *grantState, pushed *pushedToken) error {
	if raw := g.form.Get("pct"); raw != "" {
		rec, err := s.lookupToken(ctx, raw)
		switch {
		case err == nil && rec.Kind == kindPCT && rec.ClientID == g.client.ID:
			if g.proc.Subject == "" || g.proc.Subject == rec.Subject {
				g.proc.Subject, g.proc.RqPIssuer = rec.Subject, rec.RqPIssuer
				g.proc.Claims = mergeClaims(rec.Claims, g.proc.Claims)
			}
		case err != nil && !errors.Is(err, errUnknownToken):
			return oauth.ErrServer("could not read the PCT", err)
		default:
			// A PCT of another client, or unknown: its claims do not count.
			s.log.Info("ignored a PCT that is unknown or belongs to another client", clientField(g.client.ID))
		}
	}
	if pushed == nil {
		return nil
	}
	if pushed.refused != nil {
		return pushed.refused
	}
	claims := pushed.claims
	if g.proc.Subject != "" && (g.proc.Subject != claims.Subject || g.proc.RqPIssuer != claims.Issuer) {
		g.proc.Claims = nil // another requesting party: start over
	}
	g.proc.Subject, g.proc.RqPIssuer = claims.Subject, claims.Issuer
	g.proc.Claims = mergeClaims(g.proc.Claims, claims.Values)
	g.pushed = true
	return nil
}

// identify makes the requesting party that a person's token identified
// (tokenRequest.party) the process's, with the token's claims, and keeps
// the claims a client pushed apart from them.
func (s *Server) identify(g *grantState) error {
	if p := g.party; p != nil && p.ResourceServer != "" && p.ResourceServer != g.rs {
		s.log.Info("an RPT presented as the requesting party's token for another resource server", clientField(g.client.ID))
		return errNotAuthorized("")
	}
	if p := g.party; p != nil && p.Subject != "" {
		same := g.proc.Subject == p.Subject && g.proc.RqPIssuer == p.Issuer
		switch {
		case g.pushed && !same:
			return oauth.ErrInvalidRequest("the claim token and the token of the requesting party are not of the same person")
		case !same:
			g.proc.Claims = nil // another requesting party: start over
		}
		g.proc.Subject, g.proc.RqPIssuer = p.Subject, p.Issuer
		g.proc.Claims = mergeClaims(g.proc.Claims, p.Claims)
	}
	if g.pushedClaims != nil {
		g.proc.PushedClaims = g.pushedClaims
	}
	return nil
}

func mergeClaims(base, over map[string]any) map[string]any {
	out := make(map[string]any, len(base)+len(over))
	for k, v := range base {
		out[k] = v
	}
	for k, v := range over {
		out[k] = v
	}
	return out
}

// refusal answers a request of which nothing was granted: need_info when
// the rules ask for claims or the requesting party must say who it is
// (claimsNeeded), request_submitted when the rules send the request to the
// owner, request_denied otherwise.
func (s *Server) refusal(ctx context.Context, g *grantState, a assessment) error {
	if d := dialectOf(g.r); d != nil && d.Refusal != nil {
		return s.refuseWithoutInteraction(ctx, g, a, d.Refusal)
	}
	if desc := s.claimsNeeded(g, a); desc != "" {
		return s.needInfo(ctx, g, desc, dedupeClaims(a.requiredClaims))
	}
	if len(a.askOwner) > 0 {
		return s.askOwner(ctx, g, a.askOwner)
	}
	if err := s.spendTicket(ctx, g); err != nil {
		return err
	}
	return oauth.New(oauth.RequestDenied).WithDescription("the resource owner's rules do not grant the requested access")
}

// refuseWithoutInteraction answers a request of which nothing was granted
// with the dialect's refusal (Dialect.Refusal): with a ticket, an
// identified requesting party and requests on (GrantOptions.NoRequests), the
// permissions that the owners' rules send to the owner (ask_owner) are
// filed with them, and refuse says submitted unless an owner already
// denied one.
func (s *Server) refuseWithoutInteraction(ctx context.Context, g *grantState, a assessment, refuse func(submitted bool) error) error {
	if err := s.spendTicket(ctx, g); err != nil {
		return err
	}
	if g.opts.NoRequests || g.ticket.ID == "" || g.proc.Subject == "" || len(a.askOwner) == 0 {
		return refuse(false)
	}
	denied, err := s.fileRequests(ctx, g, a.askOwner)
	switch {
	case err != nil:
		return err
	case denied:
		return refuse(false)
	}
	g.audit.requestSubmitted()
	return refuse(true)
}

// claimsNeeded says why a request of which nothing was granted is answered
// need_info, or "" when it is not: the rules ask for claims; or the
// requesting party is not identified, and the owner would be asked (only
// on behalf of someone identified), or people can prove who they are at
// the claims interaction endpoint, where a share with them may well apply.
func (s *Server) claimsNeeded(g *grantState, a assessment) string {
	switch {
	case len(a.requiredClaims) > 0:
		return "more information about the requesting party is needed"
	case g.proc.Subject != "":
		return ""
	case len(a.askOwner) > 0:
		return "the owner can only be asked on behalf of an identified requesting party"
	case s.loginPages:
		return "the requesting party is not identified"
	}
	return ""
}

// asksForClaims reports whether the answer to a request assessed as a is
// need_info (a rotated ticket: not a ticketless request, nor one of
// Keycloak's response modes, nor one in a dialect without interaction).
func (s *Server) asksForClaims(g *grantState, a assessment) bool {
	if d := dialectOf(g.r); d != nil && d.Refusal != nil {
		return false
	}
	return len(a.granted) == 0 && g.mode == "" && g.ticket.ResourceServer != "" && s.claimsNeeded(g, a) != ""
}

// askOwner files a request with the owner of each permission and answers
// request_submitted, or request_denied if the owner already denied one.
func (s *Server) askOwner(ctx context.Context, g *grantState, perms []requestedPermission) error {
	// Spent first, so that a replayed ticket files nothing.
	if err := s.spendTicket(ctx, g); err != nil {
		return err
	}
	denied, err := s.fileRequests(ctx, g, perms)
	if err != nil {
		return err
	}
	if denied {
		return oauth.New(oauth.RequestDenied).WithDescription("the resource owner denied the request")
	}
	tk, err := s.rotateTicket(ctx, g)
	if err != nil {
		return rotateFailed(err)
	}
	e := oauth.New(oauth.RequestSubmitted).WithDescription("the request was sent to the resource owner for approval")
	e.Ticket, e.Interval = tk, int(s.requestInterval.Seconds())
	return e
}

// fileRequests files a request with the owner of each permission, and
// says whether the owner already denied one.
func (s *Server) fileRequests(ctx context.Context, g *grantState, perms []requestedPermission) (denied bool, err error) {
	for _, p := range perms {
		email, _ := g.proc.Claims["email"].(string)
		name, _ := g.proc.Claims["name"].(string)
		req, err := s.FileRequest(ctx, AccessRequest{
			Owner: p.res.Owner, ResourceID: p.res.ID, ResourceName: p.res.Name, Scopes: p.scopes,
			ClientID: g.client.ID, Subject: g.proc.Subject, Issuer: g.proc.RqPIssuer, Email: email, Name: name,
		})
		if err != nil {
			return false, oauth.ErrServer("could not submit the request", err)
		}
		denied = denied || req.Status == RequestDenied
	}
	return denied, nil
}

// needInfo answers need_info with a rotated ticket and hints. Hints
// default to the claim tokens the AS accepts.
func (s *Server) needInfo(ctx context.Context, g *grantState, desc string, hints []policies.RequiredClaim) error {
	if g.ticket.ResourceServer == "" {
		// A ticketless request has no ticket to rotate: Keycloak answers so.
		return errNotAuthorized(desc)
	}
	tk, err := s.rotateTicket(ctx, g)
	if err != nil {
		return rotateFailed(err)
	}
	e := oauth.New(oauth.NeedInfo).WithDescription(desc)
	e.Ticket, e.RedirectUser = tk, s.claimsInteraction
	if len(hints) == 0 && e.RedirectUser == "" {
		hints = []policies.RequiredClaim{{
			ClaimTokenFormat: []string{claimtoken.FormatIDToken, claimtoken.FormatJWT},
			Issuer:           s.trustedIssuers,
		}}
	}
	if len(hints) > 0 {
		e.RequiredClaims = hints
	}
	return e
}

// rotateFailed is the answer when rotateTicket fails.
func rotateFailed(err error) error {
	if errors.Is(err, ErrTicketUsed) {
		return errTicketUsed()
	}
	return oauth.ErrServer("could not issue a ticket", err)
}

// rotateTicket saves the process and issues its next ticket, bound to the
// client, in one commit with the use of the current ticket if it is not
// spent yet (ErrTicketUsed if it was, meanwhile). The ticket and the
// process outlive the polling interval that request_submitted announces by
// a whole ticket_ttl (Grant section 3.3.6: the client polls after the
// interval, with this ticket).
func (s *Server) rotateTicket(ctx context.Context, g *grantState) (string, error) {
	if g.procID == "" {
		g.procID = secret.New(16)
	}
	val, err := json.Marshal(g.proc)
	if err != nil {
		return "", err
	}
	ttl := s.ticketTTL + s.requestInterval
	writes := append(ticketWrites(g), store.Write{Namespace: nsProcess, Key: g.procID, Value: val, ExpiresAt: s.now().Add(ttl)})
	err = s.store.PutAll(ctx, writes)
	switch {
	case errors.Is(err, store.ErrExists):
		return "", ErrTicketUsed
	case err != nil:
		return "", fmt.Errorf("storing a process: %w", err)
	}
	g.spent = true
	next := g.ticket
	next.Process, next.Client = g.procID, g.client.ID
	return s.sealTicketFor(next, ttl)
}

func dedupeClaims(in []policies.RequiredClaim) []policies.RequiredClaim {
	var out []policies.RequiredClaim
	seen := map[string]bool{}
	for _, c := range in {
		b, _ := json.Marshal(c)
		if !seen[string(b)] {
			seen[string(b)] = true
			out = append(out, c)
		}
	}
	return out
}

// issueGrant issues the RPT (with the previous RPT's permissions on an
// upgrade), a refresh token, and a PCT when claims were pushed.
func (s *Server) issueGrant(w http.ResponseWriter, g *grantState, outcome assessment, previous []Permission, previousJTI string) error {
	ctx := g.r.Context()
	perms := g.opts.shape(previous, outcome.granted)
	subject := g.proc.Subject
	if subject == "" {
		subject = g.client.ID
	}
	fail := func(err error) error { return oauth.ErrServer("could not issue the tokens", err) }
	// One commit, all or none, which the answer waits for: the use of the
	// ticket (so that of concurrent redemptions exactly one commits), the
	// RPT, its refresh token, the index that lets a revoked share revoke
	// them, the PCT, the owners' history of the grant, the end of the
	// authorization process, and the revocation of an upgraded RPT.
	rec := rptRecord{ClientID: g.client.ID, Subject: subject, RqPIssuer: g.proc.RqPIssuer, ResourceServer: g.rs, Permissions: perms}
	rpt, jti, rptWrite, err := s.signRPT(ctx, rec)
	if err != nil {
		return fail(err)
	}
	resp := tokenResponse{AccessToken: rpt, TokenType: "Bearer", ExpiresIn: int64(s.rptTTL.Seconds())}
	refresh, refreshWrite, err := s.newToken(tokenRecord{
		Kind: kindRefresh, ClientID: g.client.ID, Subject: subject, RqPIssuer: g.proc.RqPIssuer,
		ResourceServer: g.rs, Permissions: perms, RPT: jti,
	}, s.refreshTTL)
	if err != nil {
		return fail(err)
	}
	resp.RefreshToken = refresh
	writes := []store.Write{rptWrite, refreshWrite}
	writes = append(writes, owners.HolderWrites(resourceIDs(perms), owners.TokenHolder{RPT: jti, Subject: subject, Email: owners.VerifiedEmail(g.proc.Claims), ClientID: g.client.ID},
		tokenKey(refresh), s.now().Add(s.refreshTTL))...)
	if (g.pushed || g.proc.KeepClaims) && g.proc.Subject != "" {
		pct, pctWrite, err := s.newToken(tokenRecord{
			Kind: kindPCT, ClientID: g.client.ID, Subject: g.proc.Subject, RqPIssuer: g.proc.RqPIssuer, Claims: g.proc.Claims,
		}, s.pctTTL)
		if err != nil {
			return fail(err)
		}
		resp.PCT = pct
		writes = append(writes, pctWrite)
	}
	if g.procID != "" {
		writes = append(writes, store.Write{Namespace: nsProcess, Key: g.procID, Delete: true})
	}
	if previousJTI != "" {
		upgraded := true
		resp.Upgraded = &upgraded
		writes = append(writes, store.Write{Namespace: nsRPT, Key: previousJTI, Delete: true})
	}
	decisions := s.history.Writes(outcome.history)
	writes = append(append(writes, decisions...), ticketWrites(g)...)
	err = s.store.PutAll(ctx, writes)
	switch {
	case errors.Is(err, store.ErrExists):
		// A concurrent redemption of the ticket committed first.
		return errTicketUsed()
	case err != nil:
		if len(decisions) > 0 {
			s.history.QueueWrites(decisions)
		}
		return fail(err)
	}
	g.spent = true
	s.history.Written(decisions)
	oauth.WriteJSON(w, http.StatusOK, resp)
	return nil
}
