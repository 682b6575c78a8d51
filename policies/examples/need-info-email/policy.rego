# Friends of mine, known by e-mail address, may read my notes. When the client
# sent no verified e-mail address, the AS answers need_info and asks for one
# in an ID token.
package uma.share

import data.uma.lib

friends := {"ana@example.org", "bo@example.org"}

allow contains scope if {
	lib.email in friends
	some scope in lib.read_scopes
}

required_claims contains lib.email_claim if not lib.email
