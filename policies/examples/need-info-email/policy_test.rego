package uma.share_test

import data.uma.lib
import data.uma.share

notes := {
	"resource": {"id": "n1", "type": "notes", "scopes": ["read", "write"]},
	"scopes": ["read"],
	"requesting_party": {"sub": "someone"},
	"claims": {},
	"now": 1735689600,
}

test_no_email_asks_for_one if {
	count(share.allow) == 0 with input as notes
	share.required_claims == {{
		"name": "email",
		"friendly_name": "E-mail address",
		"claim_token_format": [lib.id_token_format],
	}} with input as notes
}

test_unverified_email_asks_for_one if {
	count(share.required_claims) == 1 with input as object.union(notes, {"claims": {"email": "ana@example.org", "email_verified": false}})
}

test_friend_reads if {
	share.allow == {"read"} with input as object.union(notes, {"claims": {"email": "Ana@example.org"}})
	count(share.required_claims) == 0 with input as object.union(notes, {"claims": {"email": "ana@example.org"}})
}

test_stranger_gets_nothing_and_no_hint if {
	count(share.allow) == 0 with input as object.union(notes, {"claims": {"email": "eve@example.org"}})
	count(share.required_claims) == 0 with input as object.union(notes, {"claims": {"email": "eve@example.org"}})
}
