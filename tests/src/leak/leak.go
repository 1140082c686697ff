// Package leak plants orphans on an unmounted agfs image, for the tests of
// the orphan scanner (fs/scan_test.go, tests/generic/100 through
// tests/src/plantleak): a block marked used that no inode owns, a regular
// file, linked once and owning one data block, that no directory names,
// and an empty file with no link that is not on its AG's orphan list. All
// are made the way a lost update would leave them: allocated
// and written through the log in one committed transaction, so the image
// is otherwise consistent and replays cleanly.
package leak

import (
	"fmt"
	"syscall"
	"time"

	"agfs/ag"
	"agfs/disk"
	"agfs/fs"
	"agfs/layout"
	"agfs/wal"
)

// Planted is what Plant leaked.
type Planted struct {
	Block     uint64 // the unowned block
	Inode     uint64 // the unnamed inode
	DataBlock uint64 // the block the unnamed inode owns
	Unlinked  uint64 // the inode with no link
}

// Plant leaks a block and an inode on dev, which must not be mounted.
func Plant(dev disk.Device) (Planted, error) {
	var p Planted
	sb, err := fs.ReadSuperblock(dev)
	if err != nil {
		return p, err
	}
	region := wal.Region{BlockSize: int(sb.BlockSize), Start: sb.LogStart, Blocks: sb.LogBlocks}
	log, _, err := wal.Open(dev, region, sb.Seed(), wal.Options{})
	if err != nil {
		return p, fmt.Errorf("log: %w", err)
	}
	gs, err := ag.OpenGroups(log, sb)
	if err != nil {
		log.Close()
		return p, err
	}
	tx := log.Begin()
	err = plant(tx, gs, sb, &p)
	if err != nil {
		tx.Abort()
	} else {
		_, err = tx.Commit()
	}
	if cerr := log.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = dev.Flush()
	}
	return p, err
}

func plant(tx *wal.Tx, gs *ag.Groups, sb *layout.Superblock, p *Planted) error {
	g := &sb.Geometry
	// Everything in AG 0, near the root: one AG lock, taken once.
	var err error
	if p.Inode, err = gs.AllocInode(tx, layout.RootIno, false); err != nil {
		return fmt.Errorf("allocating an inode: %w", err)
	}
	if p.Unlinked, err = gs.AllocInode(tx, layout.RootIno, false); err != nil {
		return fmt.Errorf("allocating an inode: %w", err)
	}
	ext, err := gs.AllocBlocks(tx, 2, g.AGStart(0), ag.Contiguous)
	if err != nil {
		return fmt.Errorf("allocating the blocks: %w", err)
	}
	p.Block, p.DataBlock = ext[0].Start, ext[0].Start+1

	now := time.Now().UnixNano()
	in := layout.Inode{Mode: syscall.S_IFREG | 0o644, Nlink: 1, Size: uint64(sb.BlockSize), Blocks: 1,
		Atime: now, Mtime: now, Ctime: now, Btime: now, DataFormat: layout.DataExtents, ForkCount: 1}
	layout.Extent{Physical: p.DataBlock, Len: 1}.Encode(in.Fork[:])
	if err := writeInode(tx, g, p.Inode, in); err != nil {
		return err
	}
	in = layout.Inode{Mode: syscall.S_IFREG | 0o600, Atime: now, Mtime: now, Ctime: now, Btime: now}
	return writeInode(tx, g, p.Unlinked, in)
}

// writeInode writes in into ino's free slot, with the slot's next
// generation.
func writeInode(tx *wal.Tx, g *layout.Geometry, ino uint64, in layout.Inode) error {
	a, idx, _ := g.SplitIno(ino)
	blk, off := g.InodeLocation(a, idx)
	b, err := tx.Read(blk, nil)
	if err != nil {
		return fmt.Errorf("inode table block %d: %w", blk, err)
	}
	var old layout.Inode
	if err := old.Decode(b[off : off+layout.InodeSize]); err != nil {
		return fmt.Errorf("inode %d: %w", ino, err)
	}
	in.Generation = old.Generation + 1
	slot := make([]byte, layout.InodeSize)
	in.Encode(slot)
	return tx.Write(blk, off, slot)
}
