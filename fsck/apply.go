package fsck

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"
	"syscall"

	"agfs/btree"
	"agfs/dir"
	"agfs/fs"
	"agfs/layout"
	"agfs/wal"
)

// apply writes the plan through the log: superblocks, then every tree
// that is rebuilt or changed (allocating from the block map), then the
// inode slots, and last the bitmaps and AG headers made from the block
// map and the inodes kept (bitmaps.go).
func (p *plan) apply() error {
	region := wal.Region{BlockSize: int(p.sb.BlockSize), Start: p.sb.LogStart, Blocks: p.sb.LogBlocks}
	log, _, err := wal.Open(p.dev, region, p.sb.Seed(), wal.Options{})
	if err != nil {
		return fmt.Errorf("repair: open the log: %w", err)
	}
	w := newWriter(log, p.sb.LogBlocks)
	err = p.write(w)
	if cerr := w.close(); err == nil {
		err = cerr
	}
	return err
}

func (p *plan) write(w *writer) error {
	blks := make([]uint64, 0, len(p.sbWrites))
	for blk := range p.sbWrites {
		blks = append(blks, blk)
	}
	slices.Sort(blks)
	for _, blk := range blks {
		if err := w.put(blk, p.sbWrites[blk]); err != nil {
			return err
		}
	}
	for _, n := range p.sorted() {
		if err := p.writeTrees(w, n); err != nil {
			return fmt.Errorf("inode %d: %w", n.ino, err)
		}
	}
	if err := p.writeTables(w); err != nil {
		return err
	}
	return p.writeAGs(w)
}

// writeTrees rebuilds or changes n's trees and sets its slot to match:
// attributes, data map, directory index, then the counts (FORMAT.md
// §12.1).
func (p *plan) writeTrees(w *writer, n *node) error {
	d := &n.d
	switch {
	case n.dropXattrAll:
		clear(d.Fork[d.XattrStart():])
		if d.DataFormat == layout.DataInline {
			clear(d.Fork[min(d.Size, layout.ForkSize):])
		}
		d.ForkOffset, d.XattrBlock = 0, 0
	case n.dropXattrTree:
		d.XattrBlock = 0
	default:
		n.nodes[treeXattr] = uint64(len(n.taken[treeXattr]))
	}

	ft := fileType(d.Mode)
	data := ft == syscall.S_IFREG || ft == syscall.S_IFLNK && d.DataFormat != layout.DataInline
	var mapped uint64
	for _, e := range n.ext {
		mapped += uint64(e.Len)
	}
	switch {
	case data && n.rebuildData:
		if err := p.rebuildData(w, n); err != nil {
			return fmt.Errorf("rebuild the data map: %w", err)
		}
	case data:
		n.nodes[treeData] = uint64(len(n.taken[treeData]))
	case ft == syscall.S_IFDIR:
		if err := p.writeIndex(w, n); err != nil {
			return fmt.Errorf("directory index: %w", err)
		}
		d.SetParent(n.parent)
	case ft == syscall.S_IFLNK: // inline: its target is in the slot
	default:
		mapped = 0
		if d.Size != 0 {
			p.fix(n.ino, true, "%s of size %d: size set to 0", typeName(d.Mode), d.Size)
			d.Size = 0
		}
	}

	if n.rp != nil && n.rp.badSize {
		size := uint64(0)
		if len(n.ext) > 0 {
			last := n.ext[len(n.ext)-1]
			size = (last.Logical + uint64(last.Len)) * uint64(p.sb.BlockSize)
		}
		d.Size = size // reported by plan.inodes
	}
	blocks := mapped + n.nodes[treeData] + n.nodes[treeDir] + n.nodes[treeXattr]
	if !n.created && d.Blocks != blocks {
		p.fix(n.ino, true, "counts %d blocks, but owns %d: corrected", d.Blocks, blocks)
	}
	d.Blocks = blocks
	if ft == syscall.S_IFDIR {
		size := blocks * uint64(p.sb.BlockSize)
		if !n.created && d.Size != size {
			p.fix(n.ino, true, "directory size %d, want blocks × block size = %d: corrected", d.Size, size)
		}
		d.Size = size
	}
	d.Nlink, d.NextOrphan = n.nlink, 0
	return nil
}

// rebuildData writes n's extents as a new data map: inline when they fit
// before the attributes, else a new extent tree (FORMAT.md §12.2).
func (p *plan) rebuildData(w *writer, n *node) error {
	d := &n.d
	end, room := layout.ForkSize, layout.MaxInlineExtents
	if d.ForkOffset != 0 {
		end, room = int(d.ForkOffset), int(d.ForkOffset)/layout.ExtentSize
	}
	clear(d.Fork[:end])
	if len(n.ext) <= room {
		d.DataFormat, d.ForkCount = layout.DataExtents, uint8(len(n.ext))
		for i, e := range n.ext {
			e.Encode(d.Fork[i*layout.ExtentSize:])
		}
		return nil
	}
	cfg := fs.ExtentTreeConfig(p.sb, n.ino)
	cfg.Alloc, cfg.Goal = p.space, n.ext[0].Physical
	t, err := btree.Create(w.tx, cfg)
	if err != nil {
		return err
	}
	var key [8]byte
	var val [16]byte
	for i, e := range n.ext {
		binary.BigEndian.PutUint64(key[:], e.Logical)
		binary.LittleEndian.PutUint64(val[0:], e.Physical)
		binary.LittleEndian.PutUint32(val[8:], e.Len)
		binary.LittleEndian.PutUint32(val[12:], e.Flags)
		if err := t.Put(key[:], val[:]); err != nil {
			return err
		}
		if i%64 == 63 {
			if err := p.nextTx(w, t.SetTx, 8); err != nil {
				return err
			}
		}
	}
	d.DataFormat, d.ForkCount = layout.DataBTree, 1
	d.SetTreeRoot(t.Root)
	n.nodes[treeData], err = countNodes(t)
	return err
}

// nextTx charges the writer for a batch of tree changes; when that
// commits the transaction, the tree moves to the next one.
func (p *plan) nextTx(w *writer, setTx func(*wal.Tx), cost int) error {
	tx := w.tx
	if err := w.spend(cost); err != nil {
		return err
	}
	if w.tx != tx {
		setTx(w.tx)
	}
	return nil
}

func countNodes(t *btree.Tree) (uint64, error) {
	var n uint64
	err := t.Walk(func(uint64, int) error { n++; return nil })
	return n, err
}

// writeIndex builds a directory's index anew, or applies the changes to
// its entries in place (which keeps the readdir cookies of the others).
func (p *plan) writeIndex(w *writer, n *node) error {
	cfg := fs.DirConfig(p.sb, n.ino)
	cfg.Alloc, cfg.Goal = p.space, p.g.InodeTableStart(p.agOf(n.ino))
	if !n.rebuildIndex && !n.changed {
		n.nodes[treeDir] = uint64(len(n.taken[treeDir]))
		return nil
	}
	var (
		dd  *dir.Dir
		err error
	)
	todo := n.entries
	if n.rebuildIndex {
		dd, err = dir.Create(w.tx, cfg)
	} else {
		dd, err = dir.Open(w.tx, cfg, n.d.TreeRoot())
		todo = nil
		want := map[string]dirEntry{}
		for _, e := range n.entries {
			want[e.name] = e
		}
		for _, e := range n.info.entries {
			ne, ok := want[e.name]
			delete(want, e.name)
			switch {
			case err != nil:
			case !ok:
				_, _, err = dd.Remove(e.name)
			case ne.typ != e.typ || ne.ino != e.ino:
				_, _, err = dd.Replace(e.name, ne.ino, ne.typ)
			}
			if err == nil {
				err = p.nextTx(w, dd.SetTx, 4)
			}
		}
		for _, e := range n.entries {
			if _, ok := want[e.name]; ok {
				todo = append(todo, e)
			}
		}
	}
	for _, e := range todo {
		if err != nil {
			break
		}
		if _, err = dd.Insert(e.name, e.ino, e.typ); err == nil {
			err = p.nextTx(w, dd.SetTx, 4)
		}
	}
	if err != nil {
		return err
	}
	n.d.DataFormat, n.d.ForkCount = layout.DataBTree, 1
	n.d.SetTreeRoot(dd.Root())
	n.nodes[treeDir], err = countNodes(dd.Tree())
	return err
}

func (p *plan) agOf(ino uint64) uint32 {
	a, _, _ := p.g.SplitIno(ino)
	return a
}

// writeTables writes every inode-table block whose slots change, or that
// did not verify: kept inodes as planned, cleared ones zeroed but for
// their generation, the free slots as they were.
func (p *plan) writeTables(w *writer) error {
	ipb := p.g.InodesPerBlock()
	for a := range p.g.AGCount {
		t := p.sc.ags[a].table
		for j := range uint32(len(t.blocks)) {
			blk := p.g.InodeTableStart(a) + uint64(j)
			old := t.blocks[j]
			img := make([]byte, len(old))
			copy(img, old)
			layout.PutHeader(img, layout.MagicInodeTable, blk, uint64(a))
			for k := range ipb {
				idx := j*ipb + k
				ino := p.g.Ino(a, idx)
				off := layout.HeaderSize + int(k)*layout.InodeSize
				slot := img[off : off+layout.InodeSize]
				switch n := p.nodes[ino]; {
				case n != nil:
					n.d.Encode(slot)
				case p.cleared[ino] || t.bad[j]:
					gen := binary.LittleEndian.Uint32(slot[64:])
					clear(slot)
					binary.LittleEndian.PutUint32(slot[64:], gen)
				}
			}
			if !t.bad[j] && bytes.Equal(img[layout.HeaderSize:], old[layout.HeaderSize:]) {
				continue
			}
			if err := w.put(blk, img); err != nil {
				return err
			}
		}
	}
	return nil
}
