package keycloak_test

import (
	"encoding/base64"
	"encoding/json"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/caddy-uma/caddy-uma/authz"
	"github.com/caddy-uma/caddy-uma/authz/authztest"
	"github.com/caddy-uma/caddy-uma/authz/claimtoken"
	"github.com/caddy-uma/caddy-uma/authz/claimtoken/claimtokentest"
	"github.com/caddy-uma/caddy-uma/authz/keycloak"
)

// keycloakTokenFixture is the grant fixture under a Keycloak issuer
// (/realms/demo) in compat mode, signing RS256, with rs-a's RPTs in
// Keycloak's layout and a client "pusher" trusted to push claims.
type keycloakTokenFixture struct {
	*authztest.GrantFixture
	audit *observer.ObservedLogs
	// Labs2 is a second resource of alice's with read; Scans one with the
	// URI /scans/2024 and Any one with the URI pattern /any/*.
	Labs2, Scans, Any string
}

const pusherSecret = "pusher-secret"

func newKeycloakTokenFixture(t *testing.T) *keycloakTokenFixture {
	t.Helper()
	idp := claimtokentest.NewProvider(t)
	core, logs := observer.New(zapcore.InfoLevel)
	as, _ := newCompatAS(t, func(c *authz.Config) {
		c.SigningAlg = "RS256"
		// Generous for a loaded machine: a rule that times out would turn a
		// grant into not_authorized.
		c.PolicyTimeout = 5 * time.Second
		c.Audit = zap.New(core)
		c.TrustedIssuers = []claimtoken.Issuer{{Issuer: idp.Issuer(), Audiences: []string{"app"}}}
		clients := slices.Clone(authztest.Clients)
		for i := range clients {
			if clients[i].ID == "rs-a" {
				clients[i].RPTFormat = authz.RPTFormatKeycloak
			}
		}
		c.Clients = append(clients, authz.Client{ID: "pusher", Secret: pusherSecret, PushClaims: true})
	})
	f := &keycloakTokenFixture{GrantFixture: &authztest.GrantFixture{AS: as, IdP: idp}, audit: logs}
	var err error
	if f.AlicePAT, err = as.Server.IssuePAT(t.Context(), "rs-a", "alice"); err != nil {
		t.Fatal(err)
	}
	f.Labs = as.Register(f.AlicePAT, `{"name":"labs","resource_scopes":["read","write","delete"]}`)
	f.Photos = as.Register(f.AlicePAT, `{"name":"photos","resource_scopes":["view"]}`)
	f.Labs2 = as.Register(f.AlicePAT, `{"name":"labs-2","resource_scopes":["read"]}`)
	f.Scans = as.Register(f.AlicePAT, `{"name":"scans","resource_scopes":["read"],"uris":["/scans/2024"]}`)
	f.Any = as.Register(f.AlicePAT, `{"name":"any","resource_scopes":["read"],"uris":["/any/*"]}`)
	if r := f.PutRule(f.AlicePAT, "main", authztest.AliceRules); r.Status/100 != 2 {
		t.Fatalf("rules: %d %s", r.Status, r.Body)
	}
	// Rules on pushed claims, and on the subject alone (an RPT presented
	// as Bearer token carries the requesting party, not its claims).
	extra := `package uma.share

allow contains "delete" if "treatment" in input.pushed_claims.purpose

allow contains "view" if input.requesting_party.sub == "doc"
`
	if r := f.PutRule(f.AlicePAT, "extra", extra); r.Status/100 != 2 {
		t.Fatalf("rules: %d %s", r.Status, r.Body)
	}
	return f
}

// kcToken posts to Keycloak's token path.
func (f *keycloakTokenFixture) kcToken(params url.Values, headers ...string) authztest.Response {
	f.T.Helper()
	if params.Get("grant_type") == "" {
		params.Set("grant_type", authz.GrantTypeUMATicket)
	}
	return f.Do("POST", keycloak.PathToken, params, headers...)
}

func (f *keycloakTokenFixture) doctor() string {
	return f.IDToken(map[string]any{"sub": "doc", "email": "doctor@clinic.example"})
}

// jwtPayload decodes the payload and header of a compact JWS, unverified.
func jwtPayload(t *testing.T, tok string) (header, payload map[string]any) {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWS: %q", tok)
	}
	for i, v := range []*map[string]any{&header, &payload} {
		b, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, v); err != nil {
			t.Fatal(err)
		}
	}
	return header, payload
}

func pushedClaims(v map[string]any) string {
	b, _ := json.Marshal(v)
	return base64.RawURLEncoding.EncodeToString(b)
}

// TestKeycloakBearerParty: on Keycloak's token path, a person's token as
// Bearer token names the client and the requesting party; every bad token
// is 401 invalid_grant, and our own path still wants client
// authentication.
func TestKeycloakBearerParty(t *testing.T) {
	f := newKeycloakTokenFixture(t)
	other := claimtokentest.NewProvider(t)
	now := time.Now()
	labsRead := url.Values{"audience": {"rs-a"}, "permission": {f.Labs + "#read"}}
	granted := f.kcToken(labsRead, "Authorization", authztest.Bearer(f.doctor()))
	if granted.Status != 200 {
		t.Fatalf("doctor's bearer token: %d %s", granted.Status, granted.Body)
	}
	rpt := granted.JSON(t)["access_token"].(string)
	revoked := f.kcToken(labsRead, "Authorization", authztest.Bearer(f.doctor())).JSON(t)["access_token"].(string)
	if r := f.Do("POST", authz.PathRevoke, url.Values{"token": {revoked}}, "Authorization", authztest.BasicAuth("app", authztest.AppSecret)); r.Status != 200 {
		t.Fatalf("revoke: %d %s", r.Status, r.Body)
	}

	tests := []struct {
		name   string
		token  string
		extra  url.Values
		status int
		code   string
		sub    string
	}{
		{name: "a trusted issuer's token", token: f.doctor(), status: 200, sub: "doc"},
		{name: "an RPT of ours carries its requesting party on", token: rpt, extra: url.Values{"permission": {f.Photos + "#view"}}, status: 200, sub: "doc"},
		{name: "a revoked RPT", token: revoked, status: 401, code: "invalid_grant"},
		{name: "forged: another key", token: f.IdP.SignWith(t, map[string]any{"sub": "doc", "aud": "app", "email": "doctor@clinic.example"}, claimtokentest.WithUnknownKey()), status: 401, code: "invalid_grant"},
		{name: "expired", token: f.IdP.Sign(t, map[string]any{"sub": "doc", "aud": "app", "email": "doctor@clinic.example", "exp": now.Add(-10 * time.Minute).Unix()}), status: 401, code: "invalid_grant"},
		{name: "an untrusted issuer", token: other.Sign(t, map[string]any{"sub": "doc", "aud": "app", "email": "doctor@clinic.example"}), status: 401, code: "invalid_grant"},
		{name: "an audience the issuer is not trusted for", token: f.IdP.Sign(t, map[string]any{"sub": "doc", "aud": "scoped"}), status: 401, code: "invalid_grant"},
		{name: "issued to no registered client", token: f.IdP.Sign(t, map[string]any{"sub": "doc", "aud": "app", "azp": "stranger"}), status: 401, code: "invalid_grant"},
		{name: "issued to a resource server", token: f.IdP.Sign(t, map[string]any{"sub": "doc", "aud": []string{"app", "rs-a"}, "azp": "rs-a"}), status: 401, code: "invalid_grant"},
		{name: "several audiences, no azp", token: f.IdP.Sign(t, map[string]any{"sub": "doc", "aud": []string{"app", "scoped"}}), status: 401, code: "invalid_grant"},
		{name: "no sub", token: f.IdP.Sign(t, map[string]any{"aud": "app"}), status: 401, code: "invalid_grant"},
		{name: "not a JWT", token: "opaque-token", status: 401, code: "invalid_grant"},
		{name: "unsigned", token: "eyJhbGciOiJub25lIn0.eyJzdWIiOiJkb2MiLCJhdWQiOiJhcHAifQ.", status: 401, code: "invalid_grant"},
		{name: "with a client secret too", token: f.doctor(), extra: url.Values{"client_secret": {"x"}}, status: 400, code: "invalid_request"},
		{name: "with another client_id", token: f.doctor(), extra: url.Values{"client_id": {"scoped"}}, status: 400, code: "invalid_request"},
		{name: "with the same client_id", token: f.doctor(), extra: url.Values{"client_id": {"app"}}, status: 200, sub: "doc"},
		{name: "with another person's claim token", token: f.doctor(), extra: url.Values{"claim_token": {f.IDToken(map[string]any{"sub": "mallory", "email": "doctor@clinic.example"})}, "claim_token_format": {claimtoken.FormatIDToken}}, status: 400, code: "invalid_request"},
		{name: "with the same person's claim token", token: f.doctor(), extra: url.Values{"claim_token": {f.doctor()}, "claim_token_format": {claimtoken.FormatIDToken}}, status: 200, sub: "doc"},
		{name: "with a claim token without format, an ID token", token: f.doctor(), extra: url.Values{"claim_token": {f.doctor()}}, status: 200, sub: "doc"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			params := url.Values{}
			for k, v := range labsRead {
				params[k] = v
			}
			for k, v := range tt.extra {
				params[k] = v
			}
			r := f.kcToken(params, "Authorization", authztest.Bearer(tt.token))
			if tt.status != 200 {
				authztest.ExpectError(t, r, tt.status, tt.code)
				if strings.Contains(string(r.Body), tt.token) {
					t.Fatalf("the answer holds the token: %s", r.Body)
				}
				return
			}
			if r.Status != 200 {
				t.Fatalf("status %d: %s", r.Status, r.Body)
			}
			_, claims := jwtPayload(t, r.JSON(t)["access_token"].(string))
			if claims["sub"] != tt.sub || claims["azp"] != "app" {
				t.Fatalf("sub %v azp %v, want %s and app", claims["sub"], claims["azp"], tt.sub)
			}
		})
	}

	t.Run("an RPT names its requesting party at its own resource server only", func(t *testing.T) {
		patB, err := f.Server.IssuePAT(t.Context(), "rs-b", "alice")
		if err != nil {
			t.Fatal(err)
		}
		onB := f.Register(patB, `{"name":"notes","resource_scopes":["view"]}`)
		r := f.kcToken(url.Values{"audience": {"rs-b"}, "permission": {onB + "#view"}}, "Authorization", authztest.Bearer(rpt))
		authztest.ExpectError(t, r, 403, "access_denied")
		r = f.kcToken(url.Values{"audience": {"rs-b"}, "permission": {onB + "#view"}}, "Authorization", authztest.Bearer(f.IDToken(map[string]any{"sub": "doc"})))
		if r.Status != 200 {
			t.Fatalf("the same person's token: %d %s", r.Status, r.Body)
		}
	})
	t.Run("our own token path wants client authentication", func(t *testing.T) {
		params := url.Values{"grant_type": {authz.GrantTypeUMATicket}, "audience": {"rs-a"}, "permission": {f.Labs + "#read"}}
		r := f.Do("POST", authz.PathToken, params, "Authorization", authztest.Bearer(f.doctor()))
		authztest.ExpectError(t, r, 401, "invalid_client")
	})
	t.Run("the audit line names the client and the requesting party", func(t *testing.T) {
		found := false
		for _, e := range f.audit.FilterMessage("token request").All() {
			m := e.ContextMap()
			if m["client_id"] == "app" && m["requesting_party"] == "doc" && m["outcome"] == "granted" {
				found = true
			}
			for _, v := range m {
				if s, ok := v.(string); ok && strings.Contains(s, rpt) {
					t.Fatal("the audit holds a token")
				}
			}
		}
		if !found {
			t.Fatalf("no audit line for the bearer grant: %v", f.audit.All())
		}
	})
}

// TestKeycloakSubjectToken: keycloak-connect's enforcer authenticates as
// the resource server and names the person by subject_token; a client
// that is not a resource server may present only its own person's
// tokens; a bad subject_token is 400 unauthorized_client.
func TestKeycloakSubjectToken(t *testing.T) {
	f := newKeycloakTokenFixture(t)
	tests := []struct {
		name, client, secret, token string
		status                      int
		code                        string
	}{
		{name: "the resource server, a token issued to the app", client: "rs-a", secret: "secret-a", token: f.doctor(), status: 200},
		{name: "the app, its own token", client: "app", secret: authztest.AppSecret, token: f.doctor(), status: 200},
		{name: "another client, the app's token", client: "scoped", secret: "scoped-secret", token: f.doctor(), status: 400, code: "unauthorized_client"},
		{name: "the resource server, a forged token", client: "rs-a", secret: "secret-a", token: f.IdP.SignWith(t, map[string]any{"sub": "doc", "aud": "app"}, claimtokentest.WithUnknownKey()), status: 400, code: "unauthorized_client"},
		{name: "the resource server, garbage", client: "rs-a", secret: "secret-a", token: "garbage", status: 400, code: "unauthorized_client"},
		{name: "a wrong client secret", client: "rs-a", secret: "nope", token: f.doctor(), status: 401, code: "invalid_client"},
	}
	t.Run("the resource server, an RPT the person presented to it", func(t *testing.T) {
		r := f.kcToken(url.Values{"audience": {"rs-a"}, "permission": {f.Photos + "#view"}}, "Authorization", authztest.Bearer(f.doctor()))
		if r.Status != 200 {
			t.Fatalf("%d %s", r.Status, r.Body)
		}
		rpt := r.JSON(t)["access_token"].(string)
		r = f.kcToken(url.Values{"audience": {"rs-a"}, "permission": {f.Photos + "#view"}, "response_mode": {"decision"}, "subject_token": {rpt}},
			"Authorization", authztest.BasicAuth("rs-a", "secret-a"))
		if r.Status != 200 || r.JSON(t)["result"] != true {
			t.Fatalf("%d %s", r.Status, r.Body)
		}
	})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := f.kcToken(url.Values{"audience": {"rs-a"}, "permission": {f.Labs + "#read"}, "response_mode": {"permissions"}, "subject_token": {tt.token}},
				"Authorization", authztest.BasicAuth(tt.client, tt.secret))
			if tt.status != 200 {
				authztest.ExpectError(t, r, tt.status, tt.code)
				return
			}
			var perms []map[string]any
			if r.Status != 200 || json.Unmarshal(r.Body, &perms) != nil || len(perms) != 1 || perms[0]["rsid"] != f.Labs || perms[0]["rsname"] != "labs" {
				t.Fatalf("status %d: %s", r.Status, r.Body)
			}
		})
	}
}

// TestKeycloakRPTLayout: an RPT for a resource server with rpt_format
// keycloak has typ Bearer, authorization.permissions (rsid, rsname,
// scopes) and our permissions, RS256 with a kid published at Keycloak's
// certs path; our introspection and enforcement still read it. Another
// resource server's RPTs keep our layout.
func TestKeycloakRPTLayout(t *testing.T) {
	f := newKeycloakTokenFixture(t)
	r := f.kcToken(url.Values{"audience": {"rs-a"}, "permission": {f.Labs + "#read"}}, "Authorization", authztest.Bearer(f.doctor()))
	if r.Status != 200 {
		t.Fatalf("%d %s", r.Status, r.Body)
	}
	rpt := r.JSON(t)["access_token"].(string)
	header, claims := jwtPayload(t, rpt)
	if header["alg"] != "RS256" || header["kid"] == nil {
		t.Fatalf("header %v", header)
	}
	certs := f.Do("GET", keycloak.PathCerts, nil)
	if certs.Status != 200 || !strings.Contains(string(certs.Body), header["kid"].(string)) {
		t.Fatalf("certs: %d %s", certs.Status, certs.Body)
	}
	if claims["typ"] != "Bearer" || claims["iss"] != f.Issuer || claims["sub"] != "doc" || claims["azp"] != "app" || claims["jti"] == nil || claims["exp"] == nil || claims["iat"] == nil {
		t.Fatalf("claims %v", claims)
	}
	az, _ := json.Marshal(claims["authorization"])
	if want := `{"permissions":[{"rsid":"` + f.Labs + `","rsname":"labs","scopes":["read"]}]}`; string(az) != want {
		t.Fatalf("authorization = %s, want %s", az, want)
	}
	if claims["permissions"] == nil {
		t.Fatal("our permissions claim is gone")
	}
	if got := f.RPTPermissions(rpt); !slices.Equal(got[f.Labs], []string{"read"}) {
		t.Fatalf("introspection: %v", got)
	}
	if _, err := f.Server.VerifyRPT(t.Context(), rpt, "rs-a"); err != nil {
		t.Fatalf("the co-hosted enforcement point refuses it: %v", err)
	}
	// rs-b keeps our layout.
	patB, err := f.Server.IssuePAT(t.Context(), "rs-b", "alice")
	if err != nil {
		t.Fatal(err)
	}
	onB := f.Register(patB, `{"name":"notes","resource_scopes":["read"]}`)
	r = f.kcToken(url.Values{"audience": {"rs-b"}, "permission": {onB + "#read"}}, "Authorization", authztest.Bearer(f.doctor()))
	if r.Status != 200 {
		t.Fatalf("%d %s", r.Status, r.Body)
	}
	if _, claims := jwtPayload(t, r.JSON(t)["access_token"].(string)); claims["typ"] != nil || claims["authorization"] != nil {
		t.Fatalf("rs-b's RPT in Keycloak's layout: %v", claims)
	}
}

// TestKeycloakDenials: Keycloak's answers to what is not granted, with no
// ticket: not_authorized; request_submitted where the owner's rules ask
// her, which files a pending request (not with submit_request=false); a
// bad ticket is invalid_ticket and a bad previous RPT invalid_rpt.
func TestKeycloakDenials(t *testing.T) {
	f := newKeycloakTokenFixture(t)
	insurer := f.IDToken(map[string]any{"sub": "ins", "email": "agent@insurer.example"})
	nobody := f.IDToken(map[string]any{"sub": "bob", "email": "bob@example.com"})
	noEmail := f.IDToken(map[string]any{"sub": "anon"})
	tests := []struct {
		name   string
		token  string
		params url.Values
		status int
		code   string
		desc   string
		filed  bool
	}{
		{name: "ticketless, no rule grants", token: nobody, params: url.Values{"audience": {"rs-a"}, "permission": {f.Labs + "#read"}}, status: 403, code: "access_denied", desc: "not_authorized"},
		{name: "a ticket, no rule grants", token: nobody, params: url.Values{"ticket": {f.LabsTicket("read")}}, status: 403, code: "access_denied", desc: "not_authorized"},
		{name: "a ticket, the rules want claims: no need_info", token: noEmail, params: url.Values{"ticket": {f.LabsTicket("read")}}, status: 403, code: "access_denied", desc: "not_authorized"},
		{name: "a ticket, the rules ask the owner", token: insurer, params: url.Values{"ticket": {f.LabsTicket("read")}}, status: 403, code: "access_denied", desc: "request_submitted", filed: true},
		{name: "the same, submit_request=false", token: insurer, params: url.Values{"ticket": {f.LabsTicket("write")}, "submit_request": {"false"}}, status: 403, code: "access_denied", desc: "not_authorized"},
		{name: "a decision, denied", token: nobody, params: url.Values{"audience": {"rs-a"}, "permission": {f.Labs + "#read"}, "response_mode": {"decision"}}, status: 403, code: "access_denied", desc: "not_authorized"},
		{name: "a bad ticket", token: nobody, params: url.Values{"ticket": {"not-a-ticket"}}, status: 403, code: "invalid_ticket"},
		{name: "a bad previous RPT", token: f.doctor(), params: url.Values{"audience": {"rs-a"}, "permission": {f.Labs + "#read"}, "rpt": {"x.y.z"}}, status: 403, code: "invalid_rpt"},
		{name: "a bad response_mode", token: f.doctor(), params: url.Values{"audience": {"rs-a"}, "response_mode": {"all"}}, status: 400, code: "invalid_request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := f.kcToken(tt.params, "Authorization", authztest.Bearer(tt.token))
			authztest.ExpectError(t, r, tt.status, tt.code)
			m := r.JSON(t)
			if tt.desc != "" && m["error_description"] != tt.desc {
				t.Fatalf("error_description = %v, want %s", m["error_description"], tt.desc)
			}
			if _, has := m["ticket"]; has {
				t.Fatalf("a ticket in Keycloak's answer: %s", r.Body)
			}
		})
	}
	t.Run("a spent ticket", func(t *testing.T) {
		tk := f.LabsTicket("read")
		if r := f.kcToken(url.Values{"ticket": {tk}}, "Authorization", authztest.Bearer(f.doctor())); r.Status != 200 {
			t.Fatalf("%d %s", r.Status, r.Body)
		}
		authztest.ExpectError(t, f.kcToken(url.Values{"ticket": {tk}}, "Authorization", authztest.Bearer(f.doctor())), 403, "invalid_ticket")
	})
	t.Run("only the submitted request was filed", func(t *testing.T) {
		r := f.Do("GET", authz.PathOwnerRequests, nil, "Authorization", authztest.Bearer(f.AlicePAT))
		if r.Status != 200 {
			t.Fatalf("%d %s", r.Status, r.Body)
		}
		body := string(r.Body)
		if strings.Count(body, `"subject":"ins"`) != 1 || strings.Contains(body, `"write"`) {
			t.Fatalf("requests: %s", body)
		}
	})
	t.Run("the metrics count a submitted request", func(t *testing.T) {
		n := 0
		for _, e := range f.audit.FilterMessage("token request").All() {
			if e.ContextMap()["outcome"] == "request_submitted" {
				n++
			}
		}
		if n != 1 {
			t.Fatalf("%d audit lines with request_submitted, want 1", n)
		}
	})
}

// TestKeycloakGrantParameters: permission_resource_format=uri (with and
// without matching), response_permissions_limit,
// response_include_resource_name, on both token paths; bad values are 400.
func TestKeycloakGrantParameters(t *testing.T) {
	f := newKeycloakTokenFixture(t)
	doctor := f.doctor()
	tests := []struct {
		name   string
		params url.Values
		want   []string // rsids, in order
		names  bool
		status int
		code   string
	}{
		{name: "by URI", params: url.Values{"permission_resource_format": {"uri"}, "permission": {"/scans/2024#read"}}, want: []string{f.Scans}, names: true},
		{name: "by URI, another spelling of the path", params: url.Values{"permission_resource_format": {"uri"}, "permission": {"/scans/2024/#read"}}, want: []string{f.Scans}, names: true},
		{name: "by URI, a pattern without matching", params: url.Values{"permission_resource_format": {"uri"}, "permission": {"/any/thing#read"}}, status: 403, code: "access_denied"},
		{name: "by URI, a pattern with matching", params: url.Values{"permission_resource_format": {"uri"}, "permission_resource_matching_uri": {"true"}, "permission": {"/any/thing/deep#read"}}, want: []string{f.Any}, names: true},
		{name: "by URI, no such URI", params: url.Values{"permission_resource_format": {"uri"}, "permission": {"/nothing#read"}}, status: 403, code: "access_denied"},
		{name: "every read, limit 2", params: url.Values{"permission": {"#read"}, "response_permissions_limit": {"2"}}, want: nil, names: true},
		{name: "without names", params: url.Values{"permission": {f.Labs + "#read"}, "response_include_resource_name": {"false"}}, want: []string{f.Labs}},
		{name: "a bad format", params: url.Values{"permission_resource_format": {"path"}, "permission": {"/scans#read"}}, status: 400, code: "invalid_request"},
		{name: "a bad limit", params: url.Values{"permission": {"#read"}, "response_permissions_limit": {"0"}}, status: 400, code: "invalid_request"},
		{name: "a limit that is no number", params: url.Values{"permission": {"#read"}, "response_permissions_limit": {"two"}}, status: 400, code: "invalid_request"},
		{name: "a bad boolean", params: url.Values{"permission": {"#read"}, "submit_request": {"yes"}}, status: 400, code: "invalid_request"},
	}
	for _, path := range []string{keycloak.PathToken, authz.PathToken} {
		for _, tt := range tests {
			t.Run(path+" "+tt.name, func(t *testing.T) {
				params := url.Values{"grant_type": {authz.GrantTypeUMATicket}, "audience": {"rs-a"}, "claim_token": {doctor}, "claim_token_format": {claimtoken.FormatIDToken}}
				for k, v := range tt.params {
					params[k] = v
				}
				r := f.Do("POST", path, params, "Authorization", authztest.BasicAuth("app", authztest.AppSecret))
				if tt.status != 0 {
					authztest.ExpectError(t, r, tt.status, tt.code)
					return
				}
				if r.Status != 200 {
					t.Fatalf("%d %s", r.Status, r.Body)
				}
				_, claims := jwtPayload(t, r.JSON(t)["access_token"].(string))
				var perms []authz.Permission
				b, _ := json.Marshal(claims["permissions"])
				if err := json.Unmarshal(b, &perms); err != nil {
					t.Fatal(err)
				}
				if tt.want == nil {
					if len(perms) != 2 {
						t.Fatalf("%d permissions, want 2: %v", len(perms), perms)
					}
					return
				}
				var got []string
				for _, p := range perms {
					got = append(got, p.ResourceID)
					if (p.ResourceName != "") != tt.names {
						t.Fatalf("rsname %q, want names %v", p.ResourceName, tt.names)
					}
				}
				if !slices.Equal(got, tt.want) {
					t.Fatalf("permissions %v, want %v", got, tt.want)
				}
			})
		}
	}
	t.Run("the limit keeps the most recent permissions of an upgrade", func(t *testing.T) {
		first := f.kcToken(url.Values{"audience": {"rs-a"}, "permission": {f.Labs + "#read"}}, "Authorization", authztest.Bearer(doctor))
		if first.Status != 200 {
			t.Fatalf("%d %s", first.Status, first.Body)
		}
		r := f.kcToken(url.Values{"audience": {"rs-a"}, "permission": {f.Scans + "#read"}, "response_permissions_limit": {"1"}, "rpt": {first.JSON(t)["access_token"].(string)}},
			"Authorization", authztest.Bearer(doctor))
		if r.Status != 200 {
			t.Fatalf("%d %s", r.Status, r.Body)
		}
		_, claims := jwtPayload(t, r.JSON(t)["access_token"].(string))
		az, _ := json.Marshal(claims["authorization"])
		if !strings.Contains(string(az), f.Scans) || strings.Contains(string(az), f.Labs) {
			t.Fatalf("authorization %s, want only %s", az, f.Scans)
		}
	})
}

// TestKeycloakPushedClaims: claim_token_format jwt on Keycloak's path is
// base64url JSON claims, taken from push_claims clients only; they reach
// the rules as input.pushed_claims and are never an identity.
func TestKeycloakPushedClaims(t *testing.T) {
	f := newKeycloakTokenFixture(t)
	pusher := authztest.BasicAuth("pusher", pusherSecret)
	tests := []struct {
		name, auth, claimToken string
		params                 url.Values
		status                 int
		code                   string
		want                   []string
	}{
		{name: "a purpose the owner's rules accept", auth: pusher, claimToken: pushedClaims(map[string]any{"purpose": []string{"treatment"}}),
			params: url.Values{"permission": {f.Labs + "#delete"}}, status: 200, want: []string{"delete"}},
		{name: "padded base64url", auth: pusher, claimToken: base64.URLEncoding.EncodeToString([]byte(`{"purpose":["treatment"]}`)),
			params: url.Values{"permission": {f.Labs + "#delete"}}, status: 200, want: []string{"delete"}},
		{name: "standard base64, as keycloak-connect writes it", auth: pusher, claimToken: base64.StdEncoding.EncodeToString([]byte(`{"purpose":["treatment"],"n":"~~~"}`)),
			params: url.Values{"permission": {f.Labs + "#delete"}}, status: 200, want: []string{"delete"}},
		{name: "a purpose they do not", auth: pusher, claimToken: pushedClaims(map[string]any{"purpose": []string{"marketing"}}),
			params: url.Values{"permission": {f.Labs + "#delete"}}, status: 403, code: "access_denied"},
		{name: "pushed identity claims are no identity", auth: pusher, claimToken: pushedClaims(map[string]any{"sub": "doc", "email": "doctor@clinic.example", "email_verified": true}),
			params: url.Values{"permission": {f.Labs + "#read"}}, status: 403, code: "access_denied"},
		{name: "a client without push_claims", auth: authztest.BasicAuth("app", authztest.AppSecret), claimToken: pushedClaims(map[string]any{"purpose": []string{"treatment"}}),
			params: url.Values{"permission": {f.Labs + "#delete"}}, status: 400, code: "invalid_request"},
		{name: "a bearer client without push_claims", auth: authztest.Bearer(f.doctor()), claimToken: pushedClaims(map[string]any{"purpose": []string{"treatment"}}),
			params: url.Values{"permission": {f.Labs + "#delete"}}, status: 400, code: "invalid_request"},
		{name: "not base64url", auth: pusher, claimToken: "%%%", params: url.Values{"permission": {f.Labs + "#delete"}}, status: 400, code: "invalid_request"},
		{name: "not an object", auth: pusher, claimToken: base64.RawURLEncoding.EncodeToString([]byte(`["treatment"]`)), params: url.Values{"permission": {f.Labs + "#delete"}}, status: 400, code: "invalid_request"},
		{name: "a signed JWT", auth: pusher, claimToken: f.doctor(), params: url.Values{"permission": {f.Labs + "#delete"}}, status: 400, code: "invalid_request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			params := url.Values{"audience": {"rs-a"}, "claim_token": {tt.claimToken}, "claim_token_format": {claimtoken.FormatJWT}}
			for k, v := range tt.params {
				params[k] = v
			}
			r := f.kcToken(params, "Authorization", tt.auth)
			if tt.status != 200 {
				authztest.ExpectError(t, r, tt.status, tt.code)
				return
			}
			if r.Status != 200 {
				t.Fatalf("%d %s", r.Status, r.Body)
			}
			_, claims := jwtPayload(t, r.JSON(t)["access_token"].(string))
			if claims["sub"] != "pusher" {
				t.Fatalf("sub = %v: pushed claims made an identity", claims["sub"])
			}
			az, _ := json.Marshal(claims["authorization"])
			if !strings.Contains(string(az), `"scopes":["delete"]`) {
				t.Fatalf("authorization %s", az)
			}
		})
	}
	t.Run("our own path reads the format as a signed JWT", func(t *testing.T) {
		params := url.Values{"grant_type": {authz.GrantTypeUMATicket}, "ticket": {f.LabsTicket("delete")}, "claim_token": {pushedClaims(map[string]any{"purpose": []string{"treatment"}})}, "claim_token_format": {claimtoken.FormatJWT}}
		r := f.Do("POST", authz.PathToken, params, "Authorization", pusher)
		authztest.ExpectUMAError(t, r, "need_info", true)
	})
}
