//go:build race

package baseline

// raceEnabled: the race detector changes allocation counts.
const raceEnabled = true
