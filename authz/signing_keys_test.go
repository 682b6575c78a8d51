package authz_test

import (
	"context"
	"testing"
	"time"

	"github.com/caddy-uma/caddy-uma/authz/authztest"
	"github.com/lestrrat-go/jwx/v3/jwt"
)

func newTestJWT(t *testing.T) jwt.Token {
	t.Helper()
	tok, err := jwt.NewBuilder().Issuer("test").Expiration(time.Now().Add(time.Minute)).Build()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestSignAndVerify(t *testing.T) {
	as := authztest.New(t, nil)
	signed, err := as.Server.Sign(context.Background(), newTestJWT(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := as.Server.VerifySignature(signed); err != nil {
		t.Fatalf("verify own token: %v", err)
	}
	other := authztest.New(t, nil)
	if _, err := other.Server.VerifySignature(signed); err == nil {
		t.Fatal("a token signed by another AS verified")
	}
	tampered := signed[:len(signed)-4] + "AAAA"
	if _, err := as.Server.VerifySignature(tampered); err == nil {
		t.Fatal("tampered token verified")
	}
}
