package fs

import (
	"encoding/binary"
	"errors"
	"fmt"

	"agfs/dir"
	"agfs/layout"
)

// Deep is a whole-filesystem consistency check for the tests, run on an
// open FS with no request in flight: it walks the tree from the root and
// the orphan lists, and checks
//
//   - every directory's index (dir.Check), parent pointer and link count
//     (2 + subdirectories), every other inode's link count against the
//     names found;
//   - every block an inode owns (data extents, extent/dir/xattr tree
//     nodes) is owned once, is inside the filesystem, is marked used in
//     its AG's block bitmap, and their number is the inode's block count;
//   - per AG, used blocks (header) = reserved + owned blocks, and used
//     inodes = reachable inodes + orphans, so nothing leaks.
func (f *FS) Deep() error {
	c := &deepCheck{f: f, owner: map[uint64]uint64{}, names: map[uint64]uint32{}, seen: map[uint64]bool{},
		usedByAG: make([]uint64, f.g.AGCount), inosByAG: make([]uint64, f.g.AGCount), data: map[uint64]bool{}}
	if err := c.run(); err != nil {
		return err
	}
	// Metadata only: see CheckCache.
	return f.log.CheckCache(func(b uint64) bool { return !c.data[b] && (c.owner[b] != 0 || c.bitSet(b)) })
}

type deepCheck struct {
	f        *FS
	owner    map[uint64]uint64 // block → inode
	data     map[uint64]bool   // file data blocks
	names    map[uint64]uint32 // inode → names found (non-directories)
	seen     map[uint64]bool
	usedByAG []uint64
	inosByAG []uint64
	errs     []error
}

func (c *deepCheck) fail(format string, a ...any) {
	if len(c.errs) < 20 {
		c.errs = append(c.errs, fmt.Errorf(format, a...))
	}
}

func (c *deepCheck) run() error {
	f := c.f
	tx := f.log.Begin()
	defer tx.Abort()
	type dirItem struct{ ino, parent uint64 }
	queue := []dirItem{{layout.RootIno, layout.RootIno}}
	inodes := map[uint64]layout.Inode{}
	for len(queue) > 0 {
		it := queue[0]
		queue = queue[1:]
		d, err := f.readSlot(it.ino)
		if err != nil {
			c.fail("dir %d: %v", it.ino, err)
			continue
		}
		if !isDir(d.Mode) {
			c.fail("dir %d: mode %#o", it.ino, d.Mode)
			continue
		}
		if c.seen[it.ino] {
			c.fail("dir %d reached twice", it.ino)
			continue
		}
		c.seen[it.ino] = true
		inodes[it.ino] = d
		if p := d.Parent(); p != it.parent {
			c.fail("dir %d: parent pointer %d, found in %d", it.ino, p, it.parent)
		}
		dd, err := dir.Open(tx, f.dirCfg(it.ino, nil), d.TreeRoot())
		if err != nil {
			c.fail("dir %d: %v", it.ino, err)
			continue
		}
		if _, err := dd.Check(); err != nil {
			c.fail("dir %d: %v", it.ino, err)
		}
		subdirs := uint32(0)
		err = dd.Iterate(0, func(name string, ino uint64, typ uint8, _ uint64) bool {
			cd, err := f.readSlot(ino)
			if err != nil || cd.Mode == 0 {
				c.fail("dir %d: entry %q names inode %d: %v (mode %#o)", it.ino, name, ino, err, cd.Mode)
				return true
			}
			if dtype(cd.Mode) != typ {
				c.fail("dir %d: entry %q type %d, inode mode %#o", it.ino, name, typ, cd.Mode)
			}
			if isDir(cd.Mode) {
				subdirs++
				queue = append(queue, dirItem{ino, it.ino})
				return true
			}
			c.names[ino]++
			inodes[ino] = cd
			return true
		})
		if err != nil {
			c.fail("dir %d: iterate: %v", it.ino, err)
		}
		if d.Nlink != 2+subdirs {
			c.fail("dir %d: nlink %d, want %d", it.ino, d.Nlink, 2+subdirs)
		}
	}
	for ino, k := range c.names {
		if d := inodes[ino]; d.Nlink != k {
			c.fail("inode %d: nlink %d, %d names", ino, d.Nlink, k)
		}
	}
	// Orphans.
	orphans := 0
	for a := range f.g.AGCount {
		hdr := make([]byte, f.bs)
		if err := f.log.Read(f.g.AGHeaderBlock(a), nil, hdr); err != nil {
			return err
		}
		for cur, steps := binary.LittleEndian.Uint64(hdr[layout.OffAGOrphanHead:]), 0; cur != 0; steps++ {
			if steps > 1<<20 {
				c.fail("ag %d: orphan list loops", a)
				break
			}
			d, err := f.readSlot(cur)
			if err != nil || d.Mode == 0 || d.Nlink != 0 {
				c.fail("ag %d: orphan %d: %v mode %#o nlink %d", a, cur, err, d.Mode, d.Nlink)
				break
			}
			if _, ok := inodes[cur]; ok {
				c.fail("orphan %d is reachable", cur)
			}
			inodes[cur] = d
			orphans++
			blk, off := f.slot(cur)
			b, _ := tx.Read(blk, nil)
			cur = binary.LittleEndian.Uint64(b[off+offNextOrphan:])
		}
	}
	for ino, d := range inodes {
		a, _, _ := f.g.SplitIno(ino)
		c.inosByAG[a]++
		c.inode(ino, &d)
	}
	// Per-AG totals.
	for a := range f.g.AGCount {
		hdr := make([]byte, f.bs)
		if err := f.log.Read(f.g.AGHeaderBlock(a), nil, hdr); err != nil {
			return err
		}
		le := binary.LittleEndian
		free := le.Uint64(hdr[layout.OffAGFreeBlocks:])
		freeIno := le.Uint64(hdr[layout.OffAGFreeInodes:])
		used := f.g.AGLen(a) - free
		if want := f.g.ReservedBlocks(a) + c.usedByAG[a]; used != want {
			c.fail("ag %d: %d blocks used, %d reserved + %d owned by inodes (leak of %d)", a, used, f.g.ReservedBlocks(a), c.usedByAG[a], int64(used)-int64(want))
		}
		usedIno := uint64(f.g.InodesPerAG) - freeIno - 1
		if usedIno != c.inosByAG[a] {
			c.fail("ag %d: %d inodes used, %d reachable or orphaned", a, usedIno, c.inosByAG[a])
		}
	}
	return errors.Join(c.errs...)
}

// inode checks the blocks of one inode.
func (c *deepCheck) inode(ino uint64, d *layout.Inode) {
	f := c.f
	var blocks uint64
	own := func(blk, n uint64, what string) {
		for b := blk; b < blk+n; b++ {
			if b >= f.g.BlockCount {
				c.fail("inode %d: %s block %d beyond the filesystem", ino, what, b)
				return
			}
			if o, ok := c.owner[b]; ok {
				c.fail("inode %d: %s block %d also owned by inode %d", ino, what, b, o)
				return
			}
			c.owner[b] = ino
			if !c.bitSet(b) {
				c.fail("inode %d: %s block %d is free in the bitmap", ino, what, b)
			}
			c.usedByAG[f.g.AGOf(b)]++
		}
		blocks += n
	}
	rtx := f.log.Begin()
	defer rtx.Abort()
	switch {
	case isDir(d.Mode):
		dd, err := dir.Open(rtx, f.dirCfg(ino, nil), d.TreeRoot())
		if err != nil {
			c.fail("dir %d: %v", ino, err)
			return
		}
		dd.Tree().Walk(func(blk uint64, _ int) error { own(blk, 1, "dir node"); return nil })
	case d.DataFormat == layout.DataInline:
	default:
		m, err := f.openMap(rtx, ino, d, nil)
		if err != nil {
			c.fail("inode %d: %v", ino, err)
			return
		}
		if m.tree != nil {
			if err := m.tree.Check(); err != nil {
				c.fail("inode %d: extent tree: %v", ino, err)
			}
			m.tree.Walk(func(blk uint64, _ int) error { own(blk, 1, "extent node"); return nil })
		}
		ext, err := m.extents()
		if err != nil {
			c.fail("inode %d: %v", ino, err)
		}
		var prevEnd uint64
		for i, e := range ext {
			if i > 0 && e.Logical < prevEnd {
				c.fail("inode %d: extents overlap at file block %d", ino, e.Logical)
			}
			prevEnd = extEnd(e)
			own(e.Physical, uint64(e.Len), "data")
			for b := e.Physical; b < e.Physical+uint64(e.Len); b++ {
				c.data[b] = true
			}
		}
		if !isReg(d.Mode) && !isLnk(d.Mode) && len(ext) > 0 {
			c.fail("inode %d: mode %#o with extents", ino, d.Mode)
		}
	}
	if d.XattrBlock != 0 || d.ForkOffset != 0 {
		s, err := f.openXattr(rtx, ino, d, nil)
		if err != nil {
			c.fail("inode %d: xattrs: %v", ino, err)
		} else {
			if err := s.Check(); err != nil {
				c.fail("inode %d: xattrs: %v", ino, err)
			}
			s.Walk(func(blk uint64) error { own(blk, 1, "xattr node"); return nil })
		}
	}
	if blocks != d.Blocks {
		c.fail("inode %d (mode %#o): owns %d blocks, counts %d", ino, d.Mode, blocks, d.Blocks)
	}
}

func (c *deepCheck) bitSet(b uint64) bool {
	f := c.f
	a := f.g.AGOf(b)
	rel := b - f.g.AGStart(a)
	bpb := f.g.BitsPerBitmapBlock()
	hdr, err := f.log.View(f.g.AGHeaderBlock(a), nil)
	if err != nil {
		return false
	}
	if uint32(rel/bpb) >= binary.LittleEndian.Uint32(hdr[layout.OffAGBlockBitmapInit:]) {
		return false
	}
	buf, err := f.log.View(f.g.BlockBitmapStart(a)+rel/bpb, nil)
	if err != nil {
		return false
	}
	i := rel % bpb
	return buf[layout.HeaderSize+int(i/8)]&(1<<(i%8)) != 0
}

// TableSize is the number of inodes in memory.
func (f *FS) TableSize() int {
	n := 0
	for i := range f.shards {
		s := &f.shards[i]
		s.mu.Lock()
		n += len(s.m)
		s.mu.Unlock()
	}
	return n
}

// Extents returns the extents of ino.
func (f *FS) Extents(ino uint64) ([]layout.Extent, uint8, error) {
	n, err := f.get(ino)
	if err != nil {
		return nil, 0, err
	}
	defer f.put(n)
	n.mu.RLock()
	defer n.mu.RUnlock()
	tx := f.log.Begin()
	defer tx.Abort()
	m, err := f.openMap(tx, ino, &n.d, nil)
	if err != nil {
		return nil, 0, err
	}
	e, err := m.extents()
	return e, n.d.DataFormat, err
}

// Inode returns ino's committed inode.
func (f *FS) Inode(ino uint64) (layout.Inode, error) {
	n, err := f.get(ino)
	if err != nil {
		return layout.Inode{}, err
	}
	defer f.put(n)
	n.mu.RLock()
	defer n.mu.RUnlock()
	return n.d, nil
}

// LockOrderProbe runs an operation that takes AG hi, then AG lo (< hi):
// the first attempt must fail with the lock order error, the retry (with
// both taken up front) succeed. It returns the number of attempts.
func (f *FS) LockOrderProbe(lo, hi uint32) (int, error) {
	attempts := 0
	_, err := f.run(func(o *op) error {
		attempts++
		if err := o.lockAG(hi); err != nil {
			return err
		}
		return o.lockAG(lo)
	})
	return attempts, err
}

// DataFlushesForBench is Stats().DataFlushes without the shard walk.
func (f *FS) DataFlushesForBench() uint64 { return f.dataFlushes() }
