package authz

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"
)

// bobToken is an ID token of bob (as the IdP knows him) for client app.
func (f *peopleFixture) bobToken() string {
	return f.idToken(map[string]any{"sub": "bob-at-idp", "email": "bob@example.org", "email_verified": true, "name": "Bob"})
}

// pushGrant obtains an RPT as client app with bob's pushed ID token; it
// returns the whole token response.
func (f *peopleFixture) pushGrant(resource string, scopes ...string) map[string]any {
	f.t.Helper()
	r := f.grant(withClaims(f.ticketFor(resource, scopes...), f.bobToken()))
	if r.status != 200 {
		f.t.Fatalf("grant: %d %s", r.status, r.body)
	}
	return r.json(f.t)
}

func (f *peopleFixture) ticketFor(resource string, scopes ...string) string {
	f.t.Helper()
	body := `{"resource_id":"` + resource + `","resource_scopes":["` + strings.Join(scopes, `","`) + `"]}`
	return f.ticket(body)
}

func (f *peopleFixture) introspectActive(rpt string) bool {
	f.t.Helper()
	return f.do("POST", PathIntrospect, url.Values{"token": {rpt}}, "Authorization", bearer(f.pat)).json(f.t)["active"] == true
}

func TestConsoleShareAndRevoke(t *testing.T) {
	f := newPeopleFixture(t, nil)
	alice := f.browser()
	token := alice.login("alice", alicePassword)

	// My resources: alice's two resources, not shared yet.
	expectPage(t, alice.get(PathConsole+"/resources"), 200, "labs", "photos", "Not shared with anyone", `aria-current="page"`)
	page := alice.get(PathConsole + "/resources/" + f.photos)
	expectPage(t, page, 200, "Who can do what now", `name="scope" value="view"`)

	// Before sharing, bob (pushing his ID token) gets nothing on photos:
	// alice's rules do not give it.
	expectUMAError(t, f.grant(withClaims(f.ticketFor(f.photos, "view"), f.bobToken())), "request_denied", false)

	// Bad share forms are refused and change nothing.
	for name, form := range map[string]url.Values{
		"no person":     {"resource": {f.photos}, "scope": {"view"}},
		"no scope":      {"resource": {f.photos}, "person": {"bob@example.org"}},
		"unknown scope": {"resource": {f.photos}, "person": {"bob@example.org"}, "scope": {"delete"}},
		"past date":     {"resource": {f.photos}, "person": {"bob@example.org"}, "scope": {"view"}, "expires": {"2001-01-01"}},
		"bad date":      {"resource": {f.photos}, "person": {"bob@example.org"}, "scope": {"view"}, "expires": {"soon"}},
		"bad client":    {"resource": {f.photos}, "person": {"bob@example.org"}, "scope": {"view"}, "client": {"nobody"}},
	} {
		form.Set("csrf", token)
		if r := alice.post(PathConsole+"/shares", form); r.status != 400 {
			t.Errorf("%s: %d", name, r.status)
		}
	}
	if shares, _ := f.srv.Shares(t.Context(), "alice"); len(shares) != 0 {
		t.Fatalf("refused forms made shares: %v", shares)
	}

	// Share photos with Bob@Example.org (any case), through app only, until next year.
	until := f.clock.Now().AddDate(1, 0, 0).UTC().Format("2006-01-02")
	r := alice.post(PathConsole+"/shares", url.Values{"csrf": {token}, "resource": {f.photos},
		"person": {"Bob@Example.org"}, "scope": {"view"}, "expires": {until}, "client": {"app"}})
	if loc := location(t, r); loc.Path != "/uma/console/resources/"+f.photos || loc.Query().Get("done") != "shared" {
		t.Fatalf("share: %s", loc)
	}
	expectPage(t, alice.get(loc(r)), 200, "Shared.", "bob@example.org", "app only")
	shares, err := f.srv.Shares(t.Context(), "alice")
	if err != nil || len(shares) != 1 || shares[0].Email != "bob@example.org" || shares[0].Client != "app" || shares[0].ExpiresAt.IsZero() {
		t.Fatalf("shares: %+v %v", shares, err)
	}

	// Bob's client now gets an RPT for view.
	tok := f.pushGrant(f.photos, "view")
	rpt := tok["access_token"].(string)
	if perms := f.rptPermissions(rpt); !slices.Equal(perms[f.photos], []string{"view"}) {
		t.Fatalf("RPT: %v", perms)
	}
	jti, _, err := f.srv.parseRPT(t.Context(), rpt)
	if err != nil {
		t.Fatal(err)
	}
	// A refresh keeps it going (and is tracked too).
	rr := f.do("POST", PathToken, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok["refresh_token"].(string)}},
		"Authorization", basicAuth("app", "app secret:with&chars"))
	if rr.status != 200 {
		t.Fatalf("refresh: %d %s", rr.status, rr.body)
	}
	refreshed := rr.json(t)

	// History says why, in plain words.
	expectPage(t, alice.get(PathConsole+"/history"), 200, "granted", "your share with bob@example.org", "app", "photos")

	// Bob sees it in "shared with me" (as a local user with that address).
	bob := f.browser()
	bob.login("bob", bobPassword)
	expectPage(t, bob.get(PathConsole+"/shared-with-me"), 200, "photos", "alice", "view", "app only")

	// Revoke: the RPTs and refresh tokens stop working at once.
	page = alice.get(PathConsole + "/resources/" + f.photos)
	r = alice.post(PathConsole+"/shares/revoke", url.Values{"csrf": {token}, "resource": {f.photos}, "share": {shares[0].ID}})
	if loc := location(t, r); loc.Query().Get("done") != "revoked" {
		t.Fatalf("revoke: %s", loc)
	}
	if f.introspectActive(rpt) || f.introspectActive(refreshed["access_token"].(string)) {
		t.Fatal("an RPT of the revoked share is still active")
	}
	if live, err := f.srv.RPTLive(t.Context(), jti); err != nil || live {
		t.Fatalf("RPTLive after revocation: %v %v", live, err)
	}
	expectError(t, f.do("POST", PathToken, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refreshed["refresh_token"].(string)}},
		"Authorization", basicAuth("app", "app secret:with&chars")), 400, "invalid_grant")
	expectUMAError(t, f.grant(withClaims(f.ticketFor(f.photos, "view"), f.bobToken())), "request_denied", false)
	expectPage(t, bob.get(PathConsole+"/shared-with-me"), 200, "Nobody has shared anything with you yet")
	_ = page
}

// loc returns the Location of a response as a string.
func loc(r response) string { return r.header.Get("Location") }

func TestRevokeKeepsOtherPeoplesTokens(t *testing.T) {
	f := newPeopleFixture(t, nil)
	// Two shares of photos: bob by e-mail, dana by subject.
	if _, err := f.srv.AddShare(t.Context(), Share{Owner: "alice", ResourceID: f.photos, Email: "bob@example.org", Scopes: []string{"view"}}); err != nil {
		t.Fatal(err)
	}
	dana, err := f.srv.AddShare(t.Context(), Share{Owner: "alice", ResourceID: f.photos, Subject: "dana", Scopes: []string{"view"}})
	if err != nil {
		t.Fatal(err)
	}
	bobRPT := f.pushGrant(f.photos, "view")["access_token"].(string)
	r := f.grant(withClaims(f.ticketFor(f.photos, "view"), f.idToken(map[string]any{"sub": "dana"})))
	if r.status != 200 {
		t.Fatalf("dana: %d %s", r.status, r.body)
	}
	danaRPT := r.json(t)["access_token"].(string)
	if _, n, err := f.srv.RevokeShare(t.Context(), "alice", f.photos, dana.ID); err != nil || n != 1 {
		t.Fatalf("revoke: %d %v", n, err)
	}
	if f.introspectActive(danaRPT) || !f.introspectActive(bobRPT) {
		t.Fatal("revoking dana's share must end dana's RPT and only hers")
	}
}

func TestConsoleOwnerIsolation(t *testing.T) {
	f := newPeopleFixture(t, nil)
	ctx := t.Context()
	// carol owns a resource of her own, shared with dana, with a pending request and a rule.
	carolPAT, _ := f.srv.IssuePAT(ctx, "rs-a", "carol")
	diary := f.register(carolPAT, `{"name":"carols-diary","resource_scopes":["read"]}`)
	carolShare, err := f.srv.AddShare(ctx, Share{Owner: "carol", ResourceID: diary, Subject: "dana", Scopes: []string{"read"}})
	if err != nil {
		t.Fatal(err)
	}
	req, err := f.srv.fileRequest(ctx, AccessRequest{Owner: "carol", ResourceID: diary, Scopes: []string{"read"}, ClientID: "app", Subject: "erin"})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.srv.PutRule(ctx, "carol", "carols-secret-rule", "package uma.share\n\nallow contains \"read\" if input.requesting_party.sub == \"frank\"\n"); err != nil {
		t.Fatal(err)
	}
	f.srv.recordDecisions(ctx, []ownedDecision{{"carol", DecisionRecord{At: f.clock.Now(), ResourceID: diary, ResourceName: "carols-diary", ClientID: "app", Subject: "zed-the-requester", Outcome: OutcomeRefused}}})

	alice := f.browser()
	token := alice.login("alice", alicePassword)

	// Pages: 404 for carol's objects, and nothing of carol's in alice's pages.
	expectErrorPage(t, alice.get(PathConsole+"/resources/"+diary), 404)
	expectErrorPage(t, alice.get(PathConsole+"/rules?name=carols-secret-rule"), 404)
	for _, p := range []string{"/resources", "/requests", "/rules", "/history", "/shared-with-me"} {
		r := alice.get(PathConsole + p)
		expectPage(t, r, 200)
		for _, secret := range []string{"carols-diary", "carols-secret-rule", "frank", "zed-the-requester", "erin", diary} {
			if strings.Contains(string(r.body), secret) {
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
		if r := alice.post(PathConsole+c.path, c.form); r.status != 404 {
			t.Errorf("%s: %d", name, r.status)
		}
	}
	// Trying rules on carol's resource is refused too.
	r := alice.post(PathConsole+"/rules/try", url.Values{"csrf": {token}, "resource": {diary}})
	expectPage(t, r, 400, "Choose one of your resources")

	shares, _ := f.srv.Shares(ctx, "carol")
	if len(shares) != 1 || shares[0].ID != carolShare.ID {
		t.Fatalf("carol's shares changed: %+v", shares)
	}
	if q, _ := f.srv.getRequest(ctx, "carol", req.ID); q.Status != RequestPending {
		t.Fatalf("carol's request changed: %+v", q)
	}
	if mods, _ := f.srv.Rules(ctx, "carol"); len(mods) != 1 {
		t.Fatalf("carol's rules changed: %v", mods)
	}
	// Alice saving a rule of the same name makes hers, not carol's.
	r = alice.post(PathConsole+"/rules", url.Values{"csrf": {token}, "name": {"carols-secret-rule"}, "source": {"package uma.share\n"}})
	if r.status != http.StatusSeeOther {
		t.Fatalf("saving: %d %s", r.status, r.body)
	}
	if mods, _ := f.srv.Rules(ctx, "carol"); !strings.Contains(mods["carols-secret-rule"], "frank") {
		t.Fatal("alice changed carol's rule")
	}
}

func TestConsoleCSRFOnEveryPost(t *testing.T) {
	f := newPeopleFixture(t, nil)
	ctx := t.Context()
	req, err := f.srv.fileRequest(ctx, AccessRequest{Owner: "alice", ResourceID: f.photos, Scopes: []string{"view"}, ClientID: "app", Subject: "erin"})
	if err != nil {
		t.Fatal(err)
	}
	share, err := f.srv.AddShare(ctx, Share{Owner: "alice", ResourceID: f.labs, Subject: "dana", Scopes: []string{"read"}})
	if err != nil {
		t.Fatal(err)
	}
	alice := f.browser()
	alice.login("alice", alicePassword)
	mallory := f.browser()
	malloryToken := mallory.login("carol", "carol password")

	posts := map[string]url.Values{
		"/shares":           {"resource": {f.photos}, "person": {"mallory@example.org"}, "scope": {"view"}},
		"/shares/revoke":    {"resource": {f.labs}, "share": {share.ID}},
		"/requests/decide":  {"request": {req.ID}, "decision": {"approve"}},
		"/rules":            {"name": {"evil"}, "source": {"package uma.share\n\nallow contains \"read\" if true\n"}},
		"/rules/try":        {"resource": {f.labs}},
		"/../logout":        {},
		"/../authorize":     authorizeQuery("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQ"),
		"/../claims":        {"interaction": {"x"}, "decision": {"share"}},
		"/rules#delete-one": {"action": {"delete"}, "name": {"main"}},
	}
	for path, form := range posts {
		path = strings.Split(path, "#")[0]
		full := PathConsole + path
		if strings.HasPrefix(path, "/../") {
			full = "/" + strings.TrimPrefix(path, "/../")
		}
		for _, token := range []string{"", "forged", malloryToken} {
			form := url.Values(cloneValues(form))
			if token != "" {
				form.Set("csrf", token)
			}
			if r := alice.post(full, form); r.status != 403 {
				t.Errorf("POST %s with csrf %q: %d", full, token, r.status)
			}
		}
	}
	// Nothing changed.
	if shares, _ := f.srv.Shares(ctx, "alice"); len(shares) != 1 {
		t.Fatalf("shares changed: %+v", shares)
	}
	if q, _ := f.srv.getRequest(ctx, "alice", req.ID); q.Status != RequestPending {
		t.Fatalf("request changed: %+v", q)
	}
	if mods, _ := f.srv.Rules(ctx, "alice"); len(mods) != 1 || mods["main"] == "" {
		t.Fatalf("rules changed: %v", mods)
	}
	// And alice is still logged in.
	expectPage(t, alice.get(PathConsole+"/resources"), 200, "Alice Liddell")
	// A form posted with a GET-only page's method, or JSON, is refused.
	r := alice.post(PathConsole+"/resources", url.Values{"csrf": {alice.csrf()}})
	if r.status != 405 {
		t.Fatalf("POST to a page: %d", r.status)
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
	f := newPeopleFixture(t, nil)
	// alice's rules ask her about people of insurer.example.
	insurer := f.idToken(map[string]any{"sub": "ins-1", "email": "claims@insurer.example", "name": "Ina Surer"})
	m := expectUMAError(t, f.grant(withClaims(f.labsTicket("read"), insurer)), "request_submitted", true)

	alice := f.browser()
	token := alice.login("alice", alicePassword)
	page := alice.get(PathConsole + "/requests")
	expectPage(t, page, 200, "Ina Surer", "claims@insurer.example", "labs", "Approve", `aria-label="1 pending"`)
	reqs, _ := f.srv.Requests(t.Context(), "alice")
	if len(reqs) != 1 {
		t.Fatalf("requests: %+v", reqs)
	}
	r := alice.post(PathConsole+"/requests/decide", url.Values{"csrf": {token}, "request": {reqs[0].ID}, "decision": {"approve"}})
	if l := location(t, r); l.Query().Get("done") != "approved" {
		t.Fatalf("approve: %s", l)
	}
	expectPage(t, alice.get(PathConsole+"/requests"), 200, "No request is waiting", "approved")
	// The client polls with its ticket and gets the RPT.
	f.clock.Advance(6 * time.Second)
	r = f.grant(url.Values{"ticket": {m["ticket"].(string)}})
	if r.status != 200 {
		t.Fatalf("poll after approval: %d %s", r.status, r.body)
	}
	// Deciding again changes nothing.
	r = alice.post(PathConsole+"/requests/decide", url.Values{"csrf": {token}, "request": {reqs[0].ID}, "decision": {"deny"}})
	if r.status != http.StatusSeeOther {
		t.Fatalf("second decision: %d", r.status)
	}
	if q, _ := f.srv.getRequest(t.Context(), "alice", reqs[0].ID); q.Status != RequestApproved {
		t.Fatalf("request: %+v", q)
	}
}

func TestConsoleRules(t *testing.T) {
	f := newPeopleFixture(t, nil)
	alice := f.browser()
	token := alice.login("alice", alicePassword)
	expectPage(t, alice.get(PathConsole+"/rules"), 200, "main", "Try it")
	expectPage(t, alice.get(PathConsole+"/rules?name=main"), 200, "lib.in_group(&#34;family&#34;)")

	// A syntax error (the unclosed call ends at line 7) is reported at its line, and nothing is saved.
	bad := "package uma.share\n\nimport data.uma.lib\n\nallow contains \"read\" if {\n\tlib.is_person(\"x\"\n}\n"
	r := alice.post(PathConsole+"/rules", url.Values{"csrf": {token}, "name": {"broken"}, "source": {bad}})
	expectPage(t, r, 400, "do not compile", "broken, line 7", `class="bad" value="7"`, "Line 7")
	if mods, _ := f.srv.Rules(t.Context(), "alice"); mods["broken"] != "" {
		t.Fatal("a module that does not compile was saved")
	}
	// The typed source is kept in the editor.
	if !strings.Contains(string(r.body), "lib.is_person(&#34;x&#34;") {
		t.Fatal("the editor lost the typed rules")
	}
	// A bad name.
	expectPage(t, alice.post(PathConsole+"/rules", url.Values{"csrf": {token}, "name": {"no/slash"}, "source": {"package uma.share\n"}}), 400, "Module names")

	// A good module is saved and in force.
	good := "package uma.share\n\nimport data.uma.lib\n\nallow contains \"view\" if lib.is_email(\"dana@example.org\")\n"
	r = alice.post(PathConsole+"/rules", url.Values{"csrf": {token}, "name": {"dana"}, "source": {good}})
	if l := location(t, r); l.Query().Get("done") != "saved" {
		t.Fatalf("save: %s", l)
	}
	dana := f.idToken(map[string]any{"sub": "dana", "email": "dana@example.org"})
	if r := f.grant(withClaims(f.ticketFor(f.photos, "view"), dana)); r.status != 200 {
		t.Fatalf("grant under the saved rule: %d %s", r.status, r.body)
	}

	// Try it: decides without granting, and explains.
	r = alice.post(PathConsole+"/rules/try", url.Values{"csrf": {token}, "resource": {f.photos}, "email": {"dana@example.org"}, "client": {"app"}})
	expectPage(t, r, 200, "Granted:", "view", "your sharing rules")
	r = alice.post(PathConsole+"/rules/try", url.Values{"csrf": {token}, "resource": {f.labs}, "scopes": {"write"}, "groups": {"family"}, "sub": {"kid"}})
	expectPage(t, r, 200, "Nothing is granted", "no share or rule gives it")
	r = alice.post(PathConsole+"/rules/try", url.Values{"csrf": {token}, "resource": {f.labs}, "scopes": {"read"}})
	expectPage(t, r, 200, "Nothing is granted", "not identified", "more information: E-mail address")
	r = alice.post(PathConsole+"/rules/try", url.Values{"csrf": {token}, "resource": {f.labs}, "claims": {"not json"}})
	expectPage(t, r, 400, "JSON object")

	// Delete.
	r = alice.post(PathConsole+"/rules", url.Values{"csrf": {token}, "name": {"dana"}, "action": {"delete"}})
	if l := location(t, r); l.Query().Get("done") != "deleted" {
		t.Fatalf("delete: %s", l)
	}
	expectUMAError(t, f.grant(withClaims(f.ticketFor(f.photos, "view"), dana)), "request_denied", false)
}

func TestHistoryBounded(t *testing.T) {
	f := newPeopleFixture(t, nil)
	ctx := t.Context()
	for i := 0; i < maxDecisionsPerOwner+pruneEvery+1; i++ {
		f.srv.recordDecisions(ctx, []ownedDecision{{"zoe", DecisionRecord{At: f.clock.Now().Add(time.Duration(i) * time.Second), ResourceID: "r", ClientID: "c", Outcome: OutcomeGranted}}})
	}
	recs, err := f.store.List(ctx, nsDecision, "zoe"+sep, 0)
	if err != nil || len(recs) > maxDecisionsPerOwner+pruneEvery {
		t.Fatalf("history of zoe: %d records, %v", len(recs), err)
	}
	hist, _ := f.srv.History(ctx, "zoe", 1)
	if len(hist) != 1 || !hist[0].At.Equal(f.clock.Now().Add(time.Duration(maxDecisionsPerOwner+pruneEvery)*time.Second).UTC()) {
		t.Fatalf("newest first: %+v", hist)
	}
}

func TestHistoryExplains(t *testing.T) {
	f := newPeopleFixture(t, nil)
	// family reads the labs (rule); a stranger gets nothing; an insurer is asked about.
	family := f.idToken(map[string]any{"sub": "kid", "groups": []string{"family"}, "email": "kid@example.org"})
	f.grant(withClaims(f.labsTicket("read"), family))
	f.clock.Advance(time.Second)
	f.grant(withClaims(f.labsTicket("read", "write"), family))
	f.clock.Advance(time.Second)
	f.grant(withClaims(f.labsTicket("write"), f.idToken(map[string]any{"sub": "m", "email": "mallory@clinic.example"})))
	hist, err := f.srv.History(t.Context(), "alice", 10)
	if err != nil || len(hist) != 3 {
		t.Fatalf("history: %+v %v", hist, err)
	}
	if hist[0].Outcome != OutcomeRefused || !strings.Contains(strings.Join(hist[0].Reasons, " "), "refused by a deny in your sharing rules") {
		t.Errorf("deny: %+v", hist[0])
	}
	if hist[1].Outcome != OutcomePartly || !strings.Contains(strings.Join(hist[1].Reasons, " "), `"read" was granted by your sharing rules`) {
		t.Errorf("partly: %+v", hist[1])
	}
	if hist[2].Outcome != OutcomeGranted || hist[2].Who() != "kid@example.org" {
		t.Errorf("granted: %+v", hist[2])
	}
}
