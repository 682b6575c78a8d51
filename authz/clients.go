package authz

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"go.uber.org/zap"

	"github.com/caddy-uma/caddy-uma/authz/oauth"
	"github.com/caddy-uma/caddy-uma/authz/secret"
	"github.com/caddy-uma/caddy-uma/authz/urlcheck"
	"github.com/caddy-uma/caddy-uma/store"
)

// registeredClient is a Client with what authentication needs.
type registeredClient struct {
	Client
	// hashed is set when the configured secret is a bcrypt hash.
	hashed *secret.Hashed
	// plainSum is the SHA-256 of a plain-text secret (or, for a
	// dynamically registered client, the stored sum of its secret).
	plainSum [32]byte
}

// public reports whether the client has no secret.
func (c *registeredClient) public() bool { return c.Secret == "" }

// checkSecret compares secret with the client's in constant time.
func (c *registeredClient) checkSecret(given string) bool {
	if c.hashed != nil {
		return c.hashed.Matches(given)
	}
	sum := sha256.Sum256([]byte(given))
	return subtle.ConstantTimeCompare(sum[:], c.plainSum[:]) == 1
}

// CheckClients reports the first thing wrong with the configured clients:
// an empty or repeated id, a resource server without a secret, a secret
// that looks like a bcrypt hash but is not a valid one, a scope that is
// not a scope-token, a redirect URI that urlcheck.RedirectURI refuses.
// The Caddy configuration checks clients with it at load, and New again.
func CheckClients(clients []Client) error {
	seen := make(map[string]bool, len(clients))
	for _, c := range clients {
		if c.ID == "" {
			return errors.New("client without id")
		}
		if seen[c.ID] {
			return fmt.Errorf("client %q: defined more than once", c.ID)
		}
		seen[c.ID] = true
		if err := checkClient(c); err != nil {
			return fmt.Errorf("client %q: %w", c.ID, err)
		}
	}
	return nil
}

func checkClient(c Client) error {
	if c.ResourceServer && c.Secret == "" {
		return errors.New("a resource server needs a secret (client_credentials is for confidential clients)")
	}
	if secret.LooksHashed(c.Secret) {
		if _, err := secret.ParseHashed(c.Secret); err != nil {
			return fmt.Errorf("invalid bcrypt hash: %w", err)
		}
	}
	for _, sc := range c.Scopes {
		if !oauth.ValidScope(sc) {
			return fmt.Errorf("scope %q: not a valid scope token", sc)
		}
	}
	switch c.RPTFormat {
	case "", RPTFormatUMA:
	case RPTFormatKeycloak:
		if !c.ResourceServer {
			return fmt.Errorf("rpt_format %s is a setting of a resource server: add resource_server, or remove rpt_format", c.RPTFormat)
		}
	default:
		return fmt.Errorf("rpt_format %q: use %s or %s", c.RPTFormat, RPTFormatUMA, RPTFormatKeycloak)
	}
	for _, u := range append(slices.Clone(c.RedirectURIs), c.ClaimsRedirectURIs...) {
		if err := urlcheck.RedirectURI(u); err != nil {
			return fmt.Errorf("redirect URI %q %w", u, err)
		}
	}
	return nil
}

// newClientRegistry checks clients and indexes them by id.
func newClientRegistry(clients []Client) (map[string]*registeredClient, error) {
	if err := CheckClients(clients); err != nil {
		return nil, err
	}
	reg := make(map[string]*registeredClient, len(clients))
	for _, c := range clients {
		rc := &registeredClient{Client: c}
		if secret.LooksHashed(c.Secret) {
			rc.hashed, _ = secret.ParseHashed(c.Secret) // checked above
		} else {
			rc.plainSum = sha256.Sum256([]byte(c.Secret))
		}
		reg[c.ID] = rc
	}
	return reg, nil
}

// client returns the client with id: a configured one, or one registered
// dynamically. nil means none; an error, that the store could not say
// (a server fault, not an unknown client).
func (s *Server) client(ctx context.Context, id string) (*registeredClient, error) {
	if id == "" || len(id) > 256 {
		return nil, nil
	}
	if c, ok := s.clients[id]; ok {
		return c, nil
	}
	if v, ok := s.dynamicClients.Load(id); ok {
		return v.(*registeredClient), nil
	}
	rc, err := s.loadDynamicClient(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading a registered client: %w", err)
	}
	actual, _ := s.dynamicClients.LoadOrStore(id, rc)
	return actual.(*registeredClient), nil
}

// Client returns the client with id, configured or registered dynamically,
// without its secret. A client that cannot be read now is none.
func (s *Server) Client(ctx context.Context, id string) (Client, bool) {
	c, err := s.client(ctx, id)
	if err != nil {
		s.log.Error("reading a registered client", zap.Error(err))
	}
	if c == nil {
		return Client{}, false
	}
	out := c.Client
	out.Secret = ""
	return out, true
}

// ClientIDs returns the ids of the configured clients, sorted.
func (s *Server) ClientIDs() []string {
	out := make([]string, 0, len(s.clients))
	for id := range s.clients {
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}

// RequestingPartyClients returns the ids of the configured clients that
// are not resource servers, sorted: the clients an owner may restrict a
// share to.
func (s *Server) RequestingPartyClients() []string {
	var out []string
	for id, c := range s.clients {
		if !c.ResourceServer {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

// authenticateClient authenticates the client of a token, introspection or
// revocation request by client_secret_basic or client_secret_post (RFC
// 6749 section 2.3.1), or identifies a public client by client_id. A
// failure is a 401 invalid_client with a Basic challenge.
func (s *Server) authenticateClient(r *http.Request, form url.Values) (*registeredClient, error) {
	invalid := func(desc string) error {
		return oauth.New(oauth.InvalidClient).WithDescription(desc).WithChallenge("Basic realm=" + oauth.Quote(s.issuer))
	}
	id, given, basic, err := basicCredentials(r)
	if err != nil {
		return nil, invalid(err.Error())
	}
	postID, postSecret := form.Get("client_id"), form.Get("client_secret")
	switch {
	case basic && postSecret != "" && !(bothAuthMethods(r) && sameCredentials(id, given, postID, postSecret)):
		// A dialect may take both methods at once when they agree
		// (Keycloak's: keycloak-connect sends both in its introspection).
		return nil, oauth.ErrInvalidRequest("use only one client authentication method")
	case basic && postID != "" && postID != id:
		return nil, oauth.ErrInvalidRequest("client_id does not match the authenticated client")
	case !basic:
		id, given = postID, postSecret
	}
	if id == "" {
		return nil, invalid("client authentication is required")
	}
	c, err := s.client(r.Context(), id)
	if err != nil {
		return nil, err // 503: the client may well be registered
	}
	if c == nil {
		// Spend the same time as a wrong secret would.
		sum := sha256.Sum256([]byte(given))
		subtle.ConstantTimeCompare(sum[:], s.dummySum[:])
		return nil, invalid("unknown client or wrong credentials")
	}
	if c.public() {
		if given != "" {
			return nil, invalid("unknown client or wrong credentials")
		}
		return c, nil
	}
	if given == "" || !c.checkSecret(given) {
		return nil, invalid("unknown client or wrong credentials")
	}
	return c, nil
}

// bothAuthMethods says whether r's dialect takes both client
// authentication methods at once.
func bothAuthMethods(r *http.Request) bool {
	d := dialectOf(r)
	return d != nil && d.BothClientAuthMethods
}

// sameCredentials says whether client_secret_post credentials (an
// optional id and a secret) repeat client_secret_basic ones.
func sameCredentials(basicID, basicSecret, postID, postSecret string) bool {
	same := subtle.ConstantTimeCompare([]byte(basicSecret), []byte(postSecret)) == 1
	return same && (postID == "" || postID == basicID)
}

// basicCredentials reads client_secret_basic credentials, whose id and
// secret are form-encoded before base64 (RFC 6749 section 2.3.1).
func basicCredentials(r *http.Request) (id, secret string, ok bool, err error) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return "", "", false, nil
	}
	scheme, rest, _ := strings.Cut(h, " ")
	if !strings.EqualFold(scheme, "Basic") {
		return "", "", false, nil
	}
	malformed := errors.New("malformed Basic credentials")
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(rest))
	if err != nil {
		return "", "", false, malformed
	}
	rawID, rawSecret, found := strings.Cut(string(raw), ":")
	if !found {
		return "", "", false, malformed
	}
	if id, err = url.QueryUnescape(rawID); err != nil {
		return "", "", false, malformed
	}
	if secret, err = url.QueryUnescape(rawSecret); err != nil {
		return "", "", false, malformed
	}
	return id, secret, true, nil
}
