package uma.share_test

import data.uma.share

insurer := {
	"resource": {"id": "c1", "type": "claim-file", "scopes": ["read", "write"]},
	"scopes": ["read"],
	"claims": {"email": "claims@insurer.example"},
	"now": 1740787200, # 2025-03-01T00:00:00Z
}

test_insurer_reads_during_the_window if {
	share.allow == {"read"} with input as insurer
}

test_window_start_is_inclusive if {
	share.allow == {"read"} with input as object.union(insurer, {"now": 1735689600}) # 2025-01-01T00:00:00Z
}

test_before_the_window if {
	count(share.allow) == 0 with input as object.union(insurer, {"now": 1735689599})
}

test_after_the_window if {
	count(share.allow) == 0 with input as object.union(insurer, {"now": 1751328000}) # 2025-07-01T00:00:00Z
}

test_insurer_cannot_write if {
	not "write" in share.allow with input as insurer
}
