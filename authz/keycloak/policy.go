package keycloak

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/caddy-uma/caddy-uma/authz"
	"github.com/caddy-uma/caddy-uma/authz/oauth"
	"github.com/caddy-uma/caddy-uma/authz/secret"
	"github.com/caddy-uma/caddy-uma/policies"
	"github.com/caddy-uma/caddy-uma/store"
)

// Keycloak's UMA policies ({issuer}/authz/protection/uma-policy): a
// resource server sets, for the owner of a resource, who may use which of
// its scopes. A policy is ours underneath:
//
//   - users only: one share per user (the console shows and revokes them);
//   - groups or clients (with or without users): an owner's rule module
//     named keycloak-policy-<id>, generated here, that allows the scopes
//     on the resource when the requesting party is one of the users, is in
//     one of the groups (the "groups" claim, lib.in_group) and asks through
//     one of the clients (lib.is_client): every kind the policy names must
//     hold, as Keycloak's UNANIMOUS decision strategy of its UMA policies.
//
// Keycloak's roles (a claim of Keycloak's own tokens) and its JavaScript
// conditions have no counterpart, and are refused with a 400 that says
// what to use instead. A policy's reach is a PAT's (authz.PATCaller.
// MayManage): the owner's PAT, or the resource server's own PAT for its
// resources, acting for their owner. (Keycloak itself takes the owner's
// access token here; caddy-uma takes PATs only on the protection API.)

// nsKeycloakPolicy is the Records namespace of UMA policies, keyed by
// <resource server> \x00 <id>.
const nsKeycloakPolicy = "keycloak_policy"

// Limits on UMA policies.
const (
	maxPolicyMembers = 100
	maxPolicies      = 1000 // per resource server
)

// keycloakPolicyRecord is a stored UMA policy, with what it made.
type keycloakPolicyRecord struct {
	ID             string    `json:"id"`
	ResourceServer string    `json:"resource_server"`
	Owner          string    `json:"owner"`
	ResourceID     string    `json:"resource_id"`
	Name           string    `json:"name"`
	Description    string    `json:"description,omitempty"`
	Scopes         []string  `json:"scopes"`
	Users          []string  `json:"users,omitempty"`
	Groups         []string  `json:"groups,omitempty"`
	Clients        []string  `json:"clients,omitempty"`
	Shares         []string  `json:"shares,omitempty"`
	Rule           string    `json:"rule,omitempty"`
	CreatedAt      time.Time `json:"created_at"`
	// Version counts the updates: an update claims the record by swapping
	// it from the version it read, so that of concurrent updates one wins.
	Version int `json:"version,omitempty"`
}

// keycloakPolicy is Keycloak's UmaPermissionRepresentation.
type keycloakPolicy struct {
	ID               string   `json:"id"`
	Name             string   `json:"name"`
	Description      string   `json:"description,omitempty"`
	Type             string   `json:"type"`
	Logic            string   `json:"logic"`
	DecisionStrategy string   `json:"decisionStrategy"`
	Owner            string   `json:"owner"`
	Scopes           []string `json:"scopes"`
	Users            []string `json:"users,omitempty"`
	Groups           []string `json:"groups,omitempty"`
	Clients          []string `json:"clients,omitempty"`
}

func (p keycloakPolicyRecord) representation() keycloakPolicy {
	return keycloakPolicy{ID: p.ID, Name: p.Name, Description: p.Description, Type: "uma", Logic: "POSITIVE",
		DecisionStrategy: "UNANIMOUS", Owner: p.Owner, Scopes: nonNil(p.Scopes), Users: p.Users, Groups: p.Groups, Clients: p.Clients}
}

// keycloakPolicyInput is a create or update body.
type keycloakPolicyInput struct {
	ID          *string         `json:"id"`
	Name        string          `json:"name"`
	Description string          `json:"description"`
	Scopes      []string        `json:"scopes"`
	Users       []string        `json:"users"`
	Groups      []string        `json:"groups"`
	Clients     []string        `json:"clients"`
	Roles       []string        `json:"roles"`
	Condition   string          `json:"condition"`
	Logic       string          `json:"logic"`
	Decision    string          `json:"decisionStrategy"`
	Type        string          `json:"type"`
	Owner       json.RawMessage `json:"owner"`
}

// decodePolicy reads and checks a policy body against its resource into p.
func decodePolicy(w http.ResponseWriter, r *http.Request, res store.Resource, p *keycloakPolicyRecord) error {
	var in keycloakPolicyInput
	if err := oauth.ReadJSON(w, r, &in); err != nil {
		return err
	}
	switch {
	case in.Condition != "":
		return oauth.ErrInvalidRequest("condition is not supported: caddy-uma runs no JavaScript; write the condition as an owner's rule in Rego (PUT {issuer}/owner/rules/{name})")
	case len(in.Roles) > 0:
		return oauth.ErrInvalidRequest("roles are not supported: they are claims of Keycloak's own tokens; use groups (the groups claim of the requesting party's token) or an owner's rule")
	case in.Logic != "" && in.Logic != "POSITIVE":
		return oauth.ErrInvalidRequest("logic must be POSITIVE: a policy here only grants")
	case in.Decision != "" && in.Decision != "UNANIMOUS":
		return oauth.ErrInvalidRequest("decisionStrategy must be UNANIMOUS: every kind of member the policy names (users, groups, clients) must match")
	case in.Type != "" && in.Type != "uma":
		return oauth.ErrInvalidRequest("type must be uma")
	case in.Name == "" || len(in.Name) > authz.MaxNameLen || !authz.ValidText(in.Name, false):
		return oauth.ErrInvalidRequest("name is required: 1 to %d bytes of text", authz.MaxNameLen)
	case len(in.Description) > authz.MaxTextLen || !authz.ValidText(in.Description, true):
		return oauth.ErrInvalidRequest("description must be text of at most %d bytes", authz.MaxTextLen)
	case len(in.Users)+len(in.Groups)+len(in.Clients) == 0:
		return oauth.ErrInvalidRequest("a policy needs users, groups or clients: whom it grants the scopes")
	case len(in.Users) > maxPolicyMembers || len(in.Groups) > maxPolicyMembers || len(in.Clients) > maxPolicyMembers || len(in.Scopes) > authz.MaxScopes:
		return oauth.ErrInvalidRequest("at most %d users, groups, clients and %d scopes", maxPolicyMembers, authz.MaxScopes)
	}
	for _, list := range [][]string{in.Users, in.Groups, in.Clients} {
		for _, v := range list {
			if !authz.ValidSubject(v) {
				return oauth.ErrInvalidRequest("users, groups and clients are 1 to %d bytes of text each", authz.MaxSubjectLen)
			}
		}
	}
	scopes := in.Scopes
	if len(scopes) == 0 {
		scopes = res.Scopes // Keycloak: the resource's every scope
	}
	for _, sc := range scopes {
		if !slices.Contains(res.Scopes, sc) {
			return oauth.New(oauth.InvalidScope).WithDescription("scope " + oauth.Quote(sc) + " is not registered on resource " + oauth.Quote(res.ID))
		}
	}
	if len(scopes) == 0 {
		return oauth.New(oauth.InvalidScope).WithDescription("the resource has no scopes to grant")
	}
	p.Name, p.Description = in.Name, in.Description
	p.Scopes = appendNew(nil, scopes...)
	p.Users, p.Groups, p.Clients = appendNew(nil, in.Users...), appendNew(nil, in.Groups...), appendNew(nil, in.Clients...)
	return nil
}

// createPolicy sets a policy on the path's resource and answers it.
func (c *Compat) createPolicy(w http.ResponseWriter, r *http.Request, caller authz.PATCaller) error {
	res, err := c.store.GetResource(r.Context(), r.PathValue("id"))
	if errors.Is(err, store.ErrNotFound) || (err == nil && !caller.MayManage(res)) {
		return oauth.ErrInvalidRequest("resource %s is not registered by this resource server", oauth.Quote(r.PathValue("id")))
	}
	if err != nil {
		return oauth.ErrServer("could not read the resource", err)
	}
	p := keycloakPolicyRecord{ID: secret.New(12), ResourceServer: caller.ClientID, Owner: res.Owner, ResourceID: res.ID, CreatedAt: c.now().UTC()}
	if err := decodePolicy(w, r, res, &p); err != nil {
		return err
	}
	existing, err := c.store.List(r.Context(), nsKeycloakPolicy, caller.ClientID+sep, maxPolicies)
	if err != nil {
		return oauth.ErrServer("could not list the policies", err)
	}
	if len(existing) >= maxPolicies {
		return oauth.ErrInvalidRequest("this resource server has %d UMA policies, the most it may have: delete some, or write owners' rules", maxPolicies)
	}
	if err := c.applyPolicy(r.Context(), &p); err != nil {
		return err
	}
	if err := c.storePolicy(r.Context(), p); err != nil {
		c.unapplyPolicy(r.Context(), p)
		return err
	}
	c.log.Info("UMA policy set", clientField(caller.ClientID), ownerField(p.Owner), resourceField(p.ResourceID))
	oauth.WriteJSON(w, http.StatusOK, p.representation())
	return nil
}

// updatePolicy replaces a policy (what it made goes, the new one
// is made) and answers 204.
func (c *Compat) updatePolicy(w http.ResponseWriter, r *http.Request, caller authz.PATCaller) error {
	old, res, raw, err := c.managedPolicy(r, caller)
	if err != nil {
		return err
	}
	p := old
	p.Shares, p.Rule = nil, ""
	if err := decodePolicy(w, r, res, &p); err != nil {
		return err
	}
	old.Version++
	p.Version = old.Version
	claimed, err := json.Marshal(old)
	if err != nil {
		return oauth.ErrServer("could not store the policy", err)
	}
	if err := c.store.Swap(r.Context(), nsKeycloakPolicy, old.ResourceServer+sep+old.ID, raw, claimed, time.Time{}); errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrNotFound) {
		return errPolicyChanged()
	} else if err != nil {
		return oauth.ErrServer("could not store the policy", err)
	}
	if err := c.unapplyPolicy(r.Context(), old); err != nil {
		return err
	}
	key := old.ResourceServer + sep + old.ID
	if err := c.applyPolicy(r.Context(), &p); err != nil {
		// The old policy stands: made again, and its record updated.
		restored := old
		restored.Shares, restored.Rule = nil, ""
		if c.applyPolicy(r.Context(), &restored) == nil {
			if val, merr := json.Marshal(restored); merr == nil && c.store.Swap(r.Context(), nsKeycloakPolicy, key, claimed, val, time.Time{}) != nil {
				c.unapplyPolicy(r.Context(), restored) // another write won meanwhile
			}
		}
		return err
	}
	// The record goes from the version claimed to the new one, unless a
	// concurrent update or delete claimed it meanwhile: then what this
	// update made goes, and the other stands.
	val, err := json.Marshal(p)
	if err != nil {
		c.unapplyPolicy(r.Context(), p)
		return oauth.ErrServer("could not store the policy", err)
	}
	if err := c.store.Swap(r.Context(), nsKeycloakPolicy, key, claimed, val, time.Time{}); err != nil {
		c.unapplyPolicy(r.Context(), p)
		if errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrNotFound) {
			return errPolicyChanged()
		}
		return oauth.ErrServer("could not store the policy", err)
	}
	c.log.Info("UMA policy updated", clientField(caller.ClientID), ownerField(p.Owner), resourceField(p.ResourceID))
	oauth.WriteNoContent(w, http.StatusNoContent)
	return nil
}

// deletePolicy removes a policy and what it made.
func (c *Compat) deletePolicy(w http.ResponseWriter, r *http.Request, caller authz.PATCaller) error {
	p, _, raw, err := c.managedPolicy(r, caller)
	if err != nil {
		return err
	}
	if err := c.unapplyPolicy(r.Context(), p); err != nil {
		return err
	}
	// Deleted only as read: a concurrent update's policy stands.
	err = c.store.PutAll(r.Context(), []store.Write{{Namespace: nsKeycloakPolicy, Key: p.ResourceServer + sep + p.ID, Delete: true, Old: raw}})
	if errors.Is(err, store.ErrConflict) {
		return errPolicyChanged()
	} else if err != nil && !errors.Is(err, store.ErrNotFound) {
		return oauth.ErrServer("could not delete the policy", err)
	}
	c.log.Info("UMA policy deleted", clientField(caller.ClientID), ownerField(p.Owner), resourceField(p.ResourceID))
	oauth.WriteNoContent(w, http.StatusNoContent)
	return nil
}

// readPolicy answers one policy.
func (c *Compat) readPolicy(w http.ResponseWriter, r *http.Request, caller authz.PATCaller) error {
	p, _, _, err := c.managedPolicy(r, caller)
	if err != nil {
		return err
	}
	oauth.WriteJSON(w, http.StatusOK, p.representation())
	return nil
}

// listPolicies answers the policies of this resource server within
// the caller's reach, filtered by resource, name (a case-insensitive
// substring) and scope, from first, at most max (0 and 100 by default).
func (c *Compat) listPolicies(w http.ResponseWriter, r *http.Request, caller authz.PATCaller) error {
	params := r.URL.Query()
	first, err := keycloakInt(params, "first", 0)
	if err != nil {
		return err
	}
	limit, err := keycloakInt(params, "max", keycloakDefaultMax)
	if err != nil {
		return err
	}
	if limit < 0 || limit > maxPolicies {
		limit = maxPolicies
	}
	recs, err := c.policies(r.Context(), caller.ClientID)
	if err != nil {
		return oauth.ErrServer("could not list the policies", err)
	}
	resource, name, scope := params.Get("resource"), strings.ToLower(params.Get("name")), params.Get("scope")
	out := []keycloakPolicy{}
	for _, p := range recs {
		switch {
		case !caller.ActsForAnyOwner() && p.Owner != caller.Subject,
			resource != "" && p.ResourceID != resource,
			name != "" && !strings.Contains(strings.ToLower(p.Name), name),
			scope != "" && !slices.Contains(p.Scopes, scope):
			continue
		}
		if first > 0 {
			first--
			continue
		}
		if len(out) >= limit {
			break
		}
		out = append(out, p.representation())
	}
	oauth.WriteJSON(w, http.StatusOK, out)
	return nil
}

func errNoSuchPolicy() error { return oauth.ErrNotFound("no such UMA policy") }

// managedPolicy returns the path's policy, its resource and the record as
// stored, if within the caller's reach; any other is not found.
func (c *Compat) managedPolicy(r *http.Request, caller authz.PATCaller) (keycloakPolicyRecord, store.Resource, []byte, error) {
	var p keycloakPolicyRecord
	id := r.PathValue("id")
	if id == "" || strings.Contains(id, sep) {
		return p, store.Resource{}, nil, errNoSuchPolicy()
	}
	val, err := c.store.Get(r.Context(), nsKeycloakPolicy, caller.ClientID+sep+id)
	if errors.Is(err, store.ErrNotFound) {
		return p, store.Resource{}, nil, errNoSuchPolicy()
	}
	if err != nil {
		return p, store.Resource{}, nil, oauth.ErrServer("could not read the policy", err)
	}
	if err := json.Unmarshal(val, &p); err != nil {
		return p, store.Resource{}, nil, oauth.ErrServer("could not read the policy", err)
	}
	res, err := c.store.GetResource(r.Context(), p.ResourceID)
	if errors.Is(err, store.ErrNotFound) || (err == nil && (!caller.MayManage(res) || res.Owner != p.Owner)) {
		return p, store.Resource{}, nil, errNoSuchPolicy()
	}
	if err != nil {
		return p, store.Resource{}, nil, oauth.ErrServer("could not read the resource", err)
	}
	return p, res, val, nil
}

// errPolicyChanged answers a write that lost to a concurrent one.
func errPolicyChanged() error {
	return oauth.ErrInvalidRequest("the policy changed meanwhile: read it again").WithStatus(http.StatusConflict)
}

func (c *Compat) storePolicy(ctx context.Context, p keycloakPolicyRecord) error {
	val, err := json.Marshal(p)
	if err != nil {
		return oauth.ErrServer("could not store the policy", err)
	}
	if err := c.store.Put(ctx, nsKeycloakPolicy, p.ResourceServer+sep+p.ID, val, time.Time{}); err != nil {
		return oauth.ErrServer("could not store the policy", err)
	}
	return nil
}

// applyPolicy makes what a policy stands for: shares for users only, a
// rule otherwise. It records what it made in p.
func (c *Compat) applyPolicy(ctx context.Context, p *keycloakPolicyRecord) error {
	if len(p.Groups) == 0 && len(p.Clients) == 0 {
		for _, u := range p.Users {
			sh, err := c.as.AddShare(ctx, authz.Share{Owner: p.Owner, ResourceID: p.ResourceID, Subject: u, Scopes: p.Scopes})
			if err != nil {
				c.unapplyPolicy(ctx, *p)
				return oauth.ErrServer("could not store a share", err)
			}
			p.Shares = append(p.Shares, sh.ID)
		}
		return nil
	}
	p.Rule = "keycloak-policy-" + p.ID
	err := c.as.PutRule(ctx, p.Owner, p.Rule, policyRule(*p))
	var ce policies.CompileErrors
	switch {
	case errors.As(err, &ce):
		p.Rule = ""
		return authz.RulesRefused(ce)
	case errors.Is(err, policies.ErrBusy) || errors.Is(err, policies.ErrCompileTimeout):
		p.Rule = ""
		return oauth.ErrUnavailable("the owner's rules cannot be compiled now", 5, err)
	case err != nil:
		p.Rule = ""
		return oauth.ErrServer("could not store the rule", err)
	}
	return nil
}

// unapplyPolicy removes what a policy made.
func (c *Compat) unapplyPolicy(ctx context.Context, p keycloakPolicyRecord) error {
	for _, id := range p.Shares {
		if _, _, err := c.as.RevokeShare(ctx, p.Owner, p.ResourceID, id); err != nil && !errors.Is(err, authz.ErrNoSuchShare) {
			return oauth.ErrServer("could not revoke a share", err)
		}
	}
	if p.Rule != "" {
		if err := c.as.DeleteRule(ctx, p.Owner, p.Rule); err != nil && !errors.Is(err, authz.ErrNoSuchRule) {
			return oauth.ErrServer("could not delete the rule", err)
		}
	}
	return nil
}

// policyRule is the owner's rule module of a policy that names groups or
// clients. Every string goes in as a JSON string, which is a Rego string.
func policyRule(p keycloakPolicyRecord) string {
	var b strings.Builder
	fmt.Fprintf(&b, "package uma.share\n\nimport data.uma.lib\n\n# Keycloak UMA policy %s, set by resource server %s.\n", regoString(p.ID), regoString(p.ResourceServer))
	fmt.Fprintf(&b, "allow contains scope if {\n\tinput.resource.id == %s\n\tsome scope in %s\n", regoString(p.ResourceID), regoSet(p.Scopes))
	if len(p.Users) > 0 {
		fmt.Fprintf(&b, "\tsome user in %s\n\tlib.is_subject(user)\n", regoSet(p.Users))
	}
	if len(p.Groups) > 0 {
		fmt.Fprintf(&b, "\tsome group in %s\n\tlib.in_group(group)\n", regoSet(p.Groups))
	}
	if len(p.Clients) > 0 {
		fmt.Fprintf(&b, "\tsome client in %s\n\tlib.is_client(client)\n", regoSet(p.Clients))
	}
	b.WriteString("}\n")
	return b.String()
}

func regoString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func regoSet(vals []string) string {
	quoted := make([]string, 0, len(vals))
	for _, v := range vals {
		quoted = append(quoted, regoString(v))
	}
	return "{" + strings.Join(quoted, ", ") + "}"
}

// policies returns the UMA policies of the resource server rs.
func (c *Compat) policies(ctx context.Context, rs string) ([]keycloakPolicyRecord, error) {
	recs, err := c.store.List(ctx, nsKeycloakPolicy, rs+sep, 0)
	if err != nil {
		return nil, fmt.Errorf("listing UMA policies: %w", err)
	}
	out := make([]keycloakPolicyRecord, 0, len(recs))
	for _, rec := range recs {
		var p keycloakPolicyRecord
		if err := json.Unmarshal(rec.Value, &p); err != nil {
			return nil, fmt.Errorf("decoding a UMA policy: %w", err)
		}
		out = append(out, p)
	}
	return out, nil
}

// appendNew appends the items not in list yet.
func appendNew(list []string, items ...string) []string {
	for _, it := range items {
		if !slices.Contains(list, it) {
			list = append(list, it)
		}
	}
	return list
}
