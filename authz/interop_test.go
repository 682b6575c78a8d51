package authz_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/caddy-uma/caddy-uma/authz"
	"github.com/caddy-uma/caddy-uma/authz/authztest"
	"github.com/caddy-uma/caddy-uma/authz/claimtoken"
)

// TestInteropGoOAuth2 drives the token endpoint with golang.org/x/oauth2,
// a third-party OAuth client: client credentials in the header and in the
// body, its error parsing, and the UMA grant as a custom grant type.
func TestInteropGoOAuth2(t *testing.T) {
	f := authztest.NewGrantFixture(t, nil)
	ctx := context.Background()
	for _, style := range []oauth2.AuthStyle{oauth2.AuthStyleInHeader, oauth2.AuthStyleInParams, oauth2.AuthStyleAutoDetect} {
		cc := clientcredentials.Config{
			ClientID: "rs-a", ClientSecret: "secret-a", TokenURL: f.Issuer + authz.PathToken,
			Scopes: []string{authz.ScopeProtection}, AuthStyle: style,
		}
		tok, err := cc.Token(ctx)
		if err != nil {
			t.Fatalf("style %v: %v", style, err)
		}
		if tok.TokenType != "Bearer" || tok.Expiry.IsZero() {
			t.Fatalf("style %v: token %+v", style, tok)
		}
		// The PAT works at the protection API.
		if r := f.Do("GET", authz.PathResourceSet, nil, "Authorization", authztest.Bearer(tok.AccessToken)); r.Status != 200 {
			t.Fatalf("style %v: PAT refused: %d", style, r.Status)
		}
	}

	// x/oauth2 parses our RFC 6749 errors.
	bad := clientcredentials.Config{ClientID: "rs-a", ClientSecret: "wrong", TokenURL: f.Issuer + authz.PathToken, AuthStyle: oauth2.AuthStyleInHeader}
	_, err := bad.Token(ctx)
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.ErrorCode != "invalid_client" || re.Response.StatusCode != 401 {
		t.Fatalf("wrong secret: %v", err)
	}

	// The UMA grant through x/oauth2's custom grant support: need_info is
	// a RetrieveError with the UMA members in its body.
	app := oauth2.Config{ClientID: "app", ClientSecret: "app secret:with&chars",
		Endpoint: oauth2.Endpoint{TokenURL: f.Issuer + authz.PathToken, AuthStyle: oauth2.AuthStyleInHeader}}
	_, err = app.Exchange(ctx, "", oauth2.SetAuthURLParam("grant_type", authz.GrantTypeUMATicket), oauth2.SetAuthURLParam("ticket", f.LabsTicket("read")))
	if !errors.As(err, &re) || re.ErrorCode != "need_info" || !strings.Contains(string(re.Body), `"ticket"`) {
		t.Fatalf("need_info through x/oauth2: %v", err)
	}
	next := strings.Split(strings.Split(string(re.Body), `"ticket":"`)[1], `"`)[0]
	idToken := f.IDToken(map[string]any{"sub": "doc-1", "email": "doctor@clinic.example"})
	tok, err := app.Exchange(ctx, "",
		oauth2.SetAuthURLParam("grant_type", authz.GrantTypeUMATicket),
		oauth2.SetAuthURLParam("ticket", next),
		oauth2.SetAuthURLParam("claim_token", idToken),
		oauth2.SetAuthURLParam("claim_token_format", claimtoken.FormatIDToken))
	if err != nil {
		t.Fatalf("RPT through x/oauth2: %v", err)
	}
	if tok.RefreshToken == "" || tok.Extra("pct") == nil {
		t.Fatalf("RPT response: %+v", tok)
	}
	if perms := f.RPTPermissions(tok.AccessToken); strings.Join(perms[f.Labs], ",") != "read" {
		t.Fatalf("permissions %v", perms)
	}
	// And x/oauth2 refreshes the RPT with our refresh token.
	src := app.TokenSource(ctx, &oauth2.Token{RefreshToken: tok.RefreshToken})
	refreshed, err := src.Token()
	if err != nil || refreshed.AccessToken == tok.AccessToken {
		t.Fatalf("refresh through x/oauth2: %v", err)
	}
}
