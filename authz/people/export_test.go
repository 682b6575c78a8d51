package people

// Hooks for the tests in package people_test. This file is compiled only
// with the tests.
const (
	SessionCookie      = sessionCookie
	NSSession          = nsSession
	MaxLoginFailures   = maxLoginFailures
	LoginFailureWindow = loginFailureWindow
)
