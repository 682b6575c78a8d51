package main

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/template"
	"time"

	"golang.org/x/sync/errgroup"
)

// rulesFS holds the owners' rule templates: the kinds of policies/examples,
// each granting the harness's requesting party (bob) read access to a
// record in its own way, with denials and asks that do not apply to him.
//
//go:embed rules/*.rego
var rulesFS embed.FS

// idToken format of the claim_token_format parameter.
const idTokenFormat = "http://openid.net/specs/openid-connect-core-1_0.html#IDToken"

const umaTicketGrant = "urn:ietf:params:oauth:grant-type:uma-ticket"

// ownerName is the subject of owner i.
func ownerName(i int) string { return fmt.Sprintf("owner-%05d", i) }

// resourceOf is resource j of the run: owner j mod owners, record j div owners.
func resourceOf(j, owners int) (owner, name string) {
	owner = ownerName(j % owners)
	return owner, fmt.Sprintf("/api/records/%s/%d", owner, j/owners)
}

// writeRules writes the rules of owners owners into dir/<owner>/, one of the
// templates each, in turn.
func writeRules(dir string, owners int) error {
	entries, err := rulesFS.ReadDir("rules")
	if err != nil {
		return err
	}
	var tpls []*template.Template
	for _, e := range entries {
		src, err := rulesFS.ReadFile(path.Join("rules", e.Name()))
		if err != nil {
			return err
		}
		t, err := template.New(e.Name()).Parse(string(src))
		if err != nil {
			return fmt.Errorf("rule template %s: %w", e.Name(), err)
		}
		tpls = append(tpls, t)
	}
	for i := range owners {
		owner := ownerName(i)
		t := tpls[i%len(tpls)]
		var b strings.Builder
		if err := t.Execute(&b, map[string]any{"Owner": owner, "N": i, "Octet": i % 256, "Client": clientID}); err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Join(dir, owner), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, owner, t.Name()), []byte(b.String()), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// asClient talks to the AS and the protected site for seeding and for
// building the scenarios' targets.
type asClient struct {
	issuer, api string
	http        *http.Client
	pat         string
	idToken     string
}

func newASClient(issuer, api, idToken string) *asClient {
	return &asClient{
		issuer: issuer, api: api, idToken: idToken,
		http: &http.Client{Timeout: 2 * time.Minute, Transport: &http.Transport{
			MaxIdleConnsPerHost: 256, MaxConnsPerHost: 0, IdleConnTimeout: time.Minute,
		}},
	}
}

// answer is one HTTP answer, read whole.
type answer struct {
	status int
	header http.Header
	body   []byte
}

func (a answer) String() string {
	b := a.body
	if len(b) > 300 {
		b = b[:300]
	}
	return fmt.Sprintf("%d %s", a.status, bytes.TrimSpace(b))
}

// do sends a request, retrying a 503 with Retry-After (the AS is busy
// compiling or its store is momentarily unavailable) a few times.
func (c *asClient) do(ctx context.Context, method, u, ctype, body string, auth func(*http.Request)) (answer, error) {
	for attempt := 0; ; attempt++ {
		req, err := http.NewRequestWithContext(ctx, method, u, strings.NewReader(body))
		if err != nil {
			return answer{}, err
		}
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		if auth != nil {
			auth(req)
		}
		resp, err := c.http.Do(req)
		if err != nil {
			return answer{}, err
		}
		data, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return answer{}, err
		}
		a := answer{status: resp.StatusCode, header: resp.Header, body: data}
		if a.status == http.StatusServiceUnavailable && attempt < 20 {
			wait := time.Second
			if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s >= 0 && s < 10 {
				wait = time.Duration(s)*time.Second + 50*time.Millisecond
			}
			select {
			case <-ctx.Done():
				return a, ctx.Err()
			case <-time.After(wait):
			}
			continue
		}
		return a, nil
	}
}

func bearer(tok string) func(*http.Request) {
	return func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+tok) }
}

func basic(id, secret string) func(*http.Request) {
	return func(r *http.Request) { r.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret)) }
}

const formType = "application/x-www-form-urlencoded"

// obtainPAT gets the resource server's PAT (client credentials).
func (c *asClient) obtainPAT(ctx context.Context) error {
	a, err := c.do(ctx, http.MethodPost, c.issuer+"/token", formType,
		url.Values{"grant_type": {"client_credentials"}, "scope": {"uma_protection"}}.Encode(),
		basic(resourceServer, resourceServerSecret))
	if err != nil {
		return fmt.Errorf("PAT: %w", err)
	}
	var out struct {
		AccessToken string `json:"access_token"`
	}
	if a.status != http.StatusOK || json.Unmarshal(a.body, &out) != nil || out.AccessToken == "" {
		return fmt.Errorf("PAT: %s", a)
	}
	c.pat = out.AccessToken
	return nil
}

// resource is a registered resource of the run.
type resource struct {
	ID, Owner, Name string
}

// register registers resources [from, to) through the protection API with
// clients parallel clients, and returns them in order.
func (c *asClient) register(ctx context.Context, from, to, owners, clients int, progress func(done int)) ([]resource, error) {
	out := make([]resource, to-from)
	var next, done atomic.Int64
	next.Store(int64(from))
	g, ctx := errgroup.WithContext(ctx)
	for range clients {
		g.Go(func() error {
			for {
				j := int(next.Add(1) - 1)
				if j >= to {
					return nil
				}
				owner, name := resourceOf(j, owners)
				body, _ := json.Marshal(map[string]any{
					"name": name, "owner": owner, "type": "urn:example:record",
					"resource_scopes": []string{"read", "write", "delete"},
				})
				a, err := c.do(ctx, http.MethodPost, c.issuer+"/resource_set", "application/json", string(body), bearer(c.pat))
				if err != nil {
					return fmt.Errorf("registering %s: %w", name, err)
				}
				var reg struct {
					ID string `json:"_id"`
				}
				if a.status != http.StatusCreated || json.Unmarshal(a.body, &reg) != nil || reg.ID == "" {
					return fmt.Errorf("registering %s: %s", name, a)
				}
				out[j-from] = resource{ID: reg.ID, Owner: owner, Name: name}
				if n := done.Add(1); progress != nil && n%5000 == 0 {
					progress(int(n))
				}
			}
		})
	}
	return out, g.Wait()
}

// ticket asks the permission endpoint for a ticket for read on res.
func (c *asClient) ticket(ctx context.Context, res resource) (string, error) {
	body := `{"resource_id":"` + res.ID + `","resource_scopes":["read"]}`
	a, err := c.do(ctx, http.MethodPost, c.issuer+"/permission", "application/json", body, bearer(c.pat))
	if err != nil {
		return "", fmt.Errorf("permission ticket: %w", err)
	}
	var out struct {
		Ticket string `json:"ticket"`
	}
	if a.status != http.StatusCreated || json.Unmarshal(a.body, &out) != nil || out.Ticket == "" {
		return "", fmt.Errorf("permission ticket: %s", a)
	}
	return out.Ticket, nil
}

// grantForm is the UMA grant request of a ticket, with bob's ID token.
func (c *asClient) grantForm(ticket string) string {
	return url.Values{"grant_type": {umaTicketGrant}, "ticket": {ticket},
		"claim_token": {c.idToken}, "claim_token_format": {idTokenFormat}}.Encode()
}

// tokens is a token endpoint answer.
type tokens struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	RefreshToken string `json:"refresh_token"`
}

func parseTokens(a answer) (tokens, error) {
	var t tokens
	if a.status != http.StatusOK || json.Unmarshal(a.body, &t) != nil || t.AccessToken == "" || !strings.EqualFold(t.TokenType, "Bearer") {
		return t, fmt.Errorf("token endpoint: %s", a)
	}
	return t, nil
}

// grant obtains an RPT (and refresh token) for read on res.
func (c *asClient) grant(ctx context.Context, res resource) (tokens, error) {
	tk, err := c.ticket(ctx, res)
	if err != nil {
		return tokens{}, err
	}
	a, err := c.do(ctx, http.MethodPost, c.issuer+"/token", formType, c.grantForm(tk), basic(clientID, clientSecret))
	if err != nil {
		return tokens{}, err
	}
	return parseTokens(a)
}

// grants obtains tokens for each of res, in parallel.
func (c *asClient) grants(ctx context.Context, res []resource) ([]tokens, error) {
	out := make([]tokens, len(res))
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(16)
	for i, r := range res {
		g.Go(func() error {
			t, err := c.grant(ctx, r)
			if err != nil {
				return fmt.Errorf("RPT for %s: %w", r.Name, err)
			}
			out[i] = t
			return nil
		})
	}
	return out, g.Wait()
}

// warm sends each RPT once through uma_protect and checks the answer, so
// that the scenarios measure cached RPTs and known resources.
func (c *asClient) warm(ctx context.Context, res []resource, rpts []tokens) error {
	var mu sync.Mutex
	var first error
	var wg sync.WaitGroup
	for i := range res {
		wg.Go(func() {
			a, err := c.do(ctx, http.MethodGet, c.api+res[i].Name, "", "", bearer(rpts[i].AccessToken))
			if err == nil && (a.status != http.StatusOK || string(a.body) != upstreamBody) {
				err = fmt.Errorf("GET %s with its RPT: %s", res[i].Name, a)
			}
			if err == nil {
				a, err = c.do(ctx, http.MethodGet, c.api+res[i].Name, "", "", nil)
				if err == nil && a.status != http.StatusUnauthorized {
					err = fmt.Errorf("GET %s without a token: %s", res[i].Name, a)
				}
			}
			if err != nil {
				mu.Lock()
				if first == nil {
					first = err
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return first
}
