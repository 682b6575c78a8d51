// Package urlcheck holds the URL rules that the AS, the claim token
// checker, the enforcement point and the Caddy configuration share: what
// an issuer or endpoint URL may look like, what a redirect URI may look
// like, and which hosts are the local machine.
package urlcheck

import (
	"errors"
	"net"
	"net/url"
	"strings"
)

// Absolute checks an absolute http or https URL with a host, without user
// information or a fragment, and without a query unless allowQuery. Issuer
// identifiers (RFC 8414 section 2) are checked with allowQuery false.
func Absolute(raw string, allowQuery bool) error {
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return errors.New("is not a URL")
	case u.Scheme != "http" && u.Scheme != "https":
		return errors.New("is not an http or https URL (it must be an absolute http or https URL)")
	case u.Hostname() == "":
		return errors.New("has no host")
	case u.User != nil:
		return errors.New("has user information")
	case u.Fragment != "" || strings.Contains(raw, "#"):
		return errors.New("has a fragment")
	case !allowQuery && (u.RawQuery != "" || u.ForceQuery || strings.Contains(raw, "?")):
		return errors.New("has a query")
	}
	return nil
}

// RedirectURI checks an OAuth redirect URI or UMA claims redirect URI:
// absolute, without a fragment (a query is allowed and kept), https except
// on the local machine.
func RedirectURI(raw string) error {
	if err := Absolute(raw, true); err != nil {
		return err
	}
	u, _ := url.Parse(raw)
	if u.Scheme == "http" && !Loopback(u.Hostname()) {
		return errors.New("must use https (http only on the local machine)")
	}
	return nil
}

// Loopback reports whether host names the local machine: localhost, a
// name under .localhost, or a loopback address (127.0.0.0/8, ::1).
func Loopback(host string) bool {
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
