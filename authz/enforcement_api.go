package authz

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"time"

	"github.com/caddy-uma/caddy-uma/store"
)

// The Go API for an enforcement point in the same process as the AS (the
// co-hosted mode of uma_protect): the protection API without HTTP.

// nsResourceName maps (resource server, owner, name) to a resource id, so
// that registering a resource by name is idempotent.
const nsResourceName = "resource_name"

// ErrTooManyNewResources means that resources are being registered on
// first sight faster than Config.NewResourceRate allows.
var ErrTooManyNewResources = errors.New("too many new resources registered on first sight; try again later")

// PermissionRequest is one requested permission of a ticket: scopes on a
// resource.
type PermissionRequest struct {
	ResourceID string   `json:"rid"`
	Scopes     []string `json:"scopes"`
}

// RequestTicket issues a permission ticket as the resource server
// resourceServer would get it from the permission endpoint. The resources
// must be registered by that resource server and belong to one owner.
// request is request context for the owner's rules (input.request).
func (s *Server) RequestTicket(ctx context.Context, resourceServer string, perms []PermissionRequest, request map[string][]string) (string, error) {
	t := ticket{ResourceServer: resourceServer, Request: request}
	if requestContextSize(request) > maxRequestContextBytes {
		return "", fmt.Errorf("request context is larger than %d bytes", maxRequestContextBytes)
	}
	for _, p := range perms {
		res, err := s.store.GetResource(ctx, p.ResourceID)
		if err != nil {
			return "", fmt.Errorf("resource %q: %w", p.ResourceID, err)
		}
		if res.ResourceServer != resourceServer {
			return "", fmt.Errorf("resource %q is not registered by %q", p.ResourceID, resourceServer)
		}
		if err := addToTicket(&t, res, p.Scopes); err != nil {
			return "", err
		}
	}
	if len(t.Permissions) == 0 {
		return "", errors.New("no permissions requested")
	}
	return s.sealTicket(t)
}

// EnsureResource returns the resource that resourceServer registered for
// res.Owner under res.Name, registering res if there is none. Concurrent
// calls for one name create one resource (the store is used by one process,
// so a lock per name is enough). Scopes missing from an existing resource
// are added.
func (s *Server) EnsureResource(ctx context.Context, resourceServer string, res store.Resource) (store.Resource, error) {
	if res.Name == "" || !ValidSubject(res.Owner) {
		return res, errors.New("a resource needs a name and an owner")
	}
	key := resourceServer + sep + res.Owner + sep + res.Name
	h := fnv.New32a()
	h.Write([]byte(key))
	mu := &s.ensureLocks[h.Sum32()%uint32(len(s.ensureLocks))]
	mu.Lock()
	defer mu.Unlock()

	if val, err := s.store.Get(ctx, nsResourceName, key); err == nil {
		existing, err := s.store.GetResource(ctx, string(val))
		if err == nil {
			return s.addScopes(ctx, existing, res.Scopes)
		}
		if !errors.Is(err, store.ErrNotFound) {
			return res, err
		}
		// Deregistered through the protection API: forget the name.
		if err := s.store.Delete(ctx, nsResourceName, key); err != nil && !errors.Is(err, store.ErrNotFound) {
			return res, err
		}
	} else if !errors.Is(err, store.ErrNotFound) {
		return res, err
	}
	// Registered through the protection API under that name?
	existing, ok, err := s.findByName(ctx, resourceServer, res.Owner, res.Name)
	if err != nil {
		return res, err
	}
	if !ok {
		// Anonymous requests at an enforcement point lead here: bound how
		// fast they can add resources to the store.
		if !s.newResources.Allow() {
			return res, ErrTooManyNewResources
		}
		now := s.now().UTC()
		res.ID, res.ResourceServer, res.CreatedAt, res.UpdatedAt = randomID(), resourceServer, now, now
		if err := s.store.CreateResource(ctx, res); err != nil {
			return res, err
		}
		s.log.Info("resource registered on first sight", clientField(resourceServer), ownerField(res.Owner), resourceField(res.ID))
		existing = res
	}
	if err := s.store.Put(ctx, nsResourceName, key, []byte(existing.ID), time.Time{}); err != nil {
		return res, err
	}
	return s.addScopes(ctx, existing, res.Scopes)
}

// findByName looks for a resource by name among those a resource server
// registered for an owner.
func (s *Server) findByName(ctx context.Context, resourceServer, owner, name string) (store.Resource, bool, error) {
	list, err := s.store.ListResources(ctx, store.ResourceQuery{ResourceServer: resourceServer, Owner: owner})
	if err != nil {
		return store.Resource{}, false, err
	}
	for _, r := range list {
		if r.Name == name {
			return r, true, nil
		}
	}
	return store.Resource{}, false, nil
}

func (s *Server) addScopes(ctx context.Context, res store.Resource, scopes []string) (store.Resource, error) {
	changed := false
	for _, sc := range scopes {
		if !slices.Contains(res.Scopes, sc) {
			res.Scopes = append(res.Scopes, sc)
			changed = true
		}
	}
	if !changed {
		return res, nil
	}
	res.UpdatedAt = s.now().UTC()
	return res, s.store.UpdateResource(ctx, res)
}

// ResourcesOf returns the resources a resource server registered, for
// mapping requests by their uris.
func (s *Server) ResourcesOf(ctx context.Context, resourceServer string) ([]store.Resource, error) {
	return s.store.ListResources(ctx, store.ResourceQuery{ResourceServer: resourceServer})
}

// RPTLive reports whether the RPT with id jti is still live: not revoked
// and not expired. A co-hosted enforcement point that caches verified RPTs
// asks this on each request, so that a revocation applies at once.
func (s *Server) RPTLive(ctx context.Context, jti string) (bool, error) {
	_, err := s.store.Get(ctx, nsRPT, jti)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}
