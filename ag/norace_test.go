//go:build !race

package ag

const raceEnabled = false
