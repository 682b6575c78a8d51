package uma.share_test

import data.uma.share

calendar := {
	"resource": {"id": "cal", "type": "calendar", "scopes": ["calendar:read", "calendar:write"]},
	"scopes": ["calendar:read", "calendar:write"],
	"claims": {"groups": ["family"]},
	"now": 1735689600,
}

test_family_reads if {
	share.allow == {"calendar:read"} with input as calendar
}

test_family_write_goes_to_the_owner if {
	share.ask_owner == {"calendar:write"} with input as calendar
}

test_only_read_asked_nothing_to_approve if {
	count(share.ask_owner) == 0 with input as object.union(calendar, {"scopes": ["calendar:read"]})
}

test_strangers_are_not_even_asked_about if {
	count(share.ask_owner) == 0 with input as object.remove(calendar, ["claims"])
	count(share.allow) == 0 with input as object.remove(calendar, ["claims"])
}
