package fsck

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"slices"
	"syscall"
	"time"

	"agfs/disk"
	"agfs/layout"
)

// The repair plan. Repair decides everything in memory from one scan (the
// check with collect, check.go) before it writes a block: which inodes are
// cleared, which trees rebuilt, which blocks each kept inode owns
// (claims.go), the namespace (reconnect.go). Deciding first is what lets
// -p refuse cleanly: a plan with a fix that loses data is not applied at
// all. apply.go then writes the plan through the log.

// Fix is one change repair made, or in preen mode found it must not make.
type Fix struct {
	AG   int    // the AG concerned, -1 for the whole filesystem
	What string // names the block or inode and the change
	// Safe: loses nothing, so -p may make it (counters, bitmaps, link
	// counts, orphans, sizes, superblock copies).
	Safe bool
}

func (f Fix) String() string {
	if f.AG < 0 {
		return f.What
	}
	return fmt.Sprintf("ag %d: %s", f.AG, f.What)
}

// node is an inode repair keeps, with the slot it will write.
type node struct {
	ino  uint64
	info *inodeInfo
	rp   *inodeRepair
	d    layout.Inode // the slot to write; starts as found
	ext  []extClaim   // data extents kept
	// taken: the nodes of each tree that the block map gave this inode.
	taken [treeKinds][]uint64
	// rebuildData: the data map is rewritten from ext; rebuildIndex: the
	// directory index is built anew from entries; the attribute tree, or
	// all attributes, are dropped.
	rebuildData, rebuildIndex   bool
	dropXattrTree, dropXattrAll bool
	entries                     []dirEntry // directories: the entries to keep
	changed                     bool       // directories: entries differ from the index
	parent                      uint64     // directories: ".." to write
	nlink                       uint32
	created                     bool // made by repair (root, lost+found)
	// blocks counts the tree nodes of each tree after apply.
	nodes [treeKinds]uint64
}

// keepsTree reports whether the inode's tree t is kept as it is.
func (n *node) keepsTree(t int) bool {
	switch t {
	case treeData:
		return !n.rebuildData && n.d.DataFormat == layout.DataBTree && !isDir(n.d.Mode)
	case treeDir:
		return !n.rebuildIndex && isDir(n.d.Mode)
	}
	return !n.dropXattrTree && !n.dropXattrAll && n.d.XattrBlock != 0
}

type plan struct {
	sb    *layout.Superblock
	g     *layout.Geometry
	sc    *scanned
	dev   disk.Device
	fixes []Fix
	nodes map[uint64]*node
	// cleared: used slots repair frees (zeroed, generation kept).
	cleared map[uint64]bool
	space   *space
	// sbWrites: superblock blocks to rewrite (primary and copies).
	sbWrites map[uint64][]byte
	// old: raw AG headers and bitmap blocks as found, to write only what
	// changes.
	old   map[uint64][]byte
	now   int64
	lfIno uint64 // lost+found, once needed
}

func (p *plan) fix(ino uint64, safe bool, format string, args ...any) {
	a, _, ok := p.g.SplitIno(ino)
	ag := int(a)
	if !ok {
		ag = -1
	}
	p.fixes = append(p.fixes, Fix{AG: ag, What: fmt.Sprintf("inode %d: ", ino) + fmt.Sprintf(format, args...), Safe: safe})
}

func (p *plan) fixAG(ag int, safe bool, format string, args ...any) {
	p.fixes = append(p.fixes, Fix{AG: ag, What: fmt.Sprintf(format, args...), Safe: safe})
}

// sorted returns the kept inodes in inode order, so that every decision
// is the same from one run to the next.
func (p *plan) sorted() []*node {
	out := make([]*node, 0, len(p.nodes))
	for _, n := range p.nodes {
		out = append(out, n)
	}
	slices.SortFunc(out, func(a, b *node) int { return cmp.Compare(a.ino, b.ino) })
	return out
}

// newPlan makes the plan from a scan: the inode decisions, the block
// claims and the namespace.
func newPlan(dev disk.Device, sc *scanned, from uint32) (*plan, error) {
	p := &plan{sb: sc.sb, g: &sc.sb.Geometry, sc: sc, dev: dev, nodes: map[uint64]*node{},
		cleared: map[uint64]bool{}, sbWrites: map[uint64][]byte{}, old: map[uint64][]byte{},
		now: time.Now().UnixNano()}
	if err := p.superblocks(from); err != nil {
		return nil, err
	}
	if err := p.readAGs(); err != nil {
		return nil, err
	}
	p.inodes()
	p.space = newSpace(p.g)
	p.claimBlocks()
	p.namespace()
	return p, nil
}

// inodes decides, for every used inode, whether it is kept and which of
// its parts are rebuilt.
func (p *plan) inodes() {
	inos := make([]uint64, 0, len(p.sc.all))
	for ino := range p.sc.all {
		inos = append(inos, ino)
	}
	slices.Sort(inos)
	for a, r := range p.sc.ags {
		for j, bad := range r.table.bad {
			if bad {
				p.fixAG(a, false, "inode table block %d (device block %d) does not verify: rewritten with the inodes of it that check out",
					j, p.g.InodeTableStart(uint32(a))+uint64(j))
			}
		}
	}
	for _, ino := range inos {
		in := p.sc.all[ino]
		rp := in.rep
		if rp.clear != "" {
			p.fix(ino, false, "cleared (its data and names are lost): %s", rp.clear)
			p.cleared[ino] = true
			continue
		}
		n := &node{ino: ino, info: in, rp: rp, d: rp.slot, ext: rp.ext, entries: slices.Clone(in.entries)}
		p.nodes[ino] = n
		if rp.badSize {
			p.fix(ino, false, "size %d, past the largest file: set to the end of its last extent", rp.slot.Size)
		}
		if rp.data != "" {
			n.rebuildData = true
			p.fix(ino, false, "%s: rebuilt from the %d extents that could be read", rp.data, len(rp.ext))
		}
		if rp.index != "" {
			n.rebuildIndex = true
			n.entries = rp.dirents
			p.fix(ino, false, "%s: rebuilt from the %d entries that could be read", rp.index, len(rp.dirents))
		}
		if rp.xattr != "" {
			n.dropXattrTree, n.dropXattrAll = rp.xattrTree, !rp.xattrTree
			what := "all of them are removed"
			if rp.xattrTree {
				what = "the attribute tree is removed, the inline ones kept"
			}
			p.fix(ino, false, "%s: %s", rp.xattr, what)
		}
	}
}

// superblocks plans the rewrite of the primary superblock (from the copy
// the scan used, when it was damaged) and of every copy that is damaged
// or describes another geometry.
func (p *plan) superblocks(from uint32) error {
	bs := int(p.sb.BlockSize)
	for a := range p.g.AGCount {
		blk := p.g.SuperBlock(a)
		b, err := p.read(blk)
		if err != nil {
			return err
		}
		cur, derr := layout.DecodeSuperblock(b, a)
		want := *p.sb
		switch {
		case derr != nil:
			p.fixAG(int(a), true, "superblock (device block %d): %v: rewritten from the superblock of ag %d", blk, derr, from)
		case !cur.SameGeometry(p.sb):
			p.fixAG(int(a), true, "superblock (device block %d) describes another filesystem or geometry: rewritten from the superblock of ag %d", blk, from)
		case a == 0 && cur.State&layout.StateErrors != 0:
			want = *cur
			want.State &^= layout.StateErrors
			p.fixAG(0, true, "superblock (device block %d): the errors flag is cleared", blk)
		default:
			continue
		}
		img := make([]byte, bs)
		want.Encode(img, a)
		p.sbWrites[blk] = img
	}
	return nil
}

// readAGs keeps the raw AG headers and bitmap blocks.
func (p *plan) readAGs() error {
	for a := range p.g.AGCount {
		blks := []uint64{p.g.AGHeaderBlock(a)}
		for i := range p.g.BlockBitmapBlocks {
			blks = append(blks, p.g.BlockBitmapStart(a)+uint64(i))
		}
		for i := range p.g.InodeBitmapBlocks {
			blks = append(blks, p.g.InodeBitmapStart(a)+uint64(i))
		}
		for _, blk := range blks {
			b, err := p.read(blk)
			if err != nil {
				return err
			}
			p.old[blk] = b
		}
	}
	return nil
}

func (p *plan) read(blk uint64) ([]byte, error) {
	b := make([]byte, p.sb.BlockSize)
	if _, err := p.dev.ReadAt(b, int64(blk)*int64(len(b))); err != nil {
		return nil, fmt.Errorf("read block %d: %w", blk, err)
	}
	return b, nil
}

// rawSlot returns the slot of ino as found, or nil when its table block
// was never written.
func (p *plan) rawSlot(ino uint64) []byte {
	a, idx, _ := p.g.SplitIno(ino)
	t := p.sc.ags[a].table
	j := idx / p.g.InodesPerBlock()
	if t == nil || j >= uint32(len(t.blocks)) {
		return nil
	}
	off := layout.HeaderSize + int(idx%p.g.InodesPerBlock())*layout.InodeSize
	return t.blocks[j][off : off+layout.InodeSize]
}

// generation is the generation of the slot of ino as found (FORMAT.md
// §12.5: a never-written slot has 0).
func (p *plan) generation(ino uint64) uint32 {
	if s := p.rawSlot(ino); s != nil {
		return binary.LittleEndian.Uint32(s[64:])
	}
	return 0
}

// newDir makes a directory inode at ino (root, lost+found), with an index
// built at apply.
func (p *plan) newDir(ino, parent uint64, perm uint32) *node {
	n := &node{ino: ino, created: true, rebuildIndex: true, parent: parent}
	n.d = layout.Inode{Mode: syscall.S_IFDIR | perm, Nlink: 2, Generation: p.generation(ino) + 1,
		Atime: p.now, Mtime: p.now, Ctime: p.now, Btime: p.now,
		DataFormat: layout.DataBTree, ForkCount: 1}
	p.nodes[ino] = n
	return n
}

// freeSlot finds a slot for a new inode: a free one in an initialised
// table block that verified, else the first slot of the next table block
// of an AG that has one left.
func (p *plan) freeSlot() (uint64, error) {
	ipb := p.g.InodesPerBlock()
	for a := range p.g.AGCount {
		t := p.sc.ags[a].table
		if t == nil {
			continue
		}
		for j := range uint32(len(t.blocks)) {
			if t.bad[j] {
				continue
			}
			for k := range ipb {
				idx := j*ipb + k
				ino := p.g.Ino(a, idx)
				if idx == 0 || idx >= p.g.InodesPerAG || p.nodes[ino] != nil || p.cleared[ino] {
					continue
				}
				if binary.LittleEndian.Uint32(p.rawSlot(ino)) == 0 {
					return ino, nil
				}
			}
		}
	}
	for a := range p.g.AGCount {
		t := p.sc.ags[a].table
		if t == nil || t.init >= p.g.InodeTableBlocks {
			continue
		}
		j := t.init
		t.init++
		t.blocks = append(t.blocks, make([]byte, p.sb.BlockSize))
		t.bad = append(t.bad, true) // never written: it must be
		idx := j * ipb
		if idx == 0 {
			idx = 1
		}
		return p.g.Ino(a, idx), nil
	}
	return 0, fmt.Errorf("repair: no free inode left for %s: %w", "lost+found", syscall.ENOSPC)
}
