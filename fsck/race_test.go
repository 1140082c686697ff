//go:build race

package fsck

// raceEnabled: the race detector slows the image builders; tests build smaller images.
const raceEnabled = true
