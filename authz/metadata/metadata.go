// Package metadata fetches the discovery documents of authorization servers
// and OpenID providers, and holds the one rule for the endpoint URLs they
// name.
//
// A document is fetched with GET and Accept: application/json from the
// issuer's well-known URL (the issuer with a trailing slash removed, then
// /.well-known/openid-configuration or /.well-known/uma2-configuration);
// the answer must be 200 with a JSON object of at most MaxDocumentSize
// bytes, whose issuer member equals the expected issuer byte for byte
// (OpenID Connect Discovery section 4.3, RFC 8414 section 3.3): a document
// that names another issuer, even one that differs only by a trailing
// slash, is refused, for its keys and endpoints are not the issuer's.
package metadata

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/caddy-uma/caddy-uma/authz/urlcheck"
)

// MaxDocumentSize bounds a discovery document, in bytes.
const MaxDocumentSize = 1 << 20

// Well-known paths of the documents, appended to the issuer.
const (
	OpenIDPath = "/.well-known/openid-configuration"
	UMAPath    = "/.well-known/uma2-configuration"
)

// defaultHTTPTimeout bounds a fetch with the default client.
const defaultHTTPTimeout = 10 * time.Second

// Errors of the fetchers and of Endpoint. Other errors (the network, the
// status, the document's size or syntax) are plain errors.
var (
	// ErrIssuerMismatch means that the document names another issuer than
	// the one it was fetched for.
	ErrIssuerMismatch = errors.New("the document names another issuer")
	// ErrEndpoint means that an endpoint URL breaks the rule of Endpoint,
	// or that a required endpoint is missing.
	ErrEndpoint = errors.New("invalid endpoint URL")
)

// OpenIDConfiguration is what is read of an OpenID Provider's
// configuration (OpenID Connect Discovery 1.0 section 3).
type OpenIDConfiguration struct {
	// Issuer is the provider's issuer identifier, equal to the expected
	// one.
	Issuer string `json:"issuer"`
	// AuthorizationEndpoint is the OAuth authorization endpoint.
	AuthorizationEndpoint string `json:"authorization_endpoint,omitempty"`
	// TokenEndpoint is the OAuth token endpoint.
	TokenEndpoint string `json:"token_endpoint,omitempty"`
	// JWKSURI is the URL of the provider's key set.
	JWKSURI string `json:"jwks_uri"`
}

// UMAConfiguration is what is read of a UMA 2.0 authorization server's
// configuration (UMA 2.0 Grant section 2, Federated Authorization
// section 2).
type UMAConfiguration struct {
	// Issuer is the AS's issuer identifier, equal to the expected one.
	Issuer string `json:"issuer"`
	// TokenEndpoint is the OAuth token endpoint (PATs and RPTs).
	TokenEndpoint string `json:"token_endpoint,omitempty"`
	// JWKSURI is the URL of the AS's key set.
	JWKSURI string `json:"jwks_uri,omitempty"`
	// IntrospectionEndpoint is the RFC 7662 token introspection endpoint.
	IntrospectionEndpoint string `json:"introspection_endpoint,omitempty"`
	// PermissionEndpoint is the protection API's permission endpoint.
	PermissionEndpoint string `json:"permission_endpoint,omitempty"`
	// ResourceRegistrationEndpoint is the protection API's resource
	// registration endpoint.
	ResourceRegistrationEndpoint string `json:"resource_registration_endpoint,omitempty"`
}

// FetchOpenID fetches issuer's OpenID Provider configuration. jwks_uri is
// required; it and the authorization and token endpoints, where present,
// must satisfy Endpoint. hc nil means a client with a 10 s timeout.
func FetchOpenID(ctx context.Context, hc *http.Client, issuer string) (*OpenIDConfiguration, error) {
	var doc OpenIDConfiguration
	u, err := fetch(ctx, hc, issuer, OpenIDPath, &doc)
	if err != nil {
		return nil, err
	}
	if doc.JWKSURI == "" {
		return nil, fmt.Errorf("discovery: %s: %w: jwks_uri is missing", u, ErrEndpoint)
	}
	for _, e := range []struct{ name, url string }{
		{"authorization_endpoint", doc.AuthorizationEndpoint},
		{"token_endpoint", doc.TokenEndpoint},
		{"jwks_uri", doc.JWKSURI},
	} {
		if e.url == "" {
			continue
		}
		if err := Endpoint(issuer, e.url); err != nil {
			return nil, fmt.Errorf("discovery: %s: %s: %w", u, e.name, err)
		}
	}
	return &doc, nil
}

// FetchUMA fetches issuer's UMA 2.0 configuration. It does not check the
// endpoints: which ones a client needs, and what it does with an invalid
// optional one, is the client's policy; it checks them with Endpoint. hc
// nil means a client with a 10 s timeout.
func FetchUMA(ctx context.Context, hc *http.Client, issuer string) (*UMAConfiguration, error) {
	var doc UMAConfiguration
	if _, err := fetch(ctx, hc, issuer, UMAPath, &doc); err != nil {
		return nil, err
	}
	return &doc, nil
}

// Endpoint checks an endpoint URL named in issuer's metadata: an absolute
// http or https URL with a host, without user information or a fragment (a
// query is allowed), and https whenever the issuer is. The error matches
// ErrEndpoint.
func Endpoint(issuer, raw string) error {
	if err := urlcheck.Absolute(raw, true); err != nil {
		return fmt.Errorf("%w: %q %v", ErrEndpoint, raw, err)
	}
	iu, err := url.Parse(issuer)
	if err != nil {
		return fmt.Errorf("%w: issuer %q is not a URL", ErrEndpoint, issuer)
	}
	if eu, _ := url.Parse(raw); iu.Scheme == "https" && eu.Scheme != "https" {
		return fmt.Errorf("%w: %q is not https, and the issuer is", ErrEndpoint, raw)
	}
	return nil
}

// fetch reads the document at issuer + path into doc and checks its
// issuer. It returns the document's URL.
func fetch(ctx context.Context, hc *http.Client, issuer, path string, doc any) (string, error) {
	if hc == nil {
		hc = &http.Client{Timeout: defaultHTTPTimeout}
	}
	u := strings.TrimSuffix(issuer, "/") + path
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return u, fmt.Errorf("discovery: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return u, fmt.Errorf("discovery: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return u, fmt.Errorf("discovery: %s answered %s", u, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxDocumentSize+1))
	if err != nil {
		return u, fmt.Errorf("discovery: reading %s: %w", u, err)
	}
	if len(body) > MaxDocumentSize {
		return u, fmt.Errorf("discovery: %s is larger than %d bytes", u, MaxDocumentSize)
	}
	var head struct {
		Issuer string `json:"issuer"`
	}
	if err := json.Unmarshal(body, &head); err != nil {
		return u, fmt.Errorf("discovery: decoding %s: %w", u, err)
	}
	if head.Issuer != issuer {
		return u, fmt.Errorf("discovery: %s: %w: %q, not %q (they must be equal exactly)", u, ErrIssuerMismatch, head.Issuer, issuer)
	}
	if err := json.Unmarshal(body, doc); err != nil {
		return u, fmt.Errorf("discovery: decoding %s: %w", u, err)
	}
	return u, nil
}
