package ag

import (
	"agfs/layout"
	"agfs/wal"
)

// AllocInode allocates an inode in the AG for tx: the first free index at
// or after goalIndex, wrapping round to the start of the AG. dir says
// whether it will be a directory (the header counts directories, for
// Groups' spreading of new directories).
//
// A goal in an inode-table block beyond the first uninitialised one is
// moved back to the start of that block, so one allocation initialises at
// most one inode-table block: a
// block beyond the header's inode-table mark is created with tx.Init (the
// common header, magic layout.MagicInodeTable, owner the AG, and free
// slots) and the mark advanced; inode-bitmap blocks likewise. The caller
// writes the inode itself, in the same transaction.
//
// The error wraps syscall.ENOSPC when the AG has no free inode.
func (a *AG) AllocInode(tx *wal.Tx, goalIndex uint32, dir bool) (ino uint64, err error) {
	if err := a.lock(tx); err != nil {
		return 0, err
	}
	return a.allocInode(tx, goalIndex, dir)
}

func (a *AG) allocInode(tx *wal.Tx, goal uint32, dir bool) (uint64, error) {
	g := a.g
	if a.hdr.FreeInodes == 0 {
		return 0, a.enospc("no free inode")
	}
	ipb := g.InodesPerBlock()
	if mark := a.hdr.InodeTableInit; goal/ipb > mark {
		goal = mark * ipb
	}
	i64, ok := a.im.FindFirstZero(uint64(goal))
	if !ok {
		return 0, a.corrupt("header counts %d free inodes, the inode bitmap none", a.hdr.FreeInodes)
	}
	i := uint32(i64)
	tb := i / ipb
	ib := uint32(i64 / a.im.BitsPerBlock())
	oldTable, oldBitmap := a.hdr.InodeTableInit, a.hdr.InodeBitmapInit

	a.dirty = true
	a.im.Set(i64)
	a.undo = append(a.undo, undoRec{op: undoAllocInode, s: i64})
	a.hdr.FreeInodes--
	if dir {
		a.hdr.Dirs++
	}
	if tb >= oldTable {
		a.hdr.InodeTableInit = tb + 1
	}
	if ib >= oldBitmap {
		a.hdr.InodeBitmapInit = ib + 1
	}

	if tb >= oldTable {
		for b := oldTable; b <= tb; b++ {
			blk := g.InodeTableStart(a.no) + uint64(b)
			clear(a.img)
			layout.PutHeader(a.img, layout.MagicInodeTable, blk, uint64(a.no))
			if err := tx.Init(blk, a.img); err != nil {
				return 0, a.logErr(err)
			}
		}
		if err := a.put32(tx, layout.OffAGInodeTableInit, a.hdr.InodeTableInit); err != nil {
			return 0, err
		}
	}
	if ib >= oldBitmap {
		if err := a.initBitmapBlocks(tx, a.icodec, a.im, oldBitmap, ib+1); err != nil {
			return 0, err
		}
		if err := a.put32(tx, layout.OffAGInodeBitmapInit, a.hdr.InodeBitmapInit); err != nil {
			return 0, err
		}
	}
	if err := a.logBits(tx, a.icodec, a.im, i64, 1, true, oldBitmap); err != nil {
		return 0, err
	}
	if err := a.put64(tx, layout.OffAGFreeInodes, a.hdr.FreeInodes); err != nil {
		return 0, err
	}
	if dir {
		if err := a.put64(tx, layout.OffAGDirs, a.hdr.Dirs); err != nil {
			return 0, err
		}
	}
	return g.Ino(a.no, i), nil
}

// FreeInode frees inode ino, which must belong to this AG and be allocated
// (freeing a free inode is an error wrapping layout.ErrCorrupt, and nothing
// is changed); dir says whether it was a directory.
func (a *AG) FreeInode(tx *wal.Tx, ino uint64, dir bool) error {
	ag, i, ok := a.g.SplitIno(ino)
	if !ok || ag != a.no || i == 0 {
		return einval("ag %d: inode %d does not name an inode of the AG", a.no, ino)
	}
	if err := a.lock(tx); err != nil {
		return err
	}
	if !a.im.Test(uint64(i)) {
		return a.corrupt("free of inode %d, which is already free", ino)
	}
	if dir && a.hdr.Dirs == 0 {
		return a.corrupt("free of directory inode %d, but the header counts no directory", ino)
	}
	a.dirty = true
	a.im.Clear(uint64(i))
	a.undo = append(a.undo, undoRec{op: undoFreeInode, s: uint64(i)})
	a.hdr.FreeInodes++
	if dir {
		a.hdr.Dirs--
	}
	if err := a.logBits(tx, a.icodec, a.im, uint64(i), 1, false, a.hdr.InodeBitmapInit); err != nil {
		return err
	}
	if err := a.put64(tx, layout.OffAGFreeInodes, a.hdr.FreeInodes); err != nil {
		return err
	}
	if dir {
		return a.put64(tx, layout.OffAGDirs, a.hdr.Dirs)
	}
	return nil
}
