package fs

import (
	"errors"
	"syscall"

	"agfs/btree"
	"agfs/layout"
	"agfs/wal"
	"agfs/xattr"
)

// Extended attributes: small ones inline in the tail of the inode's fork
// area, from Inode.ForkOffset on (0 = none inline), the rest in an xattr
// B+tree whose root is Inode.XattrBlock (package xattr).
//
// The data fork keeps the head of the fork area: when attributes are
// first put inline, the inline area starts where the data fork ends,
// rounded up to a whole extent record for extent-mapped inodes (at least
// one), at byte 16 for directories (index root and parent) and B+tree
// files, and after the target for inline symlinks. A file whose extents
// outgrow the space before ForkOffset moves them to an extent tree.

// openXattr opens the attributes of inode ino (working copy or committed
// inode in) within tx.
func (f *FS) openXattr(tx *wal.Tx, ino uint64, in *layout.Inode, alloc btree.Allocator) (*xattr.Set, error) {
	off := in.XattrStart()
	area := make([]byte, layout.ForkSize-off)
	if in.ForkOffset != 0 {
		copy(area, in.Fork[off:])
	}
	c := XattrTreeConfig(&f.sb, ino)
	if alloc != nil {
		c.Alloc, c.Goal = alloc, f.goal(ino)
	}
	return xattr.Open(tx, area, in.XattrBlock, c)
}

// saveXattr stores the attributes' inline area and root in w. (Always:
// xattr.Set.Changed misses a root that moved when the tree split or
// shrank; the inode diff logs only what really changed.)
func saveXattr(s *xattr.Set, w *layout.Inode) {
	off := w.XattrStart()
	clear(w.Fork[off:])
	ent := s.Inline()
	copy(w.Fork[off:], ent)
	if len(ent) > 0 {
		w.ForkOffset = uint16(off)
	} else {
		w.ForkOffset = 0
	}
	w.XattrBlock = s.Root()
}

func (f *FS) hasXattrs(in *layout.Inode) bool {
	var inline []byte
	if in.ForkOffset != 0 {
		inline = in.Fork[in.ForkOffset:]
	}
	return !xattr.Empty(inline, in.XattrBlock)
}

// capsName is the attribute holding a file's capabilities; a change to
// the file's data or owner removes it.
const capsName = "security.capability"

// hasCaps reports whether n (locked) has file capabilities.
func (f *FS) hasCaps(n *inode) bool {
	if !f.hasXattrs(&n.d) {
		return false
	}
	tx := f.log.Begin()
	defer tx.Abort()
	s, err := f.openXattr(tx, n.ino, &n.d, nil)
	if err == nil {
		_, err = s.Get(capsName, nil)
	}
	// An unreadable set is left for the change itself to report.
	return !errors.Is(err, syscall.ENODATA)
}

// dropCaps removes the file capabilities from w, n's working copy.
func (o *op) dropCaps(n *inode, w *layout.Inode) error {
	if !o.f.hasXattrs(w) {
		return nil
	}
	s, err := o.f.openXattr(o.tx, n.ino, w, &treeAlloc{o, w})
	if err != nil {
		return err
	}
	switch err := s.Remove(capsName); {
	case errors.Is(err, syscall.ENODATA):
		return nil
	case err != nil:
		return err
	}
	saveXattr(s, w)
	return nil
}

// GetXattr copies the value of name into dst and returns its length
// (only the length when dst is empty). ENODATA when absent, ERANGE when
// dst is too small.
func (f *FS) GetXattr(ino uint64, name string, dst []byte) (int, error) {
	noXattrs := func() (int, error) {
		if _, _, err := xattr.ParseName(name); err != nil {
			return 0, err
		}
		return 0, syscall.ENODATA
	}
	return f.readXattrs(ino, noXattrs, func(s *xattr.Set) (int, error) { return s.Get(name, dst) })
}

// ListXattr writes the NUL-terminated names into dst and returns the
// bytes used (the size only when dst is empty; ERANGE when too small).
func (f *FS) ListXattr(ino uint64, dst []byte) (int, error) {
	noXattrs := func() (int, error) { return 0, nil }
	return f.readXattrs(ino, noXattrs, func(s *xattr.Set) (int, error) { return s.List(dst, nil) })
}

// readXattrs runs fn over ino's attributes, read-locked, in a transaction
// it then drops. An inode without attributes answers noXattrs at once, with
// no transaction: the kernel asks for security.capability before every
// write.
func (f *FS) readXattrs(ino uint64, noXattrs func() (int, error), fn func(s *xattr.Set) (int, error)) (int, error) {
	return reading(f, ino, func(n *inode) (int, error) {
		if !f.hasXattrs(&n.d) {
			return noXattrs()
		}
		tx := f.log.Begin()
		defer tx.Abort()
		s, err := f.openXattr(tx, ino, &n.d, nil)
		if err != nil {
			return 0, err
		}
		return fn(s)
	})
}

// SetXattr sets name to val; flags XATTR_CREATE (EEXIST if present) and
// XATTR_REPLACE (ENODATA if absent).
func (f *FS) SetXattr(ino uint64, name string, val []byte, flags uint32) error {
	return f.changeXattr(ino, func(s *xattr.Set) error { return s.Set(name, val, int(flags)) })
}

// RemoveXattr removes name (ENODATA if absent).
func (f *FS) RemoveXattr(ino uint64, name string) error {
	return f.changeXattr(ino, func(s *xattr.Set) error { return s.Remove(name) })
}

func (f *FS) changeXattr(ino uint64, change func(s *xattr.Set) error) error {
	n, err := f.get(ino)
	if err != nil {
		return errno(err)
	}
	defer f.put(n)
	n.mu.Lock()
	defer n.mu.Unlock()
	_, err = f.run(func(o *op) error {
		w := o.w(n)
		s, err := f.openXattr(o.tx, ino, w, &treeAlloc{o, w})
		if err != nil {
			return err
		}
		if err := change(s); err != nil {
			return err
		}
		saveXattr(s, w)
		w.Ctime = o.now
		return nil
	})
	return errno(err)
}
