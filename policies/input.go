package policies

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
)

// Input is what one evaluation decides about: one resource, the scopes asked
// for, and who asks through which client. Rules see it as `input`; the README
// gives the JSON shape.
type Input struct {
	// Resource is the resource asked for (input.resource).
	Resource Resource
	// Scopes are the scopes requested on the resource (input.scopes).
	Scopes []string
	// ClientID is the OAuth client making the request (input.client.id).
	ClientID string
	// Subject and Issuer identify the requesting party
	// (input.requesting_party.sub and .iss); empty when unknown.
	Subject, Issuer string
	// Claims are all the claims gathered so far about the requesting party
	// (input.claims). Values must be JSON-like: strings, numbers, booleans,
	// nil, []any, []string, map[string]any.
	Claims map[string]any
	// Pushed are claims the client asserted itself, which nothing else
	// vouches for (input.pushed_claims): never the requesting party's
	// identity; rules may use them for what the client is believed on,
	// such as the purpose of its request.
	Pushed map[string]any
	// Request is context from the enforcement point (input.request), such
	// as the method, path or address of the request; it may be empty.
	Request map[string]any
	// Shares are the console-made shares of this resource (input.shares).
	Shares []Share
	// Now is the time of the request (input.now, in unix seconds); zero
	// means the current time.
	Now time.Time
}

// Resource describes a registered resource (input.resource).
type Resource struct {
	// ID is the resource id assigned by the AS (id).
	ID string
	// Name and Type are the resource's name and type, as registered (name,
	// type).
	Name, Type string
	// Owner is the resource owner (owner). Left empty, it is the owner
	// Evaluate is called for; set, it must be that owner.
	Owner string
	// Scopes are the scopes the resource offers (scopes).
	Scopes []string
	// URIs are the resource's URIs at the resource server, if known (uris).
	URIs []string
}

// Share is one share made by the owner in the console (an element of
// input.shares). It names the requesting party by subject or by e-mail
// address, or both.
type Share struct {
	// Subject is the requesting party's subject (subject); empty for none.
	Subject string
	// Email is the requesting party's e-mail address (email); empty for
	// none. It matches only a verified e-mail claim.
	Email string
	// Scopes are the scopes shared (scopes).
	Scopes []string
	// Client restricts the share to one OAuth client id (client); empty
	// for any client.
	Client string
	// ExpiresAt is when the share stops applying (expires_at, unix
	// seconds, 0 for never); zero for never.
	ExpiresAt time.Time
}

// value converts the input into the AST value the rules see.
func (in *Input) value(owner string, now time.Time) (ast.Value, error) {
	claims, err := objectValue(in.Claims)
	if err != nil {
		return nil, fmt.Errorf("%w: converting claims: %v", ErrEvaluation, err)
	}
	request, err := objectValue(in.Request)
	if err != nil {
		return nil, fmt.Errorf("%w: converting request: %v", ErrEvaluation, err)
	}
	pushed, err := objectValue(in.Pushed)
	if err != nil {
		return nil, fmt.Errorf("%w: converting pushed claims: %v", ErrEvaluation, err)
	}
	shares := make([]*ast.Term, len(in.Shares))
	for i, s := range in.Shares {
		shares[i] = ast.ObjectTerm(
			ast.Item(ast.InternedTerm("subject"), ast.StringTerm(s.Subject)),
			ast.Item(ast.InternedTerm("email"), ast.StringTerm(s.Email)),
			ast.Item(ast.InternedTerm("scopes"), stringsTerm(s.Scopes)),
			ast.Item(ast.InternedTerm("client"), ast.StringTerm(s.Client)),
			ast.Item(ast.InternedTerm("expires_at"), unixTerm(s.ExpiresAt)),
		)
	}
	r := in.Resource
	return ast.NewObject(
		ast.Item(ast.InternedTerm("resource"), ast.ObjectTerm(
			ast.Item(ast.InternedTerm("id"), ast.StringTerm(r.ID)),
			ast.Item(ast.InternedTerm("name"), ast.StringTerm(r.Name)),
			ast.Item(ast.InternedTerm("type"), ast.StringTerm(r.Type)),
			ast.Item(ast.InternedTerm("owner"), ast.StringTerm(owner)),
			ast.Item(ast.InternedTerm("scopes"), stringsTerm(r.Scopes)),
			ast.Item(ast.InternedTerm("uris"), stringsTerm(r.URIs)),
		)),
		ast.Item(ast.InternedTerm("scopes"), stringsTerm(in.Scopes)),
		ast.Item(ast.InternedTerm("client"), ast.ObjectTerm(
			ast.Item(ast.InternedTerm("id"), ast.StringTerm(in.ClientID)),
		)),
		ast.Item(ast.InternedTerm("requesting_party"), ast.ObjectTerm(
			ast.Item(ast.InternedTerm("sub"), ast.StringTerm(in.Subject)),
			ast.Item(ast.InternedTerm("iss"), ast.StringTerm(in.Issuer)),
		)),
		ast.Item(ast.InternedTerm("claims"), ast.NewTerm(claims)),
		ast.Item(ast.InternedTerm("request"), ast.NewTerm(request)),
		ast.Item(ast.InternedTerm("pushed_claims"), ast.NewTerm(pushed)),
		ast.Item(ast.InternedTerm("shares"), ast.ArrayTerm(shares...)),
		ast.Item(ast.InternedTerm("now"), unixTerm(now)),
	), nil
}

func objectValue(m map[string]any) (ast.Value, error) {
	if len(m) == 0 {
		return ast.NewObject(), nil
	}
	return ast.InterfaceToValue(m)
}

func stringsTerm(ss []string) *ast.Term {
	terms := make([]*ast.Term, len(ss))
	for i, s := range ss {
		terms[i] = ast.StringTerm(s)
	}
	return ast.ArrayTerm(terms...)
}

// unixTerm is t in unix seconds, 0 for the zero time.
func unixTerm(t time.Time) *ast.Term {
	if t.IsZero() {
		return ast.InternedTerm(0)
	}
	return ast.IntNumberTerm(int(t.Unix()))
}

// inputJSON is the JSON shape of input, as the rules see it.
type inputJSON struct {
	Resource struct {
		ID     string   `json:"id"`
		Name   string   `json:"name"`
		Type   string   `json:"type"`
		Owner  string   `json:"owner"`
		Scopes []string `json:"scopes"`
		URIs   []string `json:"uris"`
	} `json:"resource"`
	Scopes []string `json:"scopes"`
	Client struct {
		ID string `json:"id"`
	} `json:"client"`
	RequestingParty struct {
		Sub string `json:"sub"`
		Iss string `json:"iss"`
	} `json:"requesting_party"`
	Claims  map[string]any `json:"claims"`
	Pushed  map[string]any `json:"pushed_claims"`
	Request map[string]any `json:"request"`
	Shares  []struct {
		Subject   string   `json:"subject"`
		Email     string   `json:"email"`
		Scopes    []string `json:"scopes"`
		Client    string   `json:"client"`
		ExpiresAt int64    `json:"expires_at"`
	} `json:"shares"`
	Now int64 `json:"now"`
}

// ParseInput reads an Input from JSON in the shape the rules see as
// `input` (resource, scopes, client.id, requesting_party, claims,
// pushed_claims, request, shares, now in unix seconds): what a dry run of a decision starts from.
// Unknown members are an error, so that a misspelt one is not silently
// ignored; resource.id and resource.scopes are required.
func ParseInput(data []byte) (Input, error) {
	var in inputJSON
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	dec.UseNumber()
	if err := dec.Decode(&in); err != nil {
		return Input{}, fmt.Errorf("reading the input: %w", err)
	}
	if dec.More() {
		return Input{}, errors.New("reading the input: more than one JSON value")
	}
	if in.Resource.ID == "" || len(in.Resource.Scopes) == 0 {
		return Input{}, errors.New("reading the input: resource.id and resource.scopes are required")
	}
	out := Input{
		Resource: Resource{ID: in.Resource.ID, Name: in.Resource.Name, Type: in.Resource.Type, Owner: in.Resource.Owner,
			Scopes: in.Resource.Scopes, URIs: in.Resource.URIs},
		Scopes: in.Scopes, ClientID: in.Client.ID, Subject: in.RequestingParty.Sub, Issuer: in.RequestingParty.Iss,
		Claims: jsonNumbers(in.Claims), Pushed: jsonNumbers(in.Pushed), Request: jsonNumbers(in.Request),
	}
	for _, s := range in.Shares {
		sh := Share{Subject: s.Subject, Email: s.Email, Scopes: s.Scopes, Client: s.Client}
		if s.ExpiresAt > 0 {
			sh.ExpiresAt = time.Unix(s.ExpiresAt, 0)
		}
		out.Shares = append(out.Shares, sh)
	}
	if in.Now > 0 {
		out.Now = time.Unix(in.Now, 0)
	}
	return out, nil
}

// jsonNumbers turns the json.Numbers of a decoded object into float64s
// or int64s, the values Input takes.
func jsonNumbers(m map[string]any) map[string]any {
	var conv func(v any) any
	conv = func(v any) any {
		switch x := v.(type) {
		case json.Number:
			if i, err := x.Int64(); err == nil {
				return i
			}
			f, _ := x.Float64()
			return f
		case map[string]any:
			for k, e := range x {
				x[k] = conv(e)
			}
			return x
		case []any:
			for i, e := range x {
				x[i] = conv(e)
			}
			return x
		}
		return v
	}
	if m == nil {
		return nil
	}
	return conv(m).(map[string]any)
}
