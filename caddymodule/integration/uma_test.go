//go:build unix

package integration

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// The UMA client of the tests. Its functions return errors instead of
// failing the test, so that a lifecycle test can report a protocol failure
// and go on checking the lifecycle.

var httpClient = &http.Client{Timeout: 10 * time.Second}

// The clients of the test Caddyfile.
const (
	rsID     = "rs-api"
	rsSecret = "rs-api-secret"
)

// do sends req and decodes a JSON response with status want into v (if
// not nil).
func do(req *http.Request, want int, v any) error {
	resp, err := httpClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("%s %s: reading body: %w", req.Method, req.URL.Path, err)
	}
	if resp.StatusCode != want {
		return fmt.Errorf("%s %s: status %d, want %d: %s", req.Method, req.URL.Path, resp.StatusCode, want,
			strings.TrimSpace(string(body)))
	}
	if v == nil {
		return nil
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("%s %s: decoding %q: %w", req.Method, req.URL.Path, body, err)
	}
	return nil
}

// getJSON GETs url and decodes its 200 JSON response into v.
func getJSON(url string, v any) error {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	return do(req, http.StatusOK, v)
}

// discovery returns the UMA discovery document of issuer, checking the
// endpoints the tests use.
func discovery(issuer string) (map[string]any, error) {
	var md map[string]any
	if err := getJSON(issuer+"/.well-known/uma2-configuration", &md); err != nil {
		return nil, err
	}
	want := map[string]string{
		"issuer":                         issuer,
		"token_endpoint":                 issuer + "/token",
		"jwks_uri":                       issuer + "/jwks",
		"resource_registration_endpoint": issuer + "/resource_set",
		"permission_endpoint":            issuer + "/permission",
		"introspection_endpoint":         issuer + "/introspect",
		"revocation_endpoint":            issuer + "/revoke",
	}
	for _, k := range slices.Sorted(maps.Keys(want)) {
		if md[k] != want[k] {
			return md, fmt.Errorf("discovery: %s = %v, want %s", k, md[k], want[k])
		}
	}
	return md, nil
}

// getPAT obtains a PAT for the resource server rs-api with the
// client_credentials grant.
func getPAT(issuer string) (string, error) {
	form := url.Values{"grant_type": {"client_credentials"}, "scope": {"uma_protection"}}
	req, err := http.NewRequest(http.MethodPost, issuer+"/token", strings.NewReader(form.Encode()))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(rsID, rsSecret)
	var tok struct {
		AccessToken string `json:"access_token"`
		TokenType   string `json:"token_type"`
	}
	if err := do(req, http.StatusOK, &tok); err != nil {
		return "", fmt.Errorf("getting a PAT: %w", err)
	}
	if tok.AccessToken == "" || !strings.EqualFold(tok.TokenType, "Bearer") {
		return "", fmt.Errorf("getting a PAT: token %+v, want a Bearer access_token", tok)
	}
	return tok.AccessToken, nil
}

// registerResource registers the resource {"name":"x"} with the scope read
// and returns its _id.
func registerResource(issuer, pat string) (string, error) {
	body := []byte(`{"name":"x","resource_scopes":["read"]}`)
	req, err := http.NewRequest(http.MethodPost, issuer+"/resource_set", bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+pat)
	var created struct {
		ID string `json:"_id"`
	}
	if err := do(req, http.StatusCreated, &created); err != nil {
		return "", fmt.Errorf("registering a resource: %w", err)
	}
	if created.ID == "" {
		return "", fmt.Errorf("registering a resource: no _id in the response")
	}
	return created.ID, nil
}

// checkResource reads the resource id registered by registerResource.
func checkResource(issuer, pat, id string) error {
	req, err := http.NewRequest(http.MethodGet, issuer+"/resource_set/"+url.PathEscape(id), nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+pat)
	var res struct {
		ID     string   `json:"_id"`
		Name   string   `json:"name"`
		Scopes []string `json:"resource_scopes"`
	}
	if err := do(req, http.StatusOK, &res); err != nil {
		return fmt.Errorf("reading resource %s: %w", id, err)
	}
	if res.ID != id || res.Name != "x" || !slices.Equal(res.Scopes, []string{"read"}) {
		return fmt.Errorf("reading resource %s: got %+v", id, res)
	}
	return nil
}

// registerWithNewPAT gets a PAT and registers a resource.
func registerWithNewPAT(issuer string) (string, error) {
	pat, err := getPAT(issuer)
	if err != nil {
		return "", err
	}
	return registerResource(issuer, pat)
}

// checkWithNewPAT gets a PAT and reads the resource id.
func checkWithNewPAT(issuer, id string) error {
	pat, err := getPAT(issuer)
	if err != nil {
		return err
	}
	return checkResource(issuer, pat, id)
}

// signingKeyIDs returns the kids of the AS's JWKS.
func signingKeyIDs(issuer string) ([]string, error) {
	var jwks struct {
		Keys []struct {
			KID string `json:"kid"`
		} `json:"keys"`
	}
	if err := getJSON(issuer+"/jwks", &jwks); err != nil {
		return nil, err
	}
	var kids []string
	for _, k := range jwks.Keys {
		kids = append(kids, k.KID)
	}
	if len(kids) == 0 {
		return nil, fmt.Errorf("jwks: no keys")
	}
	return kids, nil
}
