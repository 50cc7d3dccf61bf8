//go:build linux && race

package pagecache

// raceEnabled reports a build with the race detector (sync.Pool then
// drops entries at random, so pooled paths allocate).
const raceEnabled = true
