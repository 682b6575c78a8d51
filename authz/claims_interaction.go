package authz

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-uma/caddy-uma/store"
)

// The claims interaction endpoint (UMA 2.0 Grant section 3.3.2): a client
// whose grant answered need_info with redirect_user sends the requesting
// party's browser to
//
//	GET {issuer}/claims?client_id=...&ticket=...&claims_redirect_uri=...&state=...
//
// The client and its claims redirect URI are checked first: an unknown
// client, or a claims_redirect_uri that is not registered for it exactly
// (or missing while the client registered several, or none), shows an
// error page and never redirects. From then on errors go back to the
// client as error=... and state. The ticket is consumed on arrival, and the
// browser continues on {issuer}/claims?interaction=<id> (no ticket in the
// address bar any more), bound to it by a cookie. The person logs in if
// they have not, sees what the client will learn about them, may agree to
// have the claims kept (a PCT for this client on its next token request),
// and is sent back with a new ticket and the state, and nothing else. The
// gathered identity claims (sub, iss, name, email, email_verified, groups,
// and the ID token's other claims for an OpenID login) join the
// authorization process, as pushed claims do: the client's next token
// request with the new ticket is decided with them.

// nsInteraction is the Records namespace of claims interactions in
// progress.
const nsInteraction = "interaction"

// interactionCookie binds an interaction to the browser that started it.
const interactionCookie = "uma_claims"

// interactionTTL bounds a claims interaction (logging in included).
const interactionTTL = 15 * time.Minute

// interaction is a claims interaction in progress: the consumed ticket and
// where to go back.
type interaction struct {
	ClientID    string `json:"client_id"`
	RedirectURI string `json:"redirect_uri"`
	State       string `json:"state,omitempty"`
	HasState    bool   `json:"has_state,omitempty"`
	Ticket      ticket `json:"ticket"`
	Binding     string `json:"binding"`
	Expires     int64  `json:"exp"`
}

// claimsPage is the data of the claims page.
type claimsPage struct {
	Interaction string
	ClientID    string
	Owner       string
	Resources   []string
	Claims      []claimLine
	KeepUntil   time.Time
	// Here is the page's own address, to come back to after logging in
	// as someone else.
	Here string
}

// claimLine is one claim shown to the requesting party.
type claimLine struct{ Name, Value string }

// serveClaims is the claims interaction endpoint.
func (s *Server) serveClaims(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		q := r.URL.Query()
		if id := q.Get("interaction"); id != "" && q.Get("ticket") == "" {
			s.showInteraction(w, r, id)
			return
		}
		s.startInteraction(w, r, q)
	case http.MethodPost:
		s.finishInteraction(w, r)
	default:
		w.Header().Set("Allow", "GET, POST")
		s.renderError(w, http.StatusMethodNotAllowed, "Not allowed", "Use GET.")
	}
}

// startInteraction checks the client's request, consumes the ticket and
// continues with an interaction bound to the browser.
func (s *Server) startInteraction(w http.ResponseWriter, r *http.Request, q url.Values) {
	for _, name := range []string{"client_id", "claims_redirect_uri"} {
		if len(q[name]) > 1 {
			s.renderError(w, http.StatusBadRequest, "This request cannot be accepted", "The request repeats the parameter "+name+".")
			return
		}
	}
	c := s.client(r.Context(), q.Get("client_id"))
	if c == nil {
		s.log.Info("claims interaction refused", zap.String("reason", "unknown client"))
		s.renderError(w, http.StatusBadRequest, "This request cannot be accepted",
			"The application that sent you here is not registered at this authorization server.")
		return
	}
	redirectURI := q.Get("claims_redirect_uri")
	switch {
	case redirectURI != "":
		if !slices.Contains(c.ClaimsRedirectURIs, redirectURI) {
			s.log.Info("claims interaction refused", clientField(c.ID), zap.String("reason", "unregistered claims_redirect_uri"))
			s.renderError(w, http.StatusBadRequest, "This request cannot be accepted",
				"The address to send you back to is not registered for the application "+c.ID+".")
			return
		}
	case len(c.ClaimsRedirectURIs) == 1:
		redirectURI = c.ClaimsRedirectURIs[0]
	default:
		s.log.Info("claims interaction refused", clientField(c.ID), zap.String("reason", "no claims_redirect_uri"))
		s.renderError(w, http.StatusBadRequest, "This request cannot be accepted",
			"The application "+c.ID+" did not say where to send you back to.")
		return
	}
	ix := &interaction{ClientID: c.ID, RedirectURI: redirectURI}
	if st, ok := q["state"]; ok {
		ix.State, ix.HasState = st[0], true
	}
	back := func(code, desc string) {
		s.claimsRedirect(w, r, ix, url.Values{"error": {code}, "error_description": {desc}})
	}
	if len(q["ticket"]) > 1 || len(q["state"]) > 1 {
		back("invalid_request", "a parameter is repeated")
		return
	}
	raw := q.Get("ticket")
	if raw == "" {
		back("invalid_request", "ticket is required")
		return
	}
	t, err := s.openTicket(raw)
	if err != nil {
		back("invalid_request", "the ticket is invalid or has expired")
		return
	}
	if t.Client != "" && t.Client != c.ID {
		back("invalid_request", "the ticket belongs to another client")
		return
	}
	if err := s.consumeTicket(r.Context(), t); errors.Is(err, errInvalidTicket) {
		back("invalid_request", "the ticket was already used")
		return
	} else if err != nil {
		s.log.Error("consuming a ticket", errField(err))
		back("server_error", "the ticket could not be redeemed")
		return
	}
	ix.Ticket = t
	ix.Binding = randomToken(24)
	ix.Expires = s.now().Add(interactionTTL).Unix()
	id := randomToken(24)
	val, err := json.Marshal(ix)
	if err == nil {
		err = s.store.Put(r.Context(), nsInteraction, tokenKey(id), val, time.Unix(ix.Expires, 0))
	}
	if err != nil {
		s.log.Error("storing a claims interaction", errField(err))
		back("server_error", "the claims interaction could not be started")
		return
	}
	http.SetCookie(w, &http.Cookie{
		Name: interactionCookie, Value: ix.Binding, Path: s.basePath + PathClaims,
		MaxAge: int(interactionTTL.Seconds()), HttpOnly: true, Secure: s.people.secureCookies, SameSite: http.SameSiteLaxMode,
	})
	s.log.Info("claims interaction started", clientField(c.ID), ownerField(t.Owner))
	s.redirect(w, r, PathClaims+"?"+url.Values{"interaction": {id}}.Encode())
}

// loadInteraction reads an interaction and checks that this browser
// started it. take then consumes it (of two concurrent answers, one wins).
func (s *Server) loadInteraction(r *http.Request, id string, take bool) (*interaction, error) {
	if id == "" || len(id) > 128 {
		return nil, store.ErrNotFound
	}
	val, err := s.store.Get(r.Context(), nsInteraction, tokenKey(id))
	if err != nil {
		return nil, err
	}
	var ix interaction
	if err := json.Unmarshal(val, &ix); err != nil {
		return nil, fmt.Errorf("decoding an interaction: %w", err)
	}
	cookie, _ := r.Cookie(interactionCookie)
	if cookie == nil || subtle.ConstantTimeCompare([]byte(cookie.Value), []byte(ix.Binding)) != 1 || s.now().Unix() >= ix.Expires {
		return nil, store.ErrNotFound
	}
	if take {
		if _, err := s.store.Take(r.Context(), nsInteraction, tokenKey(id)); err != nil {
			return nil, err
		}
	}
	return &ix, nil
}

// showInteraction asks the logged-in person to share their claims.
func (s *Server) showInteraction(w http.ResponseWriter, r *http.Request, id string) {
	ix, err := s.loadInteraction(r, id, false)
	if err != nil {
		s.interactionGone(w, err)
		return
	}
	sess := s.requirePerson(w, r)
	if sess == nil {
		return
	}
	data := claimsPage{Interaction: id, ClientID: ix.ClientID, Owner: ix.Ticket.Owner, KeepUntil: s.now().Add(s.pctTTL),
		Here: s.basePath + PathClaims + "?" + url.Values{"interaction": {id}}.Encode()}
	for _, p := range ix.Ticket.Permissions {
		if res, err := s.store.GetResource(r.Context(), p.ResourceID); err == nil {
			name := res.Name
			if name == "" {
				name = res.ID
			}
			data.Resources = append(data.Resources, name)
		}
	}
	p := sess.Person
	vouch := p.Issuer
	if p.Method == "password" {
		vouch = "this authorization server (a local account)"
	}
	data.Claims = append(data.Claims, claimLine{"Identifier", p.Subject}, claimLine{"Vouched for by", vouch})
	if p.Name != "" {
		data.Claims = append(data.Claims, claimLine{"Name", p.Name})
	}
	if p.Email != "" {
		data.Claims = append(data.Claims, claimLine{"E-mail address", p.Email})
	}
	if len(p.Groups) > 0 {
		data.Claims = append(data.Claims, claimLine{"Groups", strings.Join(p.Groups, ", ")})
	}
	s.renderPage(w, http.StatusOK, "claims.html", page{
		Title: ix.ClientID + " asks who you are", CSRF: sess.CSRF, Person: p, Data: data,
	}, origin(ix.RedirectURI))
}

func (s *Server) interactionGone(w http.ResponseWriter, err error) {
	if !errors.Is(err, store.ErrNotFound) {
		s.renderServerError(w, "reading a claims interaction", err)
		return
	}
	s.renderError(w, http.StatusBadRequest, "This request has expired",
		"This sign-in request was already answered, has expired, or was started in another browser. Go back to the application and try again.")
}

// finishInteraction takes the person's answer: it joins their claims to
// the authorization process and sends them back with a new ticket, or
// sends them back with access_denied.
func (s *Server) finishInteraction(w http.ResponseWriter, r *http.Request) {
	sess := s.requirePerson(w, r)
	if sess == nil {
		return
	}
	form, ok := s.readPageForm(w, r, sess)
	if !ok {
		return
	}
	ix, err := s.loadInteraction(r, form.Get("interaction"), true)
	if err != nil {
		s.interactionGone(w, err)
		return
	}
	ctx := r.Context()
	if form.Get("decision") != "share" {
		s.log.Info("the requesting party declined claims gathering", clientField(ix.ClientID))
		s.claimsRedirect(w, r, ix, url.Values{"error": {"access_denied"}, "error_description": {"the requesting party declined"}})
		return
	}
	c := s.client(ctx, ix.ClientID)
	if c == nil {
		s.renderError(w, http.StatusBadRequest, "This request cannot be accepted", "The application is no longer registered.")
		return
	}
	g := &grantState{client: c, ticket: ix.Ticket, proc: process{ClientID: c.ID}, procID: ix.Ticket.Process}
	if g.procID != "" {
		if val, err := s.store.Get(ctx, nsProcess, g.procID); err == nil {
			if err := json.Unmarshal(val, &g.proc); err != nil {
				s.renderServerError(w, "decoding a process", err)
				return
			}
		} else if !errors.Is(err, store.ErrNotFound) {
			s.renderServerError(w, "reading a process", err)
			return
		}
	}
	p := sess.Person
	if g.proc.Subject != "" && (g.proc.Subject != p.Subject || g.proc.RqPIssuer != p.Issuer) {
		g.proc.Claims = nil // another requesting party: start over
	}
	g.proc.ClientID = c.ID
	g.proc.Subject, g.proc.RqPIssuer = p.Subject, p.Issuer
	g.proc.Claims = mergeClaims(g.proc.Claims, p.identityClaims())
	g.proc.KeepClaims = form.Get("remember") == "yes"
	next, err := s.rotateTicket(ctx, g)
	if err != nil {
		s.log.Error("rotating a ticket", errField(err))
		s.claimsRedirect(w, r, ix, url.Values{"error": {"server_error"}})
		return
	}
	s.log.Info("claims gathered interactively", clientField(c.ID), ownerField(ix.Ticket.Owner),
		zap.String("requesting_party", p.Subject), zap.Bool("keep_claims", g.proc.KeepClaims))
	s.claimsRedirect(w, r, ix, url.Values{"ticket": {next}})
}

// claimsRedirect sends the browser back to the client's claims redirect
// URI with params and the state (exactly when the client sent one).
func (s *Server) claimsRedirect(w http.ResponseWriter, r *http.Request, ix *interaction, params url.Values) {
	if ix.HasState {
		params.Set("state", ix.State)
	}
	http.SetCookie(w, &http.Cookie{Name: interactionCookie, Value: "", Path: s.basePath + PathClaims, MaxAge: -1,
		HttpOnly: true, Secure: s.people.secureCookies, SameSite: http.SameSiteLaxMode})
	noStore(w.Header())
	w.Header().Set("Referrer-Policy", "no-referrer")
	http.Redirect(w, r, addQuery(ix.RedirectURI, params), http.StatusFound)
}
