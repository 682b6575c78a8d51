package owners

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/caddy-uma/caddy-uma/store"
)

// Request statuses.
const (
	RequestPending  = "pending"
	RequestApproved = "approved"
	RequestDenied   = "denied"
)

// AccessRequest is a request for access that an owner's rules sent to the
// owner (ask_owner): the grant answered request_submitted, and the owner
// approves or denies it later.
type AccessRequest struct {
	ID           string    `json:"id"`
	Owner        string    `json:"owner"`
	ResourceID   string    `json:"resource_id"`
	ResourceName string    `json:"resource_name,omitempty"`
	Scopes       []string  `json:"scopes"`
	ClientID     string    `json:"client_id"`
	Subject      string    `json:"subject"`
	Issuer       string    `json:"issuer,omitempty"`
	Email        string    `json:"email,omitempty"`
	Name         string    `json:"name,omitempty"`
	Status       string    `json:"status"`
	CreatedAt    time.Time `json:"created_at"`
	DecidedAt    time.Time `json:"decided_at,omitzero"`
}

// Requests are the access requests sent to owners. They are safe for
// concurrent use.
type Requests struct {
	opts   Options
	shares *Shares
}

// NewRequests returns the requests kept in opts.Store; an approval adds
// its share to shares.
func NewRequests(opts Options, shares *Shares) *Requests {
	return &Requests{opts: opts.withDefaults(), shares: shares}
}

// requestID derives a pending request's id from what it asks, so that a
// client polling for the same access files one request, not many.
func requestID(owner, resourceID, clientID, subject, issuer string, scopes []string) string {
	h := sha256.New()
	for _, part := range append([]string{owner, resourceID, clientID, subject, issuer}, scopes...) {
		h.Write([]byte(part))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))[:32]
}

// FileRequest stores a pending request unless the same one exists, and
// returns the stored one (which may already be decided).
func (q *Requests) FileRequest(ctx context.Context, req AccessRequest) (AccessRequest, error) {
	slices.Sort(req.Scopes)
	req.ID = requestID(req.Owner, req.ResourceID, req.ClientID, req.Subject, req.Issuer, req.Scopes)
	req.Status = RequestPending
	req.CreatedAt = q.opts.Now().UTC()
	val, err := json.Marshal(req)
	if err != nil {
		return req, err
	}
	key := req.Owner + sep + req.ID
	err = q.opts.Store.Insert(ctx, NamespaceRequests, key, val, time.Time{})
	if errors.Is(err, store.ErrExists) {
		return q.Request(ctx, req.Owner, req.ID)
	}
	if err != nil {
		return req, fmt.Errorf("storing a request: %w", err)
	}
	q.opts.Log.Info("access request submitted to the owner", ownerField(req.Owner), resourceField(req.ResourceID), clientField(req.ClientID))
	return req, nil
}

// Errors of deciding a request.
var (
	// ErrNoSuchRequest means that the owner has no request with that id.
	ErrNoSuchRequest = errors.New("no such request")
	// ErrRequestDecided means that the request was already approved or
	// denied.
	ErrRequestDecided = errors.New("request already decided")
)

// Request returns one of owner's requests.
func (q *Requests) Request(ctx context.Context, owner, id string) (AccessRequest, error) {
	var req AccessRequest
	val, err := q.opts.Store.Get(ctx, NamespaceRequests, owner+sep+id)
	if errors.Is(err, store.ErrNotFound) {
		return req, ErrNoSuchRequest
	}
	if err != nil {
		return req, fmt.Errorf("reading a request: %w", err)
	}
	return req, json.Unmarshal(val, &req)
}

// Requests returns an owner's requests, pending first, newest first.
func (q *Requests) Requests(ctx context.Context, owner string) ([]AccessRequest, error) {
	out, err := listJSON[AccessRequest](ctx, q.opts.Store, NamespaceRequests, owner+sep, 0)
	if err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b AccessRequest) int {
		if pa, pb := a.Status == RequestPending, b.Status == RequestPending; pa != pb {
			if pa {
				return -1
			}
			return 1
		}
		return b.CreatedAt.Compare(a.CreatedAt)
	})
	return out, nil
}

// DecideRequest approves or denies an owner's pending request. Approval
// creates a share of the requested scopes with the requesting party,
// restricted to the requesting client.
func (q *Requests) DecideRequest(ctx context.Context, owner, id string, approve bool) (AccessRequest, error) {
	req, err := q.Request(ctx, owner, id)
	if err != nil {
		return req, err
	}
	if req.Status != RequestPending {
		return req, ErrRequestDecided
	}
	req.Status, req.DecidedAt = RequestDenied, q.opts.Now().UTC()
	if approve {
		req.Status = RequestApproved
		if _, err := q.shares.AddShare(ctx, Share{Owner: owner, ResourceID: req.ResourceID, Subject: req.Subject,
			Scopes: req.Scopes, Client: req.ClientID, Request: req.ID}); err != nil {
			return req, err
		}
	}
	val, err := json.Marshal(req)
	if err != nil {
		return req, err
	}
	if err := q.opts.Store.Put(ctx, NamespaceRequests, owner+sep+id, val, time.Time{}); err != nil {
		return req, fmt.Errorf("storing a request: %w", err)
	}
	q.opts.Log.Info("access request "+req.Status, ownerField(owner), resourceField(req.ResourceID))
	return req, nil
}
