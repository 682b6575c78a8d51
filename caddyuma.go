// Package caddyuma plugs the caddy-uma modules into a Caddy build: import
// it for its side effect, as xcaddy does with
// `xcaddy build --with github.com/caddy-uma/caddy-uma`. The modules
// themselves live in package caddymodule.
package caddyuma

import _ "github.com/caddy-uma/caddy-uma/caddymodule" // registers the modules
