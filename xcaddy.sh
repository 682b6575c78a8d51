#!/bin/sh
# Builds ./caddy-uma: Caddy with its standard modules and the caddy-uma
# modules of this checkout, with xcaddy, Caddy's tool for custom builds.
# The binary is the one `go build ./cmd/caddy` makes, except that xcaddy
# builds with the tags nobadger,nomysql,nopgx: they drop Caddy's own optional
# storage drivers, not the Badger database of caddy-uma.
#
#   ./xcaddy.sh
#   ./caddy-uma list-modules | grep uma     # uma, http.handlers.uma_server
#   ./caddy-uma run --config Caddyfile.example
#
# --with names this module at the zero pseudo-version, replaced by this
# directory: the root package (caddyuma.go) imports the modules. The module
# is not published, so GOPRIVATE keeps the go commands from asking the
# module proxy, the checksum database or GitHub about it; every other module
# comes from the proxy as usual, checksums verified.

# Environment: CADDY_VERSION (default: the version in go.mod), XCADDY_VERSION
# (default: v0.4.5), OUTPUT (default: ./caddy-uma).
set -eu

cd "$(dirname "$0")"

caddy_version=${CADDY_VERSION:-$(go list -m -f '{{.Version}}' github.com/caddyserver/caddy/v2)}
xcaddy_version=${XCADDY_VERSION:-v0.4.5}
output=${OUTPUT:-./caddy-uma}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# xcaddy itself, from the module proxy.
GOBIN="$tmp" go install "github.com/caddyserver/xcaddy/cmd/xcaddy@${xcaddy_version}"

export GOPRIVATE="${GOPRIVATE:+$GOPRIVATE,}github.com/caddy-uma/caddy-uma"
"$tmp/xcaddy" build "$caddy_version" \
	--with "github.com/caddy-uma/caddy-uma@v0.0.0-00010101000000-000000000000=." \
	--output "$output"
