package verified

import (
	"fmt"
	"testing"
	"time"
)

func TestTokens(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	tests := []struct {
		name   string
		until  time.Time
		at     time.Time
		wantOK bool
	}{
		{name: "before its expiry", until: now.Add(time.Minute), at: now, wantOK: true},
		{name: "just before", until: now.Add(time.Minute), at: now.Add(time.Minute - time.Nanosecond), wantOK: true},
		{name: "at its expiry", until: now.Add(time.Minute), at: now.Add(time.Minute)},
		{name: "after", until: now.Add(time.Minute), at: now.Add(time.Hour)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var kept Tokens[string]
			kept.Put(Of("a.b.c"), "v", tt.until)
			v, ok := kept.Get(Of("a.b.c"), tt.at)
			if ok != tt.wantOK || (ok && v != "v") {
				t.Fatalf("Get = %q, %v; want ok %v", v, ok, tt.wantOK)
			}
			if _, ok := kept.Get(Of("a.b.d"), now); ok {
				t.Fatal("another token was found")
			}
			if !tt.wantOK && kept.Len() != 0 {
				t.Fatal("an expired token was not dropped")
			}
		})
	}
}

func TestTokensBounded(t *testing.T) {
	kept := Tokens[int]{Max: 10}
	until := time.Now().Add(time.Hour)
	for i := range 100 {
		kept.Put(Of(fmt.Sprint(i)), i, until)
		if kept.Len() > 10 {
			t.Fatalf("%d tokens kept, at most 10", kept.Len())
		}
	}
	if _, ok := kept.Get(Of("99"), time.Now()); !ok {
		t.Fatal("the last token put is not kept")
	}
	kept.Put(Of("99"), -1, until) // again: drops nothing
	if v, _ := kept.Get(Of("99"), time.Now()); v != -1 || kept.Len() != 10 {
		t.Fatalf("Put again: %d, %d kept", v, kept.Len())
	}
}
