package secret_test

import (
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/caddy-uma/caddy-uma/authz/secret"
)

func TestHashedRunsBcryptOncePerValue(t *testing.T) {
	h, err := bcrypt.GenerateFromPassword([]byte("alice password"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	hashed, err := secret.ParseHashed(string(h))
	if err != nil {
		t.Fatal(err)
	}
	if !hashed.Matches("alice password") || !hashed.Matches("alice password") || hashed.Matches("other") {
		t.Fatal("password check")
	}
	if n := hashed.Matched(); n != 1 {
		t.Fatalf("matched cache: %d entries, want 1", n)
	}
	if hashed.Cost() != bcrypt.MinCost {
		t.Fatalf("cost = %d", hashed.Cost())
	}
}

func TestParseHashedRefusesMalformedHashes(t *testing.T) {
	for name, h := range map[string]string{
		"plain":         "secret",
		"bad alphabet":  "$2a$04$" + strings.Repeat("!", 53),
		"unknown cost":  "$2a$99$" + strings.Repeat("a", 53),
		"wrong prefix":  "$1a$04$" + strings.Repeat("a", 53),
		"short":         "$2a$04$abc",
		"empty":         "",
		"one too long":  "$2a$04$" + strings.Repeat("a", 54),
		"looks, no pad": "$2b$10$" + strings.Repeat(".", 52),
	} {
		if _, err := secret.ParseHashed(h); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestEqual(t *testing.T) {
	for _, tc := range []struct {
		given, want string
		equal       bool
	}{
		{"abc", "abc", true},
		{"abc", "abd", false},
		{"", "", false},
		{"", "abc", false},
		{"abc", "", false},
		{"abc", "abcd", false},
	} {
		if got := secret.Equal(tc.given, tc.want); got != tc.equal {
			t.Errorf("Equal(%q, %q) = %v", tc.given, tc.want, got)
		}
	}
}

func TestNewAndKey(t *testing.T) {
	a, b := secret.New(32), secret.New(32)
	if a == b || len(a) != 43 || strings.ContainsAny(a, "+/=") {
		t.Fatalf("New: %q %q", a, b)
	}
	if secret.Key(a) == a || secret.Key(a) != secret.Key(a) || len(secret.Key(a)) != 64 {
		t.Fatal("Key")
	}
}
