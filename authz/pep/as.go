package pep

import (
	"context"
	"errors"
	"slices"
	"time"
)

// AuthorizationServer is what an Enforcer needs of the UMA authorization
// server that protects its resources, acting as one resource server (one
// OAuth client). CoHosted adapts an in-process *authz.Server; Remote talks
// to any UMA 2.0 AS over HTTP.
type AuthorizationServer interface {
	// Issuer returns the AS's issuer identifier, the as_uri of challenges.
	Issuer(ctx context.Context) (string, error)
	// EnsureResource returns the id of the resource that this resource
	// server registered for res.Owner under res.Name, registering res if
	// there is none yet, and adding res.Scopes it lacks. Concurrent calls
	// for one name create one resource.
	EnsureResource(ctx context.Context, res Resource) (string, error)
	// RequestTicket obtains a permission ticket for perms, which are on
	// resources of one owner. request is request context for the owner's
	// rules (input.request). An unknown resource gives ErrUnknownResource.
	RequestTicket(ctx context.Context, perms []Permission, request map[string][]string) (string, error)
	// VerifyRPT checks an RPT: signature or introspection, issuer,
	// audience (this resource server), expiry, and that it was not
	// revoked. A token that is not such an RPT gives ErrInvalidRPT; other
	// errors mean that the AS (or its keys) could not be reached.
	VerifyRPT(ctx context.Context, token string) (*RPT, error)
	// RecheckInterval is how long a verified RPT may be used from the
	// enforcement point's cache before Recheck: zero means on every use,
	// a negative value never.
	RecheckInterval() time.Duration
	// Recheck asks again whether a cached RPT is live (not revoked) and
	// returns it as it now stands; ErrInvalidRPT means it is not.
	Recheck(ctx context.Context, token string, rpt *RPT) (*RPT, error)
	// RegisteredResources returns the resources this resource server
	// registered that have uris, for mapping requests by path.
	RegisteredResources(ctx context.Context) ([]Resource, error)
}

// ResourceFeed is what an AuthorizationServer offers when it can tell the
// enforcement point of each change of this resource server's resources
// (CoHosted: the store's change feed): the table of registered uris is then
// kept up to date change by change, and RegisteredResources is only called
// again after a Resync.
type ResourceFeed interface {
	// WatchResources calls fn with each change of a resource (registered,
	// updated or deleted; of any resource server: RegisteredResource
	// tells), with a Resync when changes may have been missed (list again)
	// and with an Interrupted when changes stop being delivered until the
	// next Resync. fn is called one change at a time and must not block.
	// WatchResources returns once every later change is delivered, and
	// watches until ctx ends.
	WatchResources(ctx context.Context, fn func(ResourceChange)) error
	// RegisteredResource returns the resource id as RegisteredResources
	// lists it, and false when it is not listed: another resource
	// server's, without uris, or not (or no longer) registered.
	RegisteredResource(ctx context.Context, id string) (Resource, bool, error)
}

// ResourceChange is one event of ResourceFeed.WatchResources: the resource
// ID changed, or, with an empty ID, a Resync or an Interrupted.
type ResourceChange struct {
	ID          string
	Resync      bool
	Interrupted bool
}

// Errors of AuthorizationServer implementations.
var (
	// ErrInvalidRPT means that a token is not a valid, live RPT of the AS
	// for this resource server.
	ErrInvalidRPT = errors.New("not a valid RPT for this resource server")
	// ErrUnknownResource means that a resource id is not (or no longer)
	// registered.
	ErrUnknownResource = errors.New("resource is not registered")
	// ErrUnavailable means that the AS could not be reached or refused the
	// resource server's requests.
	ErrUnavailable = errors.New("authorization server unavailable")
)

// Resource is a resource description as the enforcement point sees it.
type Resource struct {
	ID     string
	Owner  string
	Name   string
	Type   string
	Scopes []string
	// URIs are the path patterns of a resource registered through the
	// protection API.
	URIs []string
}

// Permission is a requested permission (RequestTicket) or a granted one
// (an RPT's).
type Permission struct {
	ResourceID string
	Scopes     []string
	// ExpiresAt and NotBefore bound a granted permission; zero means no
	// bound besides the RPT's.
	ExpiresAt time.Time
	NotBefore time.Time
}

// RPT is a verified requesting party token.
type RPT struct {
	// ID is the token's jti (may be empty for opaque RPTs).
	ID string
	// Subject is the requesting party, ClientID the client it was issued
	// to.
	Subject  string
	ClientID string
	// ExpiresAt is the token's expiry; zero means none was given (then
	// the enforcement point's cache TTL bounds it).
	ExpiresAt   time.Time
	Permissions []Permission

	// verified is, for an RPT that is a JWT verified by the enforcement
	// point itself and then introspected, what the JWT said: each recheck
	// narrows it anew (Remote).
	verified *RPT
}

// grantedScopes returns the scopes the RPT grants on resourceID at now,
// and whether any live permission names the resource.
func (t *RPT) grantedScopes(resourceID string, now time.Time) ([]string, bool) {
	var scopes []string
	found := false
	for _, p := range t.Permissions {
		if p.ResourceID != resourceID {
			continue
		}
		if !p.ExpiresAt.IsZero() && !now.Before(p.ExpiresAt) {
			continue
		}
		if !p.NotBefore.IsZero() && now.Before(p.NotBefore) {
			continue
		}
		found = true
		for _, s := range p.Scopes {
			if !slices.Contains(scopes, s) {
				scopes = append(scopes, s)
			}
		}
	}
	slices.Sort(scopes)
	return scopes, found
}

// covers reports whether granted holds every scope of needed (all), or at
// least one (any). No needed scope is covered by any live permission on
// the resource.
func covers(granted, needed []string, any bool) bool {
	if len(needed) == 0 {
		return true
	}
	n := 0
	for _, s := range needed {
		if slices.Contains(granted, s) {
			n++
		}
	}
	if any {
		return n > 0
	}
	return n == len(needed)
}
