package fs

import (
	"math"
	"syscall"

	"agfs/disk"
	"agfs/layout"
)

// File data goes straight to the device, a whole block at a time (a
// partial block is read, patched and written back); only metadata goes
// through the log. Data writes are written behind (disk.WriteBehind): a
// write returns once its bytes are copied, the device write runs while
// the next request is served, and every read, overlapping write and
// flush of the device waits for it.
//
// Ordered data: blocks newly mapped by a write (new blocks, unwritten
// blocks written for the first time) are written before the transaction
// that maps them commits, and that commit marks data pending, so the
// device is flushed before the log writes any block that can hold the
// commit record (ordered.go). So after a crash a file maps only blocks
// whose contents it wrote, never a block holding another file's old bytes. Overwrites of blocks already mapped need no
// ordering; they reach stable storage with the next flush, which Fsync
// makes sure of.
//
// Bytes past the end of file inside the last block are always zero: a
// write zero-fills the new blocks around its data, and a truncate zeroes
// the tail of the block it stops in. So growing a file (truncate up, a
// write past the end) never uncovers old bytes.

// Fallocate modes (fallocate(2)).
const (
	FallocKeepSize  = 0x01
	FallocPunchHole = 0x02
	FallocZeroRange = 0x10
)

const (
	maxFileSize = layout.MaxFileBytes
	writeChunk  = 8 << 20 // bytes of one write per transaction
	freeBatch   = 512     // extents freed per transaction by truncate
	maxLink     = 65000
)

// Read reads from regular file ino at off. Holes and unwritten extents
// read as zeroes; the count is short at the end of file.
func (f *FS) Read(ino uint64, dst []byte, off int64) (int, error) {
	if off < 0 {
		return 0, syscall.EINVAL
	}
	return reading(f, ino, func(n *inode) (int, error) {
		if err := regular(n.d.Mode); err != nil {
			return 0, err
		}
		return f.readData(n.ino, &n.d, dst, off)
	})
}

func regular(mode uint32) error {
	switch {
	case isReg(mode):
		return nil
	case isDir(mode):
		return syscall.EISDIR
	}
	return syscall.EINVAL
}

// readData reads the data of inode d (the caller holds its lock).
func (f *FS) readData(ino uint64, d *layout.Inode, dst []byte, off int64) (int, error) {
	size := int64(d.Size)
	if off >= size || len(dst) == 0 {
		return 0, nil
	}
	end := min(off+int64(len(dst)), size)
	dst = dst[:end-off]
	tx := f.log.Begin()
	defer tx.Abort()
	m, err := f.openMap(tx, ino, d, nil)
	if err != nil {
		return 0, err
	}
	bs := int64(f.bs)
	for pos := off; pos < end; {
		lb := uint64(pos / bs)
		e, ok, err := m.find(lb)
		if err != nil {
			return 0, err
		}
		if !ok || e.Logical > lb {
			stop := end
			if ok {
				stop = min(end, int64(e.Logical)*bs)
			}
			clear(dst[pos-off : stop-off])
			pos = stop
			continue
		}
		stop := min(end, int64(extEnd(e))*bs)
		if e.Flags&layout.ExtentUnwritten != 0 {
			clear(dst[pos-off : stop-off])
		} else if err := f.devRead(dst[pos-off:stop-off], int64(e.Physical)*bs+pos-int64(e.Logical)*bs); err != nil {
			return 0, err
		}
		pos = stop
	}
	return len(dst), nil
}

// devRead reads p from the device at byte off, which need not be aligned.
func (f *FS) devRead(p []byte, off int64) error {
	const S = disk.SectorSize
	for len(p) > 0 {
		if off%S == 0 && len(p) >= S {
			k := len(p) &^ (S - 1)
			if _, err := f.dev.ReadAt(p[:k], off); err != nil {
				return err
			}
			p, off = p[k:], off+int64(k)
			continue
		}
		bp := f.bounce.Get().(*[]byte)
		b := *bp
		start := off &^ (S - 1)
		n := min(int64(len(b)), (off+int64(len(p))+S-1)&^(S-1)-start)
		if _, err := f.dev.ReadAt(b[:n], start); err != nil {
			f.bounce.Put(bp)
			return err
		}
		k := copy(p, b[off-start:n])
		f.bounce.Put(bp)
		p, off = p[k:], off+int64(k)
	}
	return nil
}

// Write writes src to regular file ino at off. It leaves setuid, setgid
// and file capabilities alone: see ClearPrivileges.
func (f *FS) Write(ino uint64, src []byte, off int64) (int, error) {
	if off < 0 {
		return 0, syscall.EINVAL
	}
	if len(src) == 0 {
		return 0, nil
	}
	if off >= maxFileSize {
		return 0, syscall.EFBIG
	}
	if int64(len(src)) > maxFileSize-off {
		src = src[:maxFileSize-off]
	}
	n, err := f.get(ino)
	if err != nil {
		return 0, errno(err)
	}
	defer f.put(n)
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := regular(n.d.Mode); err != nil {
		return 0, err
	}
	done := 0
	for done < len(src) {
		k := min(len(src)-done, writeChunk)
		o, err := f.run(func(o *op) error {
			w := o.w(n)
			if err := o.writeData(n, w, src[done:done+k], off+int64(done)); err != nil {
				return err
			}
			w.Mtime, w.Ctime = o.now, o.now
			return nil
		})
		if err != nil {
			if done > 0 {
				return done, nil
			}
			return 0, errno(err)
		}
		if o.empty {
			n.dataDirty.Store(true)
		}
		done += k
	}
	return done, nil
}

// killPriv clears setuid, and setgid when group-execute is set, as a
// write or chown does (setgid without group-execute is mandatory locking,
// kept).
func killPriv(w *layout.Inode) { w.Mode = killedMode(w.Mode) }

// killedMode is mode as killPriv leaves it.
func killedMode(mode uint32) uint32 {
	if isDir(mode) {
		return mode
	}
	mode &^= syscall.S_ISUID
	if mode&syscall.S_IXGRP != 0 {
		mode &^= syscall.S_ISGID
	}
	return mode
}

// ClearPrivileges does to file ino what Linux does before a write,
// fallocate or copy_file_range changes its data: the file capabilities
// (the security.capability attribute) go, and when kill (the caller lacks
// CAP_FSETID) setuid goes too, and setgid when group-execute is set.
// Write, Fallocate and CopyFileRange leave this to their caller, which
// knows the caller's privileges (over FUSE, the kernel says). Nothing is
// logged when there is nothing to clear, the common case; changed
// reports whether anything was.
func (f *FS) ClearPrivileges(ino uint64, kill bool) (changed bool, err error) {
	n, err := f.get(ino)
	if err != nil {
		return false, errno(err)
	}
	defer f.put(n)
	n.mu.Lock()
	defer n.mu.Unlock()
	if !(kill && killedMode(n.d.Mode) != n.d.Mode) && !f.hasCaps(n) {
		return false, nil
	}
	_, err = f.run(func(o *op) error {
		w := o.w(n)
		if kill {
			killPriv(w)
		}
		if err := o.dropCaps(n, w); err != nil {
			return err
		}
		w.Ctime = o.now
		return nil
	})
	return err == nil, errno(err)
}

// segment kinds of a write
const (
	segWritten = iota
	segUnwritten
	segNew
)

type segment struct {
	l, n, phys uint64
	kind       int
}

// writeData writes p at off into the file of n (working copy w),
// allocating what is not mapped, and maps it. It sets the size when p
// ends past it.
func (o *op) writeData(n *inode, w *layout.Inode, p []byte, off int64) error {
	f := o.f
	m, err := f.openMap(o.tx, n.ino, w, &treeAlloc{o, w})
	if err != nil {
		return err
	}
	bs := uint64(f.bs)
	first := uint64(off) / bs
	last := (uint64(off) + uint64(len(p)) - 1) / bs
	var segs []segment
	for l := first; l <= last; {
		e, ok, err := m.find(l)
		if err != nil {
			return err
		}
		if ok && e.Logical <= l {
			cnt := min(extEnd(e), last+1) - l
			kind := segWritten
			if e.Flags&layout.ExtentUnwritten != 0 {
				kind = segUnwritten
			}
			segs = append(segs, segment{l, cnt, e.Physical + (l - e.Logical), kind})
			l += cnt
			continue
		}
		holeEnd := last + 1
		if ok {
			holeEnd = min(holeEnd, e.Logical)
		}
		goal, err := o.dataGoal(m, n.ino, l)
		if err != nil {
			return err
		}
		ext, err := o.allocData(holeEnd-l, goal)
		if err != nil {
			return err
		}
		ll := l
		for _, x := range ext {
			segs = append(segs, segment{ll, x.Len, x.Start, segNew})
			ll += x.Len
		}
		l = holeEnd
	}
	for _, s := range segs {
		if err := f.writeSeg(p, off, s); err != nil {
			return err
		}
	}
	for _, s := range segs {
		switch s.kind {
		case segNew:
			if err := m.insert(layout.Extent{Logical: s.l, Physical: s.phys, Len: uint32(s.n)}); err != nil {
				return err
			}
			w.Blocks += s.n
			o.flush = true
		case segUnwritten:
			if _, _, err := m.remove(s.l, s.n, 0); err != nil {
				return err
			}
			if err := m.insert(layout.Extent{Logical: s.l, Physical: s.phys, Len: uint32(s.n)}); err != nil {
				return err
			}
			o.flush = true
		}
	}
	if err := m.save(); err != nil {
		return err
	}
	if end := uint64(off) + uint64(len(p)); end > w.Size {
		w.Size = end
	}
	return nil
}

// dataGoal is where new blocks for file block l should go: right after
// the device blocks of the file block before it, else in the inode's AG.
func (o *op) dataGoal(m *emap, ino, l uint64) (uint64, error) {
	if l > 0 {
		e, ok, err := m.find(l - 1)
		if err != nil {
			return 0, err
		}
		if ok && e.Logical <= l-1 {
			return e.Physical + (l - e.Logical), nil
		}
	}
	if l > 0 {
		// The nearest mapped block before l, if any, keeps the file together.
		if e, ok, err := m.last(); err == nil && ok && extEnd(e) <= l {
			return e.Physical + uint64(e.Len), nil
		}
	}
	return o.f.goal(ino), nil
}

// syncOverwriteMax is the largest overwrite in place that writeSeg writes
// before returning instead of behind (disk.WriteBehind). A small overwrite
// is the database pattern, and its fsync comes next: handing the write to
// a goroutine and waiting for it at the fsync costs two thread wake-ups,
// more than the overlap saves (4 KiB random writes with fsync: about 2,550
// against 3,230 a second). New data, as an untar writes, stays behind: no
// fsync follows it.
const syncOverwriteMax = 64 << 10

// writeSeg writes the part of p (file bytes at off) that falls in
// segment s. Partial blocks are completed with their old contents
// (written blocks) or zeroes.
func (f *FS) writeSeg(p []byte, off int64, s segment) error {
	bs := int64(f.bs)
	wEnd := off + int64(len(p))
	write := f.dev.wb.WriteAsync
	if s.kind == segWritten && len(p) <= syncOverwriteMax {
		write = func(b []byte, off int64) error {
			_, err := f.dev.wb.WriteAt(b, off)
			return err
		}
	}
	partial := func(b uint64) bool {
		return int64(b)*bs < off || int64(b+1)*bs > wEnd
	}
	patch := func(b uint64) error {
		phys := int64(s.phys + (b - s.l))
		bp := f.bounce.Get().(*[]byte)
		defer f.bounce.Put(bp)
		buf := *bp
		if s.kind == segWritten {
			if _, err := f.dev.ReadAt(buf, phys*bs); err != nil {
				return err
			}
		} else {
			clear(buf)
		}
		bstart := int64(b) * bs
		lo, hi := max(bstart, off), min(bstart+bs, wEnd)
		copy(buf[lo-bstart:hi-bstart], p[lo-off:hi-off])
		return write(buf, phys*bs)
	}
	lo, hi := s.l, s.l+s.n
	if partial(lo) {
		if err := patch(lo); err != nil {
			return err
		}
		lo++
	}
	if hi > lo && partial(hi-1) {
		if err := patch(hi - 1); err != nil {
			return err
		}
		hi--
	}
	if hi > lo {
		a := int64(lo)*bs - off
		b := int64(hi)*bs - off
		if err := write(p[a:b], int64(s.phys+(lo-s.l))*bs); err != nil {
			return err
		}
	}
	return nil
}

// zeroPart zeroes bytes [from, to) of file block b if it is mapped and
// written (on the device, in place). The zeroes are ordered data: a
// truncate or punch whose commit reached the disk without them would let
// the file grow back over the bytes it cut off.
func (o *op) zeroPart(m *emap, b uint64, from, to int) error {
	f := o.f
	e, ok, err := m.find(b)
	if err != nil || !ok || e.Logical > b || e.Flags&layout.ExtentUnwritten != 0 || from >= to {
		return err
	}
	phys := int64(e.Physical+(b-e.Logical)) * int64(f.bs)
	bp := f.bounce.Get().(*[]byte)
	defer f.bounce.Put(bp)
	buf := *bp
	if _, err := f.dev.ReadAt(buf, phys); err != nil {
		return err
	}
	clear(buf[from:to])
	if _, err := f.dev.WriteAt(buf, phys); err != nil {
		return err
	}
	o.flush = true
	return nil
}

// truncate sets the size of n's file (working copy w) to size; when it
// shrinks, it frees the blocks past it (at most limit extents; more reports that some are
// left, to be freed by another transaction) and zeroing the tail of the
// block it ends in.
func (o *op) truncate(n *inode, w *layout.Inode, size uint64, limit int) (more bool, err error) {
	f := o.f
	bs := uint64(f.bs)
	// Growing a file keeps blocks preallocated past the old size
	// (fallocate KEEP_SIZE), as ext4 and XFS do: only a shrink frees.
	if w.DataFormat == layout.DataInline || size > w.Size {
		w.Size = size
		return false, nil
	}
	m, err := f.openMap(o.tx, n.ino, w, &treeAlloc{o, w})
	if err != nil {
		return false, err
	}
	if size < w.Size && size%bs != 0 {
		if err := o.zeroPart(m, size/bs, int(size%bs), int(bs)); err != nil {
			return false, err
		}
	}
	keep := (size + bs - 1) / bs
	removed, more, err := m.remove(keep, math.MaxUint64-keep, limit)
	if err != nil {
		return false, err
	}
	for _, r := range removed {
		o.freeLater(r.Physical, uint64(r.Len))
		w.Blocks -= uint64(r.Len)
	}
	if err := m.save(); err != nil {
		return false, err
	}
	w.Size = size
	return more, nil
}

// setSize truncates n (locked) to size in as many transactions as it
// takes; the first sets the size (and times).
func (f *FS) setSize(n *inode, size uint64, first func(o *op, w *layout.Inode) error) error {
	more := false
	_, err := f.run(func(o *op) error {
		w := o.w(n)
		var err error
		more, err = o.truncate(n, w, size, freeBatch)
		if err == nil && first != nil {
			err = first(o, w)
		}
		return err
	})
	for err == nil && more {
		_, err = f.run(func(o *op) error {
			var err error
			more, err = o.truncate(n, o.w(n), size, freeBatch)
			return err
		})
	}
	return err
}

// Fallocate preallocates (mode 0, FallocKeepSize), punches holes
// (FallocPunchHole|FallocKeepSize) or zeroes ranges (FallocZeroRange,
// optionally with FallocKeepSize). Other modes are EOPNOTSUPP.
func (f *FS) Fallocate(ino uint64, mode uint32, off, length int64) error {
	const known = FallocKeepSize | FallocPunchHole | FallocZeroRange
	switch {
	case mode&^known != 0,
		mode&FallocPunchHole != 0 && mode != FallocPunchHole|FallocKeepSize,
		mode&FallocZeroRange != 0 && mode&FallocPunchHole != 0:
		return syscall.EOPNOTSUPP
	case off < 0 || length <= 0:
		return syscall.EINVAL
	case off >= maxFileSize || length > maxFileSize-off:
		return syscall.EFBIG
	}
	n, err := f.get(ino)
	if err != nil {
		return errno(err)
	}
	defer f.put(n)
	n.mu.Lock()
	defer n.mu.Unlock()
	switch {
	case isDir(n.d.Mode):
		return syscall.EISDIR
	case !isReg(n.d.Mode):
		return syscall.ENODEV
	}
	bs := uint64(f.bs)
	start, end := uint64(off), uint64(off+length)
	_, err = f.run(func(o *op) error {
		w := o.w(n)
		m, err := f.openMap(o.tx, n.ino, w, &treeAlloc{o, w})
		if err != nil {
			return err
		}
		fullLo, fullHi := (start+bs-1)/bs, end/bs // whole blocks inside the range
		if mode&(FallocPunchHole|FallocZeroRange) != 0 {
			// Partial blocks at the edges: zero in place.
			if fullLo > fullHi { // inside one block
				if err := o.zeroPart(m, start/bs, int(start%bs), int(end-start/bs*bs)); err != nil {
					return err
				}
			} else {
				if start%bs != 0 {
					if err := o.zeroPart(m, start/bs, int(start%bs), int(bs)); err != nil {
						return err
					}
				}
				if end%bs != 0 {
					if err := o.zeroPart(m, end/bs, 0, int(end%bs)); err != nil {
						return err
					}
				}
			}
		}
		switch {
		case mode&FallocPunchHole != 0:
			if fullHi > fullLo {
				removed, _, err := m.remove(fullLo, fullHi-fullLo, 0)
				if err != nil {
					return err
				}
				for _, r := range removed {
					o.freeLater(r.Physical, uint64(r.Len))
					w.Blocks -= uint64(r.Len)
				}
			}
			w.Mtime = o.now
		case mode&FallocZeroRange != 0:
			if fullHi > fullLo {
				removed, _, err := m.remove(fullLo, fullHi-fullLo, 0)
				if err != nil {
					return err
				}
				for _, r := range removed {
					r.Flags = layout.ExtentUnwritten
					if err := m.insert(r); err != nil {
						return err
					}
				}
				if err := o.preallocate(m, n.ino, w, fullLo, fullHi); err != nil {
					return err
				}
			}
			w.Mtime = o.now
		default:
			if err := o.preallocate(m, n.ino, w, start/bs, (end+bs-1)/bs); err != nil {
				return err
			}
		}
		if err := m.save(); err != nil {
			return err
		}
		if mode&FallocKeepSize == 0 && end > w.Size {
			w.Size = end
			w.Mtime = o.now
		}
		w.Ctime = o.now
		return nil
	})
	return errno(err)
}

// preallocate maps the holes of file blocks [lo, hi) to new unwritten
// extents.
func (o *op) preallocate(m *emap, ino uint64, w *layout.Inode, lo, hi uint64) error {
	for l := lo; l < hi; {
		e, ok, err := m.find(l)
		if err != nil {
			return err
		}
		if ok && e.Logical <= l {
			l = min(hi, extEnd(e))
			continue
		}
		holeEnd := hi
		if ok {
			holeEnd = min(hi, e.Logical)
		}
		goal, err := o.dataGoal(m, ino, l)
		if err != nil {
			return err
		}
		ext, err := o.allocData(holeEnd-l, goal)
		if err != nil {
			return err
		}
		for _, x := range ext {
			if err := m.insert(layout.Extent{Logical: l, Physical: x.Start, Len: uint32(x.Len), Flags: layout.ExtentUnwritten}); err != nil {
				return err
			}
			w.Blocks += x.Len
			l += x.Len
		}
	}
	return nil
}

// Whence values of Lseek.
const (
	SeekSet  = 0
	SeekCur  = 1
	SeekEnd  = 2
	SeekData = 3
	SeekHole = 4
)

// Lseek answers SEEK_DATA and SEEK_HOLE (and SEEK_SET, SEEK_END). Unwritten
// extents count as holes. Past the end of file it is ENXIO.
func (f *FS) Lseek(ino uint64, off int64, whence int) (int64, error) {
	n, err := f.get(ino)
	if err != nil {
		return 0, errno(err)
	}
	defer f.put(n)
	n.mu.RLock()
	defer n.mu.RUnlock()
	size := int64(n.d.Size)
	switch whence {
	case SeekSet:
		if off < 0 {
			return 0, syscall.EINVAL
		}
		return off, nil
	case SeekEnd:
		if size+off < 0 {
			return 0, syscall.EINVAL
		}
		return size + off, nil
	case SeekData, SeekHole:
	default:
		return 0, syscall.EINVAL
	}
	if off < 0 {
		return 0, syscall.ENXIO
	}
	if off >= size {
		return 0, syscall.ENXIO
	}
	if !isReg(n.d.Mode) {
		if whence == SeekData {
			return off, nil
		}
		return size, nil
	}
	tx := f.log.Begin()
	defer tx.Abort()
	m, err := f.openMap(tx, n.ino, &n.d, nil)
	if err != nil {
		return 0, errno(err)
	}
	bs := int64(f.bs)
	pos := off
	for pos < size {
		lb := uint64(pos / bs)
		e, ok, err := m.find(lb)
		if err != nil {
			return 0, errno(err)
		}
		data := ok && e.Logical <= lb && e.Flags&layout.ExtentUnwritten == 0
		if whence == SeekData && data || whence == SeekHole && !data {
			return pos, nil
		}
		switch {
		case !ok:
			pos = size
		case e.Logical > lb:
			pos = int64(e.Logical) * bs
		default:
			pos = int64(extEnd(e)) * bs
		}
	}
	if whence == SeekHole {
		return size, nil
	}
	return 0, syscall.ENXIO
}

// CopyFileRange copies up to length bytes from in at inOff to out at
// outOff and returns the count (short at in's end of file).
func (f *FS) CopyFileRange(in uint64, inOff int64, out uint64, outOff int64, length int64) (int64, error) {
	if inOff < 0 || outOff < 0 || length < 0 {
		return 0, syscall.EINVAL
	}
	if in == out && inOff < outOff+length && outOff < inOff+length {
		return 0, syscall.EINVAL
	}
	buf := make([]byte, min(length, 1<<20))
	var done int64
	for done < length {
		k, err := f.Read(in, buf[:min(int64(len(buf)), length-done)], inOff+done)
		if err != nil {
			if done > 0 {
				return done, nil
			}
			return 0, err
		}
		if k == 0 {
			break
		}
		wk, err := f.Write(out, buf[:k], outOff+done)
		done += int64(wk)
		if err != nil {
			if done > 0 {
				return done, nil
			}
			return 0, err
		}
		if wk < k {
			break
		}
	}
	return done, nil
}

// Fsync makes ino's data and every metadata change that reaches it
// durable: its size and extents, its attributes, its own directory entry
// as created or last renamed (those transactions change the inode too).
func (f *FS) Fsync(ino uint64, datasync bool) error {
	n, err := f.get(ino)
	if err != nil {
		return errno(err)
	}
	defer f.put(n)
	if f.ro {
		return nil
	}
	n.mu.RLock()
	lsn := n.lsn
	n.mu.RUnlock()
	if err := f.log.Wait(lsn); err != nil {
		return errno(err)
	}
	// Data overwritten in place after the last transaction that changed
	// the inode: the log's flush did not cover it.
	if n.dataDirty.Swap(false) || f.strayDirty.Swap(false) {
		if err := f.dev.Flush(); err != nil {
			n.dataDirty.Store(true)
			return errno(err)
		}
	}
	return nil
}

// FsyncDir makes directory ino's entries durable.
func (f *FS) FsyncDir(ino uint64) error {
	return f.Fsync(ino, false)
}
