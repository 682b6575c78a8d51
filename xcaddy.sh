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
# --with names the package that registers the modules (caddymodule: the
# module root has no Go package), and --replace points the module at this
# directory.
#
# This module is not published. The Go module proxy must answer "not found"
# (404/410) for its paths, as proxy.golang.org does, for the go commands of
# xcaddy to fall back to the local replacement. A proxy that answers 403
# instead makes them fail; the script then retries once with GOPROXY=off,
# from the module cache that the first attempt filled.
#
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

build() {
	"$tmp/xcaddy" build "$caddy_version" \
		--with github.com/caddy-uma/caddy-uma/caddymodule \
		--replace "github.com/caddy-uma/caddy-uma=." \
		--output "$output"
}

if build 2>"$tmp/stderr"; then
	cat "$tmp/stderr" >&2
	exit 0
fi
cat "$tmp/stderr" >&2
if [ "${GOPROXY:-}" != off ] && grep -q 'module github.com/caddy-uma/caddy-uma[^ ]*: reading .*403' "$tmp/stderr"; then
	echo "xcaddy.sh: the module proxy refused the unpublished caddy-uma paths (403); retrying with GOPROXY=off" >&2
	GOPROXY=off build
else
	exit 1
fi
