# My fitness coach may read my activity data, but only through the CoachApp
# client: not through any other app that she might authorize.
package uma.share

import data.uma.lib

allow contains scope if {
	lib.is_person("coach@fit.example")
	lib.is_client("coach-app")
	some scope in lib.read_scopes
}
