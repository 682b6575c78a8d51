package authz_test

import (
	"encoding/json"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddy-uma/caddy-uma/authz"
	"github.com/caddy-uma/caddy-uma/authz/authztest"
	"github.com/caddy-uma/caddy-uma/authz/pep/peptest"
	"github.com/caddy-uma/caddy-uma/authz/secret"
)

// Tests of the findings of the 2026-12 audit (issue "Hardening"), each
// through HTTP.

// Finding 1: a PAT that a person consented to acts for that person only,
// even when the person's subject equals the resource server's client id.
func TestConsentedPATNamedLikeTheClientActsForItsOwnerOnly(t *testing.T) {
	f := authztest.NewGrantFixture(t, nil)
	ctx := t.Context()
	// A person whose subject is "rs-a" consents to a PAT for rs-a.
	personPAT, err := f.Server.IssuePAT(ctx, "rs-a", "rs-a")
	if err != nil {
		t.Fatal(err)
	}
	auth := []string{"Authorization", authztest.Bearer(personPAT)}

	var ids []string
	if err := json.Unmarshal(f.Do("GET", authz.PathResourceSet, nil, auth...).Body, &ids); err != nil || slices.Contains(ids, f.Labs) {
		t.Fatalf("the person's PAT lists alice's resources: %v %v", ids, err)
	}
	authztest.ExpectError(t, f.Do("GET", authz.PathResourceSet+"/"+f.Labs, nil, auth...), 404, "not_found")
	authztest.ExpectError(t, f.Do("PUT", authz.PathResourceSet+"/"+f.Labs, `{"resource_scopes":["read"],"owner":"rs-a"}`, auth...), 404, "not_found")
	authztest.ExpectError(t, f.Do("DELETE", authz.PathResourceSet+"/"+f.Labs, nil, auth...), 404, "not_found")
	authztest.ExpectError(t, f.Do("POST", authz.PathResourceSet, `{"name":"x","resource_scopes":["read"],"owner":"alice"}`, auth...), 400, "invalid_request")

	// Nor does it see alice's RPTs.
	doc := f.IDToken(map[string]any{"sub": "doc-1", "email": "doctor@clinic.example"})
	rpt := f.Grant(authztest.WithClaims(f.LabsTicket("read"), doc)).JSON(t)["access_token"].(string)
	if m := f.Do("POST", authz.PathIntrospect, url.Values{"token": {rpt}}, auth...).JSON(t); m["active"] != false {
		t.Fatalf("the person's PAT introspects alice's RPT: %v", m)
	}

	// The resource server's own PAT (client credentials) still acts for any owner.
	own := []string{"Authorization", authztest.Bearer(f.PAT("rs-a", "secret-a"))}
	if r := f.Do("GET", authz.PathResourceSet+"/"+f.Labs, nil, own...); r.Status != 200 {
		t.Fatalf("own PAT: %d %s", r.Status, r.Body)
	}
}

// Finding 1: an access token stored before the AS recorded how tokens were
// obtained is refused with invalid_token, so that its holder gets a new one.
func TestAccessTokenWithoutRecordedGrantIsRefused(t *testing.T) {
	as := authztest.New(t, nil)
	tok := secret.New(32)
	rec := `{"kind":"access_token","client_id":"rs-a","sub":"rs-a","scopes":["uma_protection"],"iat":1,"exp":` +
		jsonInt(as.Clock.Now().Add(time.Hour).Unix()) + `}`
	if err := as.Store.Put(t.Context(), authz.NSTokens, secret.Key(tok), []byte(rec), as.Clock.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	authztest.ExpectError(t, as.Do("GET", authz.PathResourceSet, nil, "Authorization", authztest.Bearer(tok)), 401, "invalid_token")
}

func jsonInt(n int64) string { b, _ := json.Marshal(n); return string(b) }

// Finding 4: a ticketless request for a name that matches nothing is
// answered as a refusal of an existing resource is.
func TestTicketlessAnswersTellNothingAboutWhatExists(t *testing.T) {
	f := authztest.NewGrantFixture(t, nil)
	for name, perm := range map[string]string{"existing": "labs#read", "scope not offered": "labs#fly", "no such name": "nothing#read"} {
		r := f.Grant(url.Values{"audience": {"rs-a"}, "permission": {perm}})
		authztest.ExpectError(t, r, 403, "access_denied")
		if got := r.JSON(t)["error_description"]; got != "not_authorized" {
			t.Errorf("%s: error_description %q", name, got)
		}
	}
}

// Finding 4: unidentified refusals do not flood an owner's history.
func TestUnidentifiedRefusalsRecordedOncePerWindow(t *testing.T) {
	f := authztest.NewGrantFixture(t, nil)
	ctx := t.Context()
	before, _ := f.Server.History(ctx, "alice", 0)
	for range 10 {
		f.Grant(url.Values{"audience": {"rs-a"}, "permission": {"labs#read"}})
		f.Grant(url.Values{"ticket": {f.LabsTicket("read")}})
	}
	after, _ := f.Server.History(ctx, "alice", 0)
	if n := len(after) - len(before); n > 1 {
		t.Fatalf("20 unidentified refusals added %d history entries, want at most 1", n)
	}
	// An identified requester's refusals are all recorded.
	stranger := f.IDToken(map[string]any{"sub": "x-1", "email": "x@example.org"})
	for range 3 {
		f.Grant(authztest.WithClaims(f.LabsTicket("read"), stranger))
	}
	if later, _ := f.Server.History(ctx, "alice", 0); len(later)-len(after) != 3 {
		t.Fatalf("identified refusals recorded: %d, want 3", len(later)-len(after))
	}
}

// Finding 9: the protection API refuses what would show as something else
// or run as script on a page.
func TestResourceDescriptionsRefuseDangerousText(t *testing.T) {
	as := authztest.New(t, nil)
	auth := []string{"Authorization", authztest.Bearer(as.PAT("rs-a", "secret-a"))}
	for name, body := range map[string]string{
		"javascript icon_uri": `{"resource_scopes":["read"],"icon_uri":"javascript:alert(1)"}`,
		"data icon_uri":       `{"resource_scopes":["read"],"icon_uri":"data:text/html,<script>"}`,
		"javascript uri":      `{"resource_scopes":["read"],"uris":["javascript:alert(1)"]}`,
		"NUL in name":         `{"resource_scopes":["read"],"name":"a\u0000b"}`,
		"ANSI in name":        `{"resource_scopes":["read"],"name":"\u001b[31mred"}`,
		"bidi in name":        `{"resource_scopes":["read"],"name":"abc\u202egnp.exe"}`,
		"C1 in type":          `{"resource_scopes":["read"],"type":"a\u0085b"}`,
		"bidi in owner":       `{"resource_scopes":["read"],"owner":"ali\u2066ce"}`,
		"newline in owner":    `{"resource_scopes":["read"],"owner":"alice\nbob"}`,
		"invalid UTF-8":       "{\"resource_scopes\":[\"read\"],\"name\":\"\xff\xfe\"}",
	} {
		if r := as.Do("POST", authz.PathResourceSet, body, auth...); r.Status != 400 || r.JSON(t)["error"] != "invalid_request" {
			t.Errorf("%s: %d %s", name, r.Status, r.Body)
		}
	}
	// What is fine stays fine.
	for _, body := range []string{
		`{"resource_scopes":["read"],"name":"Ünïcödé – 日本語","description":"two\nlines\tand a tab","icon_uri":"https://a.example/i.png","uris":["/labs/*","https://api.example/x"]}`,
	} {
		if r := as.Do("POST", authz.PathResourceSet, body, auth...); r.Status != 201 {
			t.Fatalf("%d %s", r.Status, r.Body)
		}
	}
}

// Finding 13: a request_submitted ticket outlives the interval it
// announces, even when ticket_ttl is shorter.
func TestRequestSubmittedTicketOutlivesItsInterval(t *testing.T) {
	f := authztest.NewGrantFixture(t, func(c *authz.Config) {
		c.TicketTTL = 3 * time.Second
		c.RequestInterval = 5 * time.Second
	})
	insurer := f.IDToken(map[string]any{"sub": "ins-7", "email": "agent@insurer.example"})
	m := authztest.ExpectUMAError(t, f.Grant(authztest.WithClaims(f.LabsTicket("read"), insurer)), "request_submitted", true)
	if m["interval"] != float64(5) {
		t.Fatalf("interval %v", m["interval"])
	}
	f.Clock.Advance(5 * time.Second)
	// The poll after the interval is still pending, not invalid_grant.
	authztest.ExpectUMAError(t, f.Grant(url.Values{"ticket": {m["ticket"].(string)}}), "request_submitted", true)
}

// Finding 14: introspection leaves out deregistered resources, also for a
// resource server's own PAT.
func TestIntrospectionLeavesOutDeletedResources(t *testing.T) {
	f := authztest.NewGrantFixture(t, nil)
	if err := f.Server.AddShareForTest(t, "alice", f.Photos, "doc-1", "view"); err != nil {
		t.Fatal(err)
	}
	doc := f.IDToken(map[string]any{"sub": "doc-1", "email": "doctor@clinic.example"})
	tk := f.Ticket(`[{"resource_id":"` + f.Labs + `","resource_scopes":["read"]},{"resource_id":"` + f.Photos + `","resource_scopes":["view"]}]`)
	rpt := f.Grant(authztest.WithClaims(tk, doc)).JSON(t)["access_token"].(string)
	own := []string{"Authorization", authztest.Bearer(f.PAT("rs-a", "secret-a"))}
	if r := f.Do("DELETE", authz.PathResourceSet+"/"+f.Labs, nil, own...); r.Status != 204 {
		t.Fatalf("delete: %d %s", r.Status, r.Body)
	}
	body := string(f.Do("POST", authz.PathIntrospect, url.Values{"token": {rpt}}, own...).Body)
	if strings.Contains(body, f.Labs) || !strings.Contains(body, f.Photos) {
		t.Fatalf("introspection after the delete: %s", body)
	}
}

// A fault of the server (here its store, closed under it) is answered 503
// with Retry-After, never 500.
func TestServerFaultsAreTemporarilyUnavailable(t *testing.T) {
	st := authztest.OpenStore(t, t.TempDir())
	as := authztest.NewWithStore(t, st, func(c *authz.Config) { c.Registration = &authz.Registration{InitialAccessToken: "iat"} })
	pat := as.PAT("rs-a", "secret-a")
	reg := as.Do("POST", authz.PathRegister, `{"client_name":"x"}`, "Authorization", authztest.Bearer("iat")).JSON(t)
	id, secret := reg["client_id"].(string), reg["client_secret"].(string)
	st.Close()
	for name, r := range map[string]authztest.Response{
		"token": as.Do("POST", authz.PathToken, url.Values{"grant_type": {"client_credentials"}}, "Authorization", authztest.BasicAuth("rs-a", "secret-a")),
		// Not invalid_client: the client may well be registered.
		"token of a registered client": as.Do("POST", authz.PathToken, url.Values{"grant_type": {authz.GrantTypeUMATicket}, "ticket": {"t"}}, "Authorization", authztest.BasicAuth(id, secret)),
		"protection":                   as.Do("GET", authz.PathResourceSet, nil, "Authorization", authztest.Bearer(pat)),
		"introspection":                as.Do("POST", authz.PathIntrospect, url.Values{"token": {pat}}, "Authorization", authztest.BasicAuth("rs-a", "secret-a")),
	} {
		authztest.ExpectError(t, r, 503, "temporarily_unavailable")
		if r.Header.Get("Retry-After") == "" {
			t.Errorf("%s: no Retry-After", name)
		}
	}
}

// Finding 6 at the AS: a malleated copy of an RPT (padding, standard
// base64, trailing bits, the ECDSA twin signature) is not the RPT,
// whatever endpoint it is shown to.
func TestMalleatedRPTsAreNotTheRPT(t *testing.T) {
	f := authztest.NewGrantFixture(t, nil)
	doc := f.IDToken(map[string]any{"sub": "doc-1", "email": "doctor@clinic.example"})
	own := []string{"Authorization", authztest.Bearer(f.PAT("rs-a", "secret-a"))}
	for range 4 { // an ECDSA signer picks s or n-s at random
		rpt := f.Grant(authztest.WithClaims(f.LabsTicket("read"), doc)).JSON(t)["access_token"].(string)
		for name, tok := range peptest.Malleated(rpt) {
			if m := f.Do("POST", authz.PathIntrospect, url.Values{"token": {tok}}, own...).JSON(t); m["active"] != false {
				t.Errorf("%s introspects active", name)
			}
			if _, err := f.Server.VerifyRPT(t.Context(), tok, "rs-a"); err == nil {
				t.Errorf("%s verifies", name)
			}
			f.Do("POST", authz.PathRevoke, url.Values{"token": {tok}}, "Authorization", authztest.BasicAuth("app", authztest.AppSecret))
		}
		if m := f.Do("POST", authz.PathIntrospect, url.Values{"token": {rpt}}, own...).JSON(t); m["active"] != true {
			t.Fatalf("a malleated copy revoked the RPT: %v", m)
		}
	}
}
