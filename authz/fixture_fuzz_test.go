package authz_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/caddy-uma/caddy-uma/authz"
	"github.com/caddy-uma/caddy-uma/authz/authztest"
	"github.com/caddy-uma/caddy-uma/authz/claimtoken"
	"github.com/caddy-uma/caddy-uma/authz/claimtoken/claimtokentest"
	"github.com/caddy-uma/caddy-uma/authz/keycloak"
	"github.com/caddy-uma/caddy-uma/store/badgerstore"
)

// The fuzz targets of the AS's HTTP interface share this fixture: one
// authorization server per target, on an in-memory Badger store, called
// through ServeHTTP with no network. Inputs name live values by
// placeholders, replaced before each call, so that the committed seeds stay
// valid although each run has new keys:
//
//	$PAT     rs-a's PAT for alice (her consent)
//	$RSPAT   rs-a's own PAT (client credentials)
//	$TICKET  a new ticket for read on alice's labs
//	$IDTOKEN a new ID token of the trusted issuer for client app (the doctor)
//	$CODE    a new authorization code of rs-web for alice (verifier fuzzverifier...)
//	$RPT     an RPT issued to app for labs, $REFRESH its refresh token
//	$LABS, $PHOTOS  alice's resources by rs-a; $BOBS bob's by rs-a; $RSB alice's by rs-b

// fuzzIssuer is the issuer of the fuzzed AS; no network is involved.
const fuzzIssuer = "https://as.example/uma"

// fuzzVerifier is the PKCE verifier of $CODE.
const fuzzVerifier = "fuzzverifier-0123456789-0123456789-0123456789"

// callLimit is how long one call may take before it counts as a hang.
const callLimit = 10 * time.Second

type fuzzAS struct {
	srv    *authz.Server
	idp    *claimtokentest.Provider
	values map[string]string
}

func newFuzzAS(f *testing.F) *fuzzAS {
	f.Helper()
	st, err := badgerstore.Open(badgerstore.Options{InMemory: true})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { st.Close() })
	idp := claimtokentest.NewProvider(f)
	cfg := authz.Config{
		Issuer: fuzzIssuer, Store: st, LoginPages: true,
		Clients:        append(append([]authz.Client{}, authztest.Clients...), authztest.PeopleClients...),
		TrustedIssuers: []claimtoken.Issuer{{Issuer: idp.Issuer(), Audiences: []string{"app"}}},
	}
	keycloak.Extend(&cfg) // Keycloak's ticketless form and response modes, as uma_server serves them
	srv, err := authz.New(context.Background(), cfg)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { srv.Close() })
	as := &fuzzAS{srv: srv, idp: idp, values: map[string]string{}}

	v := as.values
	if v["$PAT"], err = srv.IssuePAT(f.Context(), "rs-a", "alice"); err != nil {
		f.Fatal(err)
	}
	v["$RSPAT"] = as.setupToken(f, url.Values{"grant_type": {"client_credentials"}}, "rs-a", "secret-a")["access_token"].(string)
	rsbPAT := as.setupToken(f, url.Values{"grant_type": {"client_credentials"}}, "rs-b", "secret-b")["access_token"].(string)
	v["$LABS"] = as.setupRegister(f, v["$PAT"], `{"name":"labs","resource_scopes":["read","write","delete"]}`)
	v["$PHOTOS"] = as.setupRegister(f, v["$PAT"], `{"name":"photos","resource_scopes":["view"]}`)
	v["$BOBS"] = as.setupRegister(f, v["$RSPAT"], `{"name":"bob's notes","owner":"bob","resource_scopes":["read"]}`)
	v["$RSB"] = as.setupRegister(f, rsbPAT, `{"name":"labs at rs-b","owner":"alice","resource_scopes":["read"]}`)
	if err := srv.PutRule(f.Context(), "alice", "main", authztest.AliceRules); err != nil {
		f.Fatal(err)
	}
	grant := as.setupToken(f, url.Values{
		"grant_type": {authz.GrantTypeUMATicket}, "ticket": {as.ticket(f)},
		"claim_token": {as.idToken(f)}, "claim_token_format": {claimtoken.FormatIDToken},
	}, "app", authztest.AppSecret)
	v["$RPT"], v["$REFRESH"] = grant["access_token"].(string), grant["refresh_token"].(string)
	return as
}

// setupToken posts a token request that must succeed.
func (as *fuzzAS) setupToken(f *testing.F, form url.Values, id, secret string) map[string]any {
	f.Helper()
	rec := as.call(http.MethodPost, authz.PathToken, "application/x-www-form-urlencoded", form.Encode(), authztest.BasicAuth(id, secret))
	return setupAnswer(f, rec, http.StatusOK)
}

// setupRegister registers a resource that must be accepted, and returns its id.
func (as *fuzzAS) setupRegister(f *testing.F, pat, body string) string {
	f.Helper()
	rec := as.call(http.MethodPost, authz.PathResourceSet, "application/json", body, authztest.Bearer(pat))
	return setupAnswer(f, rec, http.StatusCreated)["_id"].(string)
}

func setupAnswer(f *testing.F, rec *httptest.ResponseRecorder, status int) map[string]any {
	f.Helper()
	var m map[string]any
	if rec.Code != status || json.Unmarshal(rec.Body.Bytes(), &m) != nil {
		f.Fatalf("fixture: %d %s, want %d", rec.Code, rec.Body, status)
	}
	return m
}

// ticket returns a new ticket for read on alice's labs.
func (as *fuzzAS) ticket(t testing.TB) string {
	tk, err := as.srv.RequestTicket(context.Background(), "rs-a", []authz.PermissionRequest{{ResourceID: as.values["$LABS"], Scopes: []string{"read"}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return tk
}

// idToken returns a new ID token of the doctor, whom alice's rules grant
// read and write.
func (as *fuzzAS) idToken(t testing.TB) string {
	return as.idp.Sign(t, map[string]any{"sub": "doc-1", "aud": "app", "email": "doctor@clinic.example"})
}

// code returns a new authorization code of rs-web for alice.
func (as *fuzzAS) code(t testing.TB) string {
	sum := sha256.Sum256([]byte(fuzzVerifier))
	req := authz.AuthorizationRequest{
		ClientID: "rs-web", RedirectURI: "https://rs.example/cb", RedirectGiven: true,
		Challenge: base64.RawURLEncoding.EncodeToString(sum[:]),
	}
	code, err := as.srv.IssueAuthorizationCode(context.Background(), req, "alice")
	if err != nil {
		t.Fatal(err)
	}
	return code
}

// expand replaces the placeholders of s.
func (as *fuzzAS) expand(t testing.TB, s string) string {
	if !strings.Contains(s, "$") {
		return s
	}
	fresh := map[string]func(testing.TB) string{"$TICKET": as.ticket, "$IDTOKEN": as.idToken, "$CODE": as.code}
	for name, mint := range fresh {
		for strings.Contains(s, name) {
			s = strings.Replace(s, name, mint(t), 1)
		}
	}
	for name, val := range as.values {
		s = strings.ReplaceAll(s, name, val)
	}
	return s
}

// call serves one request with a deadline on its context.
func (as *fuzzAS) call(method, target, contentType, body, authorization string) *httptest.ResponseRecorder {
	ctx, cancel := context.WithTimeout(context.Background(), callLimit)
	defer cancel()
	req := httptest.NewRequestWithContext(ctx, method, fuzzIssuer+target, strings.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	rec := httptest.NewRecorder()
	as.srv.ServeHTTP(rec, req)
	return rec
}

// serve is call for a fuzzed request: it fails t when the answer breaks
// the rules of every answer (checkAnswer), and crashes the process, which
// the fuzzer records as a finding, when the call hangs.
func (as *fuzzAS) serve(t *testing.T, method, target, contentType, body, authorization string) *httptest.ResponseRecorder {
	t.Helper()
	hang := watchdog(method + " " + target)
	rec := as.call(method, target, contentType, body, authorization)
	hang.Stop()
	checkAnswer(t, rec)
	return rec
}

// watchdog crashes the process with every goroutine's stack if it is not
// stopped within callLimit: a hang is a finding.
func watchdog(what string) *time.Timer {
	return time.AfterFunc(callLimit, func() {
		debug.SetTraceback("all")
		panic(fmt.Sprintf("%s: no answer within %s", what, callLimit))
	})
}

// checkAnswer checks what every answer of the AS's API must be: no 5xx but
// 503 (with Retry-After), JSON, and errors in OAuth's format, not cached.
func checkAnswer(t *testing.T, rec *httptest.ResponseRecorder) {
	t.Helper()
	status, body := rec.Code, rec.Body.Bytes()
	if status >= 500 && (status != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "") {
		t.Fatalf("status %d (Retry-After %q): %s", status, rec.Header().Get("Retry-After"), body)
	}
	if status == http.StatusNoContent {
		return
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" || !json.Valid(body) {
		t.Fatalf("status %d: not a JSON answer (Content-Type %q): %q", status, ct, body)
	}
	if status < 400 {
		return
	}
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(body, &e) != nil || e.Error == "" {
		t.Fatalf("status %d without an OAuth error code: %s", status, body)
	}
	if rec.Header().Get("Cache-Control") != "no-store" {
		t.Fatalf("status %d: an error answer without Cache-Control: no-store: %v", status, rec.Header())
	}
}

// validHeaderValue reports whether net/http would deliver v as a header
// value: no control characters but tab.
func validHeaderValue(v string) bool {
	return !strings.ContainsFunc(v, func(r rune) bool { return r < ' ' && r != '\t' || r == 0x7f })
}
