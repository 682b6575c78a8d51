# My family may read my shared calendar. When one of them asks for more (to
# add or change an event), the AS asks me: request_submitted, and a pending
# request in my console.
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
