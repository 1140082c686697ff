package fsck

import (
	"cmp"
	"fmt"
	"slices"
	"syscall"

	"agfs/bitmap"
	"agfs/layout"
	"agfs/wal"
)

// Block claims (repair's phase 3, second half): every block the kept
// inodes reference is taken in an in-memory block map, one bitmap per AG,
// that starts with only the AGs' reserved blocks set. A block claimed
// twice, or reserved, or outside the filesystem, goes to the first claim:
// claims are taken newest first, by the LSN of the block that holds the
// pointer, since an older block that still verifies (a lost write, a
// stale copy) is the likely liar. The map then is the allocator of the
// trees repair builds, and becomes the block bitmaps (bitmaps.go).

// space is the block map.
type space struct {
	g  *layout.Geometry
	ag []*bitmap.Bitmap
}

func newSpace(g *layout.Geometry) *space {
	s := &space{g: g}
	for a := range g.AGCount {
		b := bitmap.New(g.AGLen(a), g.BitsPerBitmapBlock())
		b.SetRange(0, g.ReservedBlocks(a))
		s.ag = append(s.ag, b)
	}
	return s
}

// take claims [start, start+n) if it lies inside one AG and is all free.
func (s *space) take(start, n uint64) bool {
	if n == 0 || start >= s.g.BlockCount || n > s.g.BlockCount-start {
		return false
	}
	a := s.g.AGOf(start)
	rel := start - s.g.AGStart(a)
	b := s.ag[a]
	if rel+n > b.Len() || !b.RangeIsClear(rel, n) {
		return false
	}
	b.SetRange(rel, n)
	return true
}

// release gives back blocks taken.
func (s *space) release(start, n uint64) {
	a := s.g.AGOf(start)
	s.ag[a].ClearRange(start-s.g.AGStart(a), n)
}

// AllocBlock and FreeBlock make the map the btree.Allocator of the trees
// repair builds: the first free block at or after the goal in its AG,
// else in any AG.
func (s *space) AllocBlock(_ *wal.Tx, goal uint64) (uint64, error) {
	first := uint32(0)
	if goal < s.g.BlockCount {
		first = s.g.AGOf(goal)
	}
	for i := range s.g.AGCount {
		a := (first + i) % s.g.AGCount
		hint := uint64(0)
		if i == 0 && goal < s.g.BlockCount {
			hint = goal - s.g.AGStart(a)
		}
		b := s.ag[a]
		rel, ok := b.FindFirstZero(hint)
		if !ok && hint > 0 {
			rel, ok = b.FindFirstZero(0)
		}
		if ok {
			b.Set(rel)
			return s.g.AGStart(a) + rel, nil
		}
	}
	return 0, fmt.Errorf("repair: no free block left for a rebuilt tree: %w", syscall.ENOSPC)
}

func (s *space) FreeBlock(_ *wal.Tx, blk uint64) error {
	if blk >= s.g.BlockCount {
		return fmt.Errorf("repair: free of block %d beyond the filesystem: %w", blk, layout.ErrCorrupt)
	}
	s.release(blk, 1)
	return nil
}

// claim is one reference to blocks: a data extent (tree treeData, ext the
// index in the inode's extents) or a tree node (ext -1).
type claim struct {
	n          *node
	start, len uint64
	lsn        uint64
	tree       int
	ext        int
}

// claimBlocks builds the block map from the kept inodes and settles
// conflicts, reporting each loss as a fix.
func (p *plan) claimBlocks() {
	var cs []claim
	for _, n := range p.sorted() {
		for i, e := range n.ext {
			cs = append(cs, claim{n: n, start: e.Physical, len: uint64(e.Len), lsn: e.lsn, tree: treeData, ext: i})
		}
		for t := range treeKinds {
			if !n.keepsTree(t) {
				continue
			}
			for _, nc := range n.rp.nodes[t] {
				cs = append(cs, claim{n: n, start: nc.blk, len: 1, lsn: nc.lsn, tree: t, ext: -1})
			}
		}
	}
	slices.SortStableFunc(cs, func(a, b claim) int {
		if c := cmp.Compare(b.lsn, a.lsn); c != 0 {
			return c
		}
		return cmp.Compare(a.n.ino, b.n.ino)
	})
	lostExt := map[*node][]bool{}
	for _, c := range cs {
		n := c.n
		if c.ext < 0 && !n.keepsTree(c.tree) {
			continue // its tree lost a node already: rebuilt or dropped
		}
		if p.space.take(c.start, c.len) {
			if c.ext < 0 {
				n.taken[c.tree] = append(n.taken[c.tree], c.start)
			}
			continue
		}
		if c.ext >= 0 {
			if lostExt[n] == nil {
				lostExt[n] = make([]bool, len(n.ext))
			}
			lostExt[n][c.ext] = true
			p.fix(n.ino, false, "extent at file block %d (device blocks %d+%d) is also claimed elsewhere or lies outside the data area: removed from the file",
				n.ext[c.ext].Logical, c.start, c.len)
			n.rebuildData = true
			continue
		}
		// A node lost: the tree's other nodes go back, and the tree is
		// rebuilt (data, index) or dropped (attributes).
		for _, blk := range n.taken[c.tree] {
			p.space.release(blk, 1)
		}
		n.taken[c.tree] = nil
		what := [treeKinds]string{"extent tree", "directory index", "xattr tree"}[c.tree]
		p.fix(n.ino, false, "%s node %d is also claimed elsewhere or lies outside the data area: the %s is rebuilt from what remains",
			what, c.start, what)
		switch c.tree {
		case treeData:
			n.rebuildData = true
		case treeDir:
			n.rebuildIndex = true
		case treeXattr:
			n.dropXattrTree = true
		}
	}
	for n, lost := range lostExt {
		kept := n.ext[:0]
		for i, e := range n.ext {
			if !lost[i] {
				kept = append(kept, e)
			}
		}
		n.ext = kept
	}
}
