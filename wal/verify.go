package wal

import (
	"fmt"

	"agfs/disk"
)

// VerifySuperblocks checks both copies of the log superblock and returns
// one error for each that does not verify. Recovery survives the loss of
// either copy by using the other, so a damaged copy is silent there; a
// checker calls this to report it.
func VerifySuperblocks(dev disk.Device, r Region, seed uint64) []error {
	g, err := newGeom(dev, r)
	if err != nil {
		return []error{err}
	}
	var errs []error
	b := make([]byte, g.bs)
	for blk := g.Start; blk < g.Start+2; blk++ {
		if _, err := dev.ReadAt(b, int64(blk*g.bs)); err != nil {
			errs = append(errs, fmt.Errorf("log superblock %d: read: %w", blk-g.Start, err))
			continue
		}
		if _, err := decodeSuper(b, &g, blk, seed); err != nil {
			errs = append(errs, fmt.Errorf("log superblock %d: %w", blk-g.Start, err))
		}
	}
	return errs
}
