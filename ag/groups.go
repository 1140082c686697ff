package ag

import (
	"errors"
	"fmt"
	"sync"
	"syscall"
	"time"

	"agfs/layout"
	"agfs/wal"
)

// Groups is every AG of a filesystem, and the policies that choose among
// them. Its methods follow the AG lock order (lock.go): an AG below one the
// transaction already holds is only tried, never waited for, and skipped
// when another transaction holds it.
type Groups struct {
	sb  *layout.Superblock
	g   *layout.Geometry
	ags []*AG
}

// OpenGroups opens every AG of the filesystem sb describes (in parallel).
func OpenGroups(log *wal.Log, sb *layout.Superblock) (*Groups, error) {
	gs := &Groups{sb: sb, g: &sb.Geometry, ags: make([]*AG, sb.AGCount)}
	errs := make([]error, sb.AGCount)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i := range gs.ags {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			gs.ags[i], errs[i] = Open(log, sb, uint32(i))
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return gs, nil
}

// AG returns AG i.
func (gs *Groups) AG(i uint32) *AG { return gs.ags[i] }

// Count is the number of AGs.
func (gs *Groups) Count() uint32 { return uint32(len(gs.ags)) }

// order returns the AG numbers starting at home and wrapping round.
func (gs *Groups) order(home uint32) []uint32 {
	n := uint32(len(gs.ags))
	out := make([]uint32, n)
	for i := range n {
		out[i] = (home + i) % n
	}
	return out
}

// take makes tx hold a, waiting only when that keeps the lock order. It
// reports whether tx holds a, and whether this call took it.
func (gs *Groups) take(tx *wal.Tx, a *AG) (ok, fresh bool, err error) {
	if a.owner.Load() == tx {
		return true, false, nil
	}
	try := false
	if st := stateOf(tx); st != nil && int(a.no) < st.max {
		try = true
	}
	fresh, err = a.acquire(tx, try)
	if err != nil {
		return false, false, err
	}
	return fresh || a.owner.Load() == tx, fresh, nil
}

// AllocBlocks allocates n blocks for tx near goal (an absolute block).
// It tries, in order, each AG starting with goal's and wrapping round:
//
//  1. one extent under policy p (Near/Contiguous around goal in goal's
//     AG, around the start of any other AG);
//  2. unless p is Contiguous, several extents from one AG that has n free
//     blocks (AG.AllocBlocks explains which);
//  3. unless p is Contiguous, extents from several AGs, each giving what it
//     has, in the same order.
//
// AGs whose published counters show too little space are skipped without
// taking their lock. The error wraps syscall.ENOSPC when the filesystem
// cannot provide n blocks; nothing is then allocated.
func (gs *Groups) AllocBlocks(tx *wal.Tx, n, goal uint64, p Policy) ([]Extent, error) {
	if n == 0 || p > Contiguous {
		return nil, einval("allocation of %d blocks with policy %v", n, p)
	}
	home := uint32(0)
	if goal < gs.g.BlockCount {
		home = gs.g.AGOf(goal)
	}
	order := gs.order(home)

	// try runs fn on AG a held by tx; ENOSPC lets the AG go again if this
	// call took it and nothing changed.
	try := func(a *AG, fn func() ([]Extent, error)) ([]Extent, bool, error) {
		ok, fresh, err := gs.take(tx, a)
		if err != nil || !ok {
			return nil, false, err
		}
		ext, err := fn()
		if errors.Is(err, syscall.ENOSPC) {
			if fresh {
				a.unlockUnused(tx)
			}
			return nil, false, nil
		}
		return ext, err == nil, err
	}

	for _, i := range order {
		a := gs.ags[i]
		if a.owner.Load() != tx && (a.pubFree.Load() < n || a.pubLongest.Load() < n) {
			continue
		}
		g := goal
		if i != home {
			g = a.start
		}
		if ext, ok, err := try(a, func() ([]Extent, error) { return a.alloc(tx, n, g, p, false) }); ok || err != nil {
			return ext, err
		}
	}
	if p == Contiguous {
		return nil, fmt.Errorf("no free run of %d blocks in any AG: %w", n, syscall.ENOSPC)
	}
	for _, i := range order {
		a := gs.ags[i]
		if a.owner.Load() != tx && a.pubFree.Load() < n {
			continue
		}
		if ext, ok, err := try(a, func() ([]Extent, error) { return a.alloc(tx, n, a.start, p, true) }); ok || err != nil {
			return ext, err
		}
	}

	// Spread over several AGs.
	var out []Extent
	rem := n
	for _, i := range order {
		if rem == 0 {
			break
		}
		a := gs.ags[i]
		if a.owner.Load() != tx && a.pubFree.Load() == 0 {
			continue
		}
		ext, _, err := try(a, func() ([]Extent, error) {
			// What the AG can give: its free blocks but those this
			// transaction freed (busy until it is durable).
			avail := a.hdr.FreeBlocks
			for _, e := range a.pend {
				avail -= e.n
			}
			m := min(rem, avail)
			if m == 0 {
				return nil, syscall.ENOSPC
			}
			return a.alloc(tx, m, a.start, p, true)
		})
		if err != nil {
			return nil, err
		}
		for _, e := range ext {
			rem -= e.Len
		}
		out = append(out, ext...)
	}
	if rem > 0 {
		// Give back what was taken; the transaction stays usable.
		for _, e := range out {
			if err := gs.FreeBlocks(tx, e.Start, e.Len); err != nil {
				return nil, err
			}
		}
		return nil, fmt.Errorf("%d blocks wanted, %d could be found: %w", n, n-rem, syscall.ENOSPC)
	}
	return out, nil
}

// hold makes tx hold a for a free, which cannot go elsewhere: in lock
// order it waits; below an AG tx holds it tries the lock for about a
// millisecond (never waiting on it, so no deadlock), then gives up with an
// error wrapping ErrLockOrder. Callers that free in several AGs avoid that
// by freeing in increasing AG order.
func (gs *Groups) hold(tx *wal.Tx, a *AG) error {
	for tries := 0; ; tries++ {
		ok, _, err := gs.take(tx, a)
		if err != nil || ok {
			return err
		}
		if tries == 100 {
			return fmt.Errorf("ag %d: %w: another transaction holds it, and this one holds ag %d",
				a.no, ErrLockOrder, stateOf(tx).max)
		}
		time.Sleep(10 * time.Microsecond)
	}
}

// FreeBlocks frees n blocks from absolute block start for tx; the range
// must lie in one AG. See hold for the lock order.
func (gs *Groups) FreeBlocks(tx *wal.Tx, start, n uint64) error {
	if start >= gs.g.BlockCount {
		return einval("free of block %d beyond the filesystem's %d blocks", start, gs.g.BlockCount)
	}
	a := gs.ags[gs.g.AGOf(start)]
	if err := gs.hold(tx, a); err != nil {
		return err
	}
	return a.FreeBlocks(tx, start, n)
}

// AllocInode allocates an inode for tx whose parent directory is parent.
//
// A file goes near its parent: in the parent's AG, at or after the
// parent's index, else in the next AG (in order, wrapping) that has a free
// inode. A directory is spread (Orlov-lite): among the AGs with about the
// average number of free inodes and of free blocks or more (see spread),
// the one with the fewest directories (ties: more free inodes, then the first after the
// parent's AG) — so sibling directories land in different AGs and each
// directory's files then cluster with it.
func (gs *Groups) AllocInode(tx *wal.Tx, parent uint64, isDir bool) (uint64, error) {
	home, goal, ok := gs.g.SplitIno(parent)
	if !ok {
		home, goal = 0, 0
	}
	if isDir {
		home, goal = gs.spread(home), 0
	}
	for _, i := range gs.order(home) {
		a := gs.ags[i]
		if a.owner.Load() != tx && a.pubFreeIno.Load() == 0 {
			continue
		}
		ok, fresh, err := gs.take(tx, a)
		if err != nil {
			return 0, err
		}
		if !ok {
			continue
		}
		g := goal
		if i != home {
			g = 0
		}
		ino, err := a.allocInode(tx, g, isDir)
		if errors.Is(err, syscall.ENOSPC) {
			if fresh {
				a.unlockUnused(tx)
			}
			continue
		}
		return ino, err
	}
	return 0, fmt.Errorf("no free inode in any AG: %w", syscall.ENOSPC)
}

// spread picks the AG for a new directory whose parent is in AG parent.
// As in ext4's Orlov allocator, "average" has a slack of a quarter of an
// AG, so that AG 0, which holds the log, still takes its share.
func (gs *Groups) spread(parent uint32) uint32 {
	n := uint64(len(gs.ags))
	var ino, blk uint64
	for _, a := range gs.ags {
		ino += a.pubFreeIno.Load()
		blk += a.pubFree.Load()
	}
	minIno := (ino / n) - min(ino/n, uint64(gs.g.InodesPerAG)/4)
	minBlk := (blk / n) - min(blk/n, gs.g.AGBlocks/4)
	best, found := parent, false
	var bestDirs, bestIno uint64
	for _, i := range gs.order((parent + 1) % uint32(n)) {
		a := gs.ags[i]
		fi, fb, d := a.pubFreeIno.Load(), a.pubFree.Load(), a.pubDirs.Load()
		if fi == 0 || fi < minIno || fb < minBlk {
			continue
		}
		if !found || d < bestDirs || (d == bestDirs && fi > bestIno) {
			best, bestDirs, bestIno, found = i, d, fi, true
		}
	}
	if found {
		return best
	}
	// Nothing is above average on both counts: the most free inodes.
	for _, i := range gs.order(parent) {
		if fi := gs.ags[i].pubFreeIno.Load(); fi > bestIno {
			best, bestIno = i, fi
		}
	}
	return best
}

// FreeInode frees inode ino for tx; isDir says whether it was a directory.
func (gs *Groups) FreeInode(tx *wal.Tx, ino uint64, isDir bool) error {
	ag, _, ok := gs.g.SplitIno(ino)
	if !ok {
		return einval("free of inode %d, which names no inode slot", ino)
	}
	a := gs.ags[ag]
	if err := gs.hold(tx, a); err != nil {
		return err
	}
	return a.FreeInode(tx, ino, isDir)
}

// Totals returns the free blocks and free inodes of the whole filesystem,
// as of the last transaction each AG finished (for statfs; no lock taken).
func (gs *Groups) Totals() (freeBlocks, freeInodes uint64) {
	for _, a := range gs.ags {
		freeBlocks += a.pubFree.Load()
		freeInodes += a.pubFreeIno.Load()
	}
	return freeBlocks, freeInodes
}

// Stats returns every AG's statistics (see AG.Stats for the locking rule).
func (gs *Groups) Stats() []Stats {
	out := make([]Stats, len(gs.ags))
	for i, a := range gs.ags {
		out[i] = a.Stats()
	}
	return out
}
