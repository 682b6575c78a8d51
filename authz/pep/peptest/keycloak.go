// Package peptest holds test fixtures for enforcement points: an
// authorization server that answers as Keycloak does, and the malleated
// copies of a JWS that a lenient parser would take for the original.
//
//	kc := peptest.NewKeycloak(t, "rs-api", "rs-secret")
//	rem, _ := pep.NewRemote(pep.RemoteConfig{Issuer: kc.Issuer(), ClientID: "rs-api", ClientSecret: "rs-secret"})
//	// ... a request gets a 401 with a ticket; the client redeems it:
//	rpt := kc.RPTForTicket(t, ticket, "bob-id", "app")
//
// The Keycloak fixture follows Keycloak's own code where an enforcement
// point sees it: the realm's paths, RS256 RPTs shaped like Keycloak's
// access tokens (authorization.permissions with rsid, rsname and scopes;
// azp, typ "Bearer", a single-string aud), resource descriptions with the
// owner and the scopes as objects, the permission endpoint's
// invalid_resource_id, introspection that authenticates its caller as a
// client (a Bearer PAT is refused), and RPT introspection as
// RPTIntrospectionProvider writes it: the token's jti, exp, iat, nbf, aud,
// typ and acr and its permissions, but no sub, azp, iss, client_id or
// scope. The token endpoint refuses the scope uma_protection (Keycloak makes
// it a role), as Keycloak may.
package peptest

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
)

// Realm is the realm of the Keycloak fixture: its issuer is
// <server URL>/realms/Realm.
const Realm = "test"

// Permission is a permission of a Keycloak RPT.
type Permission struct {
	ResourceID string
	Scopes     []string
}

// Keycloak is an authorization server on httptest that answers as Keycloak
// does. Its methods are safe for concurrent use.
type Keycloak struct {
	srv      *httptest.Server
	issuer   string
	clientID string
	secret   string
	key      *rsa.PrivateKey
	kid      string
	now      func() time.Time

	mu        sync.Mutex
	resources map[string]resource
	tickets   map[string][]Permission
	revoked   map[string]bool // jti
	frozen    chan struct{}   // closed by Thaw; nil when not frozen
	nextID    int

	bearerIntrospections, basicIntrospections, scopeRefusals atomic.Int64
	frozenCalls                                              atomic.Int64
}

type resource struct {
	ID, Name, Type, Owner string
	Scopes                []string
}

// NewKeycloak starts a Keycloak fixture with one confidential client, the
// resource server clientID with secret. It is closed when the test ends.
func NewKeycloak(t testing.TB, clientID, secret string) *Keycloak {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	k := &Keycloak{
		clientID: clientID, secret: secret, key: key, kid: randomID(), now: time.Now,
		resources: map[string]resource{}, tickets: map[string][]Permission{}, revoked: map[string]bool{},
	}
	k.srv = httptest.NewServer(http.HandlerFunc(k.serve))
	k.issuer = k.srv.URL + "/realms/" + Realm
	t.Cleanup(func() {
		k.Thaw()
		k.srv.Close()
	})
	return k
}

// Issuer returns the realm's issuer URL.
func (k *Keycloak) Issuer() string { return k.issuer }

// SetClock makes the fixture read the time from now (iat, exp and
// introspection's view of expiry).
func (k *Keycloak) SetClock(now func() time.Time) {
	k.mu.Lock()
	k.now = now
	k.mu.Unlock()
}

// Freeze makes the server hold every request without answering, as a
// stopped process does, until Thaw or until the caller gives up.
func (k *Keycloak) Freeze() {
	k.mu.Lock()
	if k.frozen == nil {
		k.frozen = make(chan struct{})
	}
	k.mu.Unlock()
}

// Thaw answers again, held requests included.
func (k *Keycloak) Thaw() {
	k.mu.Lock()
	if k.frozen != nil {
		close(k.frozen)
		k.frozen = nil
	}
	k.mu.Unlock()
}

// FrozenCalls counts the requests that arrived while frozen.
func (k *Keycloak) FrozenCalls() int { return int(k.frozenCalls.Load()) }

// Introspections counts introspection requests authenticated with a
// Bearer token (which Keycloak refuses) and with client credentials.
func (k *Keycloak) Introspections() (bearer, basic int) {
	return int(k.bearerIntrospections.Load()), int(k.basicIntrospections.Load())
}

// ScopeRefusals counts token requests refused for their scope.
func (k *Keycloak) ScopeRefusals() int { return int(k.scopeRefusals.Load()) }

// RPTForTicket redeems a permission ticket as Keycloak's UMA grant does
// when every requested permission is granted: an RPT for the requesting
// party sub, issued to the client azp, with the ticket's permissions.
func (k *Keycloak) RPTForTicket(t testing.TB, ticket, sub, azp string) string {
	t.Helper()
	k.mu.Lock()
	perms, ok := k.tickets[ticket]
	delete(k.tickets, ticket)
	k.mu.Unlock()
	if !ok {
		t.Fatalf("no ticket %q", ticket)
	}
	return k.RPT(t, sub, azp, k.clientID, perms...)
}

// RPT signs an RPT as Keycloak shapes one: for the requesting party sub,
// issued to the client azp, with audience aud, granting perms.
func (k *Keycloak) RPT(t testing.TB, sub, azp, aud string, perms ...Permission) string {
	t.Helper()
	k.mu.Lock()
	now := k.now()
	type kcPermission struct {
		Scopes []string `json:"scopes,omitempty"`
		RSID   string   `json:"rsid"`
		RSName string   `json:"rsname"`
	}
	var kp []kcPermission
	for _, p := range perms {
		kp = append(kp, kcPermission{Scopes: p.Scopes, RSID: p.ResourceID, RSName: k.resources[p.ResourceID].Name})
	}
	k.mu.Unlock()
	claims := map[string]any{
		"exp": now.Add(5 * time.Minute).Unix(), "iat": now.Unix(), "jti": randomID(),
		"iss": k.issuer, "aud": aud, "sub": sub, "typ": "Bearer", "azp": azp,
		"session_state": randomID(), "acr": "1", "allowed-origins": []string{},
		"realm_access":  map[string]any{"roles": []string{"offline_access", "uma_authorization"}},
		"authorization": map[string]any{"permissions": kp},
		"scope":         "email profile", "sid": randomID(), "email_verified": true,
		"preferred_username": "bob",
	}
	tok, err := k.sign(claims)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// Revoke makes introspection answer that the RPT is not active, as after
// a logout.
func (k *Keycloak) Revoke(t testing.TB, rpt string) {
	t.Helper()
	c, err := k.verify(rpt)
	if err != nil {
		t.Fatal(err)
	}
	k.mu.Lock()
	k.revoked[c["jti"].(string)] = true
	k.mu.Unlock()
}

// sign signs claims with the realm key, as a JWT.
func (k *Keycloak) sign(claims map[string]any) (string, error) {
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	hdr := jws.NewHeaders()
	if err := hdr.Set(jws.KeyIDKey, k.kid); err != nil {
		return "", err
	}
	if err := hdr.Set(jws.TypeKey, "JWT"); err != nil {
		return "", err
	}
	out, err := jws.Sign(payload, jws.WithKey(jwa.RS256(), k.key, jws.WithProtectedHeaders(hdr)))
	return string(out), err
}

// verify checks a token's signature with the realm key and returns its
// claims.
func (k *Keycloak) verify(token string) (map[string]any, error) {
	payload, err := jws.Verify([]byte(token), jws.WithKey(jwa.RS256(), k.key.Public()))
	if err != nil {
		return nil, err
	}
	var c map[string]any
	if err := json.Unmarshal(payload, &c); err != nil {
		return nil, err
	}
	return c, nil
}

func randomID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (k *Keycloak) serve(w http.ResponseWriter, r *http.Request) {
	k.mu.Lock()
	frozen := k.frozen
	k.mu.Unlock()
	if frozen != nil {
		k.frozenCalls.Add(1)
		select {
		case <-frozen:
		case <-r.Context().Done():
			return
		}
	}
	base := "/realms/" + Realm
	path, ok := strings.CutPrefix(r.URL.Path, base)
	if !ok {
		http.NotFound(w, r)
		return
	}
	oidc := "/protocol/openid-connect"
	protection := "/authz/protection"
	switch {
	case path == "/.well-known/uma2-configuration" && r.Method == http.MethodGet:
		writeJSON(w, http.StatusOK, map[string]any{
			"issuer":                         k.issuer,
			"authorization_endpoint":         k.issuer + oidc + "/auth",
			"token_endpoint":                 k.issuer + oidc + "/token",
			"introspection_endpoint":         k.issuer + oidc + "/token/introspect",
			"end_session_endpoint":           k.issuer + oidc + "/logout",
			"jwks_uri":                       k.issuer + oidc + "/certs",
			"grant_types_supported":          []string{"authorization_code", "client_credentials", "urn:ietf:params:oauth:grant-type:uma-ticket"},
			"response_types_supported":       []string{"code"},
			"resource_registration_endpoint": k.issuer + protection + "/resource_set",
			"permission_endpoint":            k.issuer + protection + "/permission",
			"policy_endpoint":                k.issuer + protection + "/uma-policy",
		})
	case path == oidc+"/certs" && r.Method == http.MethodGet:
		pub, err := jwk.Import(k.key.Public())
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		_ = pub.Set(jwk.KeyIDKey, k.kid)
		_ = pub.Set(jwk.AlgorithmKey, jwa.RS256())
		_ = pub.Set(jwk.KeyUsageKey, "sig")
		set := jwk.NewSet()
		_ = set.AddKey(pub)
		writeJSON(w, http.StatusOK, set)
	case path == oidc+"/token" && r.Method == http.MethodPost:
		k.token(w, r)
	case path == oidc+"/token/introspect" && r.Method == http.MethodPost:
		k.introspect(w, r)
	case path == protection+"/permission" && r.Method == http.MethodPost:
		if !k.pat(w, r) {
			return
		}
		k.permission(w, r)
	case strings.HasPrefix(path, protection+"/resource_set"):
		if !k.pat(w, r) {
			return
		}
		k.resourceSet(w, r, strings.Trim(strings.TrimPrefix(path, protection+"/resource_set"), "/"))
	default:
		http.NotFound(w, r)
	}
}

// pat is the PAT of the resource server: a signed access token, as
// Keycloak's are; any token of this realm is taken.
func (k *Keycloak) pat(w http.ResponseWriter, r *http.Request) bool {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if ok {
		if _, err := k.verify(tok); err == nil {
			return true
		}
	}
	writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_token"})
	return false
}

func (k *Keycloak) client(r *http.Request) bool {
	id, secret, ok := r.BasicAuth()
	return ok && id == k.clientID && secret == k.secret
}

func (k *Keycloak) token(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_request"})
		return
	}
	if !k.client(r) {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "unauthorized_client", "error_description": "Invalid client or Invalid client credentials"})
		return
	}
	if r.PostForm.Get("grant_type") != "client_credentials" {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "unsupported_grant_type"})
		return
	}
	if r.PostForm.Get("scope") != "" {
		k.scopeRefusals.Add(1)
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_scope", "error_description": "Invalid scopes: " + r.PostForm.Get("scope")})
		return
	}
	k.mu.Lock()
	now := k.now()
	k.mu.Unlock()
	pat, err := k.sign(map[string]any{
		"exp": now.Add(5 * time.Minute).Unix(), "iat": now.Unix(), "jti": randomID(), "iss": k.issuer,
		"sub": "service-account-" + k.clientID, "typ": "Bearer", "azp": k.clientID,
		"resource_access": map[string]any{k.clientID: map[string]any{"roles": []string{"uma_protection"}}},
	})
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "server_error"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"access_token": pat, "expires_in": 300, "refresh_expires_in": 0, "token_type": "Bearer",
		"not-before-policy": 0, "scope": "email profile",
	})
}

// introspect answers as Keycloak's introspection endpoint: the caller
// authenticates as a client; with token_type_hint=requesting_party_token,
// the answer is RPTIntrospectionProvider's.
func (k *Keycloak) introspect(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.Header.Get("Authorization"), "Bearer ") {
		k.bearerIntrospections.Add(1)
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_request", "error_description": "Authentication failed."})
		return
	}
	if !k.client(r) {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_request", "error_description": "Authentication failed."})
		return
	}
	k.basicIntrospections.Add(1)
	if err := r.ParseForm(); err != nil || r.PostForm.Get("token") == "" {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_request", "error_description": "Token not provided."})
		return
	}
	if r.PostForm.Get("token_type_hint") != "requesting_party_token" {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_request", "error_description": "Unsupported token type [" + r.PostForm.Get("token_type_hint") + "]."})
		return
	}
	c, err := k.verify(r.PostForm.Get("token"))
	k.mu.Lock()
	now := k.now()
	active := err == nil
	if active {
		jti, _ := c["jti"].(string)
		exp, _ := c["exp"].(float64)
		active = !k.revoked[jti] && now.Unix() <= int64(exp)
	}
	k.mu.Unlock()
	if !active {
		writeJSON(w, http.StatusOK, map[string]any{"active": false})
		return
	}
	// The members of RPTIntrospectionProvider's metadata token, in its
	// order; realm_access and resource_access are set to null and left
	// out, like every null member.
	out := map[string]any{}
	for _, name := range []string{"jti", "acr", "typ", "exp", "iat", "aud", "nbf"} {
		if v, ok := c[name]; ok && v != nil {
			out[name] = v
		}
	}
	if az, ok := c["authorization"].(map[string]any); ok {
		perms := []map[string]any{}
		list, _ := az["permissions"].([]any)
		for _, p := range list {
			pm, _ := p.(map[string]any)
			scopes, _ := pm["scopes"].([]any)
			if scopes == nil {
				scopes = []any{}
			}
			up := map[string]any{"rsid": pm["rsid"], "rsname": pm["rsname"], "resource_id": pm["rsid"], "resource_scopes": scopes}
			if len(scopes) > 0 {
				up["scopes"] = scopes
			}
			perms = append(perms, up)
		}
		out["permissions"] = perms
	}
	out["active"] = true
	writeJSON(w, http.StatusOK, out)
}

func (k *Keycloak) permission(w http.ResponseWriter, r *http.Request) {
	type request struct {
		ResourceID     string              `json:"resource_id"`
		ResourceScopes []string            `json:"resource_scopes"`
		Claims         map[string][]string `json:"claims"`
	}
	var body json.RawMessage
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_request"})
		return
	}
	var reqs []request
	if err := json.Unmarshal(body, &reqs); err != nil {
		var one request
		if err := json.Unmarshal(body, &one); err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_request"})
			return
		}
		reqs = []request{one}
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	var perms []Permission
	for _, p := range reqs {
		res, ok := k.resources[p.ResourceID]
		if !ok {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_resource_id", "error_description": "Resource with id [" + p.ResourceID + "] does not exist."})
			return
		}
		for _, s := range p.ResourceScopes {
			if !slices.Contains(res.Scopes, s) {
				writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_scope", "error_description": "Scope [" + s + "] is invalid"})
				return
			}
		}
		perms = append(perms, Permission{ResourceID: p.ResourceID, Scopes: p.ResourceScopes})
	}
	ticket := randomID()
	k.tickets[ticket] = perms
	writeJSON(w, http.StatusCreated, map[string]string{"ticket": ticket})
}

func (k *Keycloak) description(res resource) map[string]any {
	scopes := []map[string]string{}
	for _, s := range res.Scopes {
		scopes = append(scopes, map[string]string{"id": "scope-" + s, "name": s})
	}
	d := map[string]any{
		"_id": res.ID, "name": res.Name, "owner": map[string]string{"id": "user-" + res.Owner, "name": res.Owner},
		"ownerManagedAccess": true, "uris": []string{}, "resource_scopes": scopes,
	}
	if res.Type != "" {
		d["type"] = res.Type
	}
	return d
}

func (k *Keycloak) resourceSet(w http.ResponseWriter, r *http.Request, id string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	switch {
	case id == "" && r.Method == http.MethodGet:
		q := r.URL.Query()
		ids := []string{}
		for _, res := range k.resources {
			if n := q.Get("name"); n != "" && res.Name != n {
				continue
			}
			if o := q.Get("owner"); o != "" && res.Owner != o {
				continue
			}
			ids = append(ids, res.ID)
		}
		slices.Sort(ids)
		writeJSON(w, http.StatusOK, ids)
	case id == "" && r.Method == http.MethodPost:
		var d struct {
			Name   string   `json:"name"`
			Type   string   `json:"type"`
			Owner  string   `json:"owner"`
			Scopes []string `json:"resource_scopes"`
		}
		if err := json.NewDecoder(r.Body).Decode(&d); err != nil || d.Name == "" {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_request"})
			return
		}
		for _, res := range k.resources {
			if res.Name == d.Name && res.Owner == d.Owner {
				writeJSON(w, http.StatusConflict, map[string]string{"error": "conflict", "error_description": "Resource with name [" + d.Name + "] already exists."})
				return
			}
		}
		k.nextID++
		res := resource{ID: fmt.Sprintf("kc-%d", k.nextID), Name: d.Name, Type: d.Type, Owner: d.Owner, Scopes: d.Scopes}
		k.resources[res.ID] = res
		writeJSON(w, http.StatusCreated, k.description(res))
	case id != "" && r.Method == http.MethodGet:
		res, ok := k.resources[id]
		if !ok {
			writeJSON(w, http.StatusNotFound, map[string]string{"error": "not_found", "error_description": "Resource set with id [" + id + "] not found"})
			return
		}
		writeJSON(w, http.StatusOK, k.description(res))
	default:
		writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "invalid_request"})
	}
}
