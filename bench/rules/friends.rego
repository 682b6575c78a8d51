# {{.Owner}}: friends known by e-mail address may read my records; without a
# verified address the AS asks for one.
package uma.share

import data.uma.lib

friends := {"bob@example.com", "friend-{{.N}}@example.org", "other-{{.N}}@example.net"}

allow contains scope if {
	lib.email in friends
	some scope in lib.read_scopes
}

required_claims contains lib.email_claim if not lib.email
