# {{.Owner}}: everyone at example.com may read my records, except a former
# colleague; requests from a banned address are refused.
package uma.share

import data.uma.lib

allow contains scope if {
	input.resource.type == "urn:example:record"
	lib.in_email_domain("example.com")
	some scope in {"read", "comment"}
}

deny contains scope if {
	lib.is_person("mallory-{{.N}}@example.com")
	some scope in lib.available
}

deny contains scope if {
	input.request.ip == "192.0.2.{{.Octet}}"
	some scope in lib.available
}
