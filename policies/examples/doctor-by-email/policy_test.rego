package uma.share_test

import data.uma.share

report := {"id": "r1", "type": "lab-report", "scopes": ["read", "download", "write", "delete"]}

doctor := {
	"resource": report,
	"scopes": ["read"],
	"requesting_party": {"sub": "u-42", "iss": "https://idp.example"},
	"claims": {"email": "Dr.Rivera@Clinic.example", "email_verified": true},
	"now": 1735689600,
}

test_doctor_reads_and_downloads if {
	share.allow == {"read", "download"} with input as doctor
}

test_doctor_cannot_write if {
	not "write" in share.allow with input as doctor
}

test_unverified_email_is_not_the_doctor if {
	count(share.allow) == 0 with input as object.union(doctor, {"claims": {"email": "dr.rivera@clinic.example", "email_verified": false}})
}

test_someone_else_gets_nothing if {
	count(share.allow) == 0 with input as object.union(doctor, {"claims": {"email": "eve@example.org"}})
}

test_other_resource_types_are_not_shared if {
	count(share.allow) == 0 with input as object.union(doctor, {"resource": object.union(report, {"type": "diary"})})
}
