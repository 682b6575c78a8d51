# {{.Owner}}: my coach may read my records, through one application only.
package uma.share

import data.uma.lib

allow contains scope if {
	lib.is_person("bob@example.com")
	lib.is_client("{{.Client}}")
	some scope in lib.read_scopes
}
