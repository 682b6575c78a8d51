package authz

import (
	"net/http"
)

// serveRevoke is the RFC 7009 revocation endpoint. A client may revoke the
// tokens issued to it; any other token, known or not, gets the same empty
// 200 so that the endpoint tells nothing about tokens.
func (s *Server) serveRevoke(w http.ResponseWriter, r *http.Request) {
	form, err := readForm(w, r)
	if err != nil {
		writeError(w, err)
		return
	}
	client, err := s.authenticateClient(r, form)
	if err != nil {
		writeError(w, err)
		return
	}
	token := form.Get("token")
	if token == "" {
		writeError(w, errInvalidRequest("token is required"))
		return
	}
	// token_type_hint is not needed: every token is looked up the same way.
	if rec, err := s.lookupToken(r.Context(), token); err == nil && rec.ClientID == client.ID {
		if err := s.revokeToken(r.Context(), token); err != nil {
			s.log.Error("revoking a token", errField(err))
			writeError(w, errServer("could not revoke the token"))
			return
		}
		s.log.Info("token revoked", clientField(client.ID))
	}
	noStore(w.Header())
	w.WriteHeader(http.StatusOK)
}
