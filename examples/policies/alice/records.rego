# Alice's sharing rules for the demo (Caddyfile.example, examples/demo.sh).
#
# Alice shares her records read-only with bob@example.com. When the client
# sent no verified e-mail address yet, the authorization server answers
# need_info and asks for one in an ID token.
#
# The protected API sends request context with each permission ticket
# (context ip {http.request.remote.host} in Caddyfile.example): rules can
# read it as input.request.ip.
package uma.share

import data.uma.lib

allow contains scope if {
	input.resource.type == "urn:example:record"
	lib.is_email("bob@example.com")
	some scope in lib.read_scopes
}

required_claims contains lib.email_claim if not lib.email
