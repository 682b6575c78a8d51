package authz_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/caddy-uma/caddy-uma/authz"
	"github.com/caddy-uma/caddy-uma/authz/authztest"
	"github.com/caddy-uma/caddy-uma/authz/ownerapi"
	"github.com/caddy-uma/caddy-uma/authz/people"
)

// TestIsolationMatrix: for each of owner A's objects (resource, rule,
// share, request, history entry, ticket, RPT, PCT, refresh token), owner B
// (with a PAT and in the console), resource server B, and a person named
// like A's resource server try to read, change and delete it. Everything
// is refused, and afterwards every object is as it was.
func TestIsolationMatrix(t *testing.T) {
	f := authztest.NewPeopleFixture(t, nil)
	ctx := t.Context()
	alice := []string{"Authorization", authztest.Bearer(f.AlicePAT)}

	// Owner A's objects.
	if err := f.Server.AddShareForTest(t, "alice", f.Photos, "doc-1", "view"); err != nil {
		t.Fatal(err)
	}
	shares, _ := f.Server.ResourceShares(ctx, "alice", f.Photos)
	share := shares[0].ID
	insurer := f.IDToken(map[string]any{"sub": "ins-7", "email": "agent@insurer.example"})
	submitted := authztest.ExpectUMAError(t, f.Grant(authztest.WithClaims(f.LabsTicket("read"), insurer)), "request_submitted", true)
	rotated := submitted["ticket"].(string) // bound to the client "app"
	reqs, _ := f.Server.Requests(ctx, "alice")
	request := reqs[0].ID
	doc := f.IDToken(map[string]any{"sub": "doc-1", "email": "doctor@clinic.example"})
	tok := f.Grant(authztest.WithClaims(f.LabsTicket("read"), doc)).JSON(t)
	rpt, refresh, pct := tok["access_token"].(string), tok["refresh_token"].(string), tok["pct"].(string)
	history, _ := f.Server.History(ctx, "alice", 0)
	rules, _ := f.Server.Rules(ctx, "alice")

	// The others.
	bobPAT, err := f.Server.IssuePAT(ctx, "rs-a", "bob")
	if err != nil {
		t.Fatal(err)
	}
	namedLikeRS, err := f.Server.IssuePAT(ctx, "rs-a", "rs-a") // a person whose subject is "rs-a"
	if err != nil {
		t.Fatal(err)
	}
	rsB := f.PAT("rs-b", "secret-b")
	bob := f.Browser()
	csrf := bob.Login("bob", authztest.BobPassword)

	type attempt struct {
		name string
		do   func() authztest.Response
	}
	var attempts []attempt
	for who, pat := range map[string]string{"owner B": bobPAT, "resource server B": rsB, "person named like rs-a": namedLikeRS} {
		auth := []string{"Authorization", authztest.Bearer(pat)}
		add := func(what string, do func() authztest.Response) {
			attempts = append(attempts, attempt{who + ": " + what, do})
		}
		add("read the resource", func() authztest.Response { return f.Do("GET", authz.PathResourceSet+"/"+f.Labs, nil, auth...) })
		add("replace the resource", func() authztest.Response {
			return f.Do("PUT", authz.PathResourceSet+"/"+f.Labs, `{"name":"mine","resource_scopes":["read"]}`, auth...)
		})
		add("delete the resource", func() authztest.Response { return f.Do("DELETE", authz.PathResourceSet+"/"+f.Labs, nil, auth...) })
		add("ticket for the resource", func() authztest.Response {
			return f.Do("POST", authz.PathPermission, `{"resource_id":"`+f.Labs+`","resource_scopes":["read"]}`, auth...)
		})
		if pat != rsB { // a resource server's own PAT may name the owners of its resources
			add("register for the owner", func() authztest.Response {
				return f.Do("POST", authz.PathResourceSet, `{"name":"x","resource_scopes":["read"],"owner":"alice"}`, auth...)
			})
		}
		add("read the rule", func() authztest.Response { return f.Do("GET", ownerapi.PathRules+"/main", nil, auth...) })
		add("delete the rule", func() authztest.Response { return f.Do("DELETE", ownerapi.PathRules+"/main", nil, auth...) })
		add("evaluate on the resource", func() authztest.Response {
			return f.Do("POST", ownerapi.PathEvaluate, `{"resource_id":"`+f.Labs+`"}`, auth...)
		})
		add("read the request", func() authztest.Response { return f.Do("GET", ownerapi.PathRequests+"/"+request, nil, auth...) })
		add("approve the request", func() authztest.Response {
			return f.Do("POST", ownerapi.PathRequests+"/"+request, `{"decision":"approve"}`, auth...)
		})
	}
	// The tokens, by other clients.
	asClient := func(id, secret string) []string { return []string{"Authorization", authztest.BasicAuth(id, secret)} }
	attempts = append(attempts,
		attempt{"resource server B: introspect the RPT", func() authztest.Response {
			return f.Do("POST", authz.PathIntrospect, url.Values{"token": {rpt}}, "Authorization", authztest.Bearer(rsB))
		}},
		attempt{"owner B: introspect the RPT", func() authztest.Response {
			return f.Do("POST", authz.PathIntrospect, url.Values{"token": {rpt}}, "Authorization", authztest.Bearer(bobPAT))
		}},
		attempt{"person named like rs-a: introspect the RPT", func() authztest.Response {
			return f.Do("POST", authz.PathIntrospect, url.Values{"token": {rpt}}, "Authorization", authztest.Bearer(namedLikeRS))
		}},
		attempt{"another client: redeem the rotated ticket", func() authztest.Response {
			return f.Do("POST", authz.PathToken, url.Values{"grant_type": {authz.GrantTypeUMATicket}, "ticket": {rotated}}, asClient("scoped", "scoped-secret")...)
		}},
		attempt{"another client: refresh", func() authztest.Response {
			return f.Do("POST", authz.PathToken, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh}}, asClient("scoped", "scoped-secret")...)
		}},
		attempt{"another client: use the PCT", func() authztest.Response {
			return f.Do("POST", authz.PathToken, url.Values{"grant_type": {authz.GrantTypeUMATicket}, "ticket": {f.LabsTicket("read")}, "pct": {pct}}, asClient("scoped", "scoped-secret")...)
		}},
	)
	// Owner B in the console.
	for what, do := range map[string]func() authztest.Response{
		"console: the resource page": func() authztest.Response { return bob.Get(people.PathConsole + "/resources/" + f.Labs) },
		"console: the rule":          func() authztest.Response { return bob.Get(people.PathConsole + "/rules?name=main") },
		"console: revoke the share": func() authztest.Response {
			return bob.Post(people.PathConsole+"/shares/revoke", url.Values{"csrf": {csrf}, "resource": {f.Photos}, "share": {share}})
		},
		"console: share the resource": func() authztest.Response {
			return bob.Post(people.PathConsole+"/shares", url.Values{"csrf": {csrf}, "resource": {f.Labs}, "person": {"mallory"}, "scope": {"read"}})
		},
		"console: decide the request": func() authztest.Response {
			return bob.Post(people.PathConsole+"/requests/decide", url.Values{"csrf": {csrf}, "request": {request}, "decision": {"approve"}})
		},
		"console: delete the rule": func() authztest.Response {
			return bob.Post(people.PathConsole+"/rules", url.Values{"csrf": {csrf}, "name": {"main"}, "action": {"delete"}})
		},
	} {
		attempts = append(attempts, attempt{"owner B, " + what, do})
	}

	for _, a := range attempts {
		r := a.do()
		switch {
		case r.Status >= 200 && r.Status < 300 && strings.Contains(a.name, "introspect"):
			if m := r.JSON(t); m["active"] != false {
				t.Errorf("%s: %s", a.name, r.Body)
			}
		case r.Status >= 200 && r.Status < 400:
			t.Errorf("%s: %d %s", a.name, r.Status, r.Body)
		case r.Status >= 500:
			t.Errorf("%s: %d %s", a.name, r.Status, r.Body)
		}
	}
	// Nor do the tokens stop working when another client revokes them.
	for _, tok := range []string{rpt, refresh, pct} {
		if r := f.Do("POST", authz.PathRevoke, url.Values{"token": {tok}}, asClient("scoped", "scoped-secret")...); r.Status != http.StatusOK {
			t.Errorf("revocation by another client: %d", r.Status)
		}
	}
	// The history pages of others show nothing of A's.
	for _, page := range []string{"/history", "/resources", "/requests", "/shared-with-me"} {
		if body := string(bob.Get(people.PathConsole + page).Body); strings.Contains(body, f.Labs) || strings.Contains(body, "ins-7") || strings.Contains(body, "agent@insurer.example") {
			t.Errorf("bob's %s shows alice's objects", page)
		}
	}

	// Everything of A's is as it was.
	if r := f.Do("GET", authz.PathResourceSet+"/"+f.Labs, nil, alice...); r.Status != 200 || r.JSON(t)["name"] != "labs" {
		t.Errorf("the resource: %d %s", r.Status, r.Body)
	}
	if after, _ := f.Server.Rules(ctx, "alice"); len(after) != len(rules) || after["main"] != rules["main"] {
		t.Error("the rules changed")
	}
	if after, _ := f.Server.ResourceShares(ctx, "alice", f.Photos); len(after) != 1 || after[0].ID != share {
		t.Error("the share changed")
	}
	if after, _ := f.Server.Request(ctx, "alice", request); after.Status != authz.RequestPending {
		t.Errorf("the request is %s", after.Status)
	}
	if after, _ := f.Server.History(ctx, "alice", 0); len(after) < len(history) {
		t.Error("the history lost entries")
	}
	var intro struct {
		Active bool `json:"active"`
	}
	_ = json.Unmarshal(f.Do("POST", authz.PathIntrospect, url.Values{"token": {rpt}}, alice...).Body, &intro)
	if !intro.Active {
		t.Error("the RPT no longer works")
	}
	appAuth := asClient("app", authztest.AppSecret)
	if r := f.Do("POST", authz.PathToken, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh}}, appAuth...); r.Status != 200 {
		t.Errorf("the refresh token no longer works: %d %s", r.Status, r.Body)
	}
	r := f.Do("POST", authz.PathToken, url.Values{"grant_type": {authz.GrantTypeUMATicket}, "ticket": {f.LabsTicket("read")}, "pct": {pct}}, appAuth...)
	if r.Status != 200 {
		t.Errorf("the PCT no longer works: %d %s", r.Status, r.Body)
	}
	if r := f.Do("POST", authz.PathToken, url.Values{"grant_type": {authz.GrantTypeUMATicket}, "ticket": {rotated}}, appAuth...); r.Status == 400 {
		t.Errorf("the rotated ticket was spent by another client: %s", r.Body)
	}

}
