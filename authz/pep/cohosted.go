package pep

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/caddy-uma/caddy-uma/authz"
	"github.com/caddy-uma/caddy-uma/store"
)

// LocalServer is what the co-hosted mode uses of an authorization server in
// the same process; *authz.Server implements it.
type LocalServer interface {
	Issuer() string
	EnsureResource(ctx context.Context, resourceServer string, res store.Resource) (store.Resource, error)
	RequestTicket(ctx context.Context, resourceServer string, perms []authz.PermissionRequest, request map[string][]string) (string, error)
	VerifyRPT(ctx context.Context, token, audience string) (*authz.RPT, error)
	RPTLive(ctx context.Context, jti string) (bool, error)
	ResourcesOf(ctx context.Context, resourceServer string) ([]store.Resource, error)
	RegisteredResource(ctx context.Context, resourceServer, id string) (store.Resource, bool, error)
	WatchResources(ctx context.Context, fn func(store.Change)) error
}

var (
	_ LocalServer  = (*authz.Server)(nil)
	_ ResourceFeed = (*coHosted)(nil)
)

// coHosted is the AuthorizationServer of a resource server whose AS runs in
// the same process: tickets, registration and RPT checks are function
// calls, and a cached RPT is checked for revocation on every use (one
// store read), so that a revocation applies at once.
type coHosted struct {
	rs     string
	server func(ctx context.Context) LocalServer
}

// CoHosted returns the AuthorizationServer for the resource server (client
// id) resourceServer of an in-process AS. server returns the AS, waiting
// for it to start if need be, or nil if it is not running.
func CoHosted(resourceServer string, server func(ctx context.Context) LocalServer) AuthorizationServer {
	return &coHosted{rs: resourceServer, server: server}
}

// errNotStarted is returned while the in-process AS is not running.
var errNotStarted = fmt.Errorf("%w: the co-hosted authorization server is not running", ErrUnavailable)

func (c *coHosted) srv(ctx context.Context) (LocalServer, error) {
	s := c.server(ctx)
	if s == nil {
		return nil, errNotStarted
	}
	return s, nil
}

func (c *coHosted) Issuer(ctx context.Context) (string, error) {
	s, err := c.srv(ctx)
	if err != nil {
		return "", err
	}
	return s.Issuer(), nil
}

func (c *coHosted) EnsureResource(ctx context.Context, res Resource) (string, error) {
	s, err := c.srv(ctx)
	if err != nil {
		return "", err
	}
	got, err := s.EnsureResource(ctx, c.rs, store.Resource{
		Owner: res.Owner, Name: res.Name, Type: res.Type, Scopes: slices.Clone(res.Scopes),
	})
	if errors.Is(err, authz.ErrTooManyNewResources) {
		return "", fmt.Errorf("%w: %v", ErrRegistrationLimited, err)
	}
	if err != nil {
		return "", err
	}
	return got.ID, nil
}

func (c *coHosted) RequestTicket(ctx context.Context, perms []Permission, request map[string][]string) (string, error) {
	s, err := c.srv(ctx)
	if err != nil {
		return "", err
	}
	reqs := make([]authz.PermissionRequest, 0, len(perms))
	for _, p := range perms {
		reqs = append(reqs, authz.PermissionRequest{ResourceID: p.ResourceID, Scopes: p.Scopes})
	}
	tk, err := s.RequestTicket(ctx, c.rs, reqs, request)
	if errors.Is(err, store.ErrNotFound) {
		return "", fmt.Errorf("%w: %w", ErrUnknownResource, err)
	}
	return tk, err
}

// VerifyRPT verifies the RPT with the AS's keys and its record of live
// RPTs. Any failure counts as an invalid RPT: a failing store also fails
// the ticket request that follows, which then answers 403.
func (c *coHosted) VerifyRPT(ctx context.Context, token string) (*RPT, error) {
	s, err := c.srv(ctx)
	if err != nil {
		return nil, err
	}
	t, err := s.VerifyRPT(ctx, token, c.rs)
	if err != nil {
		return nil, ErrInvalidRPT
	}
	rpt := &RPT{ID: t.ID, Subject: t.Subject, ClientID: t.ClientID, ExpiresAt: t.ExpiresAt}
	for _, p := range t.Permissions {
		perm := Permission{ResourceID: p.ResourceID, Scopes: p.ResourceScopes}
		if p.ExpiresAt != 0 {
			perm.ExpiresAt = time.Unix(p.ExpiresAt, 0)
		}
		rpt.Permissions = append(rpt.Permissions, perm)
	}
	return rpt, nil
}

// RecheckInterval is zero: every use of a cached RPT asks the store
// whether it is still live.
func (c *coHosted) RecheckInterval() time.Duration { return 0 }

func (c *coHosted) Recheck(ctx context.Context, _ string, rpt *RPT) (*RPT, error) {
	s, err := c.srv(ctx)
	if err != nil {
		return nil, err
	}
	live, err := s.RPTLive(ctx, rpt.ID)
	if err != nil {
		return nil, fmt.Errorf("checking an RPT: %w", err)
	}
	if !live {
		return nil, ErrInvalidRPT
	}
	return rpt, nil
}

func (c *coHosted) RegisteredResources(ctx context.Context) ([]Resource, error) {
	s, err := c.srv(ctx)
	if err != nil {
		return nil, err
	}
	list, err := s.ResourcesOf(ctx, c.rs)
	if err != nil {
		return nil, err
	}
	var out []Resource
	for _, r := range list {
		if len(r.URIs) == 0 {
			continue
		}
		out = append(out, registered(r))
	}
	return out, nil
}

func registered(r store.Resource) Resource {
	return Resource{ID: r.ID, Owner: r.Owner, Name: r.Name, Type: r.Type, Scopes: r.Scopes, URIs: r.URIs}
}

// WatchResources passes on the changes of resources of the AS's store
// (its change feed).
func (c *coHosted) WatchResources(ctx context.Context, fn func(ResourceChange)) error {
	s, err := c.srv(ctx)
	if err != nil {
		return err
	}
	return s.WatchResources(ctx, func(ch store.Change) {
		fn(ResourceChange{ID: ch.Key, Resync: ch.Resync, Interrupted: ch.Interrupted})
	})
}

// RegisteredResource reads one resource of this resource server, as
// RegisteredResources lists it.
func (c *coHosted) RegisteredResource(ctx context.Context, id string) (Resource, bool, error) {
	s, err := c.srv(ctx)
	if err != nil {
		return Resource{}, false, err
	}
	r, ok, err := s.RegisteredResource(ctx, c.rs, id)
	if err != nil || !ok || len(r.URIs) == 0 {
		return Resource{}, false, err
	}
	return registered(r), true, nil
}
