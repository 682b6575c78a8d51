# Everyone at acme.example (verified company e-mail address) may read and
# comment on my documents, except Mallory, who left the team.
package uma.share

import data.uma.lib

allow contains scope if {
	input.resource.type == "document"
	lib.in_email_domain("acme.example")
	some scope in {"read", "comment"}
}

deny contains scope if {
	lib.is_person("mallory@acme.example")
	some scope in lib.available
}
