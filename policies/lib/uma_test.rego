package uma.lib_test

import data.uma.lib

base := {
	"resource": {"id": "r1", "owner": "alice", "scopes": ["read", "photo:view", "https://rs.example/scopes/lab.download", "write"]},
	"scopes": ["read", "write"],
	"client": {"id": "app"},
	"requesting_party": {"sub": "bob", "iss": "https://idp.example"},
	"claims": {"email": " Bob@Example.org ", "groups": ["/family", "friends"]},
	"shares": [],
	"now": 1735689600,
}

with_claims(claims) := object.union(object.remove(base, ["claims"]), {"claims": claims})

with_shares(shares) := object.union(base, {"shares": shares})

test_subject if {
	lib.is_subject("bob") with input as base
	not lib.is_subject("alice") with input as base
	not lib.is_subject("") with input as object.union(base, {"requesting_party": {"sub": ""}})
	lib.is_subject_at("bob", "https://idp.example") with input as base
	not lib.is_subject_at("bob", "https://other.example") with input as base
}

test_email_is_trimmed_and_lower_cased if {
	lib.email == "bob@example.org" with input as base
	lib.is_email("BOB@example.org") with input as base
}

test_email_verified_is_respected if {
	lib.is_email("bob@example.org") with input as with_claims({"email": "bob@example.org", "email_verified": true})
	lib.is_email("bob@example.org") with input as with_claims({"email": "bob@example.org", "email_verified": "true"})
	not lib.is_email("bob@example.org") with input as with_claims({"email": "bob@example.org", "email_verified": false})
	not lib.is_email("bob@example.org") with input as with_claims({"email": "bob@example.org", "email_verified": "false"})
	not lib.is_email("bob@example.org") with input as with_claims({"email": "bob@example.org", "email_verified": null})
}

test_is_person if {
	lib.is_person("bob") with input as base
	lib.is_person("bob@example.org") with input as base
	not lib.is_person("carol@example.org") with input as base
	not lib.is_person("") with input as with_claims({})
}

test_email_domain if {
	lib.in_email_domain("example.org") with input as base
	lib.in_email_domain("@Example.org") with input as base
	not lib.in_email_domain("sub.example.org") with input as base
	not lib.in_email_domain("org") with input as base
	not lib.in_email_domain("") with input as base
	not lib.in_email_domain("example.org") with input as with_claims({"email": "bob@example.org", "email_verified": false})
	not lib.in_email_domain("example.org") with input as with_claims({"email": "a@b@example.org"})
}

test_groups if {
	lib.in_group("/family") with input as base
	lib.in_group("friends") with input as base
	not lib.in_group("family") with input as base
	lib.in_group("solo") with input as with_claims({"groups": "solo"})
	not lib.in_group("x") with input as with_claims({})
	lib.claim_includes("roles", "doctor") with input as with_claims({"roles": ["nurse", "doctor"]})
}

test_client if {
	lib.is_client("app") with input as base
	not lib.is_client("other") with input as base
	not lib.is_client("") with input as object.union(base, {"client": {"id": ""}})
}

test_time_window if {
	lib.not_before(1735689600) with input as base
	lib.not_before("2025-01-01T00:00:00Z") with input as base
	not lib.not_before("2025-01-01T00:00:01Z") with input as base
	lib.not_after("2025-01-01T00:00:00Z") with input as base
	not lib.not_after(1735689599) with input as base
	lib.within("2024-12-31T00:00:00+01:00", 1735689600) with input as base
	not lib.within("2025-02-01T00:00:00Z", "2025-03-01T00:00:00Z") with input as base
	not lib.not_before("yesterday") with input as base
}

test_read_scopes if {
	lib.read_scopes == {"read", "photo:view", "https://rs.example/scopes/lab.download"} with input as base
	lib.read_only(["Read", "edit", "album:LIST", "docs#search"]) == {"Read", "album:LIST", "docs#search"}
	not lib.is_read_scope("reader")
	not lib.is_read_scope("write")
}

test_requested_and_available if {
	lib.requested == {"read", "write"} with input as base
	count(lib.available) == 4 with input as base
}

test_shares_by_subject if {
	lib.shared_scopes == {"read"} with input as with_shares([{"subject": "bob", "scopes": ["read"]}])
}

test_shares_by_email if {
	lib.shared_scopes == {"read", "write"} with input as with_shares([{"email": "BOB@example.org", "scopes": ["read", "write"]}])
}

test_shares_unverified_email_ignored if {
	count(lib.shared_scopes) == 0 with input as object.union(
		with_shares([{"email": "bob@example.org", "scopes": ["read"]}]),
		{"claims": {"email": "bob@example.org", "email_verified": false}},
	)
}

test_shares_for_someone_else_ignored if {
	count(lib.shared_scopes) == 0 with input as with_shares([{"subject": "carol", "email": "carol@example.org", "scopes": ["read"]}])
	count(lib.shared_scopes) == 0 with input as with_shares([{"subject": "", "email": "", "scopes": ["read"]}])
}

test_shares_expiry if {
	lib.shared_scopes == {"read"} with input as with_shares([{"subject": "bob", "scopes": ["read"], "expires_at": 1735689601}])
	count(lib.shared_scopes) == 0 with input as with_shares([{"subject": "bob", "scopes": ["read"], "expires_at": 1735689600}])
	lib.shared_scopes == {"read"} with input as with_shares([{"subject": "bob", "scopes": ["read"], "expires_at": 0}])
	count(lib.shared_scopes) == 0 with input as with_shares([{"subject": "bob", "scopes": ["read"], "expires_at": "never"}])
}

test_shares_client_restriction if {
	lib.shared_scopes == {"read"} with input as with_shares([{"subject": "bob", "scopes": ["read"], "client": "app"}])
	count(lib.shared_scopes) == 0 with input as with_shares([{"subject": "bob", "scopes": ["read"], "client": "other"}])
	lib.shared_scopes == {"read"} with input as with_shares([{"subject": "bob", "scopes": ["read"], "client": ""}])
}

test_shares_union if {
	lib.shared_scopes == {"read", "write"} with input as with_shares([
		{"subject": "bob", "scopes": ["read"]},
		{"email": "bob@example.org", "scopes": ["write"]},
		{"subject": "bob", "scopes": ["delete"], "expires_at": 1},
	])
}
