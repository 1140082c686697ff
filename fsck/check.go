// Package fsck checks an agfs filesystem offline. Check is the read-only
// verifier used by fsck.agfs -n and by the tests after every run, in the
// manner of bbolt's Tx.Check: it reads the device directly and reports
// every problem it finds, each naming where it is.
package fsck

import (
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"

	"agfs/ag"
	"agfs/disk"
	"agfs/layout"
	"agfs/wal"
)

// Problem is one thing found wrong.
type Problem struct {
	AG  int   // the AG concerned, or -1 for the whole filesystem
	Err error // names the block and what is wrong
}

func (p Problem) String() string {
	if p.AG < 0 {
		return p.Err.Error()
	}
	return fmt.Sprintf("ag %d: %v", p.AG, p.Err)
}

// Report is what Check found.
type Report struct {
	Super *layout.Superblock
	// SuperFrom is the AG whose superblock copy described the filesystem:
	// 0 when the primary was good.
	SuperFrom uint32
	// Log is what replaying the log in memory did; a non-zero count of
	// replayed transactions means the filesystem was not unmounted cleanly.
	Log        *wal.Report
	Problems   []Problem
	FreeBlocks uint64
	FreeInodes uint64
}

// Clean reports whether no problem was found.
func (r *Report) Clean() bool { return len(r.Problems) == 0 }

// Check verifies the filesystem on dev without writing to it: the
// superblock and its copies, the log, and every AG's header, bitmaps and
// counters. A dirty log is replayed into an in-memory overlay first, so the
// check sees the filesystem as the next mount would. The error is for
// failures to check at all (I/O errors, no superblock to be found);
// damage is reported in Report.Problems.
func Check(dev disk.Device) (*Report, error) {
	r := &Report{}
	sb, from, err := findSuperblock(dev, r)
	if err != nil {
		return r, err
	}
	r.Super, r.SuperFrom = sb, from

	region := wal.Region{BlockSize: int(sb.BlockSize), Start: sb.LogStart, Blocks: sb.LogBlocks}
	for _, err := range wal.VerifySuperblocks(dev, region, sb.Seed()) {
		r.add(-1, err)
	}
	ov := disk.NewOverlay(dev)
	defer ov.Close()
	rep, err := wal.Recover(ov, region, sb.Seed())
	if err != nil {
		r.add(-1, fmt.Errorf("log: %w", err))
		// Check the home blocks as they are: the problems found there
		// are real whatever the log holds.
		ov.Close()
		ov = disk.NewOverlay(dev)
	}
	r.Log = rep

	problems := make([][]error, sb.AGCount)
	var wg sync.WaitGroup
	next := make(chan uint32)
	for range min(runtime.GOMAXPROCS(0), int(sb.AGCount)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for g := range next {
				problems[g] = ag.Verify(ov, sb, g)
			}
		}()
	}
	for g := uint32(0); g < sb.AGCount; g++ {
		next <- g
	}
	close(next)
	wg.Wait()
	for g, errs := range problems {
		for _, e := range errs {
			r.add(g, e)
		}
	}
	r.FreeBlocks, r.FreeInodes = freeCounts(ov, sb)
	return r, nil
}

func (r *Report) add(ag int, err error) { r.Problems = append(r.Problems, Problem{AG: ag, Err: err}) }

// findSuperblock reads the primary superblock, or when it is damaged the
// first good copy it can locate, and reports the damage.
func findSuperblock(dev disk.Device, r *Report) (*layout.Superblock, uint32, error) {
	b := make([]byte, layout.MaxBlockSize)
	n, err := dev.ReadAt(b[:min(int64(len(b)), dev.Size())], 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, 0, fmt.Errorf("read superblock: %w", err)
	}
	sb, perr := layout.DecodeSuperblock(b[:n], 0)
	if perr == nil {
		return sb, 0, nil
	}
	if errors.Is(perr, layout.ErrUnsupported) {
		return nil, 0, perr
	}
	if what := layout.Identify(b[:n]); what != "" && what != "an agfs filesystem" {
		return nil, 0, fmt.Errorf("not an agfs filesystem: the device holds %s", what)
	}
	r.add(-1, fmt.Errorf("primary superblock: %w", perr))
	for _, loc := range copyCandidates(dev.Size()) {
		blk := make([]byte, loc.blockSize)
		if _, err := dev.ReadAt(blk, loc.off); err != nil {
			continue
		}
		if sb, err := layout.DecodeSuperblock(blk, loc.ag); err == nil {
			return sb, loc.ag, nil
		}
	}
	return nil, 0, fmt.Errorf("no valid superblock: the primary is damaged (%v) and no copy was found where the default geometries put them", perr)
}

type copyLoc struct {
	ag        uint32
	blockSize uint32
	off       int64
}

// copyCandidates lists where mkfs's default geometry would have put the
// superblock copies of AGs 1 and 2 for each block size: with the primary
// lost, the geometry is unknown, and these are the likely places.
func copyCandidates(devBytes int64) []copyLoc {
	var locs []copyLoc
	for bs := uint32(layout.MinBlockSize); bs <= layout.MaxBlockSize; bs <<= 1 {
		locs = append(locs, candidatesFor(devBytes, bs)...)
	}
	return locs
}

func candidatesFor(devBytes int64, bs uint32) []copyLoc {
	g, err := layout.NewGeometry(layout.Params{DeviceBytes: devBytes, BlockSize: bs})
	if err != nil {
		return nil
	}
	var locs []copyLoc
	for a := uint32(1); a < min(g.AGCount, 3); a++ {
		locs = append(locs, copyLoc{ag: a, blockSize: bs, off: int64(g.SuperBlock(a)) * int64(bs)})
	}
	return locs
}

// freeCounts sums the AG headers' counters for the summary line; headers
// that do not verify have been reported already and count as zero.
func freeCounts(dev disk.Device, sb *layout.Superblock) (blocks, inodes uint64) {
	b := make([]byte, sb.BlockSize)
	for g := uint32(0); g < sb.AGCount; g++ {
		if _, err := dev.ReadAt(b, int64(sb.AGHeaderBlock(g))*int64(sb.BlockSize)); err != nil {
			continue
		}
		if h, err := layout.DecodeAGHeader(b, &sb.Geometry, sb.Seed(), g); err == nil {
			blocks += h.FreeBlocks
			inodes += h.FreeInodes
		}
	}
	return blocks, inodes
}
