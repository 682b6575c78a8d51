# My insurer may read my claim files during the first half of 2025 only,
# while my claim is being processed.
package uma.share

import data.uma.lib

allow contains "read" if {
	input.resource.type == "claim-file"
	lib.is_person("claims@insurer.example")
	lib.within("2025-01-01T00:00:00Z", "2025-06-30T23:59:59Z")
}
