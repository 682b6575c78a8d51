package people_test

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddy-uma/caddy-uma/authz"
	"github.com/caddy-uma/caddy-uma/authz/authztest"
)

// bobToken is an ID token of bob (as the IdP knows him) for client app.
func (f *fixture) bobToken() string {
	return f.IDToken(map[string]any{"sub": "bob-at-idp", "email": "bob@example.org", "email_verified": true, "name": "Bob"})
}

// pushGrant obtains an authz.RPT as client app with bob's pushed ID token; it
// returns the whole token authztest.Response.
func (f *fixture) pushGrant(resource string, scopes ...string) map[string]any {
	f.T.Helper()
	r := f.Grant(authztest.WithClaims(f.ticketFor(resource, scopes...), f.bobToken()))
	if r.Status != 200 {
		f.T.Fatalf("grant: %d %s", r.Status, r.Body)
	}
	return r.JSON(f.T)
}

func (f *fixture) ticketFor(resource string, scopes ...string) string {
	f.T.Helper()
	body := `{"resource_id":"` + resource + `","resource_scopes":["` + strings.Join(scopes, `","`) + `"]}`
	return f.Ticket(body)
}

func (f *fixture) introspectActive(rpt string) bool {
	f.T.Helper()
	return f.Do("POST", authz.PathIntrospect, url.Values{"token": {rpt}}, "Authorization", authztest.Bearer(f.AlicePAT)).JSON(f.T)["active"] == true
}

func TestConsoleShareAndRevoke(t *testing.T) {
	f := newFixture(t, nil)
	alice := f.Browser()
	token := alice.Login("alice", authztest.AlicePassword)

	// My resources: alice's two resources, not shared yet (but alice's
	// rules give bob, of her family, read on labs).
	authztest.ExpectPage(t, alice.Get(authz.PathConsole+"/resources"), 200, "labs", "photos", "No shares, and your rules grant none", "Bob (bob)", `aria-current="page"`)
	page := alice.Get(authz.PathConsole + "/resources/" + f.Photos)
	authztest.ExpectPage(t, page, 200, "Who can do what now", `name="scope" value="view"`)

	// Before sharing, bob (pushing his ID token) gets nothing on photos:
	// alice's rules do not give it.
	authztest.ExpectUMAError(t, f.Grant(authztest.WithClaims(f.ticketFor(f.Photos, "view"), f.bobToken())), "request_denied", false)

	// Bad share forms are refused and change nothing.
	for name, form := range map[string]url.Values{
		"no person":     {"resource": {f.Photos}, "scope": {"view"}},
		"no scope":      {"resource": {f.Photos}, "person": {"bob@example.org"}},
		"unknown scope": {"resource": {f.Photos}, "person": {"bob@example.org"}, "scope": {"delete"}},
		"past date":     {"resource": {f.Photos}, "person": {"bob@example.org"}, "scope": {"view"}, "expires": {"2001-01-01"}},
		"bad date":      {"resource": {f.Photos}, "person": {"bob@example.org"}, "scope": {"view"}, "expires": {"soon"}},
		"bad client":    {"resource": {f.Photos}, "person": {"bob@example.org"}, "scope": {"view"}, "client": {"nobody"}},
	} {
		form.Set("csrf", token)
		if r := alice.Post(authz.PathConsole+"/shares", form); r.Status != 400 {
			t.Errorf("%s: %d", name, r.Status)
		}
	}
	if shares, _ := f.Server.Shares(t.Context(), "alice"); len(shares) != 0 {
		t.Fatalf("refused forms made shares: %v", shares)
	}

	// authz.Share photos with Bob@Example.org (any case), through app only, until next year.
	until := f.Clock.Now().AddDate(1, 0, 0).UTC().Format("2006-01-02")
	r := alice.Post(authz.PathConsole+"/shares", url.Values{"csrf": {token}, "resource": {f.Photos},
		"person": {"Bob@Example.org"}, "scope": {"view"}, "expires": {until}, "client": {"app"}})
	if loc := authztest.Location(t, r); loc.Path != "/uma/console/resources/"+f.Photos || loc.Query().Get("done") != "shared" {
		t.Fatalf("share: %s", loc)
	}
	authztest.ExpectPage(t, alice.Get(loc(r)), 200, "Shared.", "bob@example.org", "app only")
	shares, err := f.Server.Shares(t.Context(), "alice")
	if err != nil || len(shares) != 1 || shares[0].Email != "bob@example.org" || shares[0].Client != "app" || shares[0].ExpiresAt.IsZero() {
		t.Fatalf("shares: %+v %v", shares, err)
	}

	// Bob's client now gets an authz.RPT for view.
	tok := f.pushGrant(f.Photos, "view")
	rpt := tok["access_token"].(string)
	if perms := f.RPTPermissions(rpt); !slices.Equal(perms[f.Photos], []string{"view"}) {
		t.Fatalf("RPT: %v", perms)
	}
	verified, err := f.Server.VerifyRPT(t.Context(), rpt, "rs-a")
	if err != nil {
		t.Fatal(err)
	}
	jti := verified.ID
	// A refresh keeps it going (and is tracked too).
	rr := f.Do("POST", authz.PathToken, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok["refresh_token"].(string)}},
		"Authorization", authztest.BasicAuth("app", "app secret:with&chars"))
	if rr.Status != 200 {
		t.Fatalf("refresh: %d %s", rr.Status, rr.Body)
	}
	refreshed := rr.JSON(t)

	// History says why, in plain words.
	authztest.ExpectPage(t, alice.Get(authz.PathConsole+"/history"), 200, "granted", "your share with bob@example.org", "app", "photos")

	// Bob sees it in "shared with me" (as a local user with that address).
	bob := f.Browser()
	bob.Login("bob", authztest.BobPassword)
	authztest.ExpectPage(t, bob.Get(authz.PathConsole+"/shared-with-me"), 200, "photos", "alice", "view", "app only")

	// Revoke: the RPTs and refresh tokens stop working at once.
	page = alice.Get(authz.PathConsole + "/resources/" + f.Photos)
	r = alice.Post(authz.PathConsole+"/shares/revoke", url.Values{"csrf": {token}, "resource": {f.Photos}, "share": {shares[0].ID}})
	if loc := authztest.Location(t, r); loc.Query().Get("done") != "revoked" {
		t.Fatalf("revoke: %s", loc)
	}
	if f.introspectActive(rpt) || f.introspectActive(refreshed["access_token"].(string)) {
		t.Fatal("an authz.RPT of the revoked share is still active")
	}
	if live, err := f.Server.RPTLive(t.Context(), jti); err != nil || live {
		t.Fatalf("RPTLive after revocation: %v %v", live, err)
	}
	authztest.ExpectError(t, f.Do("POST", authz.PathToken, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refreshed["refresh_token"].(string)}},
		"Authorization", authztest.BasicAuth("app", "app secret:with&chars")), 400, "invalid_grant")
	authztest.ExpectUMAError(t, f.Grant(authztest.WithClaims(f.ticketFor(f.Photos, "view"), f.bobToken())), "request_denied", false)
	authztest.ExpectPage(t, bob.Get(authz.PathConsole+"/shared-with-me"), 200, "Nobody has shared anything with you yet")
	_ = page
}

// loc returns the Location of a authztest.Response as a string.
func loc(r authztest.Response) string { return r.Header.Get("Location") }

func TestRevokeKeepsOtherPeoplesTokens(t *testing.T) {
	f := newFixture(t, nil)
	// Two shares of photos: bob by e-mail, dana by subject.
	if _, err := f.Server.AddShare(t.Context(), authz.Share{Owner: "alice", ResourceID: f.Photos, Email: "bob@example.org", Scopes: []string{"view"}}); err != nil {
		t.Fatal(err)
	}
	dana, err := f.Server.AddShare(t.Context(), authz.Share{Owner: "alice", ResourceID: f.Photos, Subject: "dana", Scopes: []string{"view"}})
	if err != nil {
		t.Fatal(err)
	}
	bobRPT := f.pushGrant(f.Photos, "view")["access_token"].(string)
	r := f.Grant(authztest.WithClaims(f.ticketFor(f.Photos, "view"), f.IDToken(map[string]any{"sub": "dana"})))
	if r.Status != 200 {
		t.Fatalf("dana: %d %s", r.Status, r.Body)
	}
	danaRPT := r.JSON(t)["access_token"].(string)
	if _, n, err := f.Server.RevokeShare(t.Context(), "alice", f.Photos, dana.ID); err != nil || n != 1 {
		t.Fatalf("revoke: %d %v", n, err)
	}
	if f.introspectActive(danaRPT) || !f.introspectActive(bobRPT) {
		t.Fatal("revoking dana's share must end dana's authz.RPT and only hers")
	}
}

func TestConsoleOwnerIsolation(t *testing.T) {
	f := newFixture(t, nil)
	ctx := t.Context()
	// carol owns a resource of her own, shared with dana, with a pending request and a rule.
	carolPAT, _ := f.Server.IssuePAT(ctx, "rs-a", "carol")
	diary := f.Register(carolPAT, `{"name":"carols-diary","resource_scopes":["read"]}`)
	carolShare, err := f.Server.AddShare(ctx, authz.Share{Owner: "carol", ResourceID: diary, Subject: "dana", Scopes: []string{"read"}})
	if err != nil {
		t.Fatal(err)
	}
	req, err := f.Server.FileRequest(ctx, authz.AccessRequest{Owner: "carol", ResourceID: diary, Scopes: []string{"read"}, ClientID: "app", Subject: "erin"})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Server.PutRule(ctx, "carol", "carols-secret-rule", "package uma.share\n\nallow contains \"read\" if input.requesting_party.sub == \"frank\"\n"); err != nil {
		t.Fatal(err)
	}
	// A refused request of zed's in carol's history.
	zedTicket := f.Do("POST", authz.PathPermission, `{"resource_id":"`+diary+`","resource_scopes":["read"]}`, "Authorization", authztest.Bearer(carolPAT)).JSON(t)["ticket"].(string)
	authztest.ExpectUMAError(t, f.Grant(authztest.WithClaims(zedTicket, f.IDToken(map[string]any{"sub": "zed-the-requester"}))), "request_denied", false)
	if hist, _ := f.Server.History(ctx, "carol", 10); len(hist) != 1 || hist[0].Subject != "zed-the-requester" {
		t.Fatalf("carol's history: %+v", hist)
	}

	alice := f.Browser()
	token := alice.Login("alice", authztest.AlicePassword)

	// Pages: 404 for carol's objects, and nothing of carol's in alice's pages.
	authztest.ExpectErrorPage(t, alice.Get(authz.PathConsole+"/resources/"+diary), 404)
	authztest.ExpectErrorPage(t, alice.Get(authz.PathConsole+"/rules?name=carols-secret-rule"), 404)
	for _, p := range []string{"/resources", "/requests", "/rules", "/history", "/shared-with-me"} {
		r := alice.Get(authz.PathConsole + p)
		authztest.ExpectPage(t, r, 200)
		for _, secret := range []string{"carols-diary", "carols-secret-rule", "frank", "zed-the-requester", "erin", diary} {
			if strings.Contains(string(r.Body), secret) {
				t.Errorf("alice's %s shows carol's %q", p, secret)
			}
		}
	}

	// Actions on carol's objects: 404, nothing changed.
	for name, c := range map[string]struct {
		path string
		form url.Values
	}{
		"share carol's resource":  {"/shares", url.Values{"resource": {diary}, "person": {"mallory"}, "scope": {"read"}}},
		"revoke carol's share":    {"/shares/revoke", url.Values{"resource": {diary}, "share": {carolShare.ID}}},
		"approve carol's request": {"/requests/decide", url.Values{"request": {req.ID}, "decision": {"approve"}}},
		"delete carol's rule":     {"/rules", url.Values{"action": {"delete"}, "name": {"carols-secret-rule"}}},
	} {
		c.form.Set("csrf", token)
		if r := alice.Post(authz.PathConsole+c.path, c.form); r.Status != 404 {
			t.Errorf("%s: %d", name, r.Status)
		}
	}
	// Trying rules on carol's resource is refused too.
	r := alice.Post(authz.PathConsole+"/rules/try", url.Values{"csrf": {token}, "resource": {diary}})
	authztest.ExpectPage(t, r, 400, "Choose one of your resources")

	shares, _ := f.Server.Shares(ctx, "carol")
	if len(shares) != 1 || shares[0].ID != carolShare.ID {
		t.Fatalf("carol's shares changed: %+v", shares)
	}
	if q, _ := f.Server.Request(ctx, "carol", req.ID); q.Status != authz.RequestPending {
		t.Fatalf("carol's request changed: %+v", q)
	}
	if mods, _ := f.Server.Rules(ctx, "carol"); len(mods) != 1 {
		t.Fatalf("carol's rules changed: %v", mods)
	}
	// Alice saving a rule of the same name makes hers, not carol's.
	r = alice.Post(authz.PathConsole+"/rules", url.Values{"csrf": {token}, "name": {"carols-secret-rule"}, "source": {"package uma.share\n"}})
	if r.Status != http.StatusSeeOther {
		t.Fatalf("saving: %d %s", r.Status, r.Body)
	}
	if mods, _ := f.Server.Rules(ctx, "carol"); !strings.Contains(mods["carols-secret-rule"], "frank") {
		t.Fatal("alice changed carol's rule")
	}
}

func TestConsoleCSRFOnEveryPost(t *testing.T) {
	f := newFixture(t, nil)
	ctx := t.Context()
	req, err := f.Server.FileRequest(ctx, authz.AccessRequest{Owner: "alice", ResourceID: f.Photos, Scopes: []string{"view"}, ClientID: "app", Subject: "erin"})
	if err != nil {
		t.Fatal(err)
	}
	share, err := f.Server.AddShare(ctx, authz.Share{Owner: "alice", ResourceID: f.Labs, Subject: "dana", Scopes: []string{"read"}})
	if err != nil {
		t.Fatal(err)
	}
	alice := f.Browser()
	alice.Login("alice", authztest.AlicePassword)
	mallory := f.Browser()
	malloryToken := mallory.Login("carol", "carol password")

	posts := map[string]url.Values{
		"/shares":           {"resource": {f.Photos}, "person": {"mallory@example.org"}, "scope": {"view"}},
		"/shares/revoke":    {"resource": {f.Labs}, "share": {share.ID}},
		"/requests/decide":  {"request": {req.ID}, "decision": {"approve"}},
		"/rules":            {"name": {"evil"}, "source": {"package uma.share\n\nallow contains \"read\" if true\n"}},
		"/rules/try":        {"resource": {f.Labs}},
		"/../logout":        {},
		"/../authorize":     authorizeQuery("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQ"),
		"/../claims":        {"interaction": {"x"}, "decision": {"share"}},
		"/rules#delete-one": {"action": {"delete"}, "name": {"main"}},
	}
	for path, form := range posts {
		path = strings.Split(path, "#")[0]
		full := authz.PathConsole + path
		if strings.HasPrefix(path, "/../") {
			full = "/" + strings.TrimPrefix(path, "/../")
		}
		for _, token := range []string{"", "forged", malloryToken} {
			form := url.Values(cloneValues(form))
			if token != "" {
				form.Set("csrf", token)
			}
			if r := alice.Post(full, form); r.Status != 403 {
				t.Errorf("POST %s with csrf %q: %d", full, token, r.Status)
			}
		}
	}
	// Nothing changed.
	if shares, _ := f.Server.Shares(ctx, "alice"); len(shares) != 1 {
		t.Fatalf("shares changed: %+v", shares)
	}
	if q, _ := f.Server.Request(ctx, "alice", req.ID); q.Status != authz.RequestPending {
		t.Fatalf("request changed: %+v", q)
	}
	if mods, _ := f.Server.Rules(ctx, "alice"); len(mods) != 1 || mods["main"] == "" {
		t.Fatalf("rules changed: %v", mods)
	}
	// And alice is still logged in.
	authztest.ExpectPage(t, alice.Get(authz.PathConsole+"/resources"), 200, "Alice Liddell")
	// A form posted with a GET-only page's method, or JSON, is refused.
	r := alice.Post(authz.PathConsole+"/resources", url.Values{"csrf": {alice.CSRF()}})
	if r.Status != 405 {
		t.Fatalf("POST to a page: %d", r.Status)
	}
}

func cloneValues(v url.Values) url.Values {
	out := url.Values{}
	for k, vs := range v {
		out[k] = append([]string(nil), vs...)
	}
	return out
}

func TestConsoleRequests(t *testing.T) {
	f := newFixture(t, nil)
	// alice's rules ask her about people of insurer.example.
	insurer := f.IDToken(map[string]any{"sub": "ins-1", "email": "claims@insurer.example", "name": "Ina Surer"})
	m := authztest.ExpectUMAError(t, f.Grant(authztest.WithClaims(f.LabsTicket("read"), insurer)), "request_submitted", true)

	alice := f.Browser()
	token := alice.Login("alice", authztest.AlicePassword)
	page := alice.Get(authz.PathConsole + "/requests")
	authztest.ExpectPage(t, page, 200, "Ina Surer", "claims@insurer.example", "labs", "Approve", `aria-label="1 pending"`)
	reqs, _ := f.Server.Requests(t.Context(), "alice")
	if len(reqs) != 1 {
		t.Fatalf("requests: %+v", reqs)
	}
	r := alice.Post(authz.PathConsole+"/requests/decide", url.Values{"csrf": {token}, "request": {reqs[0].ID}, "decision": {"approve"}})
	if l := authztest.Location(t, r); l.Query().Get("done") != "approved" {
		t.Fatalf("approve: %s", l)
	}
	authztest.ExpectPage(t, alice.Get(authz.PathConsole+"/requests"), 200, "No request is waiting", "approved")
	// The client polls with its ticket and gets the authz.RPT.
	f.Clock.Advance(6 * time.Second)
	r = f.Grant(url.Values{"ticket": {m["ticket"].(string)}})
	if r.Status != 200 {
		t.Fatalf("poll after approval: %d %s", r.Status, r.Body)
	}
	// Deciding again changes nothing.
	r = alice.Post(authz.PathConsole+"/requests/decide", url.Values{"csrf": {token}, "request": {reqs[0].ID}, "decision": {"deny"}})
	if r.Status != http.StatusSeeOther {
		t.Fatalf("second decision: %d", r.Status)
	}
	if q, _ := f.Server.Request(t.Context(), "alice", reqs[0].ID); q.Status != authz.RequestApproved {
		t.Fatalf("request: %+v", q)
	}
}

func TestConsoleRules(t *testing.T) {
	f := newFixture(t, nil)
	alice := f.Browser()
	token := alice.Login("alice", authztest.AlicePassword)
	authztest.ExpectPage(t, alice.Get(authz.PathConsole+"/rules"), 200, "main", "Try it")
	authztest.ExpectPage(t, alice.Get(authz.PathConsole+"/rules?name=main"), 200, "lib.in_group(&#34;family&#34;)")

	// A syntax error (the unclosed call ends at line 7) is reported at its line, and nothing is saved.
	bad := "package uma.share\n\nimport data.uma.lib\n\nallow contains \"read\" if {\n\tlib.is_person(\"x\"\n}\n"
	r := alice.Post(authz.PathConsole+"/rules", url.Values{"csrf": {token}, "name": {"broken"}, "source": {bad}})
	authztest.ExpectPage(t, r, 400, "do not compile", "broken, line 7", `class="bad" value="7"`, "Line 7")
	if mods, _ := f.Server.Rules(t.Context(), "alice"); mods["broken"] != "" {
		t.Fatal("a module that does not compile was saved")
	}
	// The typed source is kept in the editor.
	if !strings.Contains(string(r.Body), "lib.is_person(&#34;x&#34;") {
		t.Fatal("the editor lost the typed rules")
	}
	// A bad name.
	authztest.ExpectPage(t, alice.Post(authz.PathConsole+"/rules", url.Values{"csrf": {token}, "name": {"no/slash"}, "source": {"package uma.share\n"}}), 400, "Module names")

	// A good module is saved and in force.
	good := "package uma.share\n\nimport data.uma.lib\n\nallow contains \"view\" if lib.is_email(\"dana@example.org\")\n"
	r = alice.Post(authz.PathConsole+"/rules", url.Values{"csrf": {token}, "name": {"dana"}, "source": {good}})
	if l := authztest.Location(t, r); l.Query().Get("done") != "saved" {
		t.Fatalf("save: %s", l)
	}
	dana := f.IDToken(map[string]any{"sub": "dana", "email": "dana@example.org"})
	if r := f.Grant(authztest.WithClaims(f.ticketFor(f.Photos, "view"), dana)); r.Status != 200 {
		t.Fatalf("grant under the saved rule: %d %s", r.Status, r.Body)
	}

	// Try it: decides without granting, and explains.
	r = alice.Post(authz.PathConsole+"/rules/try", url.Values{"csrf": {token}, "resource": {f.Photos}, "email": {"dana@example.org"}, "client": {"app"}})
	authztest.ExpectPage(t, r, 200, "Granted:", "view", "your sharing rules")
	r = alice.Post(authz.PathConsole+"/rules/try", url.Values{"csrf": {token}, "resource": {f.Labs}, "scopes": {"write"}, "groups": {"family"}, "sub": {"kid"}})
	authztest.ExpectPage(t, r, 200, "Nothing is granted", "no share or rule gives it")
	r = alice.Post(authz.PathConsole+"/rules/try", url.Values{"csrf": {token}, "resource": {f.Labs}, "scopes": {"read"}})
	authztest.ExpectPage(t, r, 200, "Nothing is granted", "not identified", "more information: E-mail address")
	r = alice.Post(authz.PathConsole+"/rules/try", url.Values{"csrf": {token}, "resource": {f.Labs}, "claims": {"not json"}})
	authztest.ExpectPage(t, r, 400, "JSON object")

	// Delete.
	r = alice.Post(authz.PathConsole+"/rules", url.Values{"csrf": {token}, "name": {"dana"}, "action": {"delete"}})
	if l := authztest.Location(t, r); l.Query().Get("done") != "deleted" {
		t.Fatalf("delete: %s", l)
	}
	authztest.ExpectUMAError(t, f.Grant(authztest.WithClaims(f.ticketFor(f.Photos, "view"), dana)), "request_denied", false)
}

// expectNot fails if the page contains any of parts.
func expectNot(t *testing.T, r authztest.Response, parts ...string) {
	t.Helper()
	for _, p := range parts {
		if strings.Contains(string(r.Body), p) {
			t.Fatalf("page contains %q: %s", p, r.Body)
		}
	}
}

// TestConsoleShowsWhatRulesGrant: a resource that no share names but that
// the owner's rules grant is never "not shared with anyone": the console
// evaluates the rules for the requesters it knows of (local users, the
// people of the owner's history, shares and requests, and someone not
// identified) and lists what they grant.
func TestConsoleShowsWhatRulesGrant(t *testing.T) {
	f := newFixture(t, nil)
	// The doctor (not a local user) got labs through alice's rules: she is
	// in alice's history now.
	doctor := f.IDToken(map[string]any{"sub": "dr-who", "email": "doctor@clinic.example"})
	if r := f.Grant(authztest.WithClaims(f.LabsTicket("read"), doctor)); r.Status != 200 {
		t.Fatalf("the doctor's grant: %d %s", r.Status, r.Body)
	}
	alice := f.Browser()
	token := alice.Login("alice", authztest.AlicePassword)
	labs := authz.PathConsole + "/resources/" + f.Labs
	photos := authz.PathConsole + "/resources/" + f.Photos

	// Labs: no share, but the rules give bob (family) read and the doctor
	// read and write.
	for _, page := range []string{labs, authz.PathConsole + "/resources"} {
		r := alice.Get(page)
		authztest.ExpectPage(t, r, 200, "Your rules grant access to:", `Bob (bob): <span class="scope">read</span>`,
			`doctor@clinic.example: <span class="scope">read</span> <span class="scope">write</span>`, "may grant others too")
		if page == labs {
			expectNot(t, r, "Not shared with anyone")
		}
	}
	// Photos: the rules grant none of them; the page says they may grant
	// others, not that photos are private.
	r := alice.Get(photos)
	authztest.ExpectPage(t, r, 200, "No shares, and your rules grant none of the", "may grant others access")
	expectNot(t, r, "Not shared with anyone", "Your rules grant access to:")

	save := func(name, src string) {
		t.Helper()
		r := alice.Post(authz.PathConsole+"/rules", url.Values{"csrf": {token}, "name": {name}, "source": {src}})
		if r.Status != http.StatusSeeOther {
			t.Fatalf("saving %s: %d %s", name, r.Status, r.Body)
		}
	}
	for _, tc := range []struct {
		name, rule, want string
	}{
		{"anyone", `allow contains "view" if true`, `anyone, even someone not identified: <span class="scope">view</span>`},
		{"through a client", `allow contains "view" if input.client.id == "app"`, `<span class="scope">view</span> <span class="meta">(through app only)</span>`},
	} {
		save("extra", "package uma.share\n\n"+tc.rule+"\n")
		r := alice.Get(photos)
		authztest.ExpectPage(t, r, 200, "Your rules grant access to:", tc.want)
		expectNot(t, r, "Not shared with anyone")
	}

	// Without any rules, only shares grant: then "not shared" is true.
	for _, name := range []string{"extra", "main"} {
		if r := alice.Post(authz.PathConsole+"/rules", url.Values{"csrf": {token}, "name": {name}, "action": {"delete"}}); r.Status != http.StatusSeeOther {
			t.Fatalf("deleting %s: %d", name, r.Status)
		}
	}
	authztest.ExpectPage(t, alice.Get(photos), 200, "Not shared with anyone")
	expectNot(t, alice.Get(labs), "Your rules", "may grant")
}

// TestHistoryAsksWhoIsRequesting: the usual first step of a requester not
// identified yet, need_info, is "asked who is requesting" in the history,
// not a refusal; a real refusal still is one.
func TestHistoryAsksWhoIsRequesting(t *testing.T) {
	for _, tc := range []struct {
		name    string
		claims  map[string]any // nil: no claim token
		code    string
		outcome string
		reason  string
	}{
		{"nobody identified", nil, "need_info", authz.OutcomeAsked, "they were asked who they are"},
		{"rules want the e-mail", map[string]any{"sub": "no-mail"}, "need_info", authz.OutcomeAsked, "Your rules asked for more information"},
		{"refused", map[string]any{"sub": "stranger", "email": "stranger@example.org"}, "request_denied", authz.OutcomeRefused, "no share or rule gives it"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, nil)
			params := url.Values{"ticket": {f.LabsTicket("read")}}
			if tc.claims != nil {
				params = authztest.WithClaims(params.Get("ticket"), f.IDToken(tc.claims))
			}
			authztest.ExpectUMAError(t, f.Grant(params), tc.code, tc.code == "need_info")
			hist, err := f.Server.History(t.Context(), "alice", 10)
			if err != nil || len(hist) != 1 || hist[0].Outcome != tc.outcome {
				t.Fatalf("history: %+v %v", hist, err)
			}
			alice := f.Browser()
			alice.Login("alice", authztest.AlicePassword)
			r := alice.Get(authz.PathConsole + "/history")
			authztest.ExpectPage(t, r, 200, `<span class="outcome `+tc.outcome+`">`+tc.outcome+`</span>`, tc.reason)
			if tc.outcome == authz.OutcomeAsked {
				expectNot(t, r, "refused")
			}
		})
	}
}
