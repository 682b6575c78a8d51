package authz

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/caddy-uma/caddy-uma/authz/secret"
	"github.com/caddy-uma/caddy-uma/store"
)

// Permission tickets are self-contained: the permissions they stand for are
// sealed into the ticket with AES-256-GCM under a key that never leaves the
// store. Issuing a ticket writes nothing, so a flood of unauthenticated
// requests at an enforcement point cannot grow the store. Single use is
// enforced at redemption: redeeming writes a replay record keyed by the
// ticket's id that lives until the ticket would have expired, and of two
// concurrent redemptions only one can write it.

const (
	nsSecrets       = "secret"
	secretTicketKey = "ticket_key"
	nsTicketsUsed   = "ticket_used"
	ticketAAD       = "caddy-uma ticket v1"
)

// ticket is the content of a permission ticket.
type ticket struct {
	ID             string              `json:"jti"`
	ResourceServer string              `json:"rs"`
	Owner          string              `json:"owner"`
	Permissions    []PermissionRequest `json:"perms"`
	// Request is request context the resource server attached (the
	// permission request's "claims" member), for owners' rules.
	Request map[string][]string `json:"req,omitempty"`
	// Process and Client are set on rotated tickets (need_info,
	// request_submitted): the authorization process whose gathered claims
	// the ticket carries on, and the client it is bound to.
	Process  string `json:"proc,omitempty"`
	Client   string `json:"cid,omitempty"`
	IssuedAt int64  `json:"iat"`
	Expires  int64  `json:"exp"`
}

// loadTicketCipher returns the AEAD that seals tickets, creating its key
// in the store on first start.
func loadTicketCipher(ctx context.Context, st store.Records) (cipher.AEAD, error) {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	err := st.Insert(ctx, nsSecrets, secretTicketKey, key, time.Time{})
	if errors.Is(err, store.ErrExists) {
		key, err = st.Get(ctx, nsSecrets, secretTicketKey)
	}
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("ticket key: %w", err)
	}
	return cipher.NewGCM(block)
}

// sealTicket fills in the ticket's id and times (ticket_ttl) and returns
// its string.
func (s *Server) sealTicket(t ticket) (string, error) { return s.sealTicketFor(t, s.ticketTTL) }

// sealTicketFor is sealTicket with the ticket living ttl.
func (s *Server) sealTicketFor(t ticket, ttl time.Duration) (string, error) {
	now := s.now()
	t.ID = secret.New(16)
	t.IssuedAt = now.Unix()
	t.Expires = now.Add(ttl).Unix()
	return s.seal(t, ticketAAD)
}

// seal encrypts t under the additional data aad.
func (s *Server) seal(t ticket, aad string) (string, error) {
	plain, err := json.Marshal(t)
	if err != nil {
		return "", err
	}
	nonce := make([]byte, s.tickets.NonceSize(), s.tickets.NonceSize()+len(plain)+s.tickets.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return "", err
	}
	sealed := s.tickets.Seal(nonce, nonce, plain, []byte(aad))
	return base64.RawURLEncoding.EncodeToString(sealed), nil
}

// Errors of redeeming a ticket.
var (
	// ErrTicketInvalid means that a ticket is not one of ours or has
	// expired.
	ErrTicketInvalid = errors.New("the ticket is invalid or has expired")
	// ErrTicketOtherClient means that a rotated ticket is bound to
	// another client.
	ErrTicketOtherClient = errors.New("the ticket belongs to another client")
	// ErrTicketUsed means that the ticket was already redeemed.
	ErrTicketUsed = errors.New("the ticket was already used")
)

// openTicket decrypts a permission ticket and checks its expiry. It does
// not consume it.
func (s *Server) openTicket(raw string) (ticket, error) { return s.openSealed(raw, ticketAAD) }

// openSealed decrypts a ticket sealed under the additional data aad and
// checks its expiry.
func (s *Server) openSealed(raw, aad string) (ticket, error) {
	var t ticket
	if len(raw) > 8192 {
		return t, ErrTicketInvalid
	}
	sealed, err := base64.RawURLEncoding.DecodeString(raw)
	if err != nil || len(sealed) < s.tickets.NonceSize()+s.tickets.Overhead() {
		return t, ErrTicketInvalid
	}
	ns := s.tickets.NonceSize()
	plain, err := s.tickets.Open(nil, sealed[:ns], sealed[ns:], []byte(aad))
	if err != nil {
		return t, ErrTicketInvalid
	}
	if err := json.Unmarshal(plain, &t); err != nil {
		return t, ErrTicketInvalid
	}
	if s.now().Unix() >= t.Expires {
		return t, ErrTicketInvalid
	}
	return t, nil
}

// takeTicket opens a ticket presented by clientID and consumes it: of
// concurrent redemptions exactly one succeeds. Errors: ErrTicketInvalid,
// ErrTicketOtherClient, ErrTicketUsed, or a store error.
func (s *Server) takeTicket(ctx context.Context, clientID, raw string) (ticket, error) {
	t, err := s.openTicket(raw)
	if err != nil {
		return t, err
	}
	if t.Client != "" && t.Client != clientID {
		return t, ErrTicketOtherClient
	}
	return t, s.consumeTicket(ctx, t)
}

// ticketUsedWrite is the write that marks a ticket used within the commit
// of what its redemption answers: an Insert, so that of concurrent
// redemptions, on any nodes, exactly one commits, and the others fail with
// store.ErrExists and write nothing.
func ticketUsedWrite(t ticket) store.Write {
	return store.Write{Namespace: nsTicketsUsed, Key: t.ID, ExpiresAt: ticketUsedUntil(t), Insert: true}
}

// ticketUsedUntil is how long a ticket's use is remembered: until it
// expires.
func ticketUsedUntil(t ticket) time.Time { return time.Unix(t.Expires, 0).Add(time.Second) }

// ticketWasUsed reports whether a ticket's use is recorded: a read that
// refuses a replayed ticket early (its commit refuses it for good).
func (s *Server) ticketWasUsed(ctx context.Context, t ticket) (bool, error) {
	_, err := s.store.Get(ctx, nsTicketsUsed, t.ID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("reading ticket use: %w", err)
	}
	return true, nil
}

// consumeTicket marks a ticket used. It fails with ErrTicketUsed if the
// ticket was already used; of concurrent calls exactly one succeeds.
func (s *Server) consumeTicket(ctx context.Context, t ticket) error {
	err := s.store.Insert(ctx, nsTicketsUsed, t.ID, nil, ticketUsedUntil(t))
	if errors.Is(err, store.ErrExists) {
		return ErrTicketUsed
	}
	if err != nil {
		return fmt.Errorf("recording ticket use: %w", err)
	}
	return nil
}
