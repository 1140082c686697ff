//go:build race

package ag

// raceEnabled relaxes timing checks: the race detector slows code down
// several times.
const raceEnabled = true
