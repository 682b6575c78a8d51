// Package oauth holds what every part of caddy-uma says on the wire in
// OAuth 2.0 and UMA 2.0 terms: the error answer (one type, with its codes
// as constants), the JSON and form encodings of requests and answers, the
// Bearer token of a request, and the scope-token rule. It knows nothing of
// the authorization server itself.
//
// Every error answer is built by one of the constructors below and written
// by WriteError, so that its code is always one of the Code constants: the
// "error" member of the answer, and the value of the code log field and
// metric label.
package oauth

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

// Code is an OAuth or UMA error code.
type Code string

// Error codes.
const (
	// RFC 6749 section 5.2 (token endpoint) and 4.1.2.1 (authorization
	// endpoint).
	InvalidRequest          Code = "invalid_request"
	InvalidClient           Code = "invalid_client"
	InvalidGrant            Code = "invalid_grant"
	UnauthorizedClient      Code = "unauthorized_client"
	UnsupportedGrantType    Code = "unsupported_grant_type"
	InvalidScope            Code = "invalid_scope"
	AccessDenied            Code = "access_denied"
	UnsupportedResponseType Code = "unsupported_response_type"
	ServerError             Code = "server_error"
	TemporarilyUnavailable  Code = "temporarily_unavailable"
	// RFC 6750 section 3.1 (protected resources).
	InvalidToken      Code = "invalid_token"
	InsufficientScope Code = "insufficient_scope"
	// RFC 7591 section 3.2.2 (dynamic client registration).
	InvalidRedirectURI    Code = "invalid_redirect_uri"
	InvalidClientMetadata Code = "invalid_client_metadata"
	// UMA 2.0 Federated Authorization (protection API).
	NotFound              Code = "not_found"
	UnsupportedMethodType Code = "unsupported_method_type"
	InvalidResourceID     Code = "invalid_resource_id"
	// UMA 2.0 Grant section 3.3.6.
	NeedInfo         Code = "need_info"
	RequestSubmitted Code = "request_submitted"
	RequestDenied    Code = "request_denied"
	// Keycloak's ticketless extension of the UMA grant.
	InvalidResource Code = "invalid_resource"
	// Keycloak's answers on its own token path: a bad ticket, a previous
	// RPT that is not the server's.
	InvalidTicket Code = "invalid_ticket"
	InvalidRPT    Code = "invalid_rpt"
)

// defaultStatus is the HTTP status each code is answered with unless a
// constructor says otherwise.
var defaultStatus = map[Code]int{
	InvalidRequest:          http.StatusBadRequest,
	InvalidClient:           http.StatusUnauthorized,
	InvalidGrant:            http.StatusBadRequest,
	UnauthorizedClient:      http.StatusBadRequest,
	UnsupportedGrantType:    http.StatusBadRequest,
	InvalidScope:            http.StatusBadRequest,
	AccessDenied:            http.StatusForbidden,
	UnsupportedResponseType: http.StatusBadRequest,
	ServerError:             http.StatusInternalServerError,
	TemporarilyUnavailable:  http.StatusServiceUnavailable,
	InvalidToken:            http.StatusUnauthorized,
	InsufficientScope:       http.StatusForbidden,
	InvalidRedirectURI:      http.StatusBadRequest,
	InvalidClientMetadata:   http.StatusBadRequest,
	NotFound:                http.StatusNotFound,
	UnsupportedMethodType:   http.StatusMethodNotAllowed,
	InvalidResourceID:       http.StatusBadRequest,
	NeedInfo:                http.StatusForbidden,
	RequestSubmitted:        http.StatusForbidden,
	RequestDenied:           http.StatusForbidden,
	InvalidResource:         http.StatusBadRequest,
	InvalidTicket:           http.StatusForbidden,
	InvalidRPT:              http.StatusForbidden,
}

// Error is an error answer: RFC 6749 section 5.2's members, the members
// UMA adds to grant errors, and what the HTTP answer carries besides the
// body. Build one with New or an Err* constructor; Error values are
// answers in the making and are not shared.
type Error struct {
	// Status is the HTTP status of the answer.
	Status int `json:"-"`
	// Code is the error code.
	Code Code `json:"error"`
	// Description is safe to show to the client: it never holds a token,
	// a secret or the text of an internal error.
	Description string `json:"error_description,omitempty"`

	// Ticket, RequiredClaims, RedirectUser and Interval are the members
	// of UMA grant errors (need_info, request_submitted).
	Ticket         string `json:"ticket,omitempty"`
	RequiredClaims any    `json:"required_claims,omitempty"`
	RedirectUser   string `json:"redirect_user,omitempty"`
	Interval       int    `json:"interval,omitempty"`

	// Problems itemizes what is wrong with the request, where there is
	// more than one thing (the compile errors of uploaded rules).
	Problems any `json:"errors,omitempty"`

	challenge  string
	allow      string
	retryAfter int
	cause      error
}

// New returns an error answer with code and the code's usual status.
func New(code Code) *Error {
	status, ok := defaultStatus[code]
	if !ok {
		status = http.StatusBadRequest
	}
	return &Error{Status: status, Code: code}
}

// Error returns the code and the description.
func (e *Error) Error() string {
	if e.Description == "" {
		return string(e.Code)
	}
	return string(e.Code) + ": " + e.Description
}

// Unwrap returns the cause, for the log.
func (e *Error) Unwrap() error { return e.cause }

// Cause returns the internal error behind the answer, or nil. It is for
// the log, never for the client.
func (e *Error) Cause() error { return e.cause }

// WithDescription sets the description.
func (e *Error) WithDescription(desc string) *Error {
	e.Description = desc
	return e
}

// WithStatus replaces the HTTP status.
func (e *Error) WithStatus(status int) *Error {
	e.Status = status
	return e
}

// WithCause records the internal error behind the answer, for the log.
func (e *Error) WithCause(err error) *Error {
	e.cause = err
	return e
}

// WithChallenge sets the WWW-Authenticate header of the answer.
func (e *Error) WithChallenge(challenge string) *Error {
	e.challenge = challenge
	return e
}

// WithAllow sets the Allow header of the answer (405 answers).
func (e *Error) WithAllow(methods ...string) *Error {
	e.allow = strings.Join(methods, ", ")
	return e
}

// WithRetryAfter sets the Retry-After header of the answer, in seconds.
func (e *Error) WithRetryAfter(seconds int) *Error {
	e.retryAfter = seconds
	return e
}

// Challenge returns the WWW-Authenticate header value, or "".
func (e *Error) Challenge() string { return e.challenge }

// ErrInvalidRequest is a 400 invalid_request with a formatted description.
func ErrInvalidRequest(format string, args ...any) *Error {
	return New(InvalidRequest).WithDescription(fmt.Sprintf(format, args...))
}

// ErrServer is the answer to a fault of the server, not of the request: a
// 503 temporarily_unavailable with Retry-After, so that the client tries
// again instead of changing what it sent. cause is logged, never sent.
func ErrServer(desc string, cause error) *Error {
	return ErrUnavailable(desc, serverRetryAfter, cause)
}

// serverRetryAfter is the Retry-After of ErrServer, in seconds.
const serverRetryAfter = 1

// ErrUnavailable is a 503 temporarily_unavailable with Retry-After: the
// server cannot answer now, and the client should try again later rather
// than change its request.
func ErrUnavailable(desc string, retryAfter int, cause error) *Error {
	return New(TemporarilyUnavailable).WithDescription(desc).WithRetryAfter(retryAfter).WithCause(cause)
}

// ErrMethodNotAllowed is a 405 invalid_request naming the allowed methods,
// for OAuth endpoints.
func ErrMethodNotAllowed(allow ...string) *Error {
	return New(InvalidRequest).WithStatus(http.StatusMethodNotAllowed).
		WithDescription("method not allowed; use " + strings.Join(allow, " or ")).WithAllow(allow...)
}

// ErrUnsupportedMethodType is the protection API's 405
// unsupported_method_type naming the allowed methods.
func ErrUnsupportedMethodType(allow ...string) *Error {
	return New(UnsupportedMethodType).WithDescription("use " + strings.Join(allow, ", ")).WithAllow(allow...)
}

// ErrNotFound is a 404 not_found.
func ErrNotFound(desc string) *Error { return New(NotFound).WithDescription(desc) }

// AsError returns err as an *Error: err itself (or the *Error it wraps),
// or a 500 server_error with err as its cause.
func AsError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return ErrServer("internal error", err)
}

// WriteError writes err as an error answer (AsError), with its headers
// and no caching. A server fault is never answered 500.
func WriteError(w http.ResponseWriter, err error) {
	e := AsError(err)
	h := w.Header()
	if e.challenge != "" {
		h.Set("WWW-Authenticate", e.challenge)
	}
	if e.allow != "" {
		h.Set("Allow", e.allow)
	}
	if e.retryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(e.retryAfter))
	}
	WriteJSON(w, e.Status, e)
}
