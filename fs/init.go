package fs

import (
	"fmt"
	"slices"
	"sync"
	"syscall"

	"agfs/ag"
	"agfs/dir"
	"agfs/disk"
	"agfs/layout"
	"agfs/wal"
)

// LostFound is the name of the directory fsck puts unreachable inodes in.
const LostFound = "lost+found"

// Init creates the root directory (inode 1, mode 0755, owned by root) and
// /lost+found (0700) on a freshly formatted filesystem: mkfs calls it once
// the AGs and the log are laid out.
//
// The change is made by the ordinary code, through the log, but on an
// in-memory overlay of the device; then the metadata blocks it wrote home
// are copied to the device stamped with LSN 0, as mkfs writes everything,
// and the log is left exactly as wal.Format made it (empty, clean). So a
// fresh filesystem holds no log traffic, and no home block carries an
// LSN that the new log's transactions could be mistaken to include.
func Init(dev disk.Device, sb *layout.Superblock) error {
	ov := &initDev{Overlay: disk.NewOverlay(dev), written: map[uint64]bool{}, bs: int64(sb.BlockSize)}
	defer ov.Close()
	if err := initRoot(ov, sb); err != nil {
		return fmt.Errorf("root directory: %w", err)
	}
	blks := make([]uint64, 0, len(ov.written))
	for b := range ov.written {
		if b < sb.LogStart || b >= sb.LogStart+sb.LogBlocks {
			blks = append(blks, b)
		}
	}
	slices.Sort(blks)
	buf := make([]byte, sb.BlockSize)
	for _, b := range blks {
		if _, err := ov.ReadAt(buf, int64(b)*int64(sb.BlockSize)); err != nil {
			return fmt.Errorf("root directory: %w", err)
		}
		layout.Seal(buf, sb.Seed(), 0)
		if _, err := dev.WriteAt(buf, int64(b)*int64(sb.BlockSize)); err != nil {
			return fmt.Errorf("root directory: %w", err)
		}
	}
	if err := dev.Flush(); err != nil {
		return fmt.Errorf("root directory: flush: %w", err)
	}
	return nil
}

// initDev is an overlay that notes which blocks were written.
type initDev struct {
	*disk.Overlay
	mu      sync.Mutex
	written map[uint64]bool
	bs      int64
}

func (d *initDev) WriteAt(p []byte, off int64) (int, error) {
	n, err := d.Overlay.WriteAt(p, off)
	d.mu.Lock()
	for b := off / d.bs; b*d.bs < off+int64(n); b++ {
		d.written[uint64(b)] = true
	}
	d.mu.Unlock()
	return n, err
}

func initRoot(dev disk.Device, sb *layout.Superblock) error {
	region := wal.Region{BlockSize: int(sb.BlockSize), Start: sb.LogStart, Blocks: sb.LogBlocks}
	log, _, err := wal.Open(dev, region, sb.Seed(), wal.Options{})
	if err != nil {
		return fmt.Errorf("root directory: %w", err)
	}
	gs, err := ag.OpenGroups(log, sb)
	if err != nil {
		log.Close()
		return err
	}
	f := newFS(dev, sb, log, gs, Options{})
	var root, lf *inode
	_, err = f.run(func(o *op) error {
		ino, err := gs.AG(0).AllocInode(o.tx, 1, true)
		if err != nil {
			return err
		}
		o.held[0] = true
		if ino != layout.RootIno {
			return fmt.Errorf("the first inode allocated is %d, not %d", ino, layout.RootIno)
		}
		n, w, err := o.enterInode(ino)
		if err != nil {
			return err
		}
		root = n
		w.Mode = syscall.S_IFDIR | 0755
		w.Nlink = 2
		d, err := dir.Create(o.tx, f.dirCfg(ino, &treeAlloc{o, w}))
		if err != nil {
			return err
		}
		w.DataFormat = layout.DataBTree
		w.ForkCount = 1
		w.SetTreeRoot(d.Root())
		w.SetParent(ino)
		lf, err = o.createIn(n, LostFound, syscall.S_IFDIR|0700, 0, Caller{}, nil)
		return err
	})
	if err == nil {
		f.put(root)
		f.put(lf)
	}
	if cerr := log.Close(); err == nil && cerr != nil {
		err = cerr
	}
	return err
}
