// Command caddy is Caddy with the standard modules and the caddy-uma
// modules: the uma app (the UMA 2.0 authorization server) and the
// uma_server HTTP handler.
//
//	go run ./cmd/caddy run --config Caddyfile.example
//
// builds the same binary as xcaddy.sh, without xcaddy.
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	// Caddy's standard modules, as in the official distribution.
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	// The caddy-uma modules.
	_ "github.com/caddy-uma/caddy-uma/caddymodule"
)

func main() {
	caddycmd.Main()
}
