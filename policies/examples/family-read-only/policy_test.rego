package uma.share_test

import data.uma.share

album := {"id": "a1", "type": "photo-album", "scopes": ["photo:view", "photo:download", "photo:edit", "photo:delete"]}

cousin := {
	"resource": album,
	"scopes": ["photo:view", "photo:edit"],
	"requesting_party": {"sub": "cousin-1"},
	"claims": {"groups": ["friends", "family"]},
	"now": 1735689600,
}

test_family_views_and_downloads if {
	share.allow == {"photo:view", "photo:download"} with input as cousin
}

test_family_cannot_edit if {
	not "photo:edit" in share.allow with input as cousin
}

test_single_string_group_claim if {
	share.allow == {"photo:view", "photo:download"} with input as object.union(cousin, {"claims": {"groups": "family"}})
}

test_not_family if {
	count(share.allow) == 0 with input as object.union(cousin, {"claims": {"groups": ["friends"]}})
}

test_no_groups_claim if {
	count(share.allow) == 0 with input as object.remove(cousin, ["claims"])
}
