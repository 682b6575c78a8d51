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

// ticketPermission is one requested permission of a ticket.
type ticketPermission struct {
	ResourceID string   `json:"rid"`
	Scopes     []string `json:"scopes"`
}

// ticket is the content of a permission ticket.
type ticket struct {
	ID             string             `json:"jti"`
	ResourceServer string             `json:"rs"`
	Owner          string             `json:"owner"`
	Permissions    []ticketPermission `json:"perms"`
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

// sealTicket fills in the ticket's id and times and returns its string.
func (s *Server) sealTicket(t ticket) (string, error) {
	now := s.now()
	t.ID = randomToken(16)
	t.IssuedAt = now.Unix()
	t.Expires = now.Add(s.ticketTTL).Unix()
	plain, err := json.Marshal(t)
	if err != nil {
		return "", err
	}
	nonce := make([]byte, s.tickets.NonceSize(), s.tickets.NonceSize()+len(plain)+s.tickets.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return "", err
	}
	sealed := s.tickets.Seal(nonce, nonce, plain, []byte(ticketAAD))
	return base64.RawURLEncoding.EncodeToString(sealed), nil
}

// errInvalidTicket means that a ticket is not one of ours, has expired or
// was already redeemed.
var errInvalidTicket = errors.New("invalid, expired or already used ticket")

// openTicket decrypts and checks a ticket's expiry. It does not consume it.
func (s *Server) openTicket(raw string) (ticket, error) {
	var t ticket
	if len(raw) > 8192 {
		return t, errInvalidTicket
	}
	sealed, err := base64.RawURLEncoding.DecodeString(raw)
	if err != nil || len(sealed) < s.tickets.NonceSize()+s.tickets.Overhead() {
		return t, errInvalidTicket
	}
	ns := s.tickets.NonceSize()
	plain, err := s.tickets.Open(nil, sealed[:ns], sealed[ns:], []byte(ticketAAD))
	if err != nil {
		return t, errInvalidTicket
	}
	if err := json.Unmarshal(plain, &t); err != nil {
		return t, errInvalidTicket
	}
	if s.now().Unix() >= t.Expires {
		return t, errInvalidTicket
	}
	return t, nil
}

// consumeTicket marks a ticket used. It fails with errInvalidTicket if the
// ticket was already used; of concurrent calls exactly one succeeds.
func (s *Server) consumeTicket(ctx context.Context, t ticket) error {
	err := s.store.Insert(ctx, nsTicketsUsed, t.ID, nil, time.Unix(t.Expires, 0).Add(time.Second))
	if errors.Is(err, store.ErrExists) {
		return errInvalidTicket
	}
	if err != nil {
		return fmt.Errorf("recording ticket use: %w", err)
	}
	return nil
}
