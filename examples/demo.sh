#!/usr/bin/env bash
# Walks the client side of a UMA 2.0 grant with curl, printing each step:
#
#   call the API -> 401 with a permission ticket -> token endpoint ->
#   need_info -> push claims (an ID token) -> RPT (or request_submitted:
#   poll) -> call the API again -> 200 from the upstream -> refresh the RPT
#
# By default it runs the demo of Caddyfile.example. Start Caddy first, from
# the repository root, in another terminal:
#
#   go run ./cmd/caddy run --config Caddyfile.example
#
# then run examples/demo.sh. Against your own API and rules, name the
# requester, the record and the client (flags or environment variables;
# see --help), for instance:
#
#   examples/demo.sh --as https://auth.example.com --api https://api.example.com \
#     --record /photos/alice/42 --client-id my-app --client-secret "$SECRET" \
#     --claim-token "$ID_TOKEN"
#
# Needs bash, curl, sed and grep. Exits 0 when the API answered the RPT with
# a 2xx, 1 at the first step that does not go as expected (the reason is
# printed), 2 on a wrong option.
set -euo pipefail

usage() {
	cat <<'USAGE'
Usage: examples/demo.sh [options]

Walks a UMA 2.0 grant as a client: the API's 401 with a permission
ticket, the token endpoint (need_info, pushed claims, request_submitted
polling), the API called with the RPT, and a refresh.

Options (each also read from the environment variable in brackets):
  --as URL               the authorization server's issuer [AS]
                         (default http://localhost:8080)
  --api URL              the protected API [API] (default http://localhost:8081)
  --record PATH          the record to read, a path of the API [RECORD]
                         (default /api/records/alice/1)
  --method METHOD        the method of the call [METHOD] (default GET)
  --client-id ID         the client asking for the RPT [CLIENT_ID] (default demo-app)
  --client-secret SECRET its secret [CLIENT_SECRET] (default demo-app-secret)
  --requester SUB        who asks: the sub of the ID token the demo IdP mints
                         [REQUESTER] (default bob)
  --email ADDRESS        their e-mail address in it [REQUESTER_EMAIL]
                         (default bob@example.com)
  --idp URL              the demo identity provider [IDP] (default $AS/idp)
  --claim-token TOKEN    push this claim token (your own IdP's ID token)
                         instead of one from the demo IdP [CLAIM_TOKEN]
  --claim-token-format F its format [CLAIM_TOKEN_FORMAT] (default: ID token)
  --polls N              how often to poll after request_submitted [POLLS]
                         (default 20)
  -h, --help             this help

Exit status: 0 the API answered 2xx with the RPT, 1 a step failed (the
reason is printed), 2 a wrong option.
USAGE
}

AS=${AS:-http://localhost:8080}
API=${API:-http://localhost:8081}
RECORD=${RECORD:-/api/records/alice/1}
METHOD=${METHOD:-GET}
CLIENT_ID=${CLIENT_ID:-demo-app}
CLIENT_SECRET=${CLIENT_SECRET:-demo-app-secret}
REQUESTER=${REQUESTER:-bob}
REQUESTER_EMAIL=${REQUESTER_EMAIL:-bob@example.com}
IDP=${IDP:-}
CLAIM_TOKEN=${CLAIM_TOKEN:-}
ID_TOKEN_FORMAT='http://openid.net/specs/openid-connect-core-1_0.html#IDToken'
CLAIM_TOKEN_FORMAT=${CLAIM_TOKEN_FORMAT:-$ID_TOKEN_FORMAT}
POLLS=${POLLS:-20}
UMA_GRANT='urn:ietf:params:oauth:grant-type:uma-ticket'

while [ $# -gt 0 ]; do
	opt=$1
	case $opt in
	-h | --help) usage; exit 0 ;;
	--as | --api | --record | --method | --client-id | --client-secret | --requester | --email | --idp | --claim-token | --claim-token-format | --polls)
		[ $# -ge 2 ] || { printf 'demo.sh: %s needs a value (see --help)\n' "$opt" >&2; exit 2; }
		case $opt in
		--as) AS=$2 ;; --api) API=$2 ;; --record) RECORD=$2 ;; --method) METHOD=$2 ;;
		--client-id) CLIENT_ID=$2 ;; --client-secret) CLIENT_SECRET=$2 ;;
		--requester) REQUESTER=$2 ;; --email) REQUESTER_EMAIL=$2 ;; --idp) IDP=$2 ;;
		--claim-token) CLAIM_TOKEN=$2 ;; --claim-token-format) CLAIM_TOKEN_FORMAT=$2 ;; --polls) POLLS=$2 ;;
		esac
		shift 2 ;;
	*) printf 'demo.sh: unknown option %s (see --help)\n' "$opt" >&2; exit 2 ;;
	esac
done
IDP=${IDP:-$AS/idp}
case $RECORD in /*) ;; *) printf 'demo.sh: --record %s must be a path starting with /\n' "$RECORD" >&2; exit 2 ;; esac
case $POLLS in '' | *[!0-9]*) printf 'demo.sh: --polls %s must be a number\n' "$POLLS" >&2; exit 2 ;; esac
# The default demo also shows that the share is read-only.
demo_defaults=false
if [ "$AS $API $RECORD $METHOD" = "http://localhost:8080 http://localhost:8081 /api/records/alice/1 GET" ]; then demo_defaults=true; fi

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
# number NAME: the numeric value of a top-level JSON member of the body.
number() { sed -n 's/.*"'"$1"'"[[:space:]]*:[[:space:]]*\([0-9][0-9]*\).*/\1/p' "$tmp/body" | head -n 1; }
# param NAME VALUE: an auth-param of a WWW-Authenticate value.
param() { printf '%s' "$2" | sed -n 's/.*[ ,]'"$1"'="\([^"]*\)".*/\1/p'; }
short() { printf '%s...' "${1:0:24}"; }

# Wait for Caddy to listen (the demo may be started right after it).
for _ in $(seq 1 60); do
	curl -s -o /dev/null "$API/" && curl -s -o /dev/null "$AS/.well-known/uma2-configuration" && break
	sleep 0.5
done

# token [curl arguments...]: a UMA grant request at the token endpoint as
# the client; the answer is in STATUS and $tmp/body. A 503 (the AS cannot
# answer now, for instance before it has the demo IdP's keys right after
# Caddy starts; the ticket stays good) is retried as Retry-After says.
token() {
	local attempt
	for attempt in 1 2 3 4 5 6 7 8 9; do
		call POST "$as_uri/token" -u "$CLIENT_ID:$CLIENT_SECRET" "$@"
		if [ "$STATUS" = 503 ] && [ "$attempt" -lt 9 ]; then
			[ "$attempt" = 1 ] && say "(503 $(member error): retrying after Retry-After: $(header Retry-After)s)"
			sleep "$(header Retry-After | tr -cd 0-9 | head -c 2)" 2>/dev/null || sleep 1
			continue
		fi
		return
	done
}

# outcome: what the last token answer means, after need_info was dealt
# with: an RPT (rpt is set), request_submitted polled until decided, or a
# failure.
outcome() {
	local polls=0 interval
	while [ "$STATUS" = 403 ] && [ "$(member error)" = request_submitted ]; do
		interval=$(number interval)
		interval=${interval:-5}
		ticket=$(member ticket)
		[ "$polls" -lt "$POLLS" ] || fail "still request_submitted after $POLLS polls: the owner has not decided"
		polls=$((polls + 1))
		say "HTTP 403 request_submitted: the owner is asked; polling in ${interval}s with the same ticket ($polls/$POLLS)"
		sleep "$interval"
		token --data-urlencode "grant_type=$UMA_GRANT" --data-urlencode "ticket=$ticket"
	done
	case "$STATUS $(member error)" in
	"200 "*) rpt=$(member access_token); [ -n "$rpt" ] || fail "no access_token" ;;
	"403 request_denied") fail "request_denied: the owner's rules and shares give $REQUESTER nothing here" ;;
	"403 need_info") fail "need_info again: the claims pushed are not enough (required_claims in the body)" ;;
	*) fail "HTTP $STATUS $(member error): $(member error_description)" ;;
	esac
}

step "1. The client calls the API without a token: $METHOD $API$RECORD"
call "$METHOD" "$API$RECORD"
[ "$STATUS" != 200 ] || fail "HTTP 200 without a token: $API$RECORD is not protected by uma_protect"
expect 401
challenge=$(header WWW-Authenticate)
say "HTTP $STATUS"
say "WWW-Authenticate: $challenge"
ticket=$(param ticket "$challenge")
as_uri=$(param as_uri "$challenge")
[ -n "$ticket" ] || fail "no ticket in the challenge"
[ "$as_uri" = "${AS%/}" ] || fail "as_uri is $as_uri, expected $AS (give --as the issuer the API names)"
say "-> permission ticket $(short "$ticket") from the authorization server $as_uri"

step "2. The client redeems the ticket at the token endpoint: POST $as_uri/token"
token --data-urlencode "grant_type=$UMA_GRANT" --data-urlencode "ticket=$ticket"
say "HTTP $STATUS $(head -c 400 "$tmp/body")"
rpt=
if [ "$STATUS" = 403 ] && [ "$(member error)" = need_info ]; then
	ticket=$(member ticket)
	[ -n "$ticket" ] || fail "no new ticket with need_info"
	say "-> need_info: the owner's rules want claims about the requester; new ticket $(short "$ticket")"

	if [ -n "$CLAIM_TOKEN" ]; then
		step "3. The client has a claim token of its own (--claim-token)"
		id_token=$CLAIM_TOKEN
	else
		step "3. The client gets an ID token for $REQUESTER from the demo identity provider: POST $IDP/id_token"
		call POST "$IDP/id_token" --data-urlencode "sub=$REQUESTER" --data-urlencode "email=$REQUESTER_EMAIL" \
			--data-urlencode "aud=$CLIENT_ID"
		expect 200
		id_token=$(member id_token)
		[ -n "$id_token" ] || fail "no id_token"
		say "-> ID token $(short "$id_token") (sub=$REQUESTER, email=$REQUESTER_EMAIL, aud=$CLIENT_ID)"
	fi

	step "4. The client pushes the claim token with the new ticket: POST $as_uri/token"
	token --data-urlencode "grant_type=$UMA_GRANT" --data-urlencode "ticket=$ticket" \
		--data-urlencode "claim_token=$id_token" --data-urlencode "claim_token_format=$CLAIM_TOKEN_FORMAT"
fi
outcome
refresh=$(member refresh_token)
say "HTTP 200: token_type=$(member token_type)"
say "-> RPT $(short "$rpt")"

step "5. The client calls the API again with the RPT: $METHOD $API$RECORD"
call "$METHOD" "$API$RECORD" -H "Authorization: Bearer $rpt"
case $STATUS in 2??) ;; *) fail "HTTP $STATUS with the RPT" ;; esac
api_status=$STATUS
say "HTTP $STATUS, from the upstream:"
sed 's/^/   | /' "$tmp/body"

if [ -n "$refresh" ]; then
	step "6. The client refreshes the RPT before it expires: POST $as_uri/token (grant_type=refresh_token)"
	token --data-urlencode grant_type=refresh_token --data-urlencode "refresh_token=$refresh"
	expect 200
	rpt=$(member access_token)
	[ -n "$rpt" ] || fail "no access_token in the refresh answer"
	say "HTTP $STATUS: a new RPT $(short "$rpt") with the same permissions"
fi

if $demo_defaults; then
	step "7. The share is read-only: DELETE $API$RECORD with the RPT"
	call DELETE "$API$RECORD" -H "Authorization: Bearer $rpt"
	expect 401
	say "HTTP $STATUS, a new challenge for the delete scope:"
	say "WWW-Authenticate: $(header WWW-Authenticate)"
fi

printf '\n%sDemo complete: 401 -> ticket -> token endpoint -> RPT -> %s.%s\n' "$bold" "$api_status" "$plain"
