//go:build unix && !race

package integration

// raceEnabled: the tests run without -race.
const raceEnabled = false
