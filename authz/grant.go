package authz

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-uma/caddy-uma/authz/claimtoken"
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

// process is what an authorization process has gathered.
type process struct {
	ClientID  string         `json:"client_id"`
	Subject   string         `json:"sub,omitempty"`
	RqPIssuer string         `json:"iss,omitempty"`
	Claims    map[string]any `json:"claims,omitempty"`
	// KeepClaims is the requesting party's consent, given at the claims
	// interaction endpoint, to having the claims kept: the grant then
	// issues a PCT.
	KeepClaims bool `json:"keep,omitempty"`
}

// Maximum resources a ticketless request may name.
const maxTicketlessResources = 100

// grantState is one UMA grant request being decided.
type grantState struct {
	client  *registeredClient
	form    url.Values
	ticket  ticket
	proc    process
	procID  string
	pushed  bool // a claim token was pushed and verified in this request
	mode    string
	rs      string
	request map[string]any
}

// requestedPermission is one resource with the scopes requested on it.
type requestedPermission struct {
	res    store.Resource
	scopes []string
}

// umaError is an UMA grant error response (Grant section 3.3.6).
type umaError struct {
	Code           string                   `json:"error"`
	Description    string                   `json:"error_description,omitempty"`
	Ticket         string                   `json:"ticket,omitempty"`
	RequiredClaims []policies.RequiredClaim `json:"required_claims,omitempty"`
	RedirectUser   string                   `json:"redirect_user,omitempty"`
	Interval       int                      `json:"interval,omitempty"`
}

func (e *umaError) Error() string { return e.Code + ": " + e.Description }

func (s *Server) grantUMATicket(w http.ResponseWriter, r *http.Request, c *registeredClient, form url.Values) {
	ctx := r.Context()
	g := &grantState{client: c, form: form, mode: form.Get("response_mode")}
	switch g.mode {
	case "", "decision", "permissions":
	default:
		writeError(w, errInvalidRequest("response_mode must be decision or permissions"))
		return
	}
	if (form.Get("claim_token") == "") != (form.Get("claim_token_format") == "") {
		writeError(w, errInvalidRequest("claim_token and claim_token_format go together"))
		return
	}

	// The permissions asked for: a ticket, or Keycloak's ticketless form.
	var perms []requestedPermission
	var err error
	if raw := form.Get("ticket"); raw != "" {
		perms, err = s.redeemTicket(ctx, g, raw)
	} else if len(form["permission"]) > 0 || form.Get("audience") != "" {
		perms, err = s.ticketlessPermissions(ctx, g)
	} else {
		err = errInvalidRequest("ticket is required")
	}
	if err != nil {
		writeError(w, err)
		return
	}
	if err := s.addClientScopes(g, perms); err != nil {
		writeError(w, err)
		return
	}

	// Claims: the process's, a PCT's, a pushed claim token's.
	if err := s.gatherClaims(ctx, g); err != nil {
		var ne *needInfo
		if errors.As(err, &ne) {
			s.answerNeedInfo(w, r, g, ne.description, nil)
			return
		}
		writeError(w, err)
		return
	}

	// Previously granted permissions, for an upgrade.
	var previous []RPTPermission
	var previousJTI string
	if raw := form.Get("rpt"); raw != "" {
		if jti, rec, err := s.parseRPT(ctx, raw); err == nil && rec.ClientID == c.ID && rec.ResourceServer == g.rs {
			previousJTI = jti
			now := s.now().Unix()
			for _, p := range rec.Permissions {
				if p.ExpiresAt == 0 || p.ExpiresAt > now {
					previous = append(previous, p)
				}
			}
		}
	}

	outcome, err := s.assess(ctx, g, perms)
	if err != nil {
		var oe *oauthError
		var ue *umaError
		switch {
		case errors.As(err, &ue):
			writeJSON(w, http.StatusForbidden, ue)
		case errors.As(err, &oe):
			writeError(w, err)
		default:
			s.log.Error("assessing a UMA grant", errField(err))
			writeError(w, errServer("could not assess the request"))
		}
		return
	}

	switch g.mode {
	case "decision":
		if outcome.all {
			writeJSON(w, http.StatusOK, map[string]bool{"result": true})
		} else {
			writeJSON(w, http.StatusForbidden, umaError{Code: "access_denied", Description: "not_authorized"})
		}
		return
	case "permissions":
		if len(outcome.granted) == 0 {
			writeJSON(w, http.StatusForbidden, umaError{Code: "access_denied", Description: "not_authorized"})
			return
		}
		type kcPermission struct {
			RSID   string   `json:"rsid"`
			RSName string   `json:"rsname,omitempty"`
			Scopes []string `json:"scopes"`
		}
		out := []kcPermission{}
		for _, p := range outcome.granted {
			out = append(out, kcPermission{RSID: p.ResourceID, RSName: p.ResourceName, Scopes: p.ResourceScopes})
		}
		writeJSON(w, http.StatusOK, out)
		return
	}

	if len(outcome.granted) == 0 {
		s.answerRefusal(w, r, g, outcome)
		return
	}
	s.issueGrant(w, r, g, outcome.granted, previous, previousJTI)
}

// redeemTicket opens and consumes a ticket and loads its process.
func (s *Server) redeemTicket(ctx context.Context, g *grantState, raw string) ([]requestedPermission, error) {
	invalidGrant := func(desc string) error {
		return &oauthError{Status: http.StatusBadRequest, Code: "invalid_grant", Description: desc}
	}
	t, err := s.openTicket(raw)
	if err != nil {
		return nil, invalidGrant("the ticket is invalid or has expired")
	}
	if t.Client != "" && t.Client != g.client.ID {
		return nil, invalidGrant("the ticket belongs to another client")
	}
	if err := s.consumeTicket(ctx, t); errors.Is(err, errInvalidTicket) {
		return nil, invalidGrant("the ticket was already used")
	} else if err != nil {
		return nil, err
	}
	g.ticket, g.rs = t, t.ResourceServer
	g.proc = process{ClientID: g.client.ID}
	if t.Process != "" {
		g.procID = t.Process
		if val, err := s.store.Get(ctx, nsProcess, t.Process); err == nil {
			if err := json.Unmarshal(val, &g.proc); err != nil {
				return nil, fmt.Errorf("decoding a process: %w", err)
			}
		} else if !errors.Is(err, store.ErrNotFound) {
			return nil, fmt.Errorf("reading a process: %w", err)
		}
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
			return nil, fmt.Errorf("reading a resource: %w", err)
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

// ticketlessPermissions reads Keycloak's permission=RESOURCE#SCOPE,SCOPE
// parameters (resource by id or name) at the audience resource server
// (default: the client itself). Without permission parameters, every
// resource of the audience is asked for.
func (s *Server) ticketlessPermissions(ctx context.Context, g *grantState) ([]requestedPermission, error) {
	g.rs = g.form.Get("audience")
	if g.rs == "" {
		g.rs = g.client.ID
	}
	if rs, ok := s.clients[g.rs]; !ok || !rs.ResourceServer {
		return nil, errInvalidRequest("audience is not a resource server of this authorization server")
	}
	all, err := s.store.ListResources(ctx, store.ResourceQuery{ResourceServer: g.rs})
	if err != nil {
		return nil, fmt.Errorf("listing resources: %w", err)
	}
	g.proc = process{ClientID: g.client.ID}
	var perms []requestedPermission
	add := func(res store.Resource, scopes []string) {
		for i := range perms {
			if perms[i].res.ID == res.ID {
				for _, sc := range scopes {
					if !slices.Contains(perms[i].scopes, sc) {
						perms[i].scopes = append(perms[i].scopes, sc)
					}
				}
				return
			}
		}
		perms = append(perms, requestedPermission{res: res, scopes: scopes})
	}
	if len(g.form["permission"]) == 0 {
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
		matched := false
		for _, res := range all {
			if name != "" && res.ID != name && res.Name != name {
				continue
			}
			var have []string
			for _, sc := range scopes {
				if slices.Contains(res.Scopes, sc) {
					have = append(have, sc)
				}
			}
			if name == "" && len(have) == 0 {
				continue // #SCOPE: only resources offering the scope
			}
			if name != "" && len(have) < len(scopes) {
				return nil, &oauthError{Status: http.StatusBadRequest, Code: "invalid_scope",
					Description: "a requested scope is not available on resource " + quote(name)}
			}
			matched = true
			add(res, have)
		}
		if !matched {
			return nil, &oauthError{Status: http.StatusBadRequest, Code: "invalid_resource",
				Description: "no resource " + quote(name) + " at the audience"}
		}
	}
	if len(perms) > maxTicketlessResources {
		return nil, errInvalidRequest("at most %d resources per request", maxTicketlessResources)
	}
	if len(perms) == 0 {
		return nil, &oauthError{Status: http.StatusBadRequest, Code: "invalid_resource", Description: "no resources at the audience"}
	}
	return perms, nil
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
			if slices.Contains(g.client.Scopes, sc) && !slices.Contains(perms[i].scopes, sc) {
				perms[i].scopes = append(perms[i].scopes, sc)
			}
		}
		if !available {
			return &oauthError{Status: http.StatusBadRequest, Code: "invalid_scope",
				Description: "scope " + quote(sc) + " is not available on the requested resources"}
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

// gatherClaims merges the claims of a PCT and of a pushed claim token into
// the process's.
func (s *Server) gatherClaims(ctx context.Context, g *grantState) error {
	if raw := g.form.Get("pct"); raw != "" {
		rec, err := s.lookupToken(ctx, raw)
		switch {
		case err == nil && rec.Kind == kindPCT && rec.ClientID == g.client.ID:
			if g.proc.Subject == "" || g.proc.Subject == rec.Subject {
				g.proc.Subject, g.proc.RqPIssuer = rec.Subject, rec.RqPIssuer
				g.proc.Claims = mergeClaims(rec.Claims, g.proc.Claims)
			}
		case err != nil && !errors.Is(err, errUnknownToken):
			return err
		default:
			// A PCT of another client, or unknown: its claims do not count.
			s.log.Info("ignored a PCT that is unknown or belongs to another client", clientField(g.client.ID))
		}
	}
	token := strings.TrimSpace(g.form.Get("claim_token"))
	if token == "" {
		return nil
	}
	if s.claimTokens == nil {
		return &needInfo{"claim tokens are not accepted: this authorization server trusts no issuer"}
	}
	claims, err := s.claimTokens.Verify(ctx, g.form.Get("claim_token_format"), token, []string{g.client.ID, s.issuer})
	if err != nil {
		s.log.Info("claim token refused", clientField(g.client.ID), zap.String("reason", err.Error()))
		return &needInfo{"the claim token was not accepted: " + err.Error()}
	}
	if g.proc.Subject != "" && (g.proc.Subject != claims.Subject || g.proc.RqPIssuer != claims.Issuer) {
		g.proc.Claims = nil // another requesting party: start over
	}
	g.proc.Subject, g.proc.RqPIssuer = claims.Subject, claims.Issuer
	g.proc.Claims = mergeClaims(g.proc.Claims, claims.Values)
	g.pushed = true
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

// assessment is the decision over every requested permission.
type assessment struct {
	granted        []RPTPermission
	all            bool // every requested scope was granted
	requiredClaims []policies.RequiredClaim
	askOwner       []requestedPermission
}

// assess evaluates each owner's rules for each requested permission.
func (s *Server) assess(ctx context.Context, g *grantState, perms []requestedPermission) (assessment, error) {
	out := assessment{all: true}
	// The decisions go to the owners' histories in one commit at the end.
	var history []ownedDecision
	defer func() { s.recordDecisions(ctx, history) }()
	for _, p := range perms {
		owner := p.res.Owner
		if err := s.ensureRules(ctx, owner); err != nil {
			return out, err
		}
		shares, err := s.sharesOf(ctx, owner, p.res.ID)
		if err != nil {
			return out, err
		}
		in := policies.Input{
			Resource: policies.Resource{ID: p.res.ID, Name: p.res.Name, Type: p.res.Type, Owner: owner, Scopes: p.res.Scopes, URIs: p.res.URIs},
			Scopes:   p.scopes,
			ClientID: g.client.ID,
			Subject:  g.proc.Subject,
			Issuer:   g.proc.RqPIssuer,
			Claims:   g.proc.Claims,
			Request:  g.request,
			Shares:   policyShares(shares),
			Now:      s.now(),
		}
		dec, err := s.rules.engine.Evaluate(ctx, owner, in)
		if err != nil {
			history = append(history, ownedDecision{owner, newDecisionRecord(decisionInput{perm: p, clientID: g.client.ID, proc: g.proc, err: err, now: in.Now})})
			s.log.Warn("an owner's rules failed", ownerField(owner), resourceField(p.res.ID), errField(err))
			desc := "the resource owner's rules could not be evaluated"
			if errors.Is(err, policies.ErrTimeout) {
				desc = "the resource owner's rules did not finish within their time limit"
			}
			return out, &umaError{Code: "request_denied", Description: desc}
		}
		var granted, missing []string
		for _, sc := range p.scopes {
			if slices.Contains(dec.Granted, sc) {
				granted = append(granted, sc)
			} else {
				missing = append(missing, sc)
			}
		}
		s.log.Info("access decision",
			ownerField(owner), resourceField(p.res.ID), clientField(g.client.ID),
			zap.String("requesting_party", g.proc.Subject),
			zap.Strings("requested", p.scopes), zap.Strings("granted", granted))
		history = append(history, ownedDecision{owner, newDecisionRecord(decisionInput{
			perm: p, clientID: g.client.ID, proc: g.proc, shares: shares, dec: dec, granted: granted, missing: missing, now: in.Now,
		})})
		if len(granted) > 0 {
			out.granted = append(out.granted, RPTPermission{ResourceID: p.res.ID, ResourceScopes: granted, ResourceName: p.res.Name})
		}
		if len(missing) == 0 {
			continue
		}
		out.all = false
		out.requiredClaims = append(out.requiredClaims, dec.RequiredClaims...)
		var ask []string
		for _, sc := range missing {
			if slices.Contains(dec.AskOwner, sc) && !slices.Contains(dec.Deny, sc) && !slices.Contains(dec.SystemDeny, sc) {
				ask = append(ask, sc)
			}
		}
		if len(ask) > 0 {
			out.askOwner = append(out.askOwner, requestedPermission{res: p.res, scopes: ask})
		}
	}
	return out, nil
}

// answerRefusal answers a request of which nothing was granted: need_info
// when the rules ask for claims, request_submitted when they send the
// request to the owner, request_denied otherwise.
func (s *Server) answerRefusal(w http.ResponseWriter, r *http.Request, g *grantState, a assessment) {
	if len(a.requiredClaims) > 0 {
		s.answerNeedInfo(w, r, g, "more information about the requesting party is needed", dedupeClaims(a.requiredClaims))
		return
	}
	if len(a.askOwner) > 0 {
		if g.proc.Subject == "" {
			s.answerNeedInfo(w, r, g, "the owner can only be asked on behalf of an identified requesting party", nil)
			return
		}
		denied := false
		for _, p := range a.askOwner {
			email, _ := g.proc.Claims["email"].(string)
			name, _ := g.proc.Claims["name"].(string)
			req, err := s.fileRequest(r.Context(), AccessRequest{
				Owner: p.res.Owner, ResourceID: p.res.ID, ResourceName: p.res.Name, Scopes: p.scopes,
				ClientID: g.client.ID, Subject: g.proc.Subject, Issuer: g.proc.RqPIssuer, Email: email, Name: name,
			})
			if err != nil {
				s.log.Error("filing a request", errField(err))
				writeError(w, errServer("could not submit the request"))
				return
			}
			denied = denied || req.Status == RequestDenied
		}
		if !denied {
			tk, err := s.rotateTicket(r.Context(), g)
			if err != nil {
				s.log.Error("rotating a ticket", errField(err))
				writeError(w, errServer("could not issue a ticket"))
				return
			}
			writeJSON(w, http.StatusForbidden, umaError{
				Code: "request_submitted", Ticket: tk, Interval: int(s.requestInterval.Seconds()),
				Description: "the request was sent to the resource owner for approval",
			})
			return
		}
		writeJSON(w, http.StatusForbidden, umaError{Code: "request_denied", Description: "the resource owner denied the request"})
		return
	}
	if g.proc.Subject == "" && s.people != nil {
		// Nobody identified, and people can prove who they are at the
		// claims interaction endpoint: a share with them may well apply.
		s.answerNeedInfo(w, r, g, "the requesting party is not identified", nil)
		return
	}
	writeJSON(w, http.StatusForbidden, umaError{Code: "request_denied", Description: "the resource owner's rules do not grant the requested access"})
}

// answerNeedInfo answers need_info with a rotated ticket and hints. Hints
// default to the claim tokens the AS accepts.
func (s *Server) answerNeedInfo(w http.ResponseWriter, r *http.Request, g *grantState, desc string, hints []policies.RequiredClaim) {
	if g.ticket.ResourceServer == "" {
		// A ticketless request has no ticket to rotate: Keycloak answers so.
		writeJSON(w, http.StatusForbidden, umaError{Code: "access_denied", Description: "not_authorized: " + desc})
		return
	}
	tk, err := s.rotateTicket(r.Context(), g)
	if err != nil {
		s.log.Error("rotating a ticket", errField(err))
		writeError(w, errServer("could not issue a ticket"))
		return
	}
	resp := umaError{Code: "need_info", Description: desc, Ticket: tk, RequiredClaims: hints}
	if s.claimsInteraction != "" {
		resp.RedirectUser = s.claimsInteraction
	}
	if len(resp.RequiredClaims) == 0 && resp.RedirectUser == "" {
		resp.RequiredClaims = []policies.RequiredClaim{{
			ClaimTokenFormat: []string{claimtoken.FormatIDToken, claimtoken.FormatJWT},
			Issuer:           s.trustedIssuers,
		}}
	}
	writeJSON(w, http.StatusForbidden, resp)
}

// rotateTicket saves the process and issues its next ticket, bound to the
// client.
func (s *Server) rotateTicket(ctx context.Context, g *grantState) (string, error) {
	if g.procID == "" {
		g.procID = randomToken(16)
	}
	val, err := json.Marshal(g.proc)
	if err != nil {
		return "", err
	}
	exp := s.now().Add(s.ticketTTL + s.requestInterval)
	if err := s.store.Put(ctx, nsProcess, g.procID, val, exp); err != nil {
		return "", fmt.Errorf("storing a process: %w", err)
	}
	next := g.ticket
	next.Process, next.Client = g.procID, g.client.ID
	return s.sealTicket(next)
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
func (s *Server) issueGrant(w http.ResponseWriter, r *http.Request, g *grantState, granted, previous []RPTPermission, previousJTI string) {
	ctx := r.Context()
	perms := mergePermissions(previous, granted)
	subject := g.proc.Subject
	if subject == "" {
		subject = g.client.ID
	}
	fail := func(what string, err error) {
		s.log.Error(what, errField(err))
		writeError(w, errServer("could not issue the tokens"))
	}
	// The RPT, its refresh token, the index that lets a revoked share
	// revoke them, and the PCT are stored in one commit: all or none.
	rec := rptRecord{ClientID: g.client.ID, Subject: subject, RqPIssuer: g.proc.RqPIssuer, ResourceServer: g.rs, Permissions: perms}
	rpt, jti, rptWrite, err := s.signRPT(ctx, rec)
	if err != nil {
		fail("signing an RPT", err)
		return
	}
	resp := tokenResponse{AccessToken: rpt, TokenType: "Bearer", ExpiresIn: int64(s.rptTTL.Seconds())}
	refresh, refreshWrite, err := s.newToken(tokenRecord{
		Kind: kindRefresh, ClientID: g.client.ID, Subject: subject, RqPIssuer: g.proc.RqPIssuer,
		ResourceServer: g.rs, Permissions: perms, RPT: jti,
	}, s.refreshTTL)
	if err != nil {
		fail("issuing a refresh token", err)
		return
	}
	resp.RefreshToken = refresh
	writes := []store.Write{rptWrite, refreshWrite}
	writes = append(writes, holderWrites(perms, tokenHolder{RPT: jti, Subject: subject, Email: verifiedEmail(g.proc.Claims), ClientID: g.client.ID},
		refresh, s.now().Add(s.refreshTTL))...)
	if (g.pushed || g.proc.KeepClaims) && g.proc.Subject != "" {
		pct, pctWrite, err := s.newToken(tokenRecord{
			Kind: kindPCT, ClientID: g.client.ID, Subject: g.proc.Subject, RqPIssuer: g.proc.RqPIssuer, Claims: g.proc.Claims,
		}, s.pctTTL)
		if err != nil {
			fail("issuing a PCT", err)
			return
		}
		resp.PCT = pct
		writes = append(writes, pctWrite)
	}
	if err := s.store.PutAll(ctx, writes); err != nil {
		fail("storing the tokens of a grant", err)
		return
	}
	if previousJTI != "" {
		upgraded := true
		resp.Upgraded = &upgraded
		if err := s.revokeRPT(ctx, previousJTI); err != nil {
			s.log.Error("revoking an upgraded RPT", errField(err))
		}
	}
	if g.procID != "" {
		_ = s.store.Delete(ctx, nsProcess, g.procID)
	}
	writeJSON(w, http.StatusOK, resp)
}

// mergePermissions adds granted to previous, uniting the scopes of a
// resource present in both.
func mergePermissions(previous, granted []RPTPermission) []RPTPermission {
	out := make([]RPTPermission, 0, len(previous)+len(granted))
	out = append(out, previous...)
	for _, g := range granted {
		merged := false
		for i := range out {
			if out[i].ResourceID == g.ResourceID && out[i].ExpiresAt == g.ExpiresAt {
				for _, sc := range g.ResourceScopes {
					if !slices.Contains(out[i].ResourceScopes, sc) {
						out[i].ResourceScopes = append(slices.Clone(out[i].ResourceScopes), sc)
					}
				}
				merged = true
				break
			}
		}
		if !merged {
			out = append(out, g)
		}
	}
	return out
}

// grantRefreshToken refreshes an RPT without a new assessment (Grant
// section 3.6); scope may narrow its permissions. The refresh token is
// rotated.
func (s *Server) grantRefreshToken(w http.ResponseWriter, r *http.Request, c *registeredClient, form url.Values) {
	ctx := r.Context()
	raw := form.Get("refresh_token")
	if raw == "" {
		writeError(w, errInvalidRequest("refresh_token is required"))
		return
	}
	invalid := &oauthError{Status: http.StatusBadRequest, Code: "invalid_grant", Description: "the refresh token is invalid, expired or revoked"}
	rec, err := s.lookupToken(ctx, raw)
	if err != nil || rec.Kind != kindRefresh || rec.ClientID != c.ID {
		if err != nil && !errors.Is(err, errUnknownToken) {
			s.log.Error("reading a refresh token", errField(err))
		}
		writeError(w, invalid)
		return
	}
	perms := rec.Permissions
	if scope := strings.Fields(form.Get("scope")); len(scope) > 0 {
		var narrowed []RPTPermission
		for _, p := range perms {
			var keep []string
			for _, sc := range p.ResourceScopes {
				if slices.Contains(scope, sc) {
					keep = append(keep, sc)
				}
			}
			if len(keep) > 0 {
				p.ResourceScopes = keep
				narrowed = append(narrowed, p)
			}
		}
		if len(narrowed) == 0 {
			writeError(w, &oauthError{Status: http.StatusBadRequest, Code: "invalid_scope", Description: "the scope exceeds what was granted"})
			return
		}
		perms = narrowed
	}
	// Single use: of two concurrent refreshes one wins.
	if _, err := s.store.Take(ctx, nsTokens, tokenKey(raw)); err != nil {
		writeError(w, invalid)
		return
	}
	now := s.now().Unix()
	var live []RPTPermission
	for _, p := range perms {
		if p.ExpiresAt == 0 || p.ExpiresAt > now {
			live = append(live, p)
		}
	}
	if len(live) == 0 {
		writeError(w, invalid)
		return
	}
	rpt, jti, rptWrite, err := s.signRPT(ctx, rptRecord{ClientID: c.ID, Subject: rec.Subject, RqPIssuer: rec.RqPIssuer, ResourceServer: rec.ResourceServer, Permissions: live})
	if err != nil {
		s.log.Error("signing an RPT", errField(err))
		writeError(w, errServer("could not issue the RPT"))
		return
	}
	until := time.Unix(rec.Expires, 0)
	rec.Permissions, rec.RPT = live, jti
	next, refreshWrite, err := s.newToken(rec, until.Sub(s.now()))
	if err != nil {
		s.log.Error("issuing a refresh token", errField(err))
		writeError(w, errServer("could not issue the refresh token"))
		return
	}
	// The RPT, the next refresh token and their revocation index: one commit.
	writes := []store.Write{rptWrite, refreshWrite}
	if h, ok := s.holderOfRefresh(ctx, live, raw); ok {
		h.RPT = jti
		writes = append(writes, holderWrites(live, h, next, until)...)
	}
	if err := s.store.PutAll(ctx, writes); err != nil {
		s.log.Error("storing refreshed tokens", errField(err))
		writeError(w, errServer("could not issue the RPT"))
		return
	}
	writeJSON(w, http.StatusOK, tokenResponse{AccessToken: rpt, TokenType: "Bearer", ExpiresIn: int64(s.rptTTL.Seconds()), RefreshToken: next})
}
