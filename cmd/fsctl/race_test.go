//go:build linux && race

package main

// raceEnabled: the fsctl binary under test is built with -race too, which
// reuses the packages this test binary was compiled from.
const raceEnabled = true
