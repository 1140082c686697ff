//go:build race

package fs_test

// raceEnabled: the race detector slows byte loops tenfold; the heaviest
// tests check a sample instead.
const raceEnabled = true
