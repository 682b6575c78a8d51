# Package uma.lib is the built-in library of caddy-uma sharing rules. It is
# compiled next to every owner's rules and every system rule set, and no owner
# can replace it. Import it with `import data.uma.lib` and call `lib.is_person(...)`.
#
# Every helper reads only `input`: nothing here reaches outside the request
# being decided. An e-mail address counts only when it is verified: when the
# claims carry `email_verified` and it is neither true nor "true", the address
# matches nothing (not is_email, not in_email_domain, not a console share).
package uma.lib

# ---------------------------------------------------------------------------
# Who is asking.

# subject is the requesting party's subject identifier, or "" when unknown.
subject := object.get(input, ["requesting_party", "sub"], "")

# issuer is the issuer of the requesting party's identity, or "" when unknown.
issuer := object.get(input, ["requesting_party", "iss"], "")

# email is the requesting party's e-mail address (claim "email"), trimmed and
# lower-cased. It is undefined when the claim is missing or is not verified.
email := addr if {
	is_string(input.claims.email)
	addr := lower(trim_space(input.claims.email))
	addr != ""
	not email_unverified
}

# email_unverified is true when the claims say that the e-mail address was not
# verified: email_verified is present and neither true nor "true".
email_unverified if {
	verified := input.claims.email_verified
	not verified in {true, "true"}
}

# is_subject(sub) is true when the requesting party's subject is sub.
is_subject(sub) if {
	sub != ""
	subject == sub
}

# is_subject_at(sub, iss) is true when the requesting party is sub as issued by iss.
is_subject_at(sub, iss) if {
	is_subject(sub)
	issuer == iss
}

# is_email(addr) is true when the requesting party's verified e-mail address is
# addr, compared case-insensitively.
is_email(addr) if {
	is_string(addr)
	email == lower(trim_space(addr))
}

# is_person(who) is true when who is the requesting party's subject or verified
# e-mail address.
is_person(who) if is_subject(who)

is_person(who) if is_email(who)

# in_email_domain(domain) is true when the requesting party's verified e-mail
# address is in domain exactly ("example.org" or "@example.org"; it does not
# cover "mail.example.org").
in_email_domain(domain) if {
	parts := split(email, "@")
	count(parts) == 2
	parts[0] != ""
	parts[1] != ""
	parts[1] == lower(trim_prefix(trim_space(domain), "@"))
}

# claim_values(name) is the set of string values of claim name: all the strings
# of an array claim, or the claim itself when it is a string.
claim_values(name) := {v | some v in input.claims[name]; is_string(v)} if is_array(input.claims[name])

claim_values(name) := {input.claims[name]} if is_string(input.claims[name])

# claim_includes(name, value) is true when claim name is value or an array
# holding value.
claim_includes(name, value) if value in claim_values(name)

# in_group(group) is true when the "groups" claim holds group. Names are
# compared exactly: Keycloak sends full paths such as "/family".
in_group(group) if claim_includes("groups", group)

# ---------------------------------------------------------------------------
# Which client is asking.

# is_client(id) is true when the request comes through the OAuth client id.
is_client(id) if {
	id != ""
	input.client.id == id
}

# ---------------------------------------------------------------------------
# When. Times are unix seconds (numbers) or RFC 3339 strings such as
# "2025-03-01T00:00:00Z". A time that parses as neither matches nothing.

# now is the time of the request in unix seconds.
now := input.now

# seconds(t) is t in unix seconds.
seconds(t) := t if is_number(t)

seconds(t) := time.parse_rfc3339_ns(t) / 1000000000 if is_string(t)

# not_before(t) is true from t on (inclusive).
not_before(t) if input.now >= seconds(t)

# not_after(t) is true until t (inclusive).
not_after(t) if input.now <= seconds(t)

# within(start, end) is true from start to end, both inclusive.
within(start, end) if {
	not_before(start)
	not_after(end)
}

# ---------------------------------------------------------------------------
# Scopes.

# requested is the set of scopes the client asked for.
requested := {s | some s in input.scopes}

# available is the set of scopes the resource offers.
available := {s | some s in input.resource.scopes}

# read_verbs are the last words of the scopes that only read: "read",
# "photo:view", "https://rs.example/scopes/lab.download".
read_verbs := {
	"read", "readonly", "read-only", "read_only", "view", "get", "list",
	"search", "download", "head",
}

# is_read_scope(scope) is true when the last word of scope (after the last ":",
# "/", "." or "#") is one of read_verbs, ignoring case.
is_read_scope(scope) if {
	words := regex.split(`[:/.#]`, lower(scope))
	words[count(words) - 1] in read_verbs
}

# read_only(scopes) is the subset of scopes that only read.
read_only(scopes) := {s | some s in scopes; is_read_scope(s)}

# read_scopes is the subset of the resource's scopes that only read.
read_scopes := read_only(available)

# ---------------------------------------------------------------------------
# Console shares (input.shares). The engine always adds shared_scopes to what
# an owner's rules allow, so console shares work for owners who wrote no rules.

# shared_scopes is the set of scopes granted by the console shares that match
# the requesting party (by subject or verified e-mail), have not expired and,
# when they name a client, match the client.
shared_scopes contains scope if {
	some share in party_shares
	share_live(share)
	share_client_matches(share)
	some scope in share.scopes
	is_string(scope)
}

# party_shares are the console shares naming the requesting party, by subject
# or by verified e-mail address, whether or not they apply.
party_shares contains share if {
	some share in input.shares
	share.subject == subject
	subject != ""
}

party_shares contains share if {
	some share in input.shares
	is_string(share.email)
	lower(trim_space(share.email)) == email
}

# share_live(share) is true when share has not expired. A share without
# expires_at (or with 0 or null) does not expire.
share_live(share) if object.get(share, "expires_at", null) in {0, null}

share_live(share) if {
	is_number(share.expires_at)
	input.now < share.expires_at
}

# share_client_matches(share) is true when share names no client, or the
# client of the request.
share_client_matches(share) if object.get(share, "client", "") in {"", null}

share_client_matches(share) if is_client(object.get(share, "client", ""))

# ---------------------------------------------------------------------------
# need_info hints for required_claims.

# id_token_format is the claim token format of an OpenID Connect ID token.
id_token_format := "http://openid.net/specs/openid-connect-core-1_0.html#IDToken"

# email_claim asks for the requesting party's e-mail address in an ID token.
email_claim := {
	"name": "email",
	"friendly_name": "E-mail address",
	"claim_token_format": [id_token_format],
}

# groups_claim asks for the requesting party's groups in an ID token.
groups_claim := {
	"name": "groups",
	"friendly_name": "Groups",
	"claim_token_format": [id_token_format],
}
