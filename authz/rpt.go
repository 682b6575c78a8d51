package authz

import (
	"context"
)

// introspectRPT describes an RPT to the resource server that calls, with
// the permissions on its own resources. ok is false for a token that is
// not a live RPT of this AS.
func (s *Server) introspectRPT(ctx context.Context, caller protectionCaller, token string) (introspectionResponse, bool) {
	return inactive, false
}
