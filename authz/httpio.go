package authz

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
)

// maxBodyBytes bounds every request body the AS reads.
const maxBodyBytes = 64 << 10

// oauthError is an error in the RFC 6749 section 5.2 format, with the
// HTTP status it is sent with and the extra members of UMA errors.
type oauthError struct {
	Status      int    `json:"-"`
	Code        string `json:"error"`
	Description string `json:"error_description,omitempty"`
	// Challenge, when set, is sent as the WWW-Authenticate header.
	Challenge string `json:"-"`
	// Allow, when set, is sent as the Allow header (405 responses).
	Allow string `json:"-"`
}

func (e *oauthError) Error() string {
	if e.Description == "" {
		return e.Code
	}
	return e.Code + ": " + e.Description
}

func errInvalidRequest(format string, args ...any) *oauthError {
	return &oauthError{Status: http.StatusBadRequest, Code: "invalid_request", Description: fmt.Sprintf(format, args...)}
}

func errServer(desc string) *oauthError {
	return &oauthError{Status: http.StatusInternalServerError, Code: "server_error", Description: desc}
}

func errMethod(allow ...string) *oauthError {
	return &oauthError{
		Status:      http.StatusMethodNotAllowed,
		Code:        "invalid_request",
		Description: "method not allowed; use " + strings.Join(allow, " or "),
		Allow:       strings.Join(allow, ", "),
	}
}

// noStore sets the caching headers that every AS response carries.
func noStore(h http.Header) {
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
}

// writeJSON writes v as a JSON response with status and no caching.
func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		status, body = http.StatusInternalServerError, []byte(`{"error":"server_error"}`)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	noStore(h)
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// writeError writes err in OAuth format. Errors that are not *oauthError
// become a 500 server_error without detail.
func writeError(w http.ResponseWriter, err error) {
	var oe *oauthError
	if !errors.As(err, &oe) {
		oe = errServer("internal error")
	}
	if oe.Challenge != "" {
		w.Header().Set("WWW-Authenticate", oe.Challenge)
	}
	if oe.Allow != "" {
		w.Header().Set("Allow", oe.Allow)
	}
	writeJSON(w, oe.Status, oe)
}

// readForm parses an application/x-www-form-urlencoded POST body. Query
// parameters are not read. A repeated parameter is an invalid_request (RFC
// 6749 section 3.2), and an empty value counts as absent.
func readForm(w http.ResponseWriter, r *http.Request) (url.Values, error) {
	if r.Method != http.MethodPost {
		return nil, errMethod(http.MethodPost)
	}
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/x-www-form-urlencoded" {
		return nil, errInvalidRequest("the body must be application/x-www-form-urlencoded")
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	if err != nil {
		return nil, errInvalidRequest("the body is too large or unreadable")
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, errInvalidRequest("the body is not valid form encoding")
	}
	for name, vals := range form {
		if len(vals) > 1 && name != "permission" {
			return nil, errInvalidRequest("parameter %q is repeated", name)
		}
		if len(vals) == 1 && vals[0] == "" {
			delete(form, name)
		}
	}
	return form, nil
}

// readJSON decodes a JSON request body into v. Unknown members are ignored,
// as UMA requires.
func readJSON(w http.ResponseWriter, r *http.Request, v any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
			return errInvalidRequest("the body must be application/json")
		}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	if err != nil {
		return errInvalidRequest("the body is too large or unreadable")
	}
	if err := json.Unmarshal(body, v); err != nil {
		return errInvalidRequest("the body is not valid JSON for this endpoint: %s", jsonProblem(err))
	}
	return nil
}

// jsonProblem describes a JSON decoding error without echoing input.
func jsonProblem(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		if te.Field != "" {
			return fmt.Sprintf("member %q must be %s", te.Field, jsonKind(te.Type.Kind().String()))
		}
		return "wrong JSON type"
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("syntax error at offset %d", se.Offset)
	}
	return "malformed JSON"
}

func jsonKind(k string) string {
	switch k {
	case "slice":
		return "an array"
	case "string":
		return "a string"
	case "struct", "map":
		return "an object"
	case "bool":
		return "a boolean"
	default:
		return "a " + k
	}
}

// quote returns s as an RFC 7230 quoted-string.
func quote(s string) string {
	s = strings.ReplaceAll(s, `\`, `\\`)
	s = strings.ReplaceAll(s, `"`, `\"`)
	return `"` + s + `"`
}
