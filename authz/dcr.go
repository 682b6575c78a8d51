package authz

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

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

// clientMetadata is a registration request (RFC 7591 section 2, and UMA's
// claims_redirect_uris).
type clientMetadata struct {
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

// client returns the client with id: a configured one, or one registered
// dynamically. nil means none.
func (s *Server) client(ctx context.Context, id string) *registeredClient {
	if id == "" || len(id) > 256 {
		return nil
	}
	if c, ok := s.clients[id]; ok {
		return c
	}
	if v, ok := s.dynamicClients.Load(id); ok {
		return v.(*registeredClient)
	}
	val, err := s.store.Get(ctx, nsClient, id)
	if err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			s.log.Error("reading a registered client", errField(err))
		}
		return nil
	}
	var dc dynamicClient
	if err := json.Unmarshal(val, &dc); err != nil {
		s.log.Error("decoding a registered client", errField(err))
		return nil
	}
	rc := &registeredClient{Client: Client{
		ID: dc.ID, Scopes: dc.Scopes, RedirectURIs: dc.RedirectURIs, ClaimsRedirectURIs: dc.ClaimsRedirectURIs,
	}}
	if dc.SecretSum != "" {
		sum, err := hex.DecodeString(dc.SecretSum)
		if err != nil || len(sum) != sha256.Size {
			s.log.Error("a registered client has a malformed secret sum", clientField(dc.ID))
			return nil
		}
		// The secret itself is not kept: checkSecret compares SHA-256 sums,
		// and a non-empty Secret makes the client confidential.
		copy(rc.plainSum[:], sum)
		rc.Secret = "sha256:" + dc.SecretSum
	}
	actual, _ := s.dynamicClients.LoadOrStore(id, rc)
	return actual.(*registeredClient)
}

// registrationError is an RFC 7591 section 3.2.2 error.
func registrationError(code, desc string) error {
	return &oauthError{Status: http.StatusBadRequest, Code: code, Description: desc}
}

// serveRegister is the client registration endpoint.
func (s *Server) serveRegister(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		writeError(w, errMethod(http.MethodPost))
		return
	}
	tok, _ := bearerToken(r)
	given := sha256.Sum256([]byte(tok))
	want := sha256.Sum256([]byte(s.registration.InitialAccessToken))
	if tok == "" || subtle.ConstantTimeCompare(given[:], want[:]) != 1 {
		writeError(w, &oauthError{
			Status: http.StatusUnauthorized, Code: "invalid_token",
			Description: "registration requires the initial access token as a Bearer token",
			Challenge:   "Bearer realm=" + quote(s.issuer) + `, error="invalid_token"`,
		})
		return
	}
	var md clientMetadata
	if err := readJSON(w, r, &md); err != nil {
		writeError(w, err)
		return
	}
	dc, err := checkClientMetadata(md)
	if err != nil {
		writeError(w, err)
		return
	}
	dc.IssuedAt = s.now().Unix()
	var secret string
	if dc.AuthMethod != "none" {
		secret = randomToken(32)
		sum := sha256.Sum256([]byte(secret))
		dc.SecretSum = hex.EncodeToString(sum[:])
	}
	for attempt := 0; ; attempt++ {
		dc.ID = "dyn-" + randomToken(16)
		if _, static := s.clients[dc.ID]; static {
			continue
		}
		val, err := json.Marshal(dc)
		if err != nil {
			writeError(w, errServer("could not register the client"))
			return
		}
		err = s.store.Insert(r.Context(), nsClient, dc.ID, val, time.Time{})
		if errors.Is(err, store.ErrExists) && attempt < 3 {
			continue
		}
		if err != nil {
			s.log.Error("registering a client", errField(err))
			writeError(w, errServer("could not register the client"))
			return
		}
		break
	}
	s.log.Info("client registered", clientField(dc.ID))
	resp := registrationResponse{
		ClientID: dc.ID, ClientSecret: secret, ClientIDIssuedAt: dc.IssuedAt,
		RedirectURIs: dc.RedirectURIs, ClaimsRedirectURIs: dc.ClaimsRedirectURIs,
		TokenEndpointAuthMethod: dc.AuthMethod, GrantTypes: dc.GrantTypes, ResponseTypes: dc.ResponseTypes,
		ClientName: dc.Name, Scope: strings.Join(dc.Scopes, " "),
	}
	if secret != "" {
		never := int64(0)
		resp.ClientSecretExpiresAt = &never
	}
	writeJSON(w, http.StatusCreated, resp)
}

// checkClientMetadata validates a registration request.
func checkClientMetadata(md clientMetadata) (dynamicClient, error) {
	dc := dynamicClient{Name: md.ClientName, AuthMethod: md.TokenEndpointAuthMethod}
	if len(md.RedirectURIs) > maxRegisteredURIs || len(md.ClaimsRedirectURIs) > maxRegisteredURIs {
		return dc, registrationError("invalid_client_metadata", "too many redirect URIs")
	}
	for _, u := range md.RedirectURIs {
		if err := validateRedirectURI(u); err != nil || len(u) > maxURILen {
			return dc, registrationError("invalid_redirect_uri", "redirect_uris: "+errText(err, u))
		}
	}
	for _, u := range md.ClaimsRedirectURIs {
		if err := validateRedirectURI(u); err != nil || len(u) > maxURILen {
			return dc, registrationError("invalid_redirect_uri", "claims_redirect_uris: "+errText(err, u))
		}
	}
	dc.RedirectURIs = slices.Compact(slices.Clone(md.RedirectURIs))
	dc.ClaimsRedirectURIs = slices.Compact(slices.Clone(md.ClaimsRedirectURIs))
	switch dc.AuthMethod {
	case "":
		dc.AuthMethod = "client_secret_basic"
	case "client_secret_basic", "client_secret_post", "none":
	default:
		return dc, registrationError("invalid_client_metadata", "token_endpoint_auth_method must be client_secret_basic, client_secret_post or none")
	}
	dc.GrantTypes = md.GrantTypes
	if len(dc.GrantTypes) == 0 {
		dc.GrantTypes = []string{GrantTypeUMATicket, "refresh_token"}
	}
	for _, g := range dc.GrantTypes {
		if g != GrantTypeUMATicket && g != "refresh_token" {
			return dc, registrationError("invalid_client_metadata", "grant_types: a registered client may use only "+GrantTypeUMATicket+" and refresh_token")
		}
	}
	dc.ResponseTypes = md.ResponseTypes
	if dc.ResponseTypes == nil {
		dc.ResponseTypes = []string{}
	}
	if len(dc.ResponseTypes) > 0 {
		return dc, registrationError("invalid_client_metadata", "response_types: a registered client does not use the authorization endpoint")
	}
	if len(md.ClientName) > maxClientNameLen {
		return dc, registrationError("invalid_client_metadata", "client_name is too long")
	}
	for _, sc := range strings.Fields(md.Scope) {
		if err := validateScope(sc); err != nil || sc == ScopeProtection {
			return dc, registrationError("invalid_client_metadata", "scope: "+quote(sc)+" cannot be registered")
		}
		if !slices.Contains(dc.Scopes, sc) {
			dc.Scopes = append(dc.Scopes, sc)
		}
	}
	return dc, nil
}

func errText(err error, u string) string {
	if err != nil {
		return err.Error()
	}
	return "redirect URI " + quote(u) + " is too long"
}
