package claimtokentest

import (
	"fmt"
	"net"
	"net/netip"
	"syscall"
)

// reserve keeps the TCP port of addr (an IPv4 "host:port") taken while
// nothing listens on it: a socket bound to it without listen. Connections
// to addr are refused, as when the provider is down, and no server of this
// machine that asks for a free port is given this one meanwhile (a test
// closing a provider and starting another one would otherwise often get
// the same port back, and the first provider's issuer would answer with
// the second one's keys). release gives the port back.
func reserve(addr string) (release func(), err error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil || !ap.Addr().Is4() {
		return nil, fmt.Errorf("reserving %s: not an IPv4 address and port", addr)
	}
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("reserving %s: %w", addr, err)
	}
	// SO_REUSEADDR: the closed server's connections may still be in
	// TIME_WAIT on the port. A bound socket that does not listen still
	// keeps the port from being handed out as a free one.
	if err := syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1); err != nil {
		syscall.Close(fd)
		return nil, fmt.Errorf("reserving %s: %w", addr, err)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}); err != nil {
		syscall.Close(fd)
		return nil, fmt.Errorf("reserving %s: %w", addr, &net.OpError{Op: "bind", Net: "tcp", Err: err})
	}
	return func() { syscall.Close(fd) }, nil
}
