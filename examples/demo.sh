#!/usr/bin/env bash
# Walks the UMA 2.0 flow of Caddyfile.example with curl, printing each step:
#
#   call the API -> 401 with a permission ticket -> token endpoint ->
#   need_info -> push claims (an ID token from the demo IdP) -> RPT ->
#   call the API again -> 200 from the upstream
#
# Start Caddy first, from the repository root, in another terminal:
#
#   go run ./cmd/caddy run --config Caddyfile.example
#
# then run examples/demo.sh. Needs bash, curl, sed and grep. The URLs and
# the client can be changed with AS, API, IDP, CLIENT_ID, CLIENT_SECRET and
# RECORD. Exits non-zero at the first step that does not go as expected.
set -euo pipefail

AS=${AS:-http://localhost:8080}
API=${API:-http://localhost:8081}
IDP=${IDP:-$AS/idp}
CLIENT_ID=${CLIENT_ID:-demo-app}
CLIENT_SECRET=${CLIENT_SECRET:-demo-app-secret}
RECORD=${RECORD:-/api/records/alice/1}
ID_TOKEN_FORMAT='http://openid.net/specs/openid-connect-core-1_0.html#IDToken'
UMA_GRANT='urn:ietf:params:oauth:grant-type:uma-ticket'

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

bold='' plain=''
if [ -t 1 ]; then bold=$'\033[1m' plain=$'\033[0m'; fi
step() { printf '\n%s== %s%s\n' "$bold" "$*" "$plain"; }
say() { printf '   %s\n' "$*"; }
fail() {
	printf '\nFAIL: %s\n' "$*" >&2
	if [ -s "$tmp/body" ]; then printf 'last response body: %s\n' "$(head -c 600 "$tmp/body")" >&2; fi
	exit 1
}

# call METHOD URL [curl arguments...]: sets STATUS; the response headers go
# to $tmp/headers and the body to $tmp/body.
call() {
	local method=$1 url=$2
	shift 2
	: >"$tmp/body"
	STATUS=$(curl -sS -X "$method" -o "$tmp/body" -D "$tmp/headers" -w '%{http_code}' "$@" "$url") ||
		fail "cannot reach $url: is Caddy running? (go run ./cmd/caddy run --config Caddyfile.example)"
}
expect() { [ "$STATUS" = "$1" ] || fail "HTTP $STATUS, expected $1"; }
# header NAME: the value of a response header.
header() { grep -i "^$1:" "$tmp/headers" | head -n 1 | cut -d ' ' -f 2- | tr -d '\r'; }
# member NAME: the string value of a top-level JSON member of the body.
member() { sed -n 's/.*"'"$1"'"[[:space:]]*:[[:space:]]*"\([^"]*\)".*/\1/p' "$tmp/body" | head -n 1; }
# param NAME VALUE: an auth-param of a WWW-Authenticate value.
param() { printf '%s' "$2" | sed -n 's/.*[ ,]'"$1"'="\([^"]*\)".*/\1/p'; }
short() { printf '%s...' "${1:0:24}"; }

# Wait for Caddy to listen (the demo may be started right after it).
for _ in $(seq 1 60); do
	curl -s -o /dev/null "$API/" && curl -s -o /dev/null "$AS/.well-known/uma2-configuration" && break
	sleep 0.5
done

step "1. The client calls the API without a token: GET $API$RECORD"
call GET "$API$RECORD"
expect 401
challenge=$(header WWW-Authenticate)
say "HTTP $STATUS"
say "WWW-Authenticate: $challenge"
ticket=$(param ticket "$challenge")
as_uri=$(param as_uri "$challenge")
[ -n "$ticket" ] || fail "no ticket in the challenge"
[ "$as_uri" = "$AS" ] || fail "as_uri is $as_uri, expected $AS"
say "-> permission ticket $(short "$ticket") from the authorization server $as_uri"

step "2. The client redeems the ticket at the token endpoint: POST $AS/token"
call POST "$as_uri/token" -u "$CLIENT_ID:$CLIENT_SECRET" \
	--data-urlencode "grant_type=$UMA_GRANT" --data-urlencode "ticket=$ticket"
expect 403
[ "$(member error)" = need_info ] || fail "expected error need_info"
say "HTTP $STATUS $(cat "$tmp/body")"
ticket=$(member ticket)
[ -n "$ticket" ] || fail "no new ticket with need_info"
say "-> need_info: alice's rules want a verified e-mail address; new ticket $(short "$ticket")"

step "3. The client gets an ID token for bob from the demo identity provider: POST $IDP/id_token"
call POST "$IDP/id_token" --data-urlencode sub=bob --data-urlencode email=bob@example.com \
	--data-urlencode "aud=$CLIENT_ID"
expect 200
id_token=$(member id_token)
[ -n "$id_token" ] || fail "no id_token"
say "-> ID token $(short "$id_token") (sub=bob, email=bob@example.com, aud=$CLIENT_ID)"

step "4. The client pushes the ID token as a claim token with the new ticket: POST $AS/token"
for attempt in 1 2 3 4 5 6 7 8 9; do
	call POST "$as_uri/token" -u "$CLIENT_ID:$CLIENT_SECRET" \
		--data-urlencode "grant_type=$UMA_GRANT" --data-urlencode "ticket=$ticket" \
		--data-urlencode "claim_token=$id_token" --data-urlencode "claim_token_format=$ID_TOKEN_FORMAT"
	# Right after Caddy starts, the AS may not have the demo IdP's keys
	# yet (this Caddy serves them itself, and may not have been listening
	# when the AS first asked): it then answers 503 temporarily_unavailable
	# with Retry-After, and the ticket is still good. Wait and retry.
	if [ "$STATUS" = 503 ] && [ "$(member error)" = temporarily_unavailable ] && [ "$attempt" -lt 9 ]; then
		[ "$attempt" = 1 ] && say "(503: the AS has not fetched the demo IdP's signing keys yet; retrying as Retry-After says)"
		sleep 1
		continue
	fi
	break
done
expect 200
rpt=$(member access_token)
[ -n "$rpt" ] || fail "no access_token"
say "HTTP $STATUS: token_type=$(member token_type)"
say "-> RPT $(short "$rpt") (granted by alice's rule: bob@example.com may read her records)"

step "5. The client calls the API again with the RPT: GET $API$RECORD"
call GET "$API$RECORD" -H "Authorization: Bearer $rpt"
expect 200
say "HTTP $STATUS, from the upstream (which never saw the RPT: strip_authorization):"
sed 's/^/   | /' "$tmp/body"

step "6. The share is read-only: DELETE $API$RECORD with the same RPT"
call DELETE "$API$RECORD" -H "Authorization: Bearer $rpt"
expect 401
say "HTTP $STATUS, a new challenge for the delete scope:"
say "WWW-Authenticate: $(header WWW-Authenticate)"

printf '\n%sDemo complete: 401 -> ticket -> need_info -> claims -> RPT -> 200.%s\n' "$bold" "$plain"
