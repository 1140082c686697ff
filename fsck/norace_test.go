//go:build !race

package fsck

const raceEnabled = false
