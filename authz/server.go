// Package authz is the UMA 2.0 authorization server: discovery, JWKS, the
// token endpoint, the protection API (resource registration, permission
// endpoint, introspection) and revocation, as a plain net/http handler.
package authz

import (
	"context"
	"net/http"
)

// Server is the authorization server. It serves every endpoint under the
// path of its issuer URL.
type Server struct {
	cfg Config
}

// New returns a Server for cfg. It loads the signing keys from the store,
// generating one on first start.
func New(ctx context.Context, cfg Config) (*Server, error) {
	return &Server{cfg: cfg}, nil
}

// ServeHTTP serves the AS endpoints. Requests outside the issuer's path get
// a 404 in OAuth error format.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	http.Error(w, "not implemented", http.StatusNotImplemented)
}

// Close stops the server's background work. It does not close the store.
func (s *Server) Close() error { return nil }

// Handles reports whether path is one the AS serves: any path under the
// issuer's path, and the RFC 8414 metadata path derived from the issuer.
func (s *Server) Handles(path string) bool { return true }
