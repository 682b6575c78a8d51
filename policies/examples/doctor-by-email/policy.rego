# A patient shares her lab reports with her doctor, known by e-mail address:
# the doctor may read and download them, nothing more.
package uma.share

import data.uma.lib

allow contains scope if {
	input.resource.type == "lab-report"
	lib.is_person("dr.rivera@clinic.example")
	some scope in lib.read_scopes
}
