# {{.Owner}}: my doctor may read my records; my insurer may read them while
# a claim is processed.
package uma.share

import data.uma.lib

allow contains scope if {
	input.resource.type == "urn:example:record"
	lib.is_person("bob@example.com")
	some scope in lib.read_scopes
}

allow contains "read" if {
	lib.is_person("claims-{{.N}}@insurer.example")
	lib.within("2025-01-01T00:00:00Z", "2099-12-31T23:59:59Z")
}
