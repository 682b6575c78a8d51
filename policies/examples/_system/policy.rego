# System rules of the operator: they apply to every owner and can only take
# scopes away. No client on the blocklist gets anything, and the "admin" scope
# can never be shared.
package uma.system

import data.uma.lib

blocked_clients := {"legacy-sync"}

deny contains scope if {
	input.client.id in blocked_clients
	some scope in lib.available
}

deny contains "admin"
