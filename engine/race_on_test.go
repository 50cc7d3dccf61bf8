//go:build linux && race

package engine

// raceEnabled reports a build with the race detector, which makes the
// exerciser's operations about ten times slower.
const raceEnabled = true
