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
	"strings"
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
	msg := p.Err.Error()
	// ag.Verify's errors already begin with their AG.
	if prefix := fmt.Sprintf("ag %d: ", p.AG); p.AG < 0 || strings.HasPrefix(msg, prefix) {
		return msg
	}
	return fmt.Sprintf("ag %d: %s", p.AG, msg)
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
	// Inodes counts what the inode phase checked.
	Inodes InodeStats
}

// Clean reports whether no problem was found.
func (r *Report) Clean() bool { return len(r.Problems) == 0 }

// Check verifies the filesystem on dev without writing to it: the
// superblock and its copies, the log, every AG's header, bitmaps and
// counters (the AG phase), every used inode with its data fork and its
// extent, directory and attribute trees (the inode phase, inodes.go), and
// the directory tree from the root: entries, parent pointers, link counts
// and reachability (namespace.go). A dirty log is replayed into an in-memory overlay first, so the
// check sees the filesystem as the next mount would. The error is for
// failures to check at all (I/O errors, no superblock to be found);
// damage is reported in Report.Problems.
func Check(dev disk.Device) (*Report, error) {
	r, _, err := check(dev, false)
	return r, err
}

// scanned is what a check learnt of the filesystem, for repair.
type scanned struct {
	sb  *layout.Superblock
	ags []*agInodes
	all map[uint64]*inodeInfo
}

// check is Check; with collect it also gathers what repair needs, and
// returns it when the inode phase could run.
func check(dev disk.Device, collect bool) (*Report, *scanned, error) {
	r := &Report{}
	sb, from, err := findSuperblock(dev, r)
	if err != nil {
		return r, nil, err
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
	eachAG(sb.AGCount, func(g uint32) { problems[g] = ag.Verify(ov, sb, g) })
	for g, errs := range problems {
		for _, e := range errs {
			r.add(g, e)
		}
	}
	r.FreeBlocks, r.FreeInodes = freeCounts(ov, sb)

	// The inodes and their trees, then the namespace, read through a
	// read-only log over the replayed overlay.
	log, err := openLog(ov, region, sb.Seed())
	if err != nil {
		r.add(-1, fmt.Errorf("inodes not checked: the log cannot be opened over the replayed image: %w", err))
		return r, nil, nil
	}
	defer log.Close()
	res := make([]*agInodes, sb.AGCount)
	eachAG(sb.AGCount, func(g uint32) { res[g] = checkInodes(log, ov, sb, g, collect) })
	ns := &namespace{g: &sb.Geometry, ags: res, all: map[uint64]*inodeInfo{}, add: r.add}
	for g, a := range res {
		for _, e := range a.errs {
			r.add(g, e)
		}
		for ino, in := range a.inodes {
			ns.all[ino] = in
		}
		ns.incomplete = ns.incomplete || a.incomplete
		r.Inodes.add(&a.stats)
	}
	ns.run()
	return r, &scanned{sb: sb, ags: res, all: ns.all}, nil
}

// eachAG runs fn for every AG, AGs in parallel.
func eachAG(n uint32, fn func(g uint32)) {
	var wg sync.WaitGroup
	next := make(chan uint32)
	for range min(runtime.GOMAXPROCS(0), int(n)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for g := range next {
				fn(g)
			}
		}()
	}
	for g := uint32(0); g < n; g++ {
		next <- g
	}
	close(next)
	wg.Wait()
}

// openLog opens a read-only log over the overlay, which Recover has
// already replayed (so the log is clean and empty, and opening it replays
// nothing). When the log could not be recovered (reported already), an
// empty log is formatted into the overlay, in memory only, so that the
// home blocks can still be read as they are.
func openLog(ov *disk.Overlay, region wal.Region, seed uint64) (*wal.Log, error) {
	log, _, err := wal.Open(ov, region, seed, wal.Options{ReadOnly: true})
	if err == nil {
		return log, nil
	}
	if ferr := wal.Format(ov, region, seed); ferr != nil {
		return nil, err
	}
	log, _, err = wal.Open(ov, region, seed, wal.Options{ReadOnly: true})
	return log, err
}

func (s *InodeStats) add(o *InodeStats) {
	s.Used += o.Used
	s.Dirs += o.Dirs
	s.Files += o.Files
	s.Symlinks += o.Symlinks
	s.Special += o.Special
	s.Orphans += o.Orphans
	s.Entries += o.Entries
	s.ExtentTrees += o.ExtentTrees
	s.XattrTrees += o.XattrTrees
	s.MaxIndexDepth = max(s.MaxIndexDepth, o.MaxIndexDepth)
	s.MaxExtentTree = max(s.MaxExtentTree, o.MaxExtentTree)
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
