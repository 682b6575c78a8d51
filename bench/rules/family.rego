# {{.Owner}}: my family may read my records; asking for more asks me.
package uma.share

import data.uma.lib

allow contains scope if {
	lib.in_group("family")
	some scope in lib.read_scopes
}

ask_owner contains scope if {
	lib.in_group("family")
	some scope in lib.requested
	not lib.is_read_scope(scope)
}
