package uma.share_test

import data.uma.share

coach := {
	"resource": {"id": "act-1", "type": "activity", "scopes": ["activity.read", "activity.write"]},
	"scopes": ["activity.read"],
	"client": {"id": "coach-app"},
	"requesting_party": {"sub": "coach-7"},
	"claims": {"email": "coach@fit.example", "email_verified": true},
	"now": 1735689600,
}

test_coach_through_coach_app if {
	share.allow == {"activity.read"} with input as coach
}

test_coach_through_another_app if {
	count(share.allow) == 0 with input as object.union(coach, {"client": {"id": "spreadsheet-sync"}})
}

test_someone_else_through_coach_app if {
	count(share.allow) == 0 with input as object.union(coach, {"claims": {"email": "eve@fit.example"}})
}
