package uma.share_test

import data.uma.share

doc := {"id": "d1", "type": "document", "scopes": ["read", "comment", "edit"]}

colleague := {
	"resource": doc,
	"scopes": ["read"],
	"claims": {"email": "bob@acme.example", "email_verified": true},
	"now": 1735689600,
}

test_colleague_reads_and_comments if {
	share.allow == {"read", "comment"} with input as colleague
}

test_colleague_cannot_edit if {
	not "edit" in share.allow with input as colleague
}

test_subdomain_is_not_the_domain if {
	count(share.allow) == 0 with input as object.union(colleague, {"claims": {"email": "bob@mail.acme.example"}})
}

test_lookalike_domain if {
	count(share.allow) == 0 with input as object.union(colleague, {"claims": {"email": "bob@evilacme.example"}})
}

test_unverified_email if {
	count(share.allow) == 0 with input as object.union(colleague, {"claims": {"email": "bob@acme.example", "email_verified": "false"}})
}

test_mallory_is_denied_everything if {
	share.deny == {"read", "comment", "edit"} with input as object.union(colleague, {"claims": {"email": "mallory@acme.example"}})
}

test_bob_is_denied_nothing if {
	count(share.deny) == 0 with input as colleague
}
