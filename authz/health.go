package authz

// Readiness is what the AS knows of its own state, for a readiness probe.
// The store's reachability and disk space are the store's to tell.
type Readiness struct {
	// SigningKeyID is the key id of the current signing key; "" when no
	// key is loaded (then no token can be signed).
	SigningKeyID string
	// OwnersWithRuleErrors counts the owners whose rules in the operator
	// directory did not all compile at their last load (a file left out,
	// an old version kept in force, or rules broken: see package
	// policies); the log names the files.
	OwnersWithRuleErrors int
	// SystemRuleErrors says the same of the system rules.
	SystemRuleErrors bool
}

// Readiness returns the AS's state for a readiness probe.
func (s *Server) Readiness() Readiness {
	var r Readiness
	r.SigningKeyID = s.keys.CurrentKeyID()
	r.OwnersWithRuleErrors, r.SystemRuleErrors = s.rules.Degraded()
	return r
}
