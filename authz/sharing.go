package authz

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/caddy-uma/caddy-uma/policies"
	"github.com/caddy-uma/caddy-uma/store"
)

// Shares and pending requests are an owner's data, keyed under the owner so
// that listing them never crosses owners:
//
//	share   <owner> \x00 <resource_id> \x00 <share_id>
//	request <owner> \x00 <request_id>
const (
	nsShare   = "share"
	nsRequest = "request"
	sep       = "\x00"
)

// Share gives a requesting party scopes on one resource. Shares come from
// the owner's console and from approved requests; the built-in rule
// data.uma.lib.shared_scopes grants them.
type Share struct {
	ID         string    `json:"id"`
	Owner      string    `json:"owner"`
	ResourceID string    `json:"resource_id"`
	Subject    string    `json:"subject,omitempty"`
	Email      string    `json:"email,omitempty"`
	Scopes     []string  `json:"scopes"`
	Client     string    `json:"client,omitempty"`
	ExpiresAt  time.Time `json:"expires_at,omitzero"`
	CreatedAt  time.Time `json:"created_at"`
	// Request is the id of the approved request the share comes from.
	Request string `json:"request,omitempty"`
}

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

func shareKey(owner, resourceID, id string) string { return owner + sep + resourceID + sep + id }

// sharesOf returns the live shares of a resource.
func (s *Server) sharesOf(ctx context.Context, owner, resourceID string) ([]Share, error) {
	return listJSON[Share](ctx, s.store, nsShare, owner+sep+resourceID+sep, 0)
}

// Shares returns every live share an owner made, sorted by resource.
func (s *Server) Shares(ctx context.Context, owner string) ([]Share, error) {
	return listJSON[Share](ctx, s.store, nsShare, owner+sep, 0)
}

// listJSON lists the records of a namespace under a prefix, decoded from
// JSON.
func listJSON[T any](ctx context.Context, st store.Records, namespace, prefix string, limit int) ([]T, error) {
	recs, err := st.List(ctx, namespace, prefix, limit)
	if err != nil {
		return nil, fmt.Errorf("listing %s records: %w", namespace, err)
	}
	out := make([]T, 0, len(recs))
	for _, r := range recs {
		var v T
		if err := json.Unmarshal(r.Value, &v); err != nil {
			return nil, fmt.Errorf("decoding a %s record: %w", namespace, err)
		}
		out = append(out, v)
	}
	return out, nil
}

// policyShares converts shares into the rules' input.
func policyShares(shares []Share) []policies.Share {
	out := make([]policies.Share, 0, len(shares))
	for _, sh := range shares {
		out = append(out, policies.Share{Subject: sh.Subject, Email: sh.Email, Scopes: sh.Scopes, Client: sh.Client, ExpiresAt: sh.ExpiresAt})
	}
	return out
}

// AddShare stores a share of one of owner's resources.
func (s *Server) AddShare(ctx context.Context, sh Share) (Share, error) {
	if sh.Owner == "" || sh.ResourceID == "" || (sh.Subject == "" && sh.Email == "") || len(sh.Scopes) == 0 {
		return sh, fmt.Errorf("a share needs an owner, a resource, a subject or e-mail, and scopes")
	}
	if len(sh.Subject) > maxOwnerLen || len(sh.Email) > maxOwnerLen || strings.ContainsRune(sh.Subject+sh.Email+sh.Client, 0) {
		return sh, fmt.Errorf("the person or client of a share is too long or malformed")
	}
	res, err := s.store.GetResource(ctx, sh.ResourceID)
	if err != nil || res.Owner != sh.Owner {
		return sh, fmt.Errorf("no such resource of this owner")
	}
	for _, sc := range sh.Scopes {
		if !slices.Contains(res.Scopes, sc) {
			return sh, fmt.Errorf("scope %q is not a scope of this resource", sc)
		}
	}
	sh.ID = randomToken(12)
	sh.CreatedAt = s.now().UTC()
	val, err := json.Marshal(sh)
	if err != nil {
		return sh, err
	}
	if err := s.store.Put(ctx, nsShare, shareKey(sh.Owner, sh.ResourceID, sh.ID), val, sh.ExpiresAt); err != nil {
		return sh, fmt.Errorf("storing a share: %w", err)
	}
	if err := s.indexShare(ctx, sh, val); err != nil {
		return sh, err
	}
	return sh, nil
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

// fileRequest stores a pending request unless the same one exists, and
// returns the stored one (which may already be decided).
func (s *Server) fileRequest(ctx context.Context, req AccessRequest) (AccessRequest, error) {
	slices.Sort(req.Scopes)
	req.ID = requestID(req.Owner, req.ResourceID, req.ClientID, req.Subject, req.Issuer, req.Scopes)
	req.Status = RequestPending
	req.CreatedAt = s.now().UTC()
	val, err := json.Marshal(req)
	if err != nil {
		return req, err
	}
	key := req.Owner + sep + req.ID
	err = s.store.Insert(ctx, nsRequest, key, val, time.Time{})
	if errors.Is(err, store.ErrExists) {
		return s.getRequest(ctx, req.Owner, req.ID)
	}
	if err != nil {
		return req, fmt.Errorf("storing a request: %w", err)
	}
	s.log.Info("access request submitted to the owner", ownerField(req.Owner), resourceField(req.ResourceID), clientField(req.ClientID))
	return req, nil
}

// errNoSuchRequest means that the owner has no request with that id.
var errNoSuchRequest = errors.New("no such request")

func (s *Server) getRequest(ctx context.Context, owner, id string) (AccessRequest, error) {
	var req AccessRequest
	val, err := s.store.Get(ctx, nsRequest, owner+sep+id)
	if errors.Is(err, store.ErrNotFound) {
		return req, errNoSuchRequest
	}
	if err != nil {
		return req, fmt.Errorf("reading a request: %w", err)
	}
	return req, json.Unmarshal(val, &req)
}

// Requests returns an owner's requests, pending first, newest first.
func (s *Server) Requests(ctx context.Context, owner string) ([]AccessRequest, error) {
	out, err := listJSON[AccessRequest](ctx, s.store, nsRequest, owner+sep, 0)
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
func (s *Server) DecideRequest(ctx context.Context, owner, id string, approve bool) (AccessRequest, error) {
	req, err := s.getRequest(ctx, owner, id)
	if err != nil {
		return req, err
	}
	if req.Status != RequestPending {
		return req, fmt.Errorf("request already %s", req.Status)
	}
	req.Status, req.DecidedAt = RequestDenied, s.now().UTC()
	if approve {
		req.Status = RequestApproved
		if _, err := s.AddShare(ctx, Share{Owner: owner, ResourceID: req.ResourceID, Subject: req.Subject,
			Scopes: req.Scopes, Client: req.ClientID, Request: req.ID}); err != nil {
			return req, err
		}
	}
	val, err := json.Marshal(req)
	if err != nil {
		return req, err
	}
	if err := s.store.Put(ctx, nsRequest, owner+sep+id, val, time.Time{}); err != nil {
		return req, fmt.Errorf("storing a request: %w", err)
	}
	s.log.Info("access request "+req.Status, ownerField(owner), resourceField(req.ResourceID))
	return req, nil
}

// validOwnerName reports whether an owner or module name is usable as a
// key component.
func validOwnerName(s string) bool {
	return s != "" && len(s) <= maxOwnerLen && !strings.ContainsRune(s, 0)
}
