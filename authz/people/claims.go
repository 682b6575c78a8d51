package people

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-uma/caddy-uma/authz"
	"github.com/caddy-uma/caddy-uma/authz/oauth"
	"github.com/caddy-uma/caddy-uma/authz/secret"
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

// interaction is a claims interaction in progress: the held ticket and
// where to go back.
type interaction struct {
	ClientID    string                  `json:"client_id"`
	RedirectURI string                  `json:"redirect_uri"`
	State       string                  `json:"state,omitempty"`
	HasState    bool                    `json:"has_state,omitempty"`
	Ticket      authz.ClaimsInteraction `json:"ticket"`
	Binding     string                  `json:"binding"`
	Expires     int64                   `json:"exp"`
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

// serveClaims is the claims interaction endpoint (GET): the client's
// request, or the interaction it continues with.
func (s *Site) serveClaims(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if id := q.Get("interaction"); id != "" && q.Get("ticket") == "" {
		s.showInteraction(w, r, id)
		return
	}
	s.startInteraction(w, r, q)
}

// startInteraction checks the client's request, consumes the ticket and
// continues with an interaction bound to the browser.
func (s *Site) startInteraction(w http.ResponseWriter, r *http.Request, q url.Values) {
	ctx := r.Context()
	for _, name := range []string{"client_id", "claims_redirect_uri"} {
		if len(q[name]) > 1 {
			s.renderError(w, http.StatusBadRequest, "This request cannot be accepted", "The request repeats the parameter "+name+".")
			return
		}
	}
	c, ok := s.as.Client(ctx, q.Get("client_id"))
	if !ok {
		s.log.Info("claims interaction refused", zap.String("reason", "unknown client"))
		s.renderError(w, http.StatusBadRequest, "This request cannot be accepted",
			"The application that sent you here is not registered at this authorization server.")
		return
	}
	redirectURI := q.Get("claims_redirect_uri")
	switch {
	case redirectURI != "":
		if !slices.Contains(c.ClaimsRedirectURIs, redirectURI) {
			s.log.Info("claims interaction refused", zap.String("client_id", c.ID), zap.String("reason", "unregistered claims_redirect_uri"))
			s.renderError(w, http.StatusBadRequest, "This request cannot be accepted",
				"The address to send you back to is not registered for the application "+c.ID+".")
			return
		}
	case len(c.ClaimsRedirectURIs) == 1:
		redirectURI = c.ClaimsRedirectURIs[0]
	default:
		s.log.Info("claims interaction refused", zap.String("client_id", c.ID), zap.String("reason", "no claims_redirect_uri"))
		s.renderError(w, http.StatusBadRequest, "This request cannot be accepted",
			"The application "+c.ID+" did not say where to send you back to.")
		return
	}
	ix := &interaction{ClientID: c.ID, RedirectURI: redirectURI}
	if st, ok := q["state"]; ok {
		ix.State, ix.HasState = st[0], true
	}
	back := func(code oauth.Code, desc string) {
		s.claimsRedirect(w, r, ix, url.Values{"error": {string(code)}, "error_description": {desc}})
	}
	if len(q["ticket"]) > 1 || len(q["state"]) > 1 {
		back(oauth.InvalidRequest, "a parameter is repeated")
		return
	}
	raw := q.Get("ticket")
	if raw == "" {
		back(oauth.InvalidRequest, "ticket is required")
		return
	}
	held, err := s.as.StartClaimsInteraction(ctx, c.ID, raw)
	switch {
	case errors.Is(err, authz.ErrTicketInvalid), errors.Is(err, authz.ErrTicketOtherClient), errors.Is(err, authz.ErrTicketUsed):
		back(oauth.InvalidRequest, err.Error())
		return
	case err != nil:
		s.log.Error("consuming a ticket", zap.Error(err))
		back(oauth.ServerError, "the ticket could not be redeemed")
		return
	}
	ix.Ticket = held
	ix.Binding = secret.New(24)
	ix.Expires = s.now().Add(authz.ClaimsInteractionTTL).Unix()
	id := secret.New(24)
	val, err := json.Marshal(ix)
	if err == nil {
		err = s.store.Put(ctx, nsInteraction, secret.Key(id), val, time.Unix(ix.Expires, 0))
	}
	if err != nil {
		s.log.Error("storing a claims interaction", zap.Error(err))
		back(oauth.ServerError, "the claims interaction could not be started")
		return
	}
	http.SetCookie(w, &http.Cookie{
		Name: interactionCookie, Value: ix.Binding, Path: s.base + PathClaims,
		MaxAge: int(authz.ClaimsInteractionTTL.Seconds()), HttpOnly: true, Secure: s.secureCookies, SameSite: http.SameSiteLaxMode,
	})
	s.redirect(w, r, PathClaims+"?"+url.Values{"interaction": {id}}.Encode())
}

// loadInteraction reads an interaction and checks that this browser
// started it. take then consumes it (of two concurrent answers, one wins).
func (s *Site) loadInteraction(r *http.Request, id string, take bool) (*interaction, error) {
	if id == "" || len(id) > 128 {
		return nil, store.ErrNotFound
	}
	val, err := s.store.Get(r.Context(), nsInteraction, secret.Key(id))
	if err != nil {
		return nil, err
	}
	var ix interaction
	if err := json.Unmarshal(val, &ix); err != nil {
		return nil, fmt.Errorf("decoding an interaction: %w", err)
	}
	cookie, _ := r.Cookie(interactionCookie)
	if cookie == nil || !secret.Equal(cookie.Value, ix.Binding) || s.now().Unix() >= ix.Expires {
		return nil, store.ErrNotFound
	}
	if take {
		if _, err := s.store.Take(r.Context(), nsInteraction, secret.Key(id)); err != nil {
			return nil, err
		}
	}
	return &ix, nil
}

// showInteraction asks the logged-in person to share their claims.
func (s *Site) showInteraction(w http.ResponseWriter, r *http.Request, id string) {
	ix, err := s.loadInteraction(r, id, false)
	if err != nil {
		s.interactionGone(w, err)
		return
	}
	sess := s.requirePerson(w, r)
	if sess == nil {
		return
	}
	data := claimsPage{Interaction: id, ClientID: ix.ClientID, Owner: ix.Ticket.Owner, KeepUntil: s.now().Add(s.as.PCTLifetime()),
		Here: s.base + PathClaims + "?" + url.Values{"interaction": {id}}.Encode()}
	for _, rid := range ix.Ticket.ResourceIDs {
		if res, err := s.as.OwnerResource(r.Context(), ix.Ticket.Owner, rid); err == nil {
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

func (s *Site) interactionGone(w http.ResponseWriter, err error) {
	if !errors.Is(err, store.ErrNotFound) {
		s.renderServerError(w, "reading a claims interaction", err)
		return
	}
	s.renderError(w, http.StatusBadRequest, "This request has expired",
		"This sign-in request was already answered, has expired, or was started in another browser. Go back to the application and try again.")
}

// finishInteraction takes the person's answer (POST): it joins their
// claims to the authorization process and sends them back with a new
// ticket, or sends them back with access_denied.
func (s *Site) finishInteraction(w http.ResponseWriter, r *http.Request) {
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
		s.log.Info("the requesting party declined claims gathering", zap.String("client_id", ix.ClientID))
		s.claimsRedirect(w, r, ix, url.Values{"error": {string(oauth.AccessDenied)}, "error_description": {"the requesting party declined"}})
		return
	}
	if _, ok := s.as.Client(ctx, ix.ClientID); !ok {
		s.renderError(w, http.StatusBadRequest, "This request cannot be accepted", "The application is no longer registered.")
		return
	}
	p := sess.Person
	keep := form.Get("remember") == "yes"
	next, err := s.as.FinishClaimsInteraction(ctx, ix.Ticket, authz.RequestingParty{Subject: p.Subject, Issuer: p.Issuer, Claims: p.identityClaims()}, keep)
	if err != nil {
		s.log.Error("finishing a claims interaction", zap.Error(err))
		s.claimsRedirect(w, r, ix, url.Values{"error": {string(oauth.ServerError)}})
		return
	}
	s.claimsRedirect(w, r, ix, url.Values{"ticket": {next}})
}

// claimsRedirect sends the browser back to the client's claims redirect
// URI with params and the state (exactly when the client sent one).
func (s *Site) claimsRedirect(w http.ResponseWriter, r *http.Request, ix *interaction, params url.Values) {
	if ix.HasState {
		params.Set("state", ix.State)
	}
	http.SetCookie(w, &http.Cookie{Name: interactionCookie, Value: "", Path: s.base + PathClaims, MaxAge: -1,
		HttpOnly: true, Secure: s.secureCookies, SameSite: http.SameSiteLaxMode})
	oauth.NoStore(w.Header())
	w.Header().Set("Referrer-Policy", "no-referrer")
	http.Redirect(w, r, authz.AddQuery(ix.RedirectURI, params), http.StatusFound)
}
