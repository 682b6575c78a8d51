//go:build unix && race

package integration

// raceEnabled: the tests run with -race, so the binary is built with it.
const raceEnabled = true
