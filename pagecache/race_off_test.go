//go:build linux && !race

package pagecache

const raceEnabled = false
