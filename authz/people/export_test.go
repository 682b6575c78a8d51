package people

// Hooks for the tests in package people_test. This file is compiled only
// with the tests.
const (
	SessionCookie      = sessionCookie
	NSSession          = nsSession
	MaxNameFailures    = maxNameFailures
	MaxAddressFailures = maxAddressFailures
	FirstLoginDelay    = firstLoginDelay
	MaxLoginDelay      = maxLoginDelay
)

// OnPasswordCheck makes s call f with the bcrypt cost of every password
// comparison it runs.
func OnPasswordCheck(s *Site, f func(cost int)) { s.passwordChecked = f }
