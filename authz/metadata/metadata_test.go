package metadata

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// docServer serves one discovery document at path, with the issuer
// placeholder "{issuer}" in body replaced by the server's URL.
type docServer struct {
	srv *httptest.Server
	mu  sync.Mutex
	req *http.Request // the last request
}

func newDocServer(t *testing.T, tls bool, path string, status int, body string) *docServer {
	t.Helper()
	d := &docServer{}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d.mu.Lock()
		d.req = r
		d.mu.Unlock()
		if r.URL.Path != path {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		w.Write([]byte(strings.ReplaceAll(body, "{issuer}", d.srv.URL)))
	})
	if tls {
		d.srv = httptest.NewTLSServer(h)
	} else {
		d.srv = httptest.NewServer(h)
	}
	t.Cleanup(d.srv.Close)
	return d
}

func (d *docServer) lastRequest() *http.Request {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.req
}

func TestFetchOpenID(t *testing.T) {
	const valid = `{"issuer": "{issuer}", "authorization_endpoint": "{issuer}/auth", "token_endpoint": "{issuer}/token?realm=x", "jwks_uri": "{issuer}/jwks", "userinfo_endpoint": "{issuer}/me"}`
	tests := []struct {
		name string
		tls  bool
		// issuerSuffix is appended to the server's URL to make the
		// expected issuer.
		issuerSuffix string
		status       int
		body         string
		wantErr      error  // a sentinel, or nil
		wantErrText  string // part of the error, when no sentinel applies
	}{
		{name: "valid", status: 200, body: valid},
		{name: "valid, https", tls: true, status: 200, body: valid},
		{name: "only jwks_uri", status: 200, body: `{"issuer": "{issuer}", "jwks_uri": "{issuer}/jwks"}`},
		{name: "issuer with a trailing slash", issuerSuffix: "/", status: 200, body: `{"issuer": "{issuer}/", "jwks_uri": "{issuer}/jwks"}`},
		{name: "issuer with a path", issuerSuffix: "/realms/r", status: 200, body: `{"issuer": "{issuer}/realms/r", "jwks_uri": "{issuer}/jwks"}`},

		{name: "not found", status: 404, body: `{}`, wantErrText: "404"},
		{name: "server error", status: 500, body: valid, wantErrText: "500"},
		{name: "not JSON", status: 200, body: `<html>`, wantErrText: "decoding"},
		{name: "not an object", status: 200, body: `["{issuer}"]`, wantErrText: "decoding"},
		{name: "too large", status: 200, body: `{"issuer": "{issuer}", "jwks_uri": "{issuer}/jwks", "pad": "` + strings.Repeat("x", MaxDocumentSize) + `"}`, wantErrText: "larger than"},
		{name: "another issuer", status: 200, body: `{"issuer": "https://evil.example", "jwks_uri": "{issuer}/jwks"}`, wantErr: ErrIssuerMismatch},
		{name: "issuer without its trailing slash", issuerSuffix: "/", status: 200, body: `{"issuer": "{issuer}", "jwks_uri": "{issuer}/jwks"}`, wantErr: ErrIssuerMismatch},
		{name: "issuer with another trailing slash", status: 200, body: `{"issuer": "{issuer}/", "jwks_uri": "{issuer}/jwks"}`, wantErr: ErrIssuerMismatch},
		{name: "no issuer", status: 200, body: `{"jwks_uri": "{issuer}/jwks"}`, wantErr: ErrIssuerMismatch},
		{name: "issuer not a string", status: 200, body: `{"issuer": 1, "jwks_uri": "{issuer}/jwks"}`, wantErrText: "decoding"},
		{name: "no jwks_uri", status: 200, body: `{"issuer": "{issuer}"}`, wantErr: ErrEndpoint},
		{name: "relative jwks_uri", status: 200, body: `{"issuer": "{issuer}", "jwks_uri": "/jwks"}`, wantErr: ErrEndpoint},
		{name: "http jwks_uri of an https issuer", tls: true, status: 200, body: `{"issuer": "{issuer}", "jwks_uri": "http://idp.example/jwks"}`, wantErr: ErrEndpoint},
		{name: "http token_endpoint of an https issuer", tls: true, status: 200, body: `{"issuer": "{issuer}", "token_endpoint": "http://idp.example/token", "jwks_uri": "{issuer}/jwks"}`, wantErr: ErrEndpoint},
		{name: "authorization_endpoint with a fragment", status: 200, body: `{"issuer": "{issuer}", "authorization_endpoint": "{issuer}/auth#x", "jwks_uri": "{issuer}/jwks"}`, wantErr: ErrEndpoint},
		{name: "token_endpoint with user information", status: 200, body: `{"issuer": "{issuer}", "token_endpoint": "http://u:p@idp.example/token", "jwks_uri": "{issuer}/jwks"}`, wantErr: ErrEndpoint},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newDocServer(t, tt.tls, strings.TrimSuffix(tt.issuerSuffix, "/")+OpenIDPath, tt.status, tt.body)
			issuer := d.srv.URL + tt.issuerSuffix
			doc, err := FetchOpenID(t.Context(), d.srv.Client(), issuer)
			if r := d.lastRequest(); r == nil || r.Method != http.MethodGet || r.Header.Get("Accept") != "application/json" {
				t.Errorf("request %+v, want a GET with Accept: application/json", r)
			}
			if tt.wantErr == nil && tt.wantErrText == "" {
				if err != nil {
					t.Fatalf("FetchOpenID: %v", err)
				}
				var want OpenIDConfiguration
				json.Unmarshal([]byte(strings.ReplaceAll(tt.body, "{issuer}", d.srv.URL)), &want)
				if *doc != want {
					t.Errorf("document %+v, want %+v", *doc, want)
				}
				return
			}
			if err == nil {
				t.Fatalf("FetchOpenID succeeded: %+v", doc)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("error %v, want %v", err, tt.wantErr)
			}
			if tt.wantErrText != "" && !strings.Contains(err.Error(), tt.wantErrText) {
				t.Errorf("error %v, want it to mention %q", err, tt.wantErrText)
			}
		})
	}
}

func TestFetchUMA(t *testing.T) {
	d := newDocServer(t, false, UMAPath, 200, `{
		"issuer": "{issuer}", "token_endpoint": "{issuer}/token", "jwks_uri": "{issuer}/jwks",
		"introspection_endpoint": "{issuer}/introspect", "permission_endpoint": "{issuer}/perm",
		"resource_registration_endpoint": "ftp://not-checked.example/rreg"
	}`)
	doc, err := FetchUMA(t.Context(), d.srv.Client(), d.srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	u := d.srv.URL
	want := UMAConfiguration{
		Issuer: u, TokenEndpoint: u + "/token", JWKSURI: u + "/jwks", IntrospectionEndpoint: u + "/introspect",
		PermissionEndpoint: u + "/perm", ResourceRegistrationEndpoint: "ftp://not-checked.example/rreg",
	}
	if *doc != want {
		t.Errorf("document %+v, want %+v", *doc, want)
	}

	// The issuer rule is the same as for OpenID.
	if _, err := FetchUMA(t.Context(), d.srv.Client(), u+"/"); !errors.Is(err, ErrIssuerMismatch) {
		t.Errorf("issuer with a trailing slash: %v, want ErrIssuerMismatch", err)
	}
	// And the path is the UMA one.
	o := newDocServer(t, false, OpenIDPath, 200, `{"issuer": "{issuer}", "jwks_uri": "{issuer}/jwks"}`)
	if _, err := FetchUMA(t.Context(), o.srv.Client(), o.srv.URL); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("UMA document from an OpenID-only server: %v, want a 404", err)
	}
}

func TestFetchCanceled(t *testing.T) {
	d := newDocServer(t, false, OpenIDPath, 200, `{"issuer": "{issuer}", "jwks_uri": "{issuer}/jwks"}`)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := FetchOpenID(ctx, nil, d.srv.URL); !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
}

func TestEndpoint(t *testing.T) {
	tests := []struct {
		issuer, endpoint string
		ok               bool
	}{
		{"https://as.example", "https://as.example/token", true},
		{"https://as.example", "https://other.example:8443/token?realm=x", true},
		{"https://as.example", "http://as.example/token", false},
		{"http://localhost:8080", "http://localhost:8080/token", true},
		{"http://localhost:8080", "https://as.example/token", true},
		{"https://as.example", "", false},
		{"https://as.example", "/token", false},
		{"https://as.example", "as.example/token", false},
		{"https://as.example", "ftp://as.example/token", false},
		{"https://as.example", "https:///token", false},
		{"https://as.example", "https://u:p@as.example/token", false},
		{"https://as.example", "https://as.example/token#f", false},
		{"https://as.example", "https://as.example/%zz", false},
	}
	for _, tt := range tests {
		err := Endpoint(tt.issuer, tt.endpoint)
		if (err == nil) != tt.ok {
			t.Errorf("Endpoint(%q, %q) = %v, want ok=%v", tt.issuer, tt.endpoint, err, tt.ok)
		}
		if err != nil && !errors.Is(err, ErrEndpoint) {
			t.Errorf("Endpoint(%q, %q) = %v, want ErrEndpoint", tt.issuer, tt.endpoint, err)
		}
	}
}
