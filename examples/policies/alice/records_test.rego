# opa test policies/lib examples/policies/alice
package uma.share_test

import data.uma.share

record := {"id": "r1", "name": "/api/records/alice/1", "type": "urn:example:record", "owner": "alice", "scopes": ["read", "write", "delete"]}

test_bob_reads if {
	share.allow == {"read"} with input as {"resource": record, "scopes": ["read"], "claims": {"email": "bob@example.com", "email_verified": true}, "request": {"ip": "127.0.0.1"}}
}

test_bob_does_not_write if {
	not "write" in share.allow with input as {"resource": record, "scopes": ["write"], "claims": {"email": "bob@example.com", "email_verified": true}}
}

test_unknown_email_gets_nothing if {
	count(share.allow) == 0 with input as {"resource": record, "scopes": ["read"], "claims": {"email": "eve@example.com", "email_verified": true}}
}

test_no_email_asks_for_one if {
	count(share.required_claims) == 1 with input as {"resource": record, "scopes": ["read"], "claims": {}}
}
