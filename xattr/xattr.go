package xattr

import (
	"errors"
	"fmt"
	"slices"
	"syscall"

	"agfs/btree"
	"agfs/layout"
	"agfs/wal"
)

// Set is the extended attributes of one inode, open in a transaction.
type Set struct {
	tx    *wal.Tx
	cfg   btree.Config
	alloc counter
	lim   btree.Limits
	buf   []byte // the inline area: entries in buf[:used], zeroes after
	used  int
	root  uint64
	tree  *btree.Tree // open tree, or nil
	dirty bool
}

// counter counts the blocks the tree allocates and frees.
type counter struct {
	a btree.Allocator
	n int64
}

func (c *counter) AllocBlock(tx *wal.Tx, goal uint64) (uint64, error) {
	blk, err := c.a.AllocBlock(tx, goal)
	if err == nil {
		c.n++
	}
	return blk, err
}

func (c *counter) FreeBlock(tx *wal.Tx, blk uint64) error {
	err := c.a.FreeBlock(tx, blk)
	if err == nil {
		c.n--
	}
	return err
}

// Open opens the attributes of an inode within tx: inline is its inline
// area (entries from the first byte; its length is the room inline
// attributes may use; an inode with fork offset 0 passes a zeroed area
// of the room it can spare, or none) and root its xattr tree root (0 =
// none). cfg
// describes the tree: Owner the inode, Seed, BlockSize, Alloc and Goal;
// Magic is set to layout.MagicXattrNode. Open reads nothing from the
// device; it copies and checks the inline area (an error wrapping
// layout.ErrCorrupt if it is malformed).
func Open(tx *wal.Tx, inline []byte, root uint64, cfg btree.Config) (*Set, error) {
	used, err := scanInline(inline)
	if err != nil {
		return nil, fmt.Errorf("inode %d: %w", cfg.Owner, err)
	}
	s := &Set{tx: tx, cfg: cfg, root: root, used: used, buf: make([]byte, len(inline))}
	copy(s.buf, inline[:used])
	s.cfg.Magic = layout.MagicXattrNode
	if cfg.Alloc != nil {
		s.alloc.a = cfg.Alloc
		s.cfg.Alloc = &s.alloc
	}
	s.lim = btree.LimitsFor(cfg.BlockSize)
	return s, nil
}

// SetTx binds the Set to another transaction, after the previous one
// committed, and resets Changed and BlockDelta.
func (s *Set) SetTx(tx *wal.Tx) {
	s.tx = tx
	if s.tree != nil {
		s.tree.SetTx(tx)
	}
	s.alloc.n = 0
	s.dirty = false
}

// Empty reports whether there are no attributes. O(1).
func (s *Set) Empty() bool { return s.used == 0 && s.root == 0 }

// Inline returns the encoded inline entries, to store at the start of
// the inode's inline area (the rest of the area zeroed). Empty when no
// attribute is inline. The slice is valid until the next change.
func (s *Set) Inline() []byte { return s.buf[:s.used:s.used] }

// Room returns the size of the inline area.
func (s *Set) Room() int { return len(s.buf) }

// Root returns the tree's root block, 0 when there is no tree.
func (s *Set) Root() uint64 { return s.root }

// Changed reports whether Inline or Root changed since Open or SetTx:
// the caller persists them.
func (s *Set) Changed() bool { return s.dirty }

// BlockDelta returns the tree blocks allocated minus those freed since
// Open or SetTx, for the inode's block count.
func (s *Set) BlockDelta() int64 { return s.alloc.n }

func (s *Set) openTree() (*btree.Tree, error) {
	if s.tree != nil {
		return s.tree, nil
	}
	if s.root == 0 {
		return nil, errors.New("xattr: no tree")
	}
	t, err := btree.Open(s.tx, s.cfg, s.root)
	if err != nil {
		return nil, fmt.Errorf("xattr: inode %d: %w", s.cfg.Owner, err)
	}
	s.tree = t
	return t, nil
}

func (s *Set) ensureTree() (*btree.Tree, error) {
	if s.root != 0 {
		return s.openTree()
	}
	t, err := btree.Create(s.tx, s.cfg)
	if err != nil {
		return nil, fmt.Errorf("xattr: inode %d: %w", s.cfg.Owner, err)
	}
	s.tree, s.root, s.dirty = t, t.Root, true
	return t, nil
}

// destroyTree frees every tree block.
func (s *Set) destroyTree() error {
	if s.root == 0 {
		return nil
	}
	t, err := s.openTree()
	if err != nil {
		return err
	}
	if err := t.Destroy(); err != nil {
		return fmt.Errorf("xattr: inode %d: %w", s.cfg.Owner, err)
	}
	s.tree, s.root, s.dirty = nil, 0, true
	return nil
}

func (s *Set) findInline(ns Namespace, suf string) (inlineEntry, bool) {
	b := s.buf[:s.used]
	for off := 0; ; {
		e, ok := nextInline(b, off)
		if !ok {
			return e, false
		}
		if e.ns == ns && string(e.name) == suf {
			return e, true
		}
		off = e.end
	}
}

func (s *Set) removeInline(e inlineEntry) {
	copy(s.buf[e.off:], s.buf[e.end:s.used])
	n := e.end - e.off
	clear(s.buf[s.used-n : s.used])
	s.used -= n
	s.dirty = true
}

func (s *Set) appendInline(ns Namespace, suf string, val []byte) {
	s.used += putInline(s.buf[s.used:], ns, suf, val)
	s.dirty = true
}

// sizeCheck applies getxattr's rule: a non-empty dst shorter than the
// value is ERANGE.
func sizeCheck(vlen int, dst []byte) error {
	if len(dst) != 0 && len(dst) < vlen {
		return syscall.ERANGE
	}
	return nil
}

// Get copies the value of name into dst and returns its length. With an
// empty dst it returns the length only; a dst too small is ERANGE; a name
// not set is ENODATA.
func (s *Set) Get(name string, dst []byte) (int, error) {
	ns, suf, err := ParseName(name)
	if err != nil {
		return 0, err
	}
	if e, ok := s.findInline(ns, suf); ok {
		if err := sizeCheck(len(e.val), dst); err != nil {
			return 0, err
		}
		copy(dst, e.val)
		return len(e.val), nil
	}
	if s.root == 0 {
		return 0, syscall.ENODATA
	}
	r, vlen, st, err := s.lookup(s.key(ns, suf))
	if err != nil {
		return 0, err
	}
	if st != present {
		return 0, syscall.ENODATA
	}
	if len(dst) == 0 {
		return vlen, nil
	}
	if err := sizeCheck(vlen, dst); err != nil {
		return 0, err
	}
	if err := r.read(dst[:vlen]); err != nil {
		return 0, err
	}
	if err := r.end(true); err != nil {
		return 0, err
	}
	return vlen, nil
}

// List writes the full names of the attributes whose namespace filter
// accepts (nil: all), each followed by a NUL, into dst and returns the
// bytes used. With an empty dst it returns the size only; a dst too small
// is ERANGE.
func (s *Set) List(dst []byte, filter func(Namespace) bool) (int, error) {
	n := 0
	add := func(ns Namespace, suf []byte) {
		if filter != nil && !filter(ns) {
			return
		}
		p := prefixes[ns]
		l := len(p) + len(suf) + 1
		if n+l <= len(dst) {
			copy(dst[n:], p)
			copy(dst[n+len(p):], suf)
			dst[n+l-1] = 0
		}
		n += l
	}
	b := s.buf[:s.used]
	for off := 0; ; {
		e, ok := nextInline(b, off)
		if !ok {
			break
		}
		add(e.ns, e.name)
		off = e.end
	}
	if s.root != 0 {
		err := s.scan(true, func(ns Namespace, suf []byte, _ int, _ *stream) error {
			add(ns, suf)
			return nil
		})
		if err != nil {
			return 0, err
		}
	}
	if len(dst) != 0 && n > len(dst) {
		return 0, syscall.ERANGE
	}
	return n, nil
}

// Set sets name to val. flags: Create fails with EEXIST if the name
// exists, Replace with ENODATA if it does not; other bits are EINVAL.
func (s *Set) Set(name string, val []byte, flags int) error {
	if flags&^(Create|Replace) != 0 {
		return syscall.EINVAL
	}
	if len(name) == 0 || len(name) > NameMax {
		return syscall.ERANGE
	}
	if len(val) > SizeMax {
		return syscall.E2BIG
	}
	ns, suf, err := ParseName(name)
	if err != nil {
		return err
	}
	e, inInline := s.findInline(ns, suf)
	var k attrKey
	inTree, collided, oldLen := false, false, 0
	if !inInline && s.root != 0 {
		k = s.key(ns, suf)
		_, vlen, st, err := s.lookup(k)
		if err != nil {
			return err
		}
		inTree, collided, oldLen = st == present, st == collision, vlen
	}
	exists := inInline || inTree
	switch {
	case flags&Create != 0 && exists:
		return syscall.EEXIST
	case flags&Replace != 0 && !exists:
		return syscall.ENODATA
	}

	free := len(s.buf) - s.used
	if inInline {
		free += e.end - e.off
	}
	if fitsInline(suf, len(val)) && inlineSize(suf, len(val)) <= free {
		if inTree {
			if err := s.deleteChunks(k, 0); err != nil {
				return err
			}
		}
		if inInline {
			s.removeInline(e)
		}
		s.appendInline(ns, suf, val)
		if inTree {
			return s.maybeCollapse()
		}
		return nil
	}

	if k.prefix == nil {
		k = s.key(ns, suf)
		if s.root != 0 && k.hashed {
			// Inline now, but check that the hashed key is free.
			_, _, st, err := s.lookup(k)
			if err != nil {
				return err
			}
			if st == present {
				return s.corrupt("%s%s is stored inline and in the tree", ns.Prefix(), suf)
			}
			collided = st == collision
		}
	}
	if collided {
		return fmt.Errorf("xattr: inode %d: %s%s: hash collides with another stored name: %w", s.cfg.Owner, ns.Prefix(), suf, syscall.ENOSPC)
	}
	if err := s.putTree(k, val, inTree); err != nil {
		return err
	}
	if inInline {
		s.removeInline(e)
	}
	if inTree && len(val) < oldLen {
		return s.maybeCollapse()
	}
	return nil
}

// Remove removes name; ENODATA if it is not set.
func (s *Set) Remove(name string) error {
	ns, suf, err := ParseName(name)
	if err != nil {
		return err
	}
	if e, ok := s.findInline(ns, suf); ok {
		s.removeInline(e)
		return nil
	}
	if s.root == 0 {
		return syscall.ENODATA
	}
	k := s.key(ns, suf)
	_, _, st, err := s.lookup(k)
	if err != nil {
		return err
	}
	if st != present {
		return syscall.ENODATA
	}
	if err := s.deleteChunks(k, 0); err != nil {
		return err
	}
	return s.maybeCollapse()
}

var errNoFit = errors.New("does not fit")

// maybeCollapse moves every attribute of a one-leaf tree inline and frees
// the tree when they all fit in the free inline room.
func (s *Set) maybeCollapse() error {
	if s.root == 0 {
		return nil
	}
	t, err := s.openTree()
	if err != nil {
		return err
	}
	if d, err := t.Depth(); err != nil || d > 1 {
		return err
	}
	type attr struct {
		ns       Namespace
		suf, val []byte
	}
	var moves []attr
	free := len(s.buf) - s.used
	err = s.scan(false, func(ns Namespace, suf []byte, vlen int, r *stream) error {
		if vlen > MaxInlineValue {
			return errNoFit
		}
		if free -= inlineHdr + len(suf) + vlen; free < 0 {
			return errNoFit
		}
		val := make([]byte, vlen)
		if err := r.read(val); err != nil {
			return err
		}
		moves = append(moves, attr{ns, slices.Clone(suf), val})
		return nil
	})
	if err == errNoFit {
		return nil
	}
	if err != nil {
		return err
	}
	if err := s.destroyTree(); err != nil {
		return err
	}
	for _, m := range moves {
		s.appendInline(m.ns, string(m.suf), m.val)
	}
	return nil
}

// SetRoom resizes the inline area to n bytes: shrinking moves the largest
// inline entries to the tree until the rest fit (the data fork needs the
// space); growing may move a small tree inline.
func (s *Set) SetRoom(n int) error {
	if n < 0 {
		return syscall.EINVAL
	}
	for s.used > n {
		var big inlineEntry
		b := s.buf[:s.used]
		for off := 0; ; {
			e, ok := nextInline(b, off)
			if !ok {
				break
			}
			if e.end-e.off > big.end-big.off {
				big = e
			}
			off = e.end
		}
		k := s.key(big.ns, string(big.name))
		if s.root != 0 && k.hashed {
			_, _, st, err := s.lookup(k)
			if err != nil {
				return err
			}
			if st != absent {
				return fmt.Errorf("xattr: inode %d: %s%s: hash collides with another stored name: %w", s.cfg.Owner, big.ns.Prefix(), big.name, syscall.ENOSPC)
			}
		}
		if err := s.putTree(k, big.val, s.root != 0); err != nil {
			return err
		}
		s.removeInline(big)
	}
	if n == len(s.buf) {
		return nil
	}
	grew := n > len(s.buf)
	nb := make([]byte, n)
	copy(nb, s.buf[:s.used])
	s.buf, s.dirty = nb, true
	if grew {
		return s.maybeCollapse()
	}
	return nil
}

// Destroy removes every attribute and frees every tree block (the inode
// is being freed).
func (s *Set) Destroy() error {
	if err := s.destroyTree(); err != nil {
		return err
	}
	if s.used != 0 {
		clear(s.buf)
		s.used, s.dirty = 0, true
	}
	return nil
}

// Walk calls fn for every tree block (fsck's block accounting).
func (s *Set) Walk(fn func(blk uint64) error) error {
	if s.root == 0 {
		return nil
	}
	t, err := s.openTree()
	if err != nil {
		return err
	}
	return t.Walk(func(blk uint64, _ int) error { return fn(blk) })
}

// Check verifies everything: the tree's structure (btree.Check), every
// attribute's keys, chunks and stream, and that no name is stored twice
// and the tree is not empty. Problems are errors wrapping
// layout.ErrCorrupt.
func (s *Set) Check() error {
	if _, err := scanInline(s.buf); err != nil {
		return fmt.Errorf("inode %d: %w", s.cfg.Owner, err)
	}
	if s.root == 0 {
		return nil
	}
	t, err := s.openTree()
	if err != nil {
		return err
	}
	if err := t.Check(); err != nil {
		return fmt.Errorf("xattr: inode %d: %w", s.cfg.Owner, err)
	}
	count := 0
	var val []byte
	err = s.scan(false, func(ns Namespace, suf []byte, vlen int, r *stream) error {
		count++
		if _, ok := s.findInline(ns, string(suf)); ok {
			return s.corrupt("%s%s is stored inline and in the tree", ns.Prefix(), suf)
		}
		val = slices.Grow(val[:0], vlen)[:vlen]
		return r.read(val)
	})
	if err != nil {
		return err
	}
	if count == 0 {
		return s.corrupt("xattr tree %d holds no attribute", s.root)
	}
	return nil
}
