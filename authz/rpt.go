package authz

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwt"

	"github.com/caddy-uma/caddy-uma/authz/jwsform"
	"github.com/caddy-uma/caddy-uma/authz/secret"
	"github.com/caddy-uma/caddy-uma/store"
)

// RPTs are JWTs signed with the AS key, so that a resource server can
// verify them locally with the JWKS. The AS also keeps a record of each
// live RPT under its jti: revoking an RPT deletes the record, and
// introspection (and co-hosted enforcement) answers inactive for a token
// whose record is gone.

// nsRPT is the Records namespace of live RPTs, keyed by jti.
const nsRPT = "rpt"

// Permission is one granted permission: a member of an RPT's
// `permissions` claim and of its introspection answer (Federated
// Authorization section 5.1.1).
type Permission struct {
	ResourceID     string   `json:"resource_id"`
	ResourceScopes []string `json:"resource_scopes"`
	// ResourceName is Keycloak's rsname, informative.
	ResourceName string `json:"rsname,omitempty"`
	ExpiresAt    int64  `json:"exp,omitempty"`
}

// livePermissions returns the permissions that have not expired at now.
func livePermissions(perms []Permission, now time.Time) []Permission {
	var live []Permission
	for _, p := range perms {
		if p.ExpiresAt == 0 || p.ExpiresAt > now.Unix() {
			live = append(live, p)
		}
	}
	return live
}

// mergePermissions adds granted to previous, uniting the scopes of a
// resource present in both.
func mergePermissions(previous, granted []Permission) []Permission {
	out := make([]Permission, 0, len(previous)+len(granted))
	out = append(out, previous...)
	for _, g := range granted {
		merged := false
		for i := range out {
			if out[i].ResourceID == g.ResourceID && out[i].ExpiresAt == g.ExpiresAt {
				out[i].ResourceScopes = appendNew(slices.Clone(out[i].ResourceScopes), g.ResourceScopes...)
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

// appendNew appends to list the items it does not hold yet.
func appendNew(list []string, items ...string) []string {
	for _, it := range items {
		if !slices.Contains(list, it) {
			list = append(list, it)
		}
	}
	return list
}

// rptRecord is what the AS remembers of a live RPT.
type rptRecord struct {
	ClientID       string       `json:"client_id"`
	Subject        string       `json:"sub"`
	RqPIssuer      string       `json:"rqp_iss,omitempty"`
	ResourceServer string       `json:"rs"`
	Permissions    []Permission `json:"perms"`
	IssuedAt       int64        `json:"iat"`
	Expires        int64        `json:"exp"`
}

// RPT is a verified RPT: live from VerifyRPT, live or expired from
// ReadRPT.
type RPT struct {
	ID       string
	ClientID string
	Subject  string
	// RqPIssuer is the issuer of the requesting party's subject: empty for
	// a subject of this AS (or a client that obtained the RPT for itself).
	RqPIssuer      string
	ResourceServer string
	Permissions    []Permission
	IssuedAt       time.Time
	ExpiresAt      time.Time
}

// Covers reports whether the RPT grants every scope in scopes on the
// resource (ALL), or at least one of them when anyScope is true (ANY), at now.
func (t *RPT) Covers(resourceID string, scopes []string, anyScope bool, now time.Time) bool {
	for _, p := range t.Permissions {
		if p.ResourceID != resourceID || (p.ExpiresAt != 0 && now.Unix() >= p.ExpiresAt) {
			continue
		}
		if len(scopes) == 0 {
			return true
		}
		n := 0
		for _, sc := range scopes {
			if slices.Contains(p.ResourceScopes, sc) {
				n++
			}
		}
		if (anyScope && n > 0) || n == len(scopes) {
			return true
		}
	}
	return false
}

// signRPT signs an RPT for rec and returns the write that stores its
// record, for the caller to commit.
func (s *Server) signRPT(ctx context.Context, rec rptRecord) (token, jti string, w store.Write, err error) {
	now := s.now()
	rec.IssuedAt = now.Unix()
	rec.Expires = now.Add(s.rptTTL).Unix()
	jti = secret.New(16)
	b := jwt.NewBuilder().
		Issuer(s.issuer).
		Audience([]string{rec.ResourceServer}).
		Subject(rec.Subject).
		IssuedAt(time.Unix(rec.IssuedAt, 0)).
		Expiration(time.Unix(rec.Expires, 0)).
		JwtID(jti).
		Claim("azp", rec.ClientID).
		Claim("client_id", rec.ClientID).
		Claim("permissions", rec.Permissions)
	if rs, ok := s.clients[rec.ResourceServer]; ok && s.rptClaims != nil {
		for name, v := range s.rptClaims(rs.Client, rec.Permissions) {
			b = b.Claim(name, v)
		}
	}
	tok, err := b.Build()
	if err != nil {
		return "", "", w, fmt.Errorf("building an RPT: %w", err)
	}
	signed, err := s.keys.Sign(ctx, tok)
	if err != nil {
		return "", "", w, err
	}
	val, err := json.Marshal(rec)
	if err != nil {
		return "", "", w, err
	}
	return signed, jti, store.Write{Namespace: nsRPT, Key: jti, Value: val, ExpiresAt: time.Unix(rec.Expires, 0)}, nil
}

// errInvalidRPT means that a token is not a live RPT of this AS.
var errInvalidRPT = errors.New("not a valid RPT of this authorization server")

// parseRPT verifies an RPT's signature and returns its jti and record,
// whether or not it has expired. ok is false when the token is not one of
// our RPTs or was revoked.
func (s *Server) parseRPT(ctx context.Context, token string) (string, rptRecord, error) {
	var rec rptRecord
	if len(token) > 16<<10 || jwsform.Check(token) != nil {
		// Only the token as issued: no other spelling of it.
		return "", rec, errInvalidRPT
	}
	tok, err := s.keys.Verify(ctx, token)
	if err != nil {
		return "", rec, errInvalidRPT
	}
	iss, _ := tok.Issuer()
	jti, _ := tok.JwtID()
	if iss != s.issuer || jti == "" {
		return "", rec, errInvalidRPT
	}
	val, err := s.store.Get(ctx, nsRPT, jti)
	if errors.Is(err, store.ErrNotFound) {
		return "", rec, errInvalidRPT
	}
	if err != nil {
		return "", rec, fmt.Errorf("reading an RPT: %w", err)
	}
	if err := json.Unmarshal(val, &rec); err != nil {
		return "", rec, fmt.Errorf("decoding an RPT: %w", err)
	}
	return jti, rec, nil
}

// VerifyRPT checks an RPT for the resource server audience: signature,
// issuer, expiry, audience and that it was not revoked. It is what a
// co-hosted enforcement point calls.
func (s *Server) VerifyRPT(ctx context.Context, token, audience string) (*RPT, error) {
	jti, rec, err := s.parseRPT(ctx, token)
	if err != nil {
		return nil, err
	}
	if s.now().Unix() >= rec.Expires || rec.ResourceServer != audience {
		return nil, errInvalidRPT
	}
	return &RPT{
		ID: jti, ClientID: rec.ClientID, Subject: rec.Subject, RqPIssuer: rec.RqPIssuer, ResourceServer: rec.ResourceServer,
		Permissions: rec.Permissions, IssuedAt: time.Unix(rec.IssuedAt, 0), ExpiresAt: time.Unix(rec.Expires, 0),
	}, nil
}

// revokeRPT deletes an RPT's record.
func (s *Server) revokeRPT(ctx context.Context, jti string) error {
	err := s.store.Delete(ctx, nsRPT, jti)
	s.forgetRevoked([]store.Write{{Namespace: nsRPT, Key: jti, Delete: true}})
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("revoking an RPT: %w", err)
	}
	return nil
}
