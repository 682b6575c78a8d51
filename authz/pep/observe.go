package pep

// Observer receives what an enforcement point measures, for metrics. Its
// methods are called on the request path, from many goroutines at once:
// they must be cheap and safe for concurrent use. A nil Observer in
// Config or RemoteConfig means none.
type Observer interface {
	// CachedRPT reports one lookup of an RPT in the cache of verified
	// RPTs: hit when it was there (its revocation check may still run).
	CachedRPT(hit bool)
	// RemoteCall reports one call that a Remote made, or refused to make,
	// to its authorization server.
	RemoteCall(result CallResult)
	// Circuit reports that the circuit breaker in front of the remote
	// authorization server issuer opened (calls fail at once) or closed.
	Circuit(issuer string, open bool)
}

// CallResult is the outcome of one call to a remote authorization server:
// a metric label.
type CallResult string

// Call results.
const (
	// CallAnswered: the AS answered (any status but 502, 503 and 504).
	CallAnswered CallResult = "answered"
	// CallFailed: no answer (a timeout, no connection) or 502, 503, 504.
	CallFailed CallResult = "failed"
	// CallRefused: the circuit breaker was open; nothing was sent.
	CallRefused CallResult = "refused"
	// CallAbandoned: the caller gave up first (its request was cancelled).
	CallAbandoned CallResult = "abandoned"
)

// nopObserver is the Observer of an enforcement point without one.
type nopObserver struct{}

func (nopObserver) CachedRPT(bool)        {}
func (nopObserver) RemoteCall(CallResult) {}
func (nopObserver) Circuit(string, bool)  {}
