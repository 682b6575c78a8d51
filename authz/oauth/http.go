package oauth

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"unicode/utf8"
)

// MaxBodyBytes bounds every request body read by ReadForm and ReadJSON.
const MaxBodyBytes = 64 << 10

// NoStore sets the caching headers that every answer carrying tokens or
// errors has (RFC 6749 section 5.1).
func NoStore(h http.Header) {
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
}

// WriteJSON writes v as a JSON answer with status and no caching.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		status, body = http.StatusServiceUnavailable, []byte(`{"error":"temporarily_unavailable"}`)
		w.Header().Set("Retry-After", "1")
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	NoStore(h)
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// WriteNoContent writes an empty answer with status and no caching.
func WriteNoContent(w http.ResponseWriter, status int) {
	NoStore(w.Header())
	w.WriteHeader(status)
}

// ReadForm parses an application/x-www-form-urlencoded POST body. Query
// parameters are not read. A repeated parameter is an invalid_request (RFC
// 6749 section 3.2) unless its name is in repeatable, and an empty value
// counts as absent.
func ReadForm(w http.ResponseWriter, r *http.Request, repeatable ...string) (url.Values, error) {
	if r.Method != http.MethodPost {
		return nil, ErrMethodNotAllowed(http.MethodPost)
	}
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/x-www-form-urlencoded" {
		return nil, ErrInvalidRequest("the body must be application/x-www-form-urlencoded")
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if err != nil {
		return nil, ErrInvalidRequest("the body is too large or unreadable")
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, ErrInvalidRequest("the body is not valid form encoding")
	}
	for name, vals := range form {
		if len(vals) > 1 && !contains(repeatable, name) {
			return nil, ErrInvalidRequest("parameter %q is repeated", name)
		}
		if len(vals) == 1 && vals[0] == "" {
			delete(form, name)
		}
	}
	return form, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// ReadJSON decodes a JSON request body into v. Unknown members are
// ignored, as UMA requires. A body without Content-Type is read as JSON.
func ReadJSON(w http.ResponseWriter, r *http.Request, v any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
			return ErrInvalidRequest("the body must be application/json")
		}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if err != nil {
		return ErrInvalidRequest("the body is too large or unreadable")
	}
	if !utf8.Valid(body) {
		// RFC 8259 section 8.1; encoding/json would turn the bad bytes
		// into U+FFFD silently.
		return ErrInvalidRequest("the body is not valid UTF-8")
	}
	if err := json.Unmarshal(body, v); err != nil {
		return ErrInvalidRequest("the body is not valid JSON for this endpoint: %s", jsonProblem(err))
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

// BearerToken returns the token of an RFC 6750 "Authorization: Bearer"
// header (the scheme is case-insensitive), and whether there is one.
func BearerToken(r *http.Request) (string, bool) {
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}

// Quote returns s as an RFC 7230 quoted-string, for header parameters
// and descriptions.
func Quote(s string) string {
	s = strings.ReplaceAll(s, `\`, `\\`)
	s = strings.ReplaceAll(s, `"`, `\"`)
	return `"` + s + `"`
}

// BearerChallenge returns an RFC 6750 section 3 WWW-Authenticate value:
// the realm, and the error code, its description and the scope needed
// when they are not empty.
func BearerChallenge(realm string, code Code, description, scope string) string {
	var b strings.Builder
	b.WriteString("Bearer realm=" + Quote(realm))
	if code != "" {
		b.WriteString(`, error=` + Quote(string(code)))
	}
	if description != "" {
		b.WriteString(`, error_description=` + Quote(description))
	}
	if scope != "" {
		b.WriteString(`, scope=` + Quote(scope))
	}
	return b.String()
}
