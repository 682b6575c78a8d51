package authz

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/caddy-uma/caddy-uma/store"
)

// The Go API for an enforcement point in the same process as the AS (the
// co-hosted mode of uma_protect): the protection API without HTTP.

// nsResourceName maps (resource server, owner, name) to a resource id, so
// that registering a resource by name is idempotent.
const nsResourceName = "resource_name"

// sep separates the parts of a store key.
const sep = "\x00"

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
// calls for one name, on every node of the store, end with one resource:
// each creates its resource, then claims the name with a conditional
// write, and a caller that loses the claim deletes its own and takes the
// winner's. Scopes missing from an existing resource are added.
func (s *Server) EnsureResource(ctx context.Context, resourceServer string, res store.Resource) (store.Resource, error) {
	if res.Name == "" || !ValidSubject(res.Owner) {
		return res, errors.New("a resource needs a name and an owner")
	}
	key := resourceServer + sep + res.Owner + sep + res.Name
	for range maxNameClaims {
		existing, found, err := s.namedResource(ctx, key)
		if err != nil {
			return res, err
		}
		if found {
			out, err := s.addScopes(ctx, existing, res.Scopes)
			if errors.Is(err, store.ErrNotFound) {
				continue
			}
			return out, err
		}
		// Registered through the protection API under that name, or new.
		existing, found, err = s.findByName(ctx, resourceServer, res.Owner, res.Name)
		if err != nil {
			return res, err
		}
		if !found {
			// Anonymous requests at an enforcement point lead here: bound
			// how fast they can add resources to the store.
			if !s.newResources.Allow() {
				return res, ErrTooManyNewResources
			}
			now := s.now().UTC()
			existing = res
			existing.ID, existing.ResourceServer, existing.CreatedAt, existing.UpdatedAt = randomID(), resourceServer, now, now
			if err := s.store.CreateResource(ctx, existing); err != nil {
				return res, err
			}
		}
		err = s.store.Swap(ctx, nsResourceName, key, nil, []byte(existing.ID), time.Time{})
		if errors.Is(err, store.ErrConflict) {
			// Another caller claimed the name first, perhaps for this very
			// resource (it found it by name): if not, ours goes.
			claimed, gerr := s.store.Get(ctx, nsResourceName, key)
			switch {
			case gerr == nil && string(claimed) == existing.ID:
				err = nil
			case !found:
				if err := s.store.DeleteResource(ctx, existing.ID); err != nil && !errors.Is(err, store.ErrNotFound) {
					return res, err
				}
			}
		}
		if errors.Is(err, store.ErrConflict) {
			continue
		}
		if err != nil {
			return res, err
		}
		if !found {
			s.log.Info("resource registered on first sight", clientField(resourceServer), ownerField(res.Owner), resourceField(existing.ID))
		}
		out, err := s.addScopes(ctx, existing, res.Scopes)
		if errors.Is(err, store.ErrNotFound) {
			continue // deregistered meanwhile: the name is forgotten next time round
		}
		return out, err
	}
	return res, fmt.Errorf("the name of resource %q keeps changing; try again", res.Name)
}

// maxNameClaims bounds the attempts of EnsureResource to claim a name.
const maxNameClaims = 4

// namedResource returns the resource a name maps to. A name whose
// resource was deregistered (through the protection API) is forgotten.
func (s *Server) namedResource(ctx context.Context, key string) (store.Resource, bool, error) {
	val, err := s.store.Get(ctx, nsResourceName, key)
	if errors.Is(err, store.ErrNotFound) {
		return store.Resource{}, false, nil
	}
	if err != nil {
		return store.Resource{}, false, err
	}
	res, err := s.store.GetResource(ctx, string(val))
	if err == nil {
		return res, true, nil
	}
	if !errors.Is(err, store.ErrNotFound) {
		return res, false, err
	}
	if err := s.store.Swap(ctx, nsResourceName, key, val, nil, time.Time{}); err != nil && !errors.Is(err, store.ErrConflict) {
		return res, false, err
	}
	return store.Resource{}, false, nil
}

// findByName looks for a resource by name among those a resource server
// registered for an owner (the one of the smallest ID, if several), through
// the store's index of names.
func (s *Server) findByName(ctx context.Context, resourceServer, owner, name string) (store.Resource, bool, error) {
	list, err := s.store.ListResources(ctx, store.ResourceQuery{ResourceServer: resourceServer, Owner: owner, Name: name, Limit: 1})
	if err != nil || len(list) == 0 {
		return store.Resource{}, false, err
	}
	return list[0], true, nil
}

// addScopes adds the scopes res lacks with a compare-and-swap on its last
// update, so that a concurrent change (on any node) is not undone.
func (s *Server) addScopes(ctx context.Context, res store.Resource, scopes []string) (store.Resource, error) {
	for attempt := 0; ; attempt++ {
		next := res
		next.Scopes = appendNew(slices.Clone(res.Scopes), scopes...)
		if len(next.Scopes) == len(res.Scopes) {
			return res, nil
		}
		next.UpdatedAt = nextVersion(s.now(), res.UpdatedAt)
		err := s.store.SwapResource(ctx, next, res.UpdatedAt)
		if err == nil {
			return next, nil
		}
		if !errors.Is(err, store.ErrConflict) || attempt == maxNameClaims {
			return res, err
		}
		if res, err = s.store.GetResource(ctx, res.ID); err != nil {
			return res, err
		}
	}
}

// nextVersion is the UpdatedAt of a resource changed at now whose last
// version is prev: now, or just after prev if the clock has not moved
// past it.
func nextVersion(now, prev time.Time) time.Time {
	now = now.UTC()
	if min := prev.Add(time.Microsecond); now.Before(min) {
		return min.UTC()
	}
	return now
}

// RegisteredResource returns the resource id if the resource server
// registered it, and false if it did not (another resource server's, or
// none). It reads the store, not the resources the AS keeps: an
// enforcement point calls it when the change feed tells it the resource
// changed, and the AS may not have heard of the change yet.
func (s *Server) RegisteredResource(ctx context.Context, resourceServer, id string) (store.Resource, bool, error) {
	res, err := s.resources.Store.GetResource(ctx, id)
	if errors.Is(err, store.ErrNotFound) || err == nil && res.ResourceServer != resourceServer {
		return store.Resource{}, false, nil
	}
	if err != nil {
		return store.Resource{}, false, err
	}
	return res, true, nil
}

// WatchResources calls fn with each change of a resource (of any resource
// server) from the store's change feed, with its Resync and Interrupted
// (see store.Changes.Watch), until ctx ends. A cache of ResourcesOf stays
// up to date with it, one RegisteredResource per change.
func (s *Server) WatchResources(ctx context.Context, fn func(store.Change)) error {
	return s.store.Watch(ctx, fn, store.ResourcesNamespace)
}

// ResourcesOf returns the resources a resource server registered, for
// mapping requests by their uris.
func (s *Server) ResourcesOf(ctx context.Context, resourceServer string) ([]store.Resource, error) {
	return s.store.ListResources(ctx, store.ResourceQuery{ResourceServer: resourceServer})
}
