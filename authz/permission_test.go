package authz_test

import (
	"context"
	"errors"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-uma/caddy-uma/authz"
	"github.com/caddy-uma/caddy-uma/authz/authztest"
)

func TestPermissionEndpoint(t *testing.T) {
	as := authztest.New(t, nil)
	pat := as.PAT("rs-a", "secret-a")
	auth := []string{"Authorization", authztest.Bearer(pat)}
	labs := as.Register(pat, `{"name":"labs","resource_scopes":["read","write"],"owner":"alice"}`)
	photos := as.Register(pat, `{"name":"photos","resource_scopes":["view"],"owner":"alice"}`)
	bobs := as.Register(pat, `{"name":"bob's","resource_scopes":["read"],"owner":"bob"}`)

	ok := []struct{ name, body string }{
		{"one object", `{"resource_id":"` + labs + `","resource_scopes":["read"]}`},
		{"empty scopes", `{"resource_id":"` + labs + `","resource_scopes":[]}`},
		{"array", `[{"resource_id":"` + labs + `","resource_scopes":["read","write"]},{"resource_id":"` + photos + `","resource_scopes":[]}]`},
		{"request context", `{"resource_id":"` + labs + `","resource_scopes":["read"],"claims":{"ip":"10.0.0.1","path":["/labs/1"]}}`},
	}
	for _, tc := range ok {
		t.Run(tc.name, func(t *testing.T) {
			r := as.Do("POST", authz.PathPermission, tc.body, auth...)
			if r.Status != 201 {
				t.Fatalf("%d %s", r.Status, r.Body)
			}
			tk, err := as.Server.OpenTicket(r.JSON(t)["ticket"].(string))
			if err != nil {
				t.Fatalf("ticket does not open: %v", err)
			}
			if tk.Owner != "alice" || tk.ResourceServer != "rs-a" || len(tk.Permissions) == 0 {
				t.Fatalf("ticket = %+v", tk)
			}
			if r.Header.Get("Cache-Control") != "no-store" {
				t.Fatal("ticket response cacheable")
			}
		})
	}
	bad := []struct{ name, body, code string }{
		{"unknown resource", `{"resource_id":"nope","resource_scopes":[]}`, "invalid_resource_id"},
		{"unregistered scope", `{"resource_id":"` + labs + `","resource_scopes":["delete"]}`, "invalid_scope"},
		{"one bad in array", `[{"resource_id":"` + labs + `","resource_scopes":["read"]},{"resource_id":"` + photos + `","resource_scopes":["read"]}]`, "invalid_scope"},
		{"missing resource_id", `{"resource_scopes":["read"]}`, "invalid_request"},
		{"missing resource_scopes", `{"resource_id":"` + labs + `"}`, "invalid_request"},
		{"empty array", `[]`, "invalid_request"},
		{"not JSON", `resource_id=x`, "invalid_request"},
		{"scopes not strings", `{"resource_id":"` + labs + `","resource_scopes":[1]}`, "invalid_request"},
		{"two owners", `[{"resource_id":"` + labs + `","resource_scopes":[]},{"resource_id":"` + bobs + `","resource_scopes":[]}]`, "invalid_request"},
		{"bad claims", `{"resource_id":"` + labs + `","resource_scopes":[],"claims":{"x":1}}`, "invalid_request"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			authztest.ExpectError(t, as.Do("POST", authz.PathPermission, tc.body, auth...), 400, tc.code)
		})
	}
	authztest.ExpectError(t, as.Do("GET", authz.PathPermission, nil, auth...), 405, "invalid_request")
}

func TestTicketsExpireAndAreSingleUse(t *testing.T) {
	as := authztest.New(t, nil)
	pat := as.PAT("rs-a", "secret-a")
	id := as.Register(pat, `{"resource_scopes":["read"]}`)
	issue := func() string {
		r := as.Do("POST", authz.PathPermission, `{"resource_id":"`+id+`","resource_scopes":["read"]}`, "Authorization", authztest.Bearer(pat))
		return r.JSON(t)["ticket"].(string)
	}
	ctx := context.Background()

	raw := issue()
	tk, err := as.Server.OpenTicket(raw)
	if err != nil {
		t.Fatal(err)
	}
	// Concurrent redemptions: exactly one wins.
	var wins atomic.Int32
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if as.Server.ConsumeTicket(ctx, tk) == nil {
				wins.Add(1)
			}
		}()
	}
	wg.Wait()
	if wins.Load() != 1 {
		t.Fatalf("%d redemptions of one ticket succeeded", wins.Load())
	}

	raw = issue()
	as.Clock.Advance(authz.DefaultTicketTTL)
	if _, err := as.Server.OpenTicket(raw); !errors.Is(err, authz.ErrTicketInvalid) {
		t.Fatalf("expired ticket opened: %v", err)
	}

	for _, forged := range []string{"", "abc", raw[:len(raw)-2] + "AA", "x" + raw} {
		if _, err := as.Server.OpenTicket(forged); !errors.Is(err, authz.ErrTicketInvalid) {
			t.Fatalf("forged ticket %q opened", forged)
		}
	}
	// Another AS (another ticket key) cannot open our tickets.
	other := authztest.New(t, nil)
	if _, err := other.Server.OpenTicket(issue()); !errors.Is(err, authz.ErrTicketInvalid) {
		t.Fatal("another AS opened our ticket")
	}
}

// TestTicketFloodDoesNotGrowTheStore shows that issuing tickets writes
// nothing: tickets are self-contained.
func TestTicketFloodDoesNotGrowTheStore(t *testing.T) {
	as := authztest.New(t, nil)
	pat := as.PAT("rs-a", "secret-a")
	id := as.Register(pat, `{"resource_scopes":["read"]}`)
	count := func() int {
		n := 0
		for _, ns := range []string{authz.NSTokens, authz.NSTicketsUsed, authz.NSSecrets, authz.NSSigningKeys} {
			recs, err := as.Store.List(context.Background(), ns, "", 0)
			if err != nil {
				t.Fatal(err)
			}
			n += len(recs)
		}
		return n
	}
	before := count()
	for range 500 {
		r := as.Do("POST", authz.PathPermission, `{"resource_id":"`+id+`","resource_scopes":["read"]}`, "Authorization", authztest.Bearer(pat))
		if r.Status != 201 {
			t.Fatal(r.Status)
		}
	}
	if after := count(); after != before {
		t.Fatalf("store grew from %d to %d records after 500 tickets", before, after)
	}
}

func TestIntrospectionAndRevocation(t *testing.T) {
	as := authztest.New(t, func(c *authz.Config) { c.PATTTL = time.Minute })
	patA, patB := as.PAT("rs-a", "secret-a"), as.PAT("rs-b", "secret-b")
	form := func(tok string) url.Values { return url.Values{"token": {tok}} }

	// With a PAT as Bearer, and with client authentication.
	for _, auth := range [][]string{{"Authorization", authztest.Bearer(patA)}, {"Authorization", authztest.BasicAuth("rs-a", "secret-a")}} {
		r := as.Do("POST", authz.PathIntrospect, form(patA), auth...)
		m := r.JSON(t)
		if r.Status != 200 || m["active"] != true || m["client_id"] != "rs-a" || m["scope"] != "uma_protection" || m["iss"] != as.Issuer {
			t.Fatalf("introspect own PAT: %d %s", r.Status, r.Body)
		}
		if r.Header.Get("Cache-Control") != "no-store" {
			t.Fatal("introspection response cacheable")
		}
	}
	inactive := func(tok string, auth ...string) {
		t.Helper()
		r := as.Do("POST", authz.PathIntrospect, form(tok), auth...)
		if r.Status != 200 || string(r.Body) != `{"active":false}` {
			t.Fatalf("want inactive, got %d %s", r.Status, r.Body)
		}
	}
	inactive(patB, "Authorization", authztest.Bearer(patA)) // another resource server's token
	inactive("unknown-token", "Authorization", authztest.Bearer(patA))
	inactive("a.b.c", "Authorization", authztest.Bearer(patA))

	authztest.ExpectError(t, as.Do("POST", authz.PathIntrospect, form(patA)), 401, "invalid_client")
	authztest.ExpectError(t, as.Do("POST", authz.PathIntrospect, url.Values{}, "Authorization", authztest.Bearer(patA)), 400, "invalid_request")
	authztest.ExpectError(t, as.Do("POST", authz.PathIntrospect, form(patA), "Authorization", authztest.BasicAuth("app", "app secret:with&chars")), 403, "unauthorized_client")
	authztest.ExpectError(t, as.Do("GET", authz.PathIntrospect, nil, "Authorization", authztest.Bearer(patA)), 405, "invalid_request")

	// Revocation: another client's token is left alone, the owner's is revoked.
	r := as.Do("POST", authz.PathRevoke, url.Values{"token": {patA}, "token_type_hint": {"access_token"}}, "Authorization", authztest.BasicAuth("rs-b", "secret-b"))
	if r.Status != 200 {
		t.Fatalf("revoke foreign: %d %s", r.Status, r.Body)
	}
	if r := as.Do("GET", authz.PathResourceSet, nil, "Authorization", authztest.Bearer(patA)); r.Status != 200 {
		t.Fatalf("foreign revocation took effect: %d", r.Status)
	}
	r = as.Do("POST", authz.PathRevoke, url.Values{"token": {patA}}, "Authorization", authztest.BasicAuth("rs-a", "secret-a"))
	if r.Status != 200 || len(r.Body) != 0 {
		t.Fatalf("revoke: %d %s", r.Status, r.Body)
	}
	authztest.ExpectError(t, as.Do("GET", authz.PathResourceSet, nil, "Authorization", authztest.Bearer(patA)), 401, "invalid_token")
	r = as.Do("POST", authz.PathRevoke, url.Values{"token": {"unknown"}}, "Authorization", authztest.BasicAuth("rs-a", "secret-a"))
	if r.Status != 200 {
		t.Fatalf("revoke unknown: %d", r.Status)
	}
	authztest.ExpectError(t, as.Do("POST", authz.PathRevoke, url.Values{"token": {patB}}), 401, "invalid_client")
	authztest.ExpectError(t, as.Do("POST", authz.PathRevoke, url.Values{}, "Authorization", authztest.BasicAuth("rs-b", "secret-b")), 400, "invalid_request")

	// PATs expire.
	as.Clock.Advance(time.Minute)
	authztest.ExpectError(t, as.Do("GET", authz.PathResourceSet, nil, "Authorization", authztest.Bearer(patB)), 401, "invalid_token")
	inactive(patB, "Authorization", authztest.BasicAuth("rs-b", "secret-b"))
}
