package fs

import (
	"encoding/binary"
	"fmt"
	"log"

	"agfs/layout"
)

// reclaim frees inode n, which has no link left and no reference but the
// reclaimer's pin (idle set reclaiming and took that pin): its data blocks
// (in batches, one transaction each, while it stays on the orphan list),
// and with the last batch its directory index, its attributes, its
// orphan-list entry and the inode itself. It drops the pin at the end.
func (f *FS) reclaim(n *inode) error {
	err := f.free(n)
	if err != nil {
		// It stays on the on-disk orphan list: the next mount frees it.
		log.Printf("agfs: freeing inode %d: %v", n.ino, err)
	}
	s := f.shard(n.ino)
	s.mu.Lock()
	n.reclaiming = false
	n.pins--
	if err != nil || n.gone.Load() {
		if s.m[n.ino] == n {
			delete(s.m, n.ino)
		}
		if !n.gone.Load() {
			n.broken.Store(true)
		}
	} else if f.idle(s, n) {
		// Not possible (nlink is 0, so idle would reclaim again); be safe.
		n.reclaiming = false
		n.pins--
	}
	s.mu.Unlock()
	return err
}

func (f *FS) free(n *inode) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.gone.Load() || n.d.Nlink != 0 {
		return nil
	}
	// Data blocks go freeBatch extents per transaction; the transaction
	// that frees the last of them frees the rest too, so a file of a few
	// extents (every symlink with a target in a block among them: no
	// crash leaves one of 0 bytes on the orphan list for fsck to find)
	// goes in one transaction.
	for done := false; !done; {
		_, err := f.run(func(o *op) error {
			done = false // run may call this again
			w := o.w(n)
			if w.DataFormat != layout.DataInline && (isReg(w.Mode) || isLnk(w.Mode)) {
				more, err := o.truncate(n, w, 0, freeBatch)
				if err != nil || more {
					return err
				}
			}
			if isDir(w.Mode) {
				d, err := o.openDir(n)
				if err != nil {
					return err
				}
				if err := d.Destroy(); err != nil {
					return err
				}
				delete(o.dirs, n)
			}
			if w.XattrBlock != 0 {
				s, err := f.openXattr(o.tx, n.ino, w, &treeAlloc{o, w})
				if err != nil {
					return err
				}
				if err := s.Destroy(); err != nil {
					return err
				}
			}
			if w.Blocks != 0 {
				return corruptf("inode %d: %d blocks left after freeing everything", n.ino, w.Blocks)
			}
			o.freeInode(n, w, true)
			done = true
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// processOrphans reclaims every inode on the AGs' on-disk orphan lists
// (unlinked while open when the filesystem was last used).
func (f *FS) processOrphans() error {
	for a := range f.g.AGCount {
		var inos []uint64
		buf := make([]byte, f.bs)
		hblk := f.g.AGHeaderBlock(a)
		if err := f.log.Read(hblk, nil, buf); err != nil {
			return err
		}
		cur := binary.LittleEndian.Uint64(buf[layout.OffAGOrphanHead:])
		for cur != 0 {
			if len(inos) > int(f.g.InodesPerAG) {
				return fmt.Errorf("ag %d: %w: orphan list loops", a, layout.ErrCorrupt)
			}
			if ca, _, ok := f.g.SplitIno(cur); !ok || ca != a || !f.validIno(cur) {
				return fmt.Errorf("ag %d: %w: orphan list names inode %d", a, layout.ErrCorrupt, cur)
			}
			inos = append(inos, cur)
			blk, off := f.slot(cur)
			if err := f.log.Read(blk, f.tableVerifier, buf); err != nil {
				return err
			}
			cur = binary.LittleEndian.Uint64(buf[off+offNextOrphan:])
		}
		for _, ino := range inos {
			n, err := f.get(ino)
			if err != nil {
				// A free slot on the list: just take it off.
				if _, err := f.run(func(o *op) error {
					o.orph = append(o.orph, orphOp{ino: ino})
					return nil
				}); err != nil {
					return err
				}
				continue
			}
			if n.nlink.Load() != 0 {
				// Linked again (a crash between the unlink and the
				// reclaim cannot do that, but be safe): off the list.
				_, err := f.run(func(o *op) error {
					o.orph = append(o.orph, orphOp{ino: ino})
					return nil
				})
				f.put(n)
				if err != nil {
					return err
				}
				continue
			}
			// put finds it idle with no link and reclaims it.
			f.put(n)
			if !n.gone.Load() {
				return fmt.Errorf("inode %d: could not be freed", ino)
			}
			f.Orphans++
		}
	}
	return nil
}
