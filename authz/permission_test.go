package authz

import (
	"context"
	"errors"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestPermissionEndpoint(t *testing.T) {
	as := newTestAS(t, nil)
	pat := as.pat("rs-a", "secret-a")
	auth := []string{"Authorization", bearer(pat)}
	labs := as.register(pat, `{"name":"labs","resource_scopes":["read","write"],"owner":"alice"}`)
	photos := as.register(pat, `{"name":"photos","resource_scopes":["view"],"owner":"alice"}`)
	bobs := as.register(pat, `{"name":"bob's","resource_scopes":["read"],"owner":"bob"}`)

	ok := []struct{ name, body string }{
		{"one object", `{"resource_id":"` + labs + `","resource_scopes":["read"]}`},
		{"empty scopes", `{"resource_id":"` + labs + `","resource_scopes":[]}`},
		{"array", `[{"resource_id":"` + labs + `","resource_scopes":["read","write"]},{"resource_id":"` + photos + `","resource_scopes":[]}]`},
		{"request context", `{"resource_id":"` + labs + `","resource_scopes":["read"],"claims":{"ip":"10.0.0.1","path":["/labs/1"]}}`},
	}
	for _, tc := range ok {
		t.Run(tc.name, func(t *testing.T) {
			r := as.do("POST", PathPermission, tc.body, auth...)
			if r.status != 201 {
				t.Fatalf("%d %s", r.status, r.body)
			}
			tk, err := as.srv.openTicket(r.json(t)["ticket"].(string))
			if err != nil {
				t.Fatalf("ticket does not open: %v", err)
			}
			if tk.Owner != "alice" || tk.ResourceServer != "rs-a" || len(tk.Permissions) == 0 {
				t.Fatalf("ticket = %+v", tk)
			}
			if r.header.Get("Cache-Control") != "no-store" {
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
			expectError(t, as.do("POST", PathPermission, tc.body, auth...), 400, tc.code)
		})
	}
	expectError(t, as.do("GET", PathPermission, nil, auth...), 405, "invalid_request")
}

func TestTicketsExpireAndAreSingleUse(t *testing.T) {
	as := newTestAS(t, nil)
	pat := as.pat("rs-a", "secret-a")
	id := as.register(pat, `{"resource_scopes":["read"]}`)
	issue := func() string {
		r := as.do("POST", PathPermission, `{"resource_id":"`+id+`","resource_scopes":["read"]}`, "Authorization", bearer(pat))
		return r.json(t)["ticket"].(string)
	}
	ctx := context.Background()

	raw := issue()
	tk, err := as.srv.openTicket(raw)
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
			if as.srv.consumeTicket(ctx, tk) == nil {
				wins.Add(1)
			}
		}()
	}
	wg.Wait()
	if wins.Load() != 1 {
		t.Fatalf("%d redemptions of one ticket succeeded", wins.Load())
	}

	raw = issue()
	as.clock.Advance(DefaultTicketTTL)
	if _, err := as.srv.openTicket(raw); !errors.Is(err, errInvalidTicket) {
		t.Fatalf("expired ticket opened: %v", err)
	}

	for _, forged := range []string{"", "abc", raw[:len(raw)-2] + "AA", "x" + raw} {
		if _, err := as.srv.openTicket(forged); !errors.Is(err, errInvalidTicket) {
			t.Fatalf("forged ticket %q opened", forged)
		}
	}
	// Another AS (another ticket key) cannot open our tickets.
	other := newTestAS(t, nil)
	if _, err := other.srv.openTicket(issue()); !errors.Is(err, errInvalidTicket) {
		t.Fatal("another AS opened our ticket")
	}
}

// TestTicketFloodDoesNotGrowTheStore shows that issuing tickets writes
// nothing: tickets are self-contained.
func TestTicketFloodDoesNotGrowTheStore(t *testing.T) {
	as := newTestAS(t, nil)
	pat := as.pat("rs-a", "secret-a")
	id := as.register(pat, `{"resource_scopes":["read"]}`)
	count := func() int {
		n := 0
		for _, ns := range []string{nsTokens, nsTicketsUsed, nsSecrets, nsSigningKeys} {
			recs, err := as.store.List(context.Background(), ns, "", 0)
			if err != nil {
				t.Fatal(err)
			}
			n += len(recs)
		}
		return n
	}
	before := count()
	for range 500 {
		r := as.do("POST", PathPermission, `{"resource_id":"`+id+`","resource_scopes":["read"]}`, "Authorization", bearer(pat))
		if r.status != 201 {
			t.Fatal(r.status)
		}
	}
	if after := count(); after != before {
		t.Fatalf("store grew from %d to %d records after 500 tickets", before, after)
	}
}

func TestIntrospectionAndRevocation(t *testing.T) {
	as := newTestAS(t, func(c *Config) { c.PATTTL = time.Minute })
	patA, patB := as.pat("rs-a", "secret-a"), as.pat("rs-b", "secret-b")
	form := func(tok string) url.Values { return url.Values{"token": {tok}} }

	// With a PAT as Bearer, and with client authentication.
	for _, auth := range [][]string{{"Authorization", bearer(patA)}, {"Authorization", basicAuth("rs-a", "secret-a")}} {
		r := as.do("POST", PathIntrospect, form(patA), auth...)
		m := r.json(t)
		if r.status != 200 || m["active"] != true || m["client_id"] != "rs-a" || m["scope"] != "uma_protection" || m["iss"] != as.issuer {
			t.Fatalf("introspect own PAT: %d %s", r.status, r.body)
		}
		if r.header.Get("Cache-Control") != "no-store" {
			t.Fatal("introspection response cacheable")
		}
	}
	inactive := func(tok string, auth ...string) {
		t.Helper()
		r := as.do("POST", PathIntrospect, form(tok), auth...)
		if r.status != 200 || string(r.body) != `{"active":false}` {
			t.Fatalf("want inactive, got %d %s", r.status, r.body)
		}
	}
	inactive(patB, "Authorization", bearer(patA)) // another resource server's token
	inactive("unknown-token", "Authorization", bearer(patA))
	inactive("a.b.c", "Authorization", bearer(patA))

	expectError(t, as.do("POST", PathIntrospect, form(patA)), 401, "invalid_client")
	expectError(t, as.do("POST", PathIntrospect, url.Values{}, "Authorization", bearer(patA)), 400, "invalid_request")
	expectError(t, as.do("POST", PathIntrospect, form(patA), "Authorization", basicAuth("app", "app secret:with&chars")), 403, "unauthorized_client")
	expectError(t, as.do("GET", PathIntrospect, nil, "Authorization", bearer(patA)), 405, "invalid_request")

	// Revocation: another client's token is left alone, the owner's is revoked.
	r := as.do("POST", PathRevoke, url.Values{"token": {patA}, "token_type_hint": {"access_token"}}, "Authorization", basicAuth("rs-b", "secret-b"))
	if r.status != 200 {
		t.Fatalf("revoke foreign: %d %s", r.status, r.body)
	}
	if r := as.do("GET", PathResourceSet, nil, "Authorization", bearer(patA)); r.status != 200 {
		t.Fatalf("foreign revocation took effect: %d", r.status)
	}
	r = as.do("POST", PathRevoke, url.Values{"token": {patA}}, "Authorization", basicAuth("rs-a", "secret-a"))
	if r.status != 200 || len(r.body) != 0 {
		t.Fatalf("revoke: %d %s", r.status, r.body)
	}
	expectError(t, as.do("GET", PathResourceSet, nil, "Authorization", bearer(patA)), 401, "invalid_token")
	r = as.do("POST", PathRevoke, url.Values{"token": {"unknown"}}, "Authorization", basicAuth("rs-a", "secret-a"))
	if r.status != 200 {
		t.Fatalf("revoke unknown: %d", r.status)
	}
	expectError(t, as.do("POST", PathRevoke, url.Values{"token": {patB}}), 401, "invalid_client")
	expectError(t, as.do("POST", PathRevoke, url.Values{}, "Authorization", basicAuth("rs-b", "secret-b")), 400, "invalid_request")

	// PATs expire.
	as.clock.Advance(time.Minute)
	expectError(t, as.do("GET", PathResourceSet, nil, "Authorization", bearer(patB)), 401, "invalid_token")
	inactive(patB, "Authorization", basicAuth("rs-b", "secret-b"))
}
