package keycloak

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"strings"

	"github.com/caddy-uma/caddy-uma/authz"
	"github.com/caddy-uma/caddy-uma/authz/claimtoken"
	"github.com/caddy-uma/caddy-uma/authz/oauth"
)

// Claims a client pushes itself, as Keycloak reads
// claim_token_format=urn:ietf:params:oauth:token-type:jwt on its token
// path: claim_token is a base64url-encoded (or, as keycloak-connect's
// enforcer writes it, base64-encoded) JSON object of claim names to values
// ({"claim": ["value", ...]}), signed by no one.
//
// Nothing vouches for such claims but the client, so only a client
// trusted to push them (Client.PushClaims) may send them; others get 400
// invalid_request. They are never an identity: they set no requesting
// party's subject and match no share (shares read the verified claims of
// input.claims); owners' rules see them as input.pushed_claims, for what a
// client may be believed about the request it makes on someone's behalf
// (the purpose of a request, the device, an order number), not about who
// the person is. On our own token path the format stays a signed JWT of a
// trusted issuer (claimtoken).

// maxPushedClaims bounds the claims a client may push.
const maxPushedClaims = 64

// pushedClaims decodes the claims a client pushed in Keycloak's format
// (authz.Dialect.PushedClaims); other formats are the trusted issuers'.
func (c *Compat) pushedClaims(client authz.Client, format, token string) (map[string]any, bool, error) {
	if format != claimtoken.FormatJWT {
		return nil, false, nil
	}
	claims, err := decodePushedClaims(client, token)
	return claims, true, err
}

// decodePushedClaims decodes the claims client pushed, if it may.
func decodePushedClaims(client authz.Client, token string) (map[string]any, error) {
	if !client.PushClaims {
		return nil, oauth.ErrInvalidRequest("the client %s may not push claims of its own (claim_token_format %s): the operator allows it with push_claims in the client's configuration; to identify the requesting party, send the person's token as Bearer token or subject_token", oauth.Quote(client.ID), claimtoken.FormatJWT)
	}
	invalid := oauth.ErrInvalidRequest("Invalid claims: claim_token must be a base64url-encoded JSON object of at most %d claims", maxPushedClaims)
	if len(token) > claimtoken.MaxTokenSize {
		return nil, invalid
	}
	// base64url, or the standard alphabet keycloak-connect writes (as
	// Keycloak reads both), padded or not.
	raw, err := base64.RawURLEncoding.DecodeString(strings.NewReplacer("+", "-", "/", "_").Replace(strings.TrimRight(token, "=")))
	if err != nil {
		return nil, invalid
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	var claims map[string]any
	if err := dec.Decode(&claims); err != nil || claims == nil || len(claims) > maxPushedClaims || dec.More() {
		return nil, invalid
	}
	return claims, nil
}
