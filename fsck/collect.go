package fsck

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"slices"

	"agfs/dir"
	"agfs/fs"
	"agfs/layout"
	"agfs/xattr"
)

// What the inode phase gathers for repair, beyond the check: each inode's
// slot, the verdicts of its parts, and everything its trees still hold,
// read by the salvaging walk (salvage.go). The check decides what is
// broken; these are the materials to rebuild it from.

// inodeRepair is one used inode as repair sees it.
type inodeRepair struct {
	slot layout.Inode
	// lsn is the LSN claims held in the slot carry (inline extents, tree
	// roots): its table block's, 0 when the block did not verify.
	lsn uint64
	// clear says why the inode cannot be kept; "" keeps it.
	clear string
	// data and index say why the data map or the directory index must be
	// rebuilt from what could be salvaged; xattr why the attributes must
	// be dropped (xattrTree: the tree only, the inline ones are sound).
	data, index, xattr string
	xattrTree          bool
	// badSize: a regular file larger than any file can be; its size
	// becomes the end of its last extent.
	badSize bool
	// ext: the data extents found, sorted by file block, disjoint, each
	// with the LSN of the block holding it.
	ext []extClaim
	// nodes: the tree nodes found, by tree.
	nodes [treeKinds][]nodeClaim
	// salvaged directory entries, for an index that must be rebuilt.
	dirents []dirEntry
}

type extClaim struct {
	layout.Extent
	lsn uint64
}

// The trees of an inode.
const (
	treeData = iota
	treeDir
	treeXattr
	treeKinds
)

// agTable is an AG's inode table as found.
type agTable struct {
	// init is the number of blocks in use: the header's mark, extended
	// over blocks past it that verify (a stale header), or with no header,
	// up to the last block that verifies.
	init   uint32
	blocks [][]byte // raw images of blocks [0, init)
	bad    []bool   // the block did not verify: it is rewritten
}

// raw reads block blk from the device under the log, unverified and
// uncached (see salvageTree).
func (c *inodeChecker) raw(blk uint64) ([]byte, error) {
	if blk >= c.g.BlockCount {
		return nil, fmt.Errorf("block %d: %w: beyond the filesystem", blk, layout.ErrCorrupt)
	}
	b := make([]byte, c.bs)
	if _, err := c.dev.ReadAt(b, int64(blk)*int64(c.bs)); err != nil {
		return nil, err
	}
	return b, nil
}

// readTable reads the AG's inode table for repair.
func (c *inodeChecker) readTable(h *layout.AGHeader, headerOK bool) *agTable {
	g := c.g
	t := &agTable{}
	verifies := func(j uint32) ([]byte, bool) {
		blk := g.InodeTableStart(c.ag) + uint64(j)
		b, err := c.raw(blk)
		if err != nil {
			return make([]byte, c.bs), false
		}
		return b, layout.Check(b, c.seed, layout.MagicInodeTable, blk, uint64(c.ag)) == nil
	}
	last := uint32(0)
	if headerOK {
		last = min(h.InodeTableInit, g.InodeTableBlocks)
		for last < g.InodeTableBlocks {
			if _, ok := verifies(last); !ok {
				break
			}
			last++
		}
	} else {
		for j := range g.InodeTableBlocks {
			if _, ok := verifies(j); ok {
				last = j + 1
			}
		}
	}
	t.init = last
	for j := range last {
		b, ok := verifies(j)
		t.blocks = append(t.blocks, b)
		t.bad = append(t.bad, !ok)
	}
	return t
}

// collectData gathers a file's extents (and extent-tree nodes). healthy
// is the check's verdict on the map.
func (c *inodeChecker) collectData(ino uint64, d *layout.Inode, rp *inodeRepair, healthy bool) {
	if !healthy {
		rp.data = "its data map is damaged"
	}
	var ext []extClaim
	if d.DataFormat == layout.DataExtents {
		for i := range int(d.ForkCount) {
			if e, err := layout.DecodeExtent(d.Fork[i*layout.ExtentSize:], c.g); err == nil {
				ext = append(ext, extClaim{e, rp.lsn})
			}
		}
	} else if root := d.TreeRoot(); root != 0 {
		s := salvageTree(c.raw, c.g, c.seed, layout.MagicExtentNode, ino, root, rp.lsn)
		rp.nodes[treeData] = s.nodes
		for _, le := range s.entries {
			if len(le.key) != 8 || len(le.val) != 16 {
				continue
			}
			var rec [layout.ExtentSize]byte
			binary.LittleEndian.PutUint64(rec[0:], binary.BigEndian.Uint64(le.key))
			copy(rec[8:], le.val)
			if e, err := layout.DecodeExtent(rec[:], c.g); err == nil {
				ext = append(ext, extClaim{e, le.lsn})
			}
		}
	}
	rp.ext = disjoint(ext)
	if healthy && len(rp.ext) != len(ext) {
		rp.data = "its extents overlap" // the check said so already
	}
}

// disjoint sorts extents by file block and drops any that overlaps one
// before it.
func disjoint(ext []extClaim) []extClaim {
	slices.SortStableFunc(ext, func(a, b extClaim) int { return cmp.Compare(a.Logical, b.Logical) })
	out := ext[:0]
	end := uint64(0)
	for _, e := range ext {
		if len(out) > 0 && e.Logical < end {
			continue
		}
		out = append(out, e)
		end = e.Logical + uint64(e.Len)
	}
	return out
}

// collectIndex gathers a directory's index nodes and, when the index is
// damaged, the entries that can still be read.
func (c *inodeChecker) collectIndex(ino uint64, d *layout.Inode, info *inodeInfo, healthy bool) {
	rp := info.rep
	if !healthy {
		rp.index = "its directory index is damaged"
	}
	root := d.TreeRoot()
	if root == 0 {
		return
	}
	s := salvageTree(c.raw, c.g, c.seed, layout.MagicDirNode, ino, root, rp.lsn)
	rp.nodes[treeDir] = s.nodes
	if healthy {
		return
	}
	seen := map[string]bool{}
	for _, le := range s.entries {
		if len(le.key) <= 8 || len(le.val) != 9 {
			continue // tombstones and garbage
		}
		name := string(le.key[8:])
		child := binary.LittleEndian.Uint64(le.val)
		typ := le.val[8]
		if dir.CheckName(name) != nil || child == 0 || !dir.ValidType(typ) || seen[name] {
			continue
		}
		seen[name] = true
		rp.dirents = append(rp.dirents, dirEntry{name: name, ino: child, typ: typ})
	}
}

// collectXattrs gathers an inode's attribute-tree nodes, and decides what
// of its attributes a damaged set loses: the tree alone when the inline
// ones check out without it, else all.
func (c *inodeChecker) collectXattrs(ino uint64, d *layout.Inode, rp *inodeRepair, healthy bool) {
	if d.XattrBlock != 0 {
		s := salvageTree(c.raw, c.g, c.seed, layout.MagicXattrNode, ino, d.XattrBlock, rp.lsn)
		rp.nodes[treeXattr] = s.nodes
	}
	if healthy {
		return
	}
	rp.xattr = "its extended attributes are damaged"
	if d.XattrBlock == 0 || d.ForkOffset == 0 {
		rp.xattrTree = d.XattrBlock != 0 && d.ForkOffset == 0
		return
	}
	off := d.XattrStart()
	area := make([]byte, layout.ForkSize-off)
	copy(area, d.Fork[off:])
	s, err := xattr.Open(c.tx, area, 0, fs.XattrTreeConfig(c.sb, ino))
	if err == nil {
		err = s.Check()
	}
	rp.xattrTree = err == nil
}
