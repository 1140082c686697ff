package fs

import (
	"encoding/binary"
	"errors"
	"fmt"
	"syscall"

	"agfs/bitmap"
	"agfs/dir"
	"agfs/layout"
	"agfs/orphan"
	"agfs/wal"
)

// The background orphan scanner (package orphan) sees the filesystem
// through scanSource, which this file implements: the committed bitmaps,
// a walk of the inode tables reporting what every inode references, and
// the reclaim calls, which re-check a finding under the filesystem's own
// locks and free it through the log (see orphan.Watch for why the
// re-check is sound).
//
// Races, and what keeps each finding honest:
//   - an inode being created is allocated and named in one transaction, so
//     the committed inode bitmap never shows it allocated and unnamed;
//   - blocks allocated by a transaction still in flight are not in the
//     committed bitmaps the pass starts from;
//   - a file unlinked but open (link count 0, on its AG's on-disk orphan
//     list) is still referenced: the inode table's rule (put/idle) frees it
//     only at its last release, and the scanner leaves it waiting;
//   - blocks freed but busy (ag's busy extents) are clear in the bitmap;
//   - a block or inode that changed hands during the pass was freed, or
//     changed, by a commit the Watch saw.

// scanSource is the filesystem as orphan.Scanner sees it.
type scanSource struct {
	f    *FS
	seen uint64 // lastLSN at the last Busy call
}

var _ orphan.Source = (*scanSource)(nil)

// startScanner starts the background scanner unless the options say not
// to (or the filesystem is read-only: nothing could be reclaimed).
func (f *FS) startScanner() {
	if f.ro || f.opt.NoScan {
		return
	}
	o := orphan.Options{Interval: f.opt.ScanInterval, Rate: f.opt.ScanRate}
	if o.Interval <= 0 {
		o.Interval = orphan.DefaultInterval
	}
	switch {
	case o.Rate == 0:
		o.Rate = orphan.DefaultRate
	case o.Rate < 0:
		o.Rate = 0 // no bound
	}
	f.scanner = orphan.Start(&scanSource{f: f}, o)
}

// stopScanner stops the scanner (Close): it ends at its next chunk.
func (f *FS) stopScanner() {
	if f.scanner != nil {
		f.scanner.Stop()
	}
}

// noteCommit feeds the running pass's Watch with what a committed op
// changed: the blocks it freed and every inode it wrote. It runs from the
// commit's deferred function, before the op releases its AG locks (so a
// reclaim holding an AG lock sees every free made before it) and before
// the caller releases its inode locks (likewise for an inode's re-check).
func (f *FS) noteCommit(o *op) {
	w := f.watch.Load()
	if w == nil {
		return
	}
	for _, e := range o.frees {
		w.Freed(e.Start, e.Len)
	}
	for _, x := range o.ws {
		w.Changed(x.n.ino)
	}
}

func (s *scanSource) Geometry() *layout.Geometry { return s.f.g }

func (s *scanSource) SetWatch(w *orphan.Watch) { s.f.watch.Store(w) }

// Busy: a transaction committed since the last call. (Reads that commit
// nothing are not seen; they do not compete for the AG and inode locks
// the scanner takes either.)
func (s *scanSource) Busy() bool {
	cur := s.f.lastLSN.Load()
	busy := cur != s.seen
	s.seen = cur
	return busy
}

// agMarks reads the initialisation marks of AG a's header, as committed.
func (f *FS) agMarks(a uint32) (blockBitmap, inodeBitmap, inodeTable uint32, err error) {
	hdr := make([]byte, f.bs)
	blk := f.g.AGHeaderBlock(a)
	err = f.log.Read(blk, func(_ uint64, b []byte) error {
		_, err := layout.DecodeAGHeader(b, f.g, f.seed, a)
		return err
	}, hdr)
	if err != nil {
		return 0, 0, 0, fmt.Errorf("ag %d: header block %d: %w", a, blk, err)
	}
	le := binary.LittleEndian
	return le.Uint32(hdr[layout.OffAGBlockBitmapInit:]), le.Uint32(hdr[layout.OffAGInodeBitmapInit:]),
		le.Uint32(hdr[layout.OffAGInodeTableInit:]), nil
}

// Used reads AG a's bitmaps as committed (the log's cache holds only
// committed state, so no AG lock is needed), up to the init marks.
func (s *scanSource) Used(a uint32) (*bitmap.Bitmap, *bitmap.Bitmap, error) {
	f, g := s.f, s.f.g
	bInit, iInit, _, err := f.agMarks(a)
	if err != nil {
		return nil, nil, err
	}
	bpb := g.BitsPerBitmapBlock()
	blocks := bitmap.New(min(uint64(min(bInit, g.BlockBitmapBlocks))*bpb, g.AGLen(a)), bpb)
	if err := f.loadBitmap(a, "block", blocks, g.BlockBitmapStart(a), layout.MagicBlockBitmap); err != nil {
		return nil, nil, err
	}
	blocks.ClearRange(0, min(g.ReservedBlocks(a), blocks.Len()))
	inodes := bitmap.New(min(uint64(min(iInit, g.InodeBitmapBlocks))*bpb, uint64(g.InodesPerAG)), bpb)
	if err := f.loadBitmap(a, "inode", inodes, g.InodeBitmapStart(a), layout.MagicInodeBitmap); err != nil {
		return nil, nil, err
	}
	for _, ino := range []uint64{g.Ino(a, 0), layout.RootIno} {
		if ia, i, ok := g.SplitIno(ino); ok && ia == a && uint64(i) < inodes.Len() {
			inodes.Clear(uint64(i))
		}
	}
	return blocks, inodes, nil
}

// loadBitmap fills bm from its on-disk blocks starting at first.
func (f *FS) loadBitmap(a uint32, kind string, bm *bitmap.Bitmap, first uint64, magic uint32) error {
	buf := make([]byte, f.bs)
	for i := range bm.Blocks() {
		blk := first + uint64(i)
		v := func(_ uint64, b []byte) error { return layout.Check(b, f.seed, magic, blk, uint64(a)) }
		if err := f.log.Read(blk, v, buf); err != nil {
			return fmt.Errorf("ag %d: %s bitmap block %d: %w", a, kind, blk, err)
		}
		if err := bm.LoadPayload(i, buf[layout.HeaderSize:]); err != nil {
			return fmt.Errorf("ag %d: %s bitmap block %d: %w", a, kind, blk, err)
		}
	}
	return nil
}

// Walk reads AG a's inode-table blocks as committed and reports each used
// inode's references. An inode whose slot says it all (inline extents, no
// attribute tree, links left) is taken from the slot; any other is read
// under its lock, so its trees are seen whole.
func (s *scanSource) Walk(a uint32, from, count uint32, r orphan.Refs) (uint32, bool, error) {
	f, g := s.f, s.f.g
	_, _, tInit, err := f.agMarks(a)
	if err != nil {
		return from, false, err
	}
	ipb := g.InodesPerBlock()
	limit := min(min(tInit, g.InodeTableBlocks)*ipb, g.InodesPerAG)
	if from >= limit {
		return from, true, nil
	}
	end := min(from+count, limit)
	buf := make([]byte, f.bs)
	tx := f.log.Begin() // reads only: each read is the committed block
	defer tx.Abort()
	for j := from / ipb; j*ipb < end; j++ {
		blk := g.InodeTableStart(a) + uint64(j)
		if err := f.log.Read(blk, f.tableVerifier, buf); err != nil {
			return from, false, fmt.Errorf("ag %d: inode table block %d: %w", a, blk, err)
		}
		for idx := max(from, j*ipb); idx < min(end, (j+1)*ipb); idx++ {
			if idx == 0 {
				continue
			}
			off := layout.HeaderSize + int(idx%ipb)*layout.InodeSize
			var d layout.Inode
			if err := d.Decode(buf[off : off+layout.InodeSize]); err != nil {
				return from, false, fmt.Errorf("ag %d: inode %d (table block %d): %w", a, g.Ino(a, idx), blk, err)
			}
			if d.Mode == 0 {
				continue
			}
			if err := s.inode(tx, g.Ino(a, idx), &d, r); err != nil {
				return from, false, err
			}
		}
	}
	return end, end >= limit, nil
}

// inode reports the references of the used inode ino, whose slot read d.
func (s *scanSource) inode(tx *wal.Tx, ino uint64, d *layout.Inode, r orphan.Refs) error {
	f := s.f
	trees := isDir(d.Mode) || d.DataFormat == layout.DataBTree || d.XattrBlock != 0
	if !trees && d.Nlink != 0 {
		return f.refs(tx, ino, d, r)
	}
	n, err := f.get(ino)
	if errors.Is(err, syscall.ESTALE) {
		return nil // freed since the table was read: the Watch saw its blocks go
	}
	if err != nil {
		return fmt.Errorf("inode %d: %w", ino, err)
	}
	n.mu.RLock()
	err = f.refs(tx, ino, &n.d, r)
	unlinked := n.d.Nlink == 0
	n.mu.RUnlock()
	if unlinked {
		r.Unlinked(ino)
	}
	// With no link and nothing else referencing it, put frees the inode
	// here (the rule a last close follows).
	f.put(n)
	if unlinked && n.gone.Load() {
		r.Freed(ino)
	}
	return err
}

// refs reports what inode ino (committed state d, read consistently)
// references: the blocks of its data, extent tree, directory index and
// attribute tree, and the inodes its directory entries name.
func (f *FS) refs(tx *wal.Tx, ino uint64, d *layout.Inode, r orphan.Refs) error {
	node := func(blk uint64, _ int) error { r.Owns(blk, 1); return nil }
	switch {
	case isDir(d.Mode):
		dd, err := dir.Open(tx, f.dirCfg(ino, nil), d.TreeRoot())
		if err == nil {
			err = dd.Tree().Walk(node)
		}
		if err == nil {
			err = dd.Iterate(0, func(_ string, child uint64, _ uint8, _ uint64) bool {
				r.Names(child)
				return true
			})
		}
		if err != nil {
			return fmt.Errorf("directory %d: index: %w", ino, err)
		}
	case d.DataFormat != layout.DataInline:
		m, err := f.openMap(tx, ino, d, nil)
		if err != nil {
			return fmt.Errorf("inode %d: extents: %w", ino, err)
		}
		if m.tree != nil {
			if err := m.tree.Walk(node); err != nil {
				return fmt.Errorf("inode %d: extent tree: %w", ino, err)
			}
		}
		ext, err := m.extents()
		if err != nil {
			return fmt.Errorf("inode %d: extents: %w", ino, err)
		}
		for _, e := range ext {
			r.Owns(e.Physical, uint64(e.Len))
		}
	}
	if d.XattrBlock != 0 {
		x, err := f.openXattr(tx, ino, d, nil)
		if err == nil {
			err = x.Walk(func(blk uint64) error { r.Owns(blk, 1); return nil })
		}
		if err != nil {
			return fmt.Errorf("inode %d: attribute tree: %w", ino, err)
		}
	}
	return nil
}

// ReclaimBlocks frees the blocks of [start, start+n) still marked used
// that the Watch has not seen freed. Under the AG lock no other
// transaction allocates or frees in the AG, so the bitmap read there is
// the AG's state, and every free committed before is in the Watch.
func (s *scanSource) ReclaimBlocks(w *orphan.Watch, start, n uint64) (uint64, error) {
	f, g := s.f, s.f.g
	a := g.AGOf(start)
	rel := start - g.AGStart(a)
	if n == 0 || a >= g.AGCount || rel < g.ReservedBlocks(a) || n > g.AGLen(a)-rel {
		return 0, fmt.Errorf("ag %d: blocks [%d, +%d) are not data blocks of the AG: %w", a, start, n, syscall.EINVAL)
	}
	bpb := g.BitsPerBitmapBlock()
	var freed uint64
	_, err := f.run(func(o *op) error {
		freed = 0
		if err := o.lockAG(a); err != nil {
			return err
		}
		var bits []byte
		for i := range n {
			k, bit := (rel+i)/bpb, (rel+i)%bpb
			if bits == nil || bit == 0 {
				blk := g.BlockBitmapStart(a) + k
				b, err := o.tx.Read(blk, func(_ uint64, b []byte) error {
					return layout.Check(b, f.seed, layout.MagicBlockBitmap, blk, uint64(a))
				})
				if err != nil {
					return fmt.Errorf("ag %d: block bitmap block %d: %w", a, blk, err)
				}
				bits = b[layout.HeaderSize:]
			}
			if bits[bit/8]&(1<<(bit%8)) == 0 || w.WasFreed(start+i) {
				continue
			}
			o.freeLater(start+i, 1) // agWork merges the runs
			// It may have been a tree node the log can still write home:
			// the same care as any freed node before reuse as data.
			o.metaFreed = append(o.metaFreed, start+i)
			freed++
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("ag %d: reclaiming blocks [%d, +%d): %w", a, start, n, err)
	}
	return freed, nil
}

// ReclaimInode re-checks inode ino under its lock and frees it.
func (s *scanSource) ReclaimInode(w *orphan.Watch, k orphan.Kind, ino uint64) (orphan.Outcome, error) {
	f := s.f
	n, err := f.get(ino)
	if errors.Is(err, syscall.ESTALE) {
		return orphan.Stale, nil
	}
	if err != nil {
		return 0, fmt.Errorf("inode %d: %w", ino, err)
	}
	out := orphan.Stale
	if k == orphan.Unnamed {
		n.mu.Lock()
		out, err = f.unname(w, n)
		n.mu.Unlock()
	} else if n.nlink.Load() == 0 {
		out = orphan.Reclaimed // if put below finds it idle
	}
	f.put(n) // frees an idle inode with no link, as a last close does
	if err == nil && out == orphan.Reclaimed && !n.gone.Load() {
		out = orphan.Deferred // still referenced (an open unlinked file), or freeing failed (logged)
	}
	return out, err
}

// unname drops the links of n, a used inode no directory named when the
// pass walked them, after checking (n.mu held) that it has not changed
// since the Watch began and that nothing references it. It goes on its
// AG's on-disk orphan list in the same transaction, so a crash before it
// is freed leaves it for the next mount.
func (f *FS) unname(w *orphan.Watch, n *inode) (orphan.Outcome, error) {
	if w.WasChanged(n.ino) || n.d.Nlink == 0 {
		return orphan.Stale, nil
	}
	s := f.shard(n.ino)
	s.mu.Lock()
	used := n.pins > 1 || n.nlookup > 0 || n.nopen > 0
	s.mu.Unlock()
	if used {
		return orphan.Deferred, nil
	}
	if isDir(n.d.Mode) {
		// Its entries are the only names of its children: freeing it would
		// leave their link counts wrong. fsck takes such a directory to
		// lost+found; the scanner leaves it pending.
		tx := f.log.Begin()
		dd, err := f.readDir(tx, n)
		empty := false
		if err == nil {
			empty, err = dd.Empty()
		}
		tx.Abort()
		if err != nil {
			return 0, fmt.Errorf("directory %d: %w", n.ino, err)
		}
		if !empty {
			return orphan.Deferred, nil
		}
	}
	_, err := f.run(func(o *op) error {
		w := o.w(n)
		w.Nlink, w.Ctime = 0, o.now
		o.orphan(n)
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("inode %d: %w", n.ino, err)
	}
	return orphan.Reclaimed, nil
}

// AppendText appends the counters as "NAME VALUE" lines: the value of the
// agfs.stats virtual attribute of a mount's root (mount.agfs --stats).
func (s Stats) AppendText(b []byte) []byte {
	b = fmt.Appendf(b, "inodes_in_memory %d\ndata_flushes %d\nlock_retries %d\nreuse_checkpoints %d\n",
		s.Inodes, s.DataFlushes, s.LockRetries, s.ReuseCheckpoint)
	b = fmt.Appendf(b, "log.commits %d\nlog.bytes_logged %d\nlog.flushes %d\nlog.checkpoints %d\nlog.cache_hits %d\nlog.cache_misses %d\n",
		s.Log.Commits, s.Log.BytesLogged, s.Log.Flushes, s.Log.Checkpoints, s.Log.CacheHits, s.Log.CacheMisses)
	return s.Scan.AppendText(b)
}
