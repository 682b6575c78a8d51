package uma.system_test

import data.uma.system

request := {
	"resource": {"id": "r", "scopes": ["read", "admin"]},
	"scopes": ["read"],
	"client": {"id": "legacy-sync"},
	"now": 1735689600,
}

test_blocked_client_denied_everything if {
	system.deny == {"read", "admin"} with input as request
}

test_other_clients_lose_only_admin if {
	system.deny == {"admin"} with input as object.union(request, {"client": {"id": "web"}})
}
