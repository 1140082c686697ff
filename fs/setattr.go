package fs

import (
	"syscall"
	"time"

	"agfs/layout"
)

// SetAttr valid bits (the values of FUSE's FATTR_* bits).
const (
	SetMode     = 1 << 0
	SetUID      = 1 << 1
	SetGID      = 1 << 2
	SetSize     = 1 << 3
	SetAtime    = 1 << 4
	SetMtime    = 1 << 5
	SetAtimeNow = 1 << 7
	SetMtimeNow = 1 << 8
	SetCtime    = 1 << 10
	// SetKillPriv with SetSize: the caller lacks CAP_FSETID, so the
	// truncate clears setuid, and setgid when group-execute is set.
	SetKillPriv = 1 << 11

	timeBits = SetAtime | SetMtime | SetAtimeNow | SetMtimeNow | SetCtime
)

// SetAttr changes the attributes whose Valid bit is set.
type SetAttr struct {
	Valid               uint32
	Mode, UID, GID      uint32
	Size                uint64
	Atime, Mtime, Ctime int64
}

// SetAttr applies s to ino: chmod (the permission bits), chown (which
// clears setuid, and setgid when group-execute is set, of a non-directory,
// as Linux does), truncate up or down (regular files; frees the blocks
// past the new end and updates mtime; clears setuid and setgid as chown
// does with SetKillPriv), utimens (explicit times or now). Chown and
// truncate remove the file capabilities (security.capability). Any change
// sets ctime (to now, or to s.Ctime with SetCtime).
func (f *FS) SetAttr(ino uint64, s SetAttr) (Attr, error) {
	n, err := f.get(ino)
	if err != nil {
		return Attr{}, errno(err)
	}
	defer f.put(n)
	n.mu.Lock()
	defer n.mu.Unlock()
	if s.Valid&SetSize != 0 {
		if err := regular(n.d.Mode); err != nil {
			return Attr{}, err
		}
		if s.Size > maxFileSize {
			return Attr{}, syscall.EFBIG
		}
	}
	apply := func(o *op, w *layout.Inode) error {
		if s.Valid&(SetUID|SetGID|SetSize) != 0 && !isDir(w.Mode) {
			if err := o.dropCaps(n, w); err != nil {
				return err
			}
			if s.Valid&SetMode == 0 && s.Valid&(SetUID|SetGID|SetKillPriv) != 0 {
				killPriv(w)
			}
		}
		if s.Valid&SetMode != 0 {
			w.Mode = w.Mode&syscall.S_IFMT | s.Mode&07777
		}
		if s.Valid&(SetUID|SetGID) != 0 {
			if s.Valid&SetUID != 0 {
				w.UID = s.UID
			}
			if s.Valid&SetGID != 0 {
				w.GID = s.GID
			}
		}
		s.setTimes(w, o.now)
		return nil
	}
	if s.Valid&^timeBits == 0 {
		// With the writeback cache the kernel flushes a file's times as
		// soon as it has unlinked it: its own ctime, and the mtime agfs
		// already has. When that ctime is all that changes and no name
		// and no open file reaches the inode, nothing can look at the
		// inode again before FORGET frees it (an O_PATH descriptor could,
		// but the kernel makes no other ctime-only change to an inode
		// without links), so the change is answered without a
		// transaction: rm -rf would pay one per file for it.
		res := n.d
		s.setTimes(&res, time.Now().UnixNano())
		if res.Atime == n.d.Atime && res.Mtime == n.d.Mtime && f.unreachable(n) {
			return f.attr(ino, &res), nil
		}
	}
	var res layout.Inode
	if s.Valid&SetSize != 0 {
		err = f.setSize(n, s.Size, apply)
		res = n.d
	} else {
		var o *op
		o, err = f.run(func(o *op) error {
			return apply(o, o.w(n))
		})
		if err == nil {
			res = *o.committed(n)
		}
	}
	if err != nil {
		return Attr{}, errno(err)
	}
	return f.attr(ino, &res), nil
}

// setTimes applies the times of s to w: atime and mtime as asked (a
// truncate without an explicit mtime sets it to now), ctime to s.Ctime
// with SetCtime and to now otherwise.
func (s *SetAttr) setTimes(w *layout.Inode, now int64) {
	switch {
	case s.Valid&SetAtimeNow != 0:
		w.Atime = now
	case s.Valid&SetAtime != 0:
		w.Atime = s.Atime
	}
	switch {
	case s.Valid&SetMtimeNow != 0:
		w.Mtime = now
	case s.Valid&SetMtime != 0:
		w.Mtime = s.Mtime
	case s.Valid&SetSize != 0:
		w.Mtime = now
	}
	if s.Valid&SetCtime != 0 {
		w.Ctime = s.Ctime
	} else {
		w.Ctime = now
	}
}

// unreachable reports whether n (locked) has no link and no open handle:
// nothing outside agfs can reach it any more, and it will be freed when
// the kernel forgets it.
func (f *FS) unreachable(n *inode) bool {
	if n.d.Nlink != 0 {
		return false
	}
	s := f.shard(n.ino)
	s.mu.Lock()
	defer s.mu.Unlock()
	return n.nopen == 0
}
