package fsck

import (
	"encoding/binary"
	"fmt"
	"regexp"
	"strconv"
	"syscall"

	"agfs/btree"
	"agfs/dir"
	"agfs/disk"
	"agfs/fs"
	"agfs/layout"
	"agfs/wal"
	"agfs/xattr"
)

// The inode phase (FORMAT.md §6, §7, §9–§12): every used inode of an AG,
// its data fork and its trees, read through a read-only log over the
// replayed overlay. What it learns of each inode (type, links, parent,
// directory entries) is kept for the namespace walk (namespace.go).

// InodeStats counts what the inode phase checked.
type InodeStats struct {
	Used          uint64 // inodes in use
	Dirs          uint64
	Files         uint64 // regular files
	Symlinks      uint64
	Special       uint64 // FIFOs, sockets, devices
	Orphans       uint64 // on the AGs' orphan lists
	Entries       uint64 // directory entries
	ExtentTrees   uint64 // files and symlinks mapped by an extent B+tree
	XattrTrees    uint64
	MaxIndexDepth int // levels of the deepest directory index
	MaxExtentTree int // levels of the deepest extent tree
}

// inodeInfo is what the namespace walk needs of a used inode.
type inodeInfo struct {
	mode    uint32
	nlink   uint32
	parent  uint64 // directories: the stored parent
	table   uint64 // the inode-table block holding the slot
	root    uint64 // directories: the index root
	orphan  bool
	entries []dirEntry // directories whose index checked out
	indexOK bool
	// rep is what repair needs besides; nil when only checking.
	rep *inodeRepair
}

type dirEntry struct {
	name string
	ino  uint64
	typ  uint8
}

// agInodes is what the inode phase found in one AG.
type agInodes struct {
	inodes map[uint64]*inodeInfo
	errs   []error
	stats  InodeStats
	// Where the AG could not be read (damage already reported by the AG
	// phase): no header means nothing of the AG is known.
	headerOK  bool
	tableInit uint32
	badTable  map[uint32]bool // inode-table blocks that did not verify
	// incomplete: something the namespace walk relies on could not be
	// read (a damaged table block or directory index), so missing names
	// and links prove nothing.
	incomplete bool
	// When repairing: the AG's inode table as found (tables.go).
	table *agTable
}

func (a *agInodes) fail(format string, args ...any) {
	a.errs = append(a.errs, fmt.Errorf(format, args...))
}

// inodeChecker checks the inodes of one AG.
type inodeChecker struct {
	sb   *layout.Superblock
	g    *layout.Geometry
	seed uint64
	bs   int
	ag   uint32
	tx   *wal.Tx
	res  *agInodes
	// collect: gather what repair needs (inodeRepair, agTable), reading
	// raw blocks from dev, the device under the log.
	collect bool
	dev     disk.Device
}

func fileType(mode uint32) uint32 { return mode & syscall.S_IFMT }
func isDir(mode uint32) bool      { return fileType(mode) == syscall.S_IFDIR }

// dtype is the directory-entry type of mode (FORMAT.md §10.1).
func dtype(mode uint32) uint8 { return uint8(mode >> 12 & 0xF) }

func validType(mode uint32) bool {
	switch fileType(mode) {
	case syscall.S_IFREG, syscall.S_IFDIR, syscall.S_IFLNK, syscall.S_IFIFO,
		syscall.S_IFSOCK, syscall.S_IFCHR, syscall.S_IFBLK:
		return true
	}
	return false
}

const maxSymlink = 4095 // FORMAT.md §12.4

// checkInodes runs the inode phase on AG ag; with collect it also gathers
// what repair needs.
func checkInodes(log *wal.Log, dev disk.Device, sb *layout.Superblock, ag uint32, collect bool) *agInodes {
	c := &inodeChecker{dev: dev, sb: sb, g: &sb.Geometry, seed: sb.Seed(), bs: int(sb.BlockSize), ag: ag, collect: collect,
		res: &agInodes{inodes: map[uint64]*inodeInfo{}, badTable: map[uint32]bool{}}}
	c.tx = log.Begin()
	defer c.tx.Abort()
	c.run()
	return c.res
}

func (c *inodeChecker) verifier(magic uint32) wal.Verifier {
	return func(blk uint64, b []byte) error { return layout.Check(b, c.seed, magic, blk, uint64(c.ag)) }
}

func (c *inodeChecker) run() {
	g, res := c.g, c.res
	hblk := g.AGHeaderBlock(c.ag)
	b, err := c.tx.Read(hblk, c.verifier(layout.MagicAGHeader))
	var h *layout.AGHeader
	if err == nil {
		h, err = layout.DecodeAGHeader(b, g, c.seed, c.ag)
	}
	if err != nil {
		res.incomplete = true // reported by the AG phase
		if !c.collect {
			return
		}
		// Repair still wants the inodes: take the marks from what the
		// table holds, and no bitmap (its extent is unknown).
		h = &layout.AGHeader{AG: c.ag}
	} else {
		res.headerOK, res.tableInit = true, h.InodeTableInit
	}
	tableInit := h.InodeTableInit
	if c.collect {
		res.table = c.readTable(h, res.headerOK)
		tableInit = res.table.init
	}

	// The inode bitmap's initialised blocks; nil for one that does not
	// verify (reported by the AG phase), whose bits are then unknown.
	bpb := g.BitsPerBitmapBlock()
	bitmap := make([][]byte, min(h.InodeBitmapInit, g.InodeBitmapBlocks))
	if !res.headerOK {
		bitmap = nil
	}
	for i := range bitmap {
		if b, err := c.tx.Read(g.InodeBitmapStart(c.ag)+uint64(i), c.verifier(layout.MagicInodeBitmap)); err == nil {
			bitmap[i] = b
		}
	}
	bit := func(idx uint32) (set, known bool) {
		k := uint64(idx) / bpb
		if k >= uint64(len(bitmap)) {
			return false, k >= uint64(h.InodeBitmapInit) // never written: free
		}
		if !res.headerOK || bitmap[k] == nil {
			return false, false
		}
		i := uint64(idx) % bpb
		return bitmap[k][layout.HeaderSize+int(i/8)]&(1<<(i%8)) != 0, true
	}

	orphans := c.orphanList(hblk, h)

	ipb := g.InodesPerBlock()
	for j := range tableInit {
		blk := g.InodeTableStart(c.ag) + uint64(j)
		b, err := c.tx.Read(blk, c.verifier(layout.MagicInodeTable))
		lsn := uint64(0)
		if err == nil {
			lsn = layout.ReadHeader(b).LSN
		} else {
			res.badTable[j] = true // reported by the AG phase
			res.incomplete = true
			if !c.collect {
				continue
			}
			// Repair salvages the slots one by one (tables.go): the
			// checks below decide which can be kept.
			b = res.table.blocks[j]
		}
		for k := range ipb {
			idx := j*ipb + k
			if idx == 0 || idx >= g.InodesPerAG {
				continue
			}
			ino := g.Ino(c.ag, idx)
			off := layout.HeaderSize + int(k)*layout.InodeSize
			slot := b[off : off+layout.InodeSize]
			mode := binary.LittleEndian.Uint32(slot)
			set, known := bit(idx)
			if mode == 0 {
				if known && set {
					res.fail("inode %d (table block %d): in use in the inode bitmap, but its slot is free (mode 0)", ino, blk)
				}
				continue
			}
			if known && !set {
				res.fail("inode %d (table block %d): slot in use (mode %#o), but free in the inode bitmap", ino, blk, mode)
			}
			c.inode(ino, blk, lsn, slot, orphans[ino])
		}
	}
}

// orphanList walks the AG's orphan list (FORMAT.md §12.6) and returns its
// members.
func (c *inodeChecker) orphanList(hblk uint64, h *layout.AGHeader) map[uint64]bool {
	g, res := c.g, c.res
	on := map[uint64]bool{}
	prev := fmt.Sprintf("orphan list head (header block %d)", hblk)
	for cur := h.OrphanHead; cur != 0; {
		a, idx, ok := g.SplitIno(cur)
		if !ok || a != c.ag || idx == 0 {
			res.fail("%s: next orphan %d is not an inode of this AG", prev, cur)
			break
		}
		if on[cur] {
			res.fail("%s: next orphan %d is already on the list: the list loops", prev, cur)
			break
		}
		blk, off := g.InodeLocation(c.ag, idx)
		if idx/g.InodesPerBlock() >= h.InodeTableInit {
			res.fail("%s: next orphan %d is a free inode (inode-table block %d never written)", prev, cur, blk)
			break
		}
		b, err := c.tx.Read(blk, c.verifier(layout.MagicInodeTable))
		if err != nil {
			res.incomplete = true // reported by the AG phase
			break
		}
		var d layout.Inode
		d.Decode(b[off : off+layout.InodeSize]) // fields only: the slot is checked with the others
		if d.Mode == 0 {
			res.fail("%s: next orphan %d is a free inode (table block %d)", prev, cur, blk)
			break
		}
		on[cur] = true
		prev = fmt.Sprintf("orphan inode %d (table block %d)", cur, blk)
		cur = d.NextOrphan
	}
	return on
}

// inode checks one used slot; lsn is its table block's (0 when the block
// did not verify and the slot is being salvaged).
func (c *inodeChecker) inode(ino, tblk, lsn uint64, slot []byte, orphan bool) {
	res := c.res
	var d layout.Inode
	derr := d.Decode(slot)
	info := &inodeInfo{mode: d.Mode, nlink: d.Nlink, table: tblk, orphan: orphan}
	res.inodes[ino] = info
	res.stats.Used++
	if orphan {
		res.stats.Orphans++
	}
	var rp *inodeRepair
	if c.collect {
		rp = &inodeRepair{slot: d, lsn: lsn}
		info.rep = rp
	}
	at := fmt.Sprintf("inode %d (table block %d)", ino, tblk)
	bad := func(format string, args ...any) { res.fail("%s: "+format, append([]any{at}, args...)...) }
	// unusable reports what makes the inode impossible to keep: repair
	// clears it.
	unusable := func(format string, args ...any) {
		bad(format, args...)
		if rp != nil && rp.clear == "" {
			rp.clear = fmt.Sprintf(format, args...)
		}
	}
	if derr != nil {
		unusable("%v", derr)
		res.incomplete = isDir(d.Mode) || res.incomplete
		return
	}
	if !validType(d.Mode) {
		unusable("mode %#o has no valid file type", d.Mode)
		res.incomplete = true // it may have been a directory, with entries
		return
	}
	switch {
	case d.Nlink == 0 && !orphan:
		bad("nlink 0, but not on the orphan list")
	case d.Nlink != 0 && orphan:
		bad("on the orphan list, but nlink %d", d.Nlink)
	}

	// Data format by type (FORMAT.md §12.1), and where the data fork ends.
	ft := fileType(d.Mode)
	fmtOK := true
	want := func(cond bool, format string, args ...any) {
		if !cond {
			unusable(format, args...)
			fmtOK = false
		}
	}
	switch d.DataFormat {
	case layout.DataBTree:
		want(d.ForkCount == 1, "data format 2 (B+tree) with fork count %d, want 1", d.ForkCount)
	case layout.DataInline:
		want(d.ForkCount == 0, "data format 1 (inline) with fork count %d, want 0", d.ForkCount)
	}
	switch ft {
	case syscall.S_IFREG:
		res.stats.Files++
		want(d.DataFormat != layout.DataInline, "regular file with data format 1 (inline)")
		if d.Size > layout.MaxFileBytes {
			bad("size %d, past the largest file (2^62 bytes)", d.Size)
			if rp != nil {
				rp.badSize = true
			}
		}
	case syscall.S_IFLNK:
		res.stats.Symlinks++
		want(d.Size >= 1 && d.Size <= maxSymlink, "symlink of %d bytes, want 1 to %d", d.Size, maxSymlink)
		if d.Size <= layout.ForkSize {
			want(d.DataFormat == layout.DataInline, "symlink of %d bytes with data format %d, want 1 (inline)", d.Size, d.DataFormat)
		} else {
			want(d.DataFormat != layout.DataInline, "inline symlink of %d bytes, at most %d fit", d.Size, layout.ForkSize)
		}
	case syscall.S_IFDIR:
		res.stats.Dirs++
		want(d.DataFormat == layout.DataBTree, "directory with data format %d, want 2 (B+tree)", d.DataFormat)
		if want := d.Blocks * uint64(c.bs); d.Size != want {
			bad("directory size %d, want blocks × block size = %d", d.Size, want)
		}
	default:
		res.stats.Special++
		want(d.DataFormat == layout.DataExtents && d.ForkCount == 0,
			"%s with data format %d and fork count %d, want 0 and 0", typeName(d.Mode), d.DataFormat, d.ForkCount)
		if d.Size != 0 {
			bad("%s of size %d, want 0", typeName(d.Mode), d.Size)
		}
	}
	var dataEnd int
	switch d.DataFormat {
	case layout.DataExtents:
		dataEnd = int(d.ForkCount) * layout.ExtentSize
	case layout.DataInline:
		dataEnd = int(min(d.Size, layout.ForkSize))
	case layout.DataBTree:
		dataEnd = layout.DirForkBytes
	}
	if d.ForkOffset != 0 && dataEnd > int(d.ForkOffset) {
		unusable("data fork (%d bytes, data format %d, fork count %d) runs past the fork offset %d",
			dataEnd, d.DataFormat, d.ForkCount, d.ForkOffset)
		fmtOK = false
	}
	if !fmtOK {
		res.incomplete = res.incomplete || ft == syscall.S_IFDIR
		return
	}

	// The trees, and the blocks they account for.
	owned, countable := uint64(0), true
	switch {
	case ft == syscall.S_IFDIR:
		n, ok := c.directory(ino, &d, info)
		owned += n
		countable = countable && ok
		if rp != nil {
			c.collectIndex(ino, &d, info, ok)
		}
	case ft == syscall.S_IFREG || ft == syscall.S_IFLNK && d.DataFormat != layout.DataInline:
		n, ok := c.extents(ino, &d)
		owned += n
		countable = countable && ok
		if rp != nil {
			c.collectData(ino, &d, rp, ok)
		}
	}
	if d.XattrBlock != 0 || d.ForkOffset != 0 {
		n, ok := c.xattrs(ino, &d)
		owned += n
		countable = countable && ok
		if rp != nil {
			c.collectXattrs(ino, &d, rp, ok)
		}
	}
	if countable && owned != d.Blocks {
		bad("counts %d blocks, but owns %d (data and tree nodes)", d.Blocks, owned)
	}
}

// tableBlock is the inode-table block holding ino's slot.
func (c *inodeChecker) tableBlock(ino uint64) uint64 {
	a, idx, _ := c.g.SplitIno(ino)
	blk, _ := c.g.InodeLocation(a, idx)
	return blk
}

func typeName(mode uint32) string {
	switch fileType(mode) {
	case syscall.S_IFIFO:
		return "FIFO"
	case syscall.S_IFSOCK:
		return "socket"
	case syscall.S_IFCHR:
		return "character device"
	case syscall.S_IFBLK:
		return "block device"
	}
	return fmt.Sprintf("mode %#o", mode)
}

// nodeRE finds the node a btree error names ("btree: node N (owner O)").
var nodeRE = regexp.MustCompile(`btree: node (\d+) \(owner`)

// treeFail reports a tree's error, naming the block at fault: the node
// the error names, or else the tree's root.
func (c *inodeChecker) treeFail(ino uint64, what string, root uint64, err error) {
	if m := nodeRE.FindStringSubmatch(err.Error()); m != nil {
		if n, perr := strconv.ParseUint(m[1], 10, 64); perr == nil && n != root {
			c.res.fail("inode %d: %s block %d (root block %d): %w", ino, what, n, root, err)
			return
		}
	}
	c.res.fail("inode %d: %s (root block %d): %w", ino, what, root, err)
}

// directory checks a directory's index and collects its entries; it
// returns the index's node count and whether it could be counted.
func (c *inodeChecker) directory(ino uint64, d *layout.Inode, info *inodeInfo) (uint64, bool) {
	root := d.TreeRoot()
	info.parent, info.root = d.Parent(), root
	if root == 0 {
		c.res.fail("inode %d (table block %d): directory without an index (root block 0)", ino, info.table)
		c.res.incomplete = true
		return 0, false
	}
	dd, err := dir.Open(c.tx, fs.DirConfig(c.sb, ino), root)
	if err == nil {
		var di dir.Info
		if di, err = dd.Check(); err == nil {
			c.res.stats.MaxIndexDepth = max(c.res.stats.MaxIndexDepth, di.Depth)
		}
	}
	if err == nil {
		err = dd.Iterate(0, func(name string, child uint64, typ uint8, _ uint64) bool {
			info.entries = append(info.entries, dirEntry{name: name, ino: child, typ: typ})
			return true
		})
	}
	var nodes uint64
	if err == nil {
		err = dd.Tree().Walk(func(uint64, int) error { nodes++; return nil })
	}
	if err != nil {
		c.treeFail(ino, "directory index", root, err)
		info.entries = nil
		c.res.incomplete = true
		return 0, false
	}
	info.indexOK = true
	c.res.stats.Entries += uint64(len(info.entries))
	return nodes, true
}

// extents checks the data map of a regular file or long symlink: inline
// extent records or an extent tree, every extent decoded, sorted and not
// overlapping. It returns the data blocks and tree nodes it maps.
func (c *inodeChecker) extents(ino uint64, d *layout.Inode) (uint64, bool) {
	var (
		blocks  uint64
		prevEnd uint64
		n       int
	)
	// next takes the extents in order; where names the block holding it.
	next := func(e layout.Extent, where string) bool {
		if n > 0 && e.Logical < prevEnd {
			c.res.fail("inode %d: %s: extent at file block %d overlaps or precedes the one ending at %d", ino, where, e.Logical, prevEnd)
			return false
		}
		n++
		prevEnd = e.Logical + uint64(e.Len)
		blocks += uint64(e.Len)
		return true
	}
	if d.DataFormat == layout.DataExtents {
		where := fmt.Sprintf("inline extents (table block %d)", c.tableBlock(ino))
		for i := range int(d.ForkCount) {
			e, err := layout.DecodeExtent(d.Fork[i*layout.ExtentSize:], c.g)
			if err != nil {
				c.res.fail("inode %d: %s: extent %d: %w", ino, where, i, err)
				return 0, false
			}
			if !next(e, where) {
				return 0, false
			}
		}
		return blocks, true
	}
	root := d.TreeRoot()
	if root == 0 {
		c.res.fail("inode %d: extent tree root block 0", ino)
		return 0, false
	}
	cfg := fs.ExtentTreeConfig(c.sb, ino)
	if err := btree.Check(c.tx, cfg, root); err != nil {
		c.treeFail(ino, "extent tree", root, err)
		return 0, false
	}
	t, err := btree.Open(c.tx, cfg, root)
	if err != nil {
		c.treeFail(ino, "extent tree", root, err)
		return 0, false
	}
	var leaves []uint64
	nodes, depth := uint64(0), 0
	if err := t.Walk(func(blk uint64, level int) error {
		nodes++
		depth = max(depth, level+1)
		if level == 0 {
			leaves = append(leaves, blk)
		}
		return nil
	}); err != nil {
		c.treeFail(ino, "extent tree", root, err)
		return 0, false
	}
	c.res.stats.ExtentTrees++
	c.res.stats.MaxExtentTree = max(c.res.stats.MaxExtentTree, depth)
	// The leaves in key order (btree.Check verified them), each entry an
	// extent record with its logical block in the key (FORMAT.md §12.2).
	for _, leaf := range leaves {
		b, err := c.tx.Read(leaf, nil)
		if err != nil {
			c.treeFail(ino, "extent tree", root, fmt.Errorf("btree: node %d (owner %d): %w", leaf, ino, err))
			return 0, false
		}
		where := fmt.Sprintf("extent tree block %d", leaf)
		ok := leafEntries(b, func(i int, k, v []byte) bool {
			if len(k) != 8 || len(v) != 16 {
				c.res.fail("inode %d: %s: entry %d of %d+%d bytes, want 8+16", ino, where, i, len(k), len(v))
				return false
			}
			var rec [layout.ExtentSize]byte
			binary.LittleEndian.PutUint64(rec[0:], binary.BigEndian.Uint64(k))
			copy(rec[8:], v)
			e, err := layout.DecodeExtent(rec[:], c.g)
			if err != nil {
				c.res.fail("inode %d: %s: entry %d: %w", ino, where, i, err)
				return false
			}
			return next(e, where)
		})
		if !ok {
			return 0, false
		}
	}
	return blocks + nodes, true
}

// leafEntries calls fn for each entry of a B+tree leaf that btree.Check
// has verified (FORMAT.md §9.1), until fn returns false; it reports
// whether every call returned true. Out-of-bounds slots end it with false.
func leafEntries(b []byte, fn func(i int, k, v []byte) bool) bool {
	const offCount, slots, hdr = 66, 96, 4
	le := binary.LittleEndian
	cnt := int(le.Uint16(b[offCount:]))
	for i := range cnt {
		if slots+2*i+2 > len(b) {
			return false
		}
		o := int(le.Uint16(b[slots+2*i:]))
		if o+hdr > len(b) {
			return false
		}
		kl, vl := int(le.Uint16(b[o:])), int(le.Uint16(b[o+2:]))
		if o+hdr+kl+vl > len(b) {
			return false
		}
		if !fn(i, b[o+hdr:o+hdr+kl], b[o+hdr+kl:o+hdr+kl+vl]) {
			return false
		}
	}
	return true
}

// xattrs checks an inode's inline attributes and attribute tree; it
// returns the tree's node count.
func (c *inodeChecker) xattrs(ino uint64, d *layout.Inode) (uint64, bool) {
	// The inline area, as fs.FS.openXattr passes it.
	off := d.XattrStart()
	area := make([]byte, layout.ForkSize-off)
	if d.ForkOffset != 0 {
		copy(area, d.Fork[off:])
	}
	tblk := c.tableBlock(ino)
	s, err := xattr.Open(c.tx, area, d.XattrBlock, fs.XattrTreeConfig(c.sb, ino))
	if err != nil {
		c.res.fail("inode %d: inline attributes (table block %d, fork offset %d): %w", ino, tblk, d.ForkOffset, err)
		return 0, false
	}
	if err := s.Check(); err != nil {
		if d.XattrBlock != 0 {
			c.treeFail(ino, "xattr tree", d.XattrBlock, err)
		} else {
			c.res.fail("inode %d: inline attributes (table block %d): %w", ino, tblk, err)
		}
		return 0, false
	}
	var nodes uint64
	if err := s.Walk(func(uint64) error { nodes++; return nil }); err != nil {
		c.treeFail(ino, "xattr tree", d.XattrBlock, err)
		return 0, false
	}
	if d.XattrBlock != 0 {
		c.res.stats.XattrTrees++
	}
	return nodes, true
}
