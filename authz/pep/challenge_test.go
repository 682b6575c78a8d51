package pep

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestChallenge(t *testing.T) {
	tests := map[string]struct {
		realm, asURI, ticket string
		want                 string
	}{
		"all":         {"api", "https://as.example", "tk1", `UMA realm="api", as_uri="https://as.example", ticket="tk1"`},
		"no realm":    {"", "https://as.example", "tk1", `UMA as_uri="https://as.example", ticket="tk1"`},
		"quote":       {`my "api"`, "https://as.example", "t", `UMA realm="my \"api\"", as_uri="https://as.example", ticket="t"`},
		"backslash":   {`a\b`, "https://as.example", "t", `UMA realm="a\\b", as_uri="https://as.example", ticket="t"`},
		"controls":    {"a\r\nb\tc\x7f", "https://as.example", "t", "UMA realm=\"ab\tc\", as_uri=\"https://as.example\", ticket=\"t\""},
		"issuer path": {"r", "https://h.example/realms/x", "t", `UMA realm="r", as_uri="https://h.example/realms/x", ticket="t"`},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			got := Challenge(tt.realm, tt.asURI, tt.ticket)
			if got != tt.want {
				t.Errorf("Challenge = %s\nwant        %s", got, tt.want)
			}
			params, ok := parseChallenge(got)
			if !ok {
				t.Fatalf("the challenge does not parse: %s", got)
			}
			if params["as_uri"] != tt.asURI || params["ticket"] != tt.ticket {
				t.Errorf("parsed %v", params)
			}
		})
	}
}

// parseChallenge parses a UMA challenge as a client would (RFC 7235
// auth-params with quoted-strings).
func parseChallenge(h string) (map[string]string, bool) {
	rest, ok := strings.CutPrefix(h, "UMA ")
	if !ok {
		return nil, false
	}
	out := map[string]string{}
	for rest != "" {
		name, after, ok := strings.Cut(rest, "=")
		if !ok || len(after) == 0 || after[0] != '"' {
			return nil, false
		}
		var val strings.Builder
		i := 1
		for ; i < len(after) && after[i] != '"'; i++ {
			if after[i] == '\\' {
				i++
			}
			val.WriteByte(after[i])
		}
		if i >= len(after) {
			return nil, false
		}
		out[strings.TrimSpace(name)] = val.String()
		rest = strings.TrimPrefix(strings.TrimLeft(after[i+1:], " "), ",")
		rest = strings.TrimLeft(rest, " ")
	}
	return out, true
}

func TestBearerToken(t *testing.T) {
	tests := map[string]struct {
		headers []string
		query   string
		want    string
	}{
		"none":                 {},
		"bearer":               {headers: []string{"Bearer abc.def-ghi_jkl"}, want: "abc.def-ghi_jkl"},
		"scheme case":          {headers: []string{"bEaReR tok"}, want: "tok"},
		"padding":              {headers: []string{"Bearer dG9r=="}, want: "dG9r=="},
		"extra spaces":         {headers: []string{"Bearer   tok"}, want: "tok"},
		"basic":                {headers: []string{"Basic dXNlcjpwYXNz"}},
		"empty token":          {headers: []string{"Bearer "}},
		"no space":             {headers: []string{"Bearertok"}},
		"space inside":         {headers: []string{"Bearer a b"}},
		"not a b64token":       {headers: []string{`Bearer a"b`}},
		"padding in the midst": {headers: []string{"Bearer a=b"}},
		"two headers":          {headers: []string{"Bearer a", "Bearer b"}},
		"query is not read":    {query: "access_token=tok"},
		"too long":             {headers: []string{"Bearer " + strings.Repeat("a", maxTokenLen+1)}},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/x?"+tt.query, nil)
			for _, h := range tt.headers {
				r.Header.Add("Authorization", h)
			}
			got, ok := BearerToken(r)
			if got != tt.want || ok != (tt.want != "") {
				t.Errorf("BearerToken = %q, %v; want %q", got, ok, tt.want)
			}
		})
	}
}
