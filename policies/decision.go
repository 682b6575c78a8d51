package policies

import (
	"cmp"
	"fmt"
	"slices"

	"github.com/open-policy-agent/opa/v1/ast"
)

// Decision is the outcome of the rules for one resource. Every slice is
// sorted and free of duplicates.
type Decision struct {
	// Allow are the scopes the owner's rules allow (uma.share allow).
	Allow []string `json:"allow,omitempty"`
	// Deny are the scopes the owner's rules refuse (uma.share deny).
	Deny []string `json:"deny,omitempty"`
	// SystemDeny are the scopes the system rules refuse (uma.system deny).
	SystemDeny []string `json:"system_deny,omitempty"`
	// Shared are the scopes granted by matching console shares
	// (data.uma.lib.shared_scopes).
	Shared []string `json:"shared,omitempty"`
	// Granted is (Allow ∪ Shared) − Deny − SystemDeny, restricted to the
	// resource's scopes. The caller restricts it further to the scopes that
	// were requested.
	Granted []string `json:"granted,omitempty"`
	// AskOwner are the scopes the owner may be asked to approve (uma.share
	// ask_owner), as the rules produced them: the caller removes what is
	// already granted or denied, and what was not requested.
	AskOwner []string `json:"ask_owner,omitempty"`
	// RequiredClaims are the claims that would help (uma.share
	// required_claims): hints for an UMA need_info response.
	RequiredClaims []RequiredClaim `json:"required_claims,omitempty"`
}

// RequiredClaim is a need_info hint, as in UMA grant section 3.3.6. Every
// member is optional.
type RequiredClaim struct {
	// Name is the claim's name (a URI is fine).
	Name string `json:"name,omitempty"`
	// FriendlyName is a human-readable name for the claim.
	FriendlyName string `json:"friendly_name,omitempty"`
	// ClaimType says how to interpret the claim's value (a URI is fine).
	ClaimType string `json:"claim_type,omitempty"`
	// ClaimTokenFormat are the acceptable formats of a pushed claim token
	// carrying the claim; any one will do.
	ClaimTokenFormat []string `json:"claim_token_format,omitempty"`
	// Issuer are the acceptable issuers of the claim; any one will do.
	Issuer []string `json:"issuer,omitempty"`
}

// ownerResult reads the object produced by the owner decision module.
func ownerResult(obj ast.Object, d *Decision) error {
	var err error
	if d.Allow, err = scopeSet(obj, "allow"); err != nil {
		return err
	}
	if d.Deny, err = scopeSet(obj, "deny"); err != nil {
		return err
	}
	if d.AskOwner, err = scopeSet(obj, "ask_owner"); err != nil {
		return err
	}
	if d.Shared, err = scopeSet(obj, "shared"); err != nil {
		return err
	}
	d.RequiredClaims, err = requiredClaims(obj.Get(ast.InternedTerm("required_claims")))
	return err
}

// scopeSet reads the set of strings under key.
func scopeSet(obj ast.Object, key string) ([]string, error) {
	t := obj.Get(ast.InternedTerm(key))
	if t == nil {
		return nil, nil
	}
	var out []string
	var bad *ast.Term
	each(t.Value, func(e *ast.Term) {
		if s, ok := e.Value.(ast.String); ok {
			out = append(out, string(s))
		} else if bad == nil {
			bad = e
		}
	})
	if bad != nil {
		return nil, fmt.Errorf("%w: %s: %v is not a scope string", ErrEvaluation, key, bad)
	}
	if out == nil && !isCollection(t.Value) {
		return nil, fmt.Errorf("%w: %s: want a set of scope strings, got %s", ErrEvaluation, key, ast.ValueName(t.Value))
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// requiredClaims reads the set of required_claims objects.
func requiredClaims(t *ast.Term) ([]RequiredClaim, error) {
	if t == nil {
		return nil, nil
	}
	if !isCollection(t.Value) {
		return nil, fmt.Errorf("%w: required_claims: want a set of objects, got %s", ErrEvaluation, ast.ValueName(t.Value))
	}
	var out []RequiredClaim
	var err error
	each(t.Value, func(e *ast.Term) {
		if err != nil {
			return
		}
		obj, ok := e.Value.(ast.Object)
		if !ok {
			err = fmt.Errorf("%w: required_claims: %v is not an object", ErrEvaluation, e)
			return
		}
		var rc RequiredClaim
		for _, f := range []struct {
			key string
			dst *string
		}{{"name", &rc.Name}, {"friendly_name", &rc.FriendlyName}, {"claim_type", &rc.ClaimType}} {
			if err == nil {
				*f.dst, err = claimString(obj, f.key)
			}
		}
		for _, f := range []struct {
			key string
			dst *[]string
		}{{"claim_token_format", &rc.ClaimTokenFormat}, {"issuer", &rc.Issuer}} {
			if err == nil {
				*f.dst, err = claimStrings(obj, f.key)
			}
		}
		out = append(out, rc)
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(out, compareClaims)
	return slices.CompactFunc(out, func(a, b RequiredClaim) bool { return compareClaims(a, b) == 0 }), nil
}

func claimString(obj ast.Object, key string) (string, error) {
	t := obj.Get(ast.InternedTerm(key))
	if t == nil {
		return "", nil
	}
	s, ok := t.Value.(ast.String)
	if !ok {
		return "", fmt.Errorf("%w: required_claims: %s: %v is not a string", ErrEvaluation, key, t)
	}
	return string(s), nil
}

// claimStrings reads an array (or set) of strings; a single string is taken
// as a list of one.
func claimStrings(obj ast.Object, key string) ([]string, error) {
	t := obj.Get(ast.InternedTerm(key))
	if t == nil {
		return nil, nil
	}
	if s, ok := t.Value.(ast.String); ok {
		return []string{string(s)}, nil
	}
	if !isCollection(t.Value) {
		return nil, fmt.Errorf("%w: required_claims: %s: want an array of strings, got %s", ErrEvaluation, key, ast.ValueName(t.Value))
	}
	var out []string
	var err error
	each(t.Value, func(e *ast.Term) {
		s, ok := e.Value.(ast.String)
		if !ok && err == nil {
			err = fmt.Errorf("%w: required_claims: %s: %v is not a string", ErrEvaluation, key, e)
		}
		out = append(out, string(s))
	})
	return out, err
}

func compareClaims(a, b RequiredClaim) int {
	return cmp.Or(
		cmp.Compare(a.Name, b.Name),
		cmp.Compare(a.FriendlyName, b.FriendlyName),
		cmp.Compare(a.ClaimType, b.ClaimType),
		slices.Compare(a.ClaimTokenFormat, b.ClaimTokenFormat),
		slices.Compare(a.Issuer, b.Issuer),
	)
}

func isCollection(v ast.Value) bool {
	switch v.(type) {
	case ast.Set, *ast.Array:
		return true
	}
	return false
}

// each calls f for every element of a set or array.
func each(v ast.Value, f func(*ast.Term)) {
	switch c := v.(type) {
	case ast.Set:
		c.Foreach(f)
	case *ast.Array:
		c.Foreach(f)
	}
}

// granted computes (allow ∪ shared) − deny − systemDeny ∩ available.
func granted(allow, shared, deny, systemDeny, available []string) []string {
	var out []string
	for _, list := range [][]string{allow, shared} {
		for _, s := range list {
			if slices.Contains(available, s) && !slices.Contains(deny, s) && !slices.Contains(systemDeny, s) {
				out = append(out, s)
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}
