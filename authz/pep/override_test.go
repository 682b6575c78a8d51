package pep

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestMethodOverrideIsStripped: a read-only RPT must not carry a method
// override to the protected handler, which might run it (an upstream that
// honours X-HTTP-Method-Override or ?_method= would run a DELETE).
func TestMethodOverrideIsStripped(t *testing.T) {
	as := newFakeAS()
	clock := &testClock{t: time.Unix(1_700_000_000, 0)}
	e := newEnforcer(t, as, clock, nil)
	e.Decide(request("GET", "/api/records/alice/1", "")) // registers the resource
	as.grant(t, "rpt-read", "alice", "/api/records/alice/1", clock.Now().Add(time.Hour), "read")
	var seen *http.Request
	h := e.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { seen = r }))

	r := request("GET", "/api/records/alice/1?_method=DELETE&q=1&_METHOD=PUT;_method=PATCH&%5Fmethod=DELETE", "rpt-read")
	for _, name := range []string{"X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override", "X_HTTP_METHOD_OVERRIDE", "x-http-method_override"} {
		r.Header[name] = []string{"DELETE"}
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	if seen == nil {
		t.Fatalf("a GET with a read RPT was refused: %d", rec.Code)
	}
	for name := range seen.Header {
		switch strings.ReplaceAll(strings.ToLower(name), "_", "-") {
		case "x-http-method-override", "x-http-method", "x-method-override":
			t.Errorf("%s reached the protected handler", name)
		}
	}
	if seen.URL.RawQuery != "q=1" || seen.RequestURI != "/api/records/alice/1?q=1" {
		t.Errorf("query %q, request URI %q: want only q=1", seen.URL.RawQuery, seen.RequestURI)
	}
}

// TestMethodOverrideKept: with MethodOverrideKeep the headers stay, and the
// overriding method decides the scopes.
func TestMethodOverrideKept(t *testing.T) {
	as := newFakeAS()
	clock := &testClock{t: time.Unix(1_700_000_000, 0)}
	e := newEnforcer(t, as, clock, func(c *Config) { c.MethodOverride = MethodOverrideKeep })
	e.Decide(request("GET", "/api/records/alice/1", ""))
	as.grant(t, "rpt-read", "alice", "/api/records/alice/1", clock.Now().Add(time.Hour), "read")
	as.grant(t, "rpt-delete", "alice", "/api/records/alice/1", clock.Now().Add(time.Hour), "delete")

	tests := []struct {
		name    string
		method  string
		target  string
		headers map[string]string
		token   string
		reason  Reason
	}{
		{"header: read RPT for a DELETE", "POST", "/api/records/alice/1", map[string]string{"X-HTTP-Method-Override": "delete"}, "rpt-read", ReasonInsufficient},
		{"header: delete RPT for a DELETE", "POST", "/api/records/alice/1", map[string]string{"X-HTTP-Method-Override": "DELETE"}, "rpt-delete", ReasonAuthorized},
		{"query: read RPT for a DELETE", "GET", "/api/records/alice/1?_method=DELETE", nil, "rpt-read", ReasonInsufficient},
		{"X-HTTP-Method: GET with a read RPT", "POST", "/api/records/alice/1", map[string]string{"X-HTTP-Method": "GET"}, "rpt-read", ReasonAuthorized},
		{"X-Method-Override to an unmapped method", "POST", "/api/records/alice/1", map[string]string{"X-Method-Override": "PURGE"}, "rpt-delete", ReasonMethodNotMapped},
		{"two overrides that disagree", "POST", "/api/records/alice/1?_method=GET", map[string]string{"X-HTTP-Method-Override": "DELETE"}, "rpt-delete", ReasonAmbiguousMethod},
		{"two overrides that agree", "POST", "/api/records/alice/1?_method=delete", map[string]string{"X-HTTP-Method-Override": "DELETE"}, "rpt-delete", ReasonAuthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := request(tt.method, tt.target, tt.token)
			for k, v := range tt.headers {
				r.Header.Set(k, v)
			}
			var seen *http.Request
			h := e.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { seen = r }))
			h.ServeHTTP(httptest.NewRecorder(), r)
			d := e.Decide(r)
			if d.Reason != tt.reason {
				t.Fatalf("reason %s, want %s (%+v)", d.Reason, tt.reason, d)
			}
			if tt.reason == ReasonAmbiguousMethod && d.Status != http.StatusBadRequest {
				t.Errorf("status %d, want 400", d.Status)
			}
			if seen != nil && seen.URL.RawQuery != r.URL.RawQuery {
				t.Errorf("the query changed: %q", seen.URL.RawQuery)
			}
			for k := range tt.headers {
				if seen != nil && seen.Header.Get(k) == "" {
					t.Errorf("%s was stripped although kept", k)
				}
			}
		})
	}
}
