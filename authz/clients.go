package authz

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"

	"golang.org/x/crypto/bcrypt"

	"github.com/caddy-uma/caddy-uma/authz/urlcheck"
)

// registeredClient is a Client with what authentication needs.
type registeredClient struct {
	Client
	// bcryptHash is set when the configured secret is a bcrypt hash.
	bcryptHash []byte
	// plainSum is the SHA-256 of a plain-text secret.
	plainSum [32]byte

	mu sync.Mutex
	// verified holds SHA-256 sums of secrets that matched bcryptHash, so
	// that a bcrypt comparison runs once per secret, not once per request.
	verified [][32]byte
}

// public reports whether the client has no secret.
func (c *registeredClient) public() bool { return c.Secret == "" }

// maxVerifiedSecrets bounds the per-client cache of verified secrets.
const maxVerifiedSecrets = 4

// checkSecret compares secret with the client's in constant time.
func (c *registeredClient) checkSecret(secret string) bool {
	sum := sha256.Sum256([]byte(secret))
	if c.bcryptHash == nil {
		return subtle.ConstantTimeCompare(sum[:], c.plainSum[:]) == 1
	}
	c.mu.Lock()
	for _, v := range c.verified {
		if subtle.ConstantTimeCompare(sum[:], v[:]) == 1 {
			c.mu.Unlock()
			return true
		}
	}
	c.mu.Unlock()
	if bcrypt.CompareHashAndPassword(c.bcryptHash, []byte(secret)) != nil {
		return false
	}
	c.mu.Lock()
	if len(c.verified) >= maxVerifiedSecrets {
		c.verified = c.verified[1:]
	}
	c.verified = append(c.verified, sum)
	c.mu.Unlock()
	return true
}

// isBcrypt reports whether s looks like a bcrypt hash.
func isBcrypt(s string) bool {
	return len(s) == 60 && (strings.HasPrefix(s, "$2a$") || strings.HasPrefix(s, "$2b$") || strings.HasPrefix(s, "$2y$"))
}

// newClientRegistry validates clients and indexes them by id.
func newClientRegistry(clients []Client) (map[string]*registeredClient, error) {
	reg := make(map[string]*registeredClient, len(clients))
	for _, c := range clients {
		if c.ID == "" {
			return nil, fmt.Errorf("client with an empty id")
		}
		if _, dup := reg[c.ID]; dup {
			return nil, fmt.Errorf("client %q is registered twice", c.ID)
		}
		rc := &registeredClient{Client: c}
		if isBcrypt(c.Secret) {
			if err := checkBcryptFormat(c.Secret); err != nil {
				return nil, fmt.Errorf("client %q: invalid bcrypt hash: %w", c.ID, err)
			}
			rc.bcryptHash = []byte(c.Secret)
		} else {
			rc.plainSum = sha256.Sum256([]byte(c.Secret))
		}
		if c.ResourceServer && c.Secret == "" {
			return nil, fmt.Errorf("client %q: a resource server must have a secret", c.ID)
		}
		for _, u := range append(append([]string{}, c.RedirectURIs...), c.ClaimsRedirectURIs...) {
			if err := validateRedirectURI(u); err != nil {
				return nil, fmt.Errorf("client %q: %w", c.ID, err)
			}
		}
		reg[c.ID] = rc
	}
	return reg, nil
}

// validateRedirectURI checks a redirect URI (urlcheck.RedirectURI).
func validateRedirectURI(raw string) error {
	if err := urlcheck.RedirectURI(raw); err != nil {
		return fmt.Errorf("redirect URI %q %w", raw, err)
	}
	return nil
}

// authenticateClient authenticates the client of a token, introspection or
// revocation request by client_secret_basic or client_secret_post (RFC
// 6749 section 2.3.1), or identifies a public client by client_id. A
// failure is a 401 invalid_client with a Basic challenge.
func (s *Server) authenticateClient(r *http.Request, form url.Values) (*registeredClient, error) {
	invalid := func(desc string) error {
		return &oauthError{
			Status:      http.StatusUnauthorized,
			Code:        "invalid_client",
			Description: desc,
			Challenge:   "Basic realm=" + quote(s.issuer),
		}
	}
	id, secret, basic, err := basicCredentials(r)
	if err != nil {
		return nil, invalid(err.Error())
	}
	postID, postSecret := form.Get("client_id"), form.Get("client_secret")
	switch {
	case basic && postSecret != "":
		return nil, errInvalidRequest("use only one client authentication method")
	case basic && postID != "" && postID != id:
		return nil, errInvalidRequest("client_id does not match the authenticated client")
	case !basic:
		id, secret = postID, postSecret
	}
	if id == "" {
		return nil, invalid("client authentication is required")
	}
	c := s.client(r.Context(), id)
	if c == nil {
		// Spend the same time as a wrong secret would.
		sum := sha256.Sum256([]byte(secret))
		subtle.ConstantTimeCompare(sum[:], s.dummySum[:])
		return nil, invalid("unknown client or wrong credentials")
	}
	if c.public() {
		if secret != "" {
			return nil, invalid("unknown client or wrong credentials")
		}
		return c, nil
	}
	if secret == "" || !c.checkSecret(secret) {
		return nil, invalid("unknown client or wrong credentials")
	}
	return c, nil
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
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(rest))
	if err != nil {
		return "", "", false, fmt.Errorf("malformed Basic credentials")
	}
	rawID, rawSecret, found := strings.Cut(string(raw), ":")
	if !found {
		return "", "", false, fmt.Errorf("malformed Basic credentials")
	}
	if id, err = url.QueryUnescape(rawID); err != nil {
		return "", "", false, fmt.Errorf("malformed Basic credentials")
	}
	if secret, err = url.QueryUnescape(rawSecret); err != nil {
		return "", "", false, fmt.Errorf("malformed Basic credentials")
	}
	return id, secret, true, nil
}

// checkBcryptFormat checks a bcrypt hash's form without the cost of a
// comparison: a known cost, and salt and hash in bcrypt's base64 alphabet.
func checkBcryptFormat(h string) error {
	if _, err := bcrypt.Cost([]byte(h)); err != nil {
		return err
	}
	for _, c := range h[7:] {
		if !(c == '.' || c == '/' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			return fmt.Errorf("unexpected character %q", c)
		}
	}
	return nil
}
