package authz

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/caddy-uma/caddy-uma/authz/oauth"
	"github.com/caddy-uma/caddy-uma/authz/secret"
	"github.com/caddy-uma/caddy-uma/authz/urlcheck"
	"github.com/caddy-uma/caddy-uma/store"
)

// Dynamic client registration (RFC 7591) at {issuer}/register. It is off
// unless the operator configures an initial access token, which every
// registration request must carry as a Bearer token. A registered client
// is a requesting party's client (never a resource server): it may use the
// UMA grant and refresh tokens, and registers its redirect_uris and UMA
// claims_redirect_uris, each absolute, without fragment, and https except
// on loopback hosts. The AS generates a 256-bit secret (unless
// token_endpoint_auth_method is "none") and stores only its SHA-256.
//
// Dynamically registered clients are kept in the store (namespace
// "client") and keep working if registration is turned off later.

// nsClient is the Records namespace of dynamically registered clients.
const nsClient = "client"

// Limits on registration metadata.
const (
	maxRegisteredURIs = 20
	maxClientNameLen  = 256
)

// dynamicClient is the stored form of a registered client.
type dynamicClient struct {
	ID                 string   `json:"client_id"`
	SecretSum          string   `json:"secret_sha256,omitempty"`
	Name               string   `json:"client_name,omitempty"`
	AuthMethod         string   `json:"token_endpoint_auth_method"`
	Scopes             []string `json:"scopes,omitempty"`
	RedirectURIs       []string `json:"redirect_uris,omitempty"`
	ClaimsRedirectURIs []string `json:"claims_redirect_uris,omitempty"`
	GrantTypes         []string `json:"grant_types"`
	ResponseTypes      []string `json:"response_types"`
	IssuedAt           int64    `json:"client_id_issued_at"`
}

// ClientMetadata is a registration request (RFC 7591 section 2, and UMA's
// claims_redirect_uris): what a client registers at {issuer}/register, and
// what the operator registers through RegisterClient.
type ClientMetadata struct {
	RedirectURIs            []string `json:"redirect_uris"`
	ClaimsRedirectURIs      []string `json:"claims_redirect_uris"`
	TokenEndpointAuthMethod string   `json:"token_endpoint_auth_method"`
	GrantTypes              []string `json:"grant_types"`
	ResponseTypes           []string `json:"response_types"`
	ClientName              string   `json:"client_name"`
	Scope                   string   `json:"scope"`
}

// registrationResponse is the 201 answer (RFC 7591 section 3.2.1).
type registrationResponse struct {
	ClientID                string   `json:"client_id"`
	ClientSecret            string   `json:"client_secret,omitempty"`
	ClientIDIssuedAt        int64    `json:"client_id_issued_at"`
	ClientSecretExpiresAt   *int64   `json:"client_secret_expires_at,omitempty"`
	RedirectURIs            []string `json:"redirect_uris,omitempty"`
	ClaimsRedirectURIs      []string `json:"claims_redirect_uris,omitempty"`
	TokenEndpointAuthMethod string   `json:"token_endpoint_auth_method"`
	GrantTypes              []string `json:"grant_types"`
	ResponseTypes           []string `json:"response_types"`
	ClientName              string   `json:"client_name,omitempty"`
	Scope                   string   `json:"scope,omitempty"`
}

// loadDynamicClient reads a dynamically registered client from the store.
func (s *Server) loadDynamicClient(ctx context.Context, id string) (*registeredClient, error) {
	val, err := s.store.Get(ctx, nsClient, id)
	if err != nil {
		return nil, err
	}
	var dc dynamicClient
	if err := json.Unmarshal(val, &dc); err != nil {
		return nil, fmt.Errorf("decoding registered client %q: %w", id, err)
	}
	rc := &registeredClient{Client: Client{
		ID: dc.ID, Scopes: dc.Scopes, RedirectURIs: dc.RedirectURIs, ClaimsRedirectURIs: dc.ClaimsRedirectURIs,
	}}
	if dc.SecretSum != "" {
		sum, err := hex.DecodeString(dc.SecretSum)
		if err != nil || len(sum) != sha256.Size {
			return nil, fmt.Errorf("registered client %q has a malformed secret sum", dc.ID)
		}
		// The secret itself is not kept: checkSecret compares SHA-256 sums,
		// and a non-empty Secret makes the client confidential.
		copy(rc.plainSum[:], sum)
		rc.Secret = "sha256:" + dc.SecretSum
	}
	return rc, nil
}

// serveRegister is the client registration endpoint.
func (s *Server) serveRegister(w http.ResponseWriter, r *http.Request) error {
	tok, _ := oauth.BearerToken(r)
	if !secret.Equal(tok, s.registration.InitialAccessToken) {
		return oauth.New(oauth.InvalidToken).
			WithDescription("registration requires the initial access token as a Bearer token").
			WithChallenge(oauth.BearerChallenge(s.issuer, oauth.InvalidToken, "", ""))
	}
	var md ClientMetadata
	if err := oauth.ReadJSON(w, r, &md); err != nil {
		return err
	}
	dc, clientSecret, err := s.registerClient(r.Context(), md)
	if err != nil {
		return err
	}
	resp := registrationResponse{
		ClientID: dc.ID, ClientSecret: clientSecret, ClientIDIssuedAt: dc.IssuedAt,
		RedirectURIs: dc.RedirectURIs, ClaimsRedirectURIs: dc.ClaimsRedirectURIs,
		TokenEndpointAuthMethod: dc.AuthMethod, GrantTypes: dc.GrantTypes, ResponseTypes: dc.ResponseTypes,
		ClientName: dc.Name, Scope: strings.Join(dc.Scopes, " "),
	}
	if clientSecret != "" {
		never := int64(0)
		resp.ClientSecretExpiresAt = &never
	}
	oauth.WriteJSON(w, http.StatusCreated, resp)
	return nil
}

// registerClient checks md and stores the client it describes, with a new
// id and (unless it is public) a new secret, returned once.
func (s *Server) registerClient(ctx context.Context, md ClientMetadata) (dynamicClient, string, error) {
	dc, err := checkClientMetadata(md)
	if err != nil {
		return dc, "", err
	}
	dc.IssuedAt = s.now().Unix()
	var clientSecret string
	if dc.AuthMethod != "none" {
		clientSecret = secret.New(32)
		sum := sha256.Sum256([]byte(clientSecret))
		dc.SecretSum = hex.EncodeToString(sum[:])
	}
	for attempt := 0; ; attempt++ {
		dc.ID = "dyn-" + secret.New(16)
		if _, static := s.clients[dc.ID]; static {
			continue
		}
		val, err := json.Marshal(dc)
		if err != nil {
			return dc, "", oauth.ErrServer("could not register the client", err)
		}
		err = s.store.Insert(ctx, nsClient, dc.ID, val, time.Time{})
		if errors.Is(err, store.ErrExists) && attempt < 3 {
			continue
		}
		if err != nil {
			return dc, "", oauth.ErrServer("could not register the client", err)
		}
		break
	}
	s.log.Info("client registered", clientField(dc.ID))
	return dc, clientSecret, nil
}

// invalidMetadata is an RFC 7591 section 3.2.2 invalid_client_metadata.
func invalidMetadata(desc string) error {
	return oauth.New(oauth.InvalidClientMetadata).WithDescription(desc)
}

// checkClientMetadata validates a registration request.
func checkClientMetadata(md ClientMetadata) (dynamicClient, error) {
	dc := dynamicClient{Name: md.ClientName, AuthMethod: md.TokenEndpointAuthMethod}
	if len(md.RedirectURIs) > maxRegisteredURIs || len(md.ClaimsRedirectURIs) > maxRegisteredURIs {
		return dc, invalidMetadata("too many redirect URIs")
	}
	for _, m := range []struct {
		name string
		uris []string
	}{{"redirect_uris", md.RedirectURIs}, {"claims_redirect_uris", md.ClaimsRedirectURIs}} {
		for _, u := range m.uris {
			if err := checkRedirectURI(u); err != nil {
				return dc, oauth.New(oauth.InvalidRedirectURI).WithDescription(m.name + ": " + err.Error())
			}
		}
	}
	dc.RedirectURIs = slices.Compact(slices.Clone(md.RedirectURIs))
	dc.ClaimsRedirectURIs = slices.Compact(slices.Clone(md.ClaimsRedirectURIs))
	switch dc.AuthMethod {
	case "":
		dc.AuthMethod = "client_secret_basic"
	case "client_secret_basic", "client_secret_post", "none":
	default:
		return dc, invalidMetadata("token_endpoint_auth_method must be client_secret_basic, client_secret_post or none")
	}
	dc.GrantTypes = md.GrantTypes
	if len(dc.GrantTypes) == 0 {
		dc.GrantTypes = []string{GrantTypeUMATicket, GrantTypeRefreshToken}
	}
	for _, g := range dc.GrantTypes {
		if g != GrantTypeUMATicket && g != GrantTypeRefreshToken {
			return dc, invalidMetadata("grant_types: a registered client may use only " + GrantTypeUMATicket + " and refresh_token")
		}
	}
	dc.ResponseTypes = md.ResponseTypes
	if dc.ResponseTypes == nil {
		dc.ResponseTypes = []string{}
	}
	if len(dc.ResponseTypes) > 0 {
		return dc, invalidMetadata("response_types: a registered client does not use the authorization endpoint")
	}
	if len(md.ClientName) > maxClientNameLen {
		return dc, invalidMetadata("client_name is too long")
	}
	for _, sc := range strings.Fields(md.Scope) {
		if !oauth.ValidScope(sc) || sc == ScopeProtection {
			return dc, invalidMetadata("scope: " + oauth.Quote(sc) + " cannot be registered")
		}
		if !slices.Contains(dc.Scopes, sc) {
			dc.Scopes = append(dc.Scopes, sc)
		}
	}
	return dc, nil
}

// checkRedirectURI checks a registered redirect URI: the rule of
// urlcheck.RedirectURI, and at most maxURILen bytes.
func checkRedirectURI(u string) error {
	if err := urlcheck.RedirectURI(u); err != nil {
		return fmt.Errorf("redirect URI %q %w", u, err)
	}
	if len(u) > maxURILen {
		return fmt.Errorf("redirect URI %q is too long", u)
	}
	return nil
}
