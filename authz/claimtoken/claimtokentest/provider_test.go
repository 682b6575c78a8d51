package claimtokentest

import (
	"errors"
	"net"
	"net/http"
	"runtime"
	"syscall"
	"testing"
)

// A closed provider refuses connections, keeps its port from every new
// server of the machine, and comes back on it with Reopen.
func TestClosedProviderKeepsItsPort(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the port is reserved on Linux only")
	}
	p := NewProvider(t)
	p.Close()
	if _, err := net.Dial("tcp", p.addr); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dialling a closed provider: %v, want connection refused", err)
	}
	// Far more free ports asked for than a freed one takes to come back
	// without the reservation (usually within a few).
	for range 500 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		got := l.Addr().String()
		l.Close()
		if got == p.addr {
			t.Fatalf("a new listener got the closed provider's port %s", got)
		}
	}
	p.Reopen(t)
	resp, err := http.Get(p.JWKSURI())
	if err != nil {
		t.Fatalf("after Reopen: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("after Reopen: %s", resp.Status)
	}
}
