# Everyone in my "family" group (the "groups" claim of their ID token) may
# read anything of mine, but not change it.
package uma.share

import data.uma.lib

allow contains scope if {
	lib.in_group("family")
	some scope in lib.read_scopes
}
