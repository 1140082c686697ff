package fs

import (
	"encoding/binary"
	"math"
	"slices"

	"agfs/btree"
	"agfs/layout"
	"agfs/wal"
)

// A file's data map: extents inline in the inode's fork (data format
// DataExtents, up to layout.MaxInlineExtents, fewer when inline extended
// attributes take the fork's tail), or an extent B+tree (DataBTree, node
// magic AGEX, owner = the inode, root block in fork[0:8], fork count 1)
// whose entries are
//
//	key    8 bytes  first file block, big-endian
//	value 16 bytes  first device block u64, length u32, flags u32 (little-endian)
//
// Extents do not overlap; blocks no extent covers are holes. Adjacent
// extents that continue each other (file and device, same flags) are
// merged when inserted.

// maxExtLen bounds a merged extent's length.
const maxExtLen = math.MaxUint32 >> 1

type emap struct {
	f     *FS
	tx    *wal.Tx
	ino   uint64
	in    *layout.Inode
	alloc btree.Allocator
	inl   []layout.Extent // DataExtents
	tree  *btree.Tree     // DataBTree
	dirty bool
}

func (f *FS) extCfg(ino uint64, alloc btree.Allocator, goal uint64) btree.Config {
	c := ExtentTreeConfig(&f.sb, ino)
	c.Alloc, c.Goal = alloc, goal
	return c
}

// openMap opens the data map of inode ino (working copy in) in tx. alloc is
// nil for reading.
func (f *FS) openMap(tx *wal.Tx, ino uint64, in *layout.Inode, alloc btree.Allocator) (*emap, error) {
	if alloc == nil {
		alloc = noAlloc{}
	}
	m := &emap{f: f, tx: tx, ino: ino, in: in, alloc: alloc}
	switch in.DataFormat {
	case layout.DataExtents:
		m.inl = make([]layout.Extent, 0, in.ForkCount)
		for i := range int(in.ForkCount) {
			e, err := layout.DecodeExtent(in.Fork[i*layout.ExtentSize:], f.g)
			if err != nil {
				return nil, corruptf("inode %d: extent %d: %v", ino, i, err)
			}
			m.inl = append(m.inl, e)
		}
	case layout.DataBTree:
		t, err := btree.Open(tx, f.extCfg(ino, alloc, 0), binary.LittleEndian.Uint64(in.Fork[0:]))
		if err != nil {
			return nil, err
		}
		m.tree = t
	default:
		return nil, corruptf("inode %d: data format %d has no extents", ino, in.DataFormat)
	}
	return m, nil
}

func extKey(l uint64) []byte {
	var k [8]byte
	binary.BigEndian.PutUint64(k[:], l)
	return k[:]
}

func extVal(e layout.Extent) []byte {
	var v [16]byte
	binary.LittleEndian.PutUint64(v[0:], e.Physical)
	binary.LittleEndian.PutUint32(v[8:], e.Len)
	binary.LittleEndian.PutUint32(v[12:], e.Flags)
	return v[:]
}

func (m *emap) decode(k, v []byte) (layout.Extent, error) {
	if len(k) != 8 || len(v) != 16 {
		return layout.Extent{}, corruptf("inode %d: extent tree entry of %d+%d bytes", m.ino, len(k), len(v))
	}
	var b [layout.ExtentSize]byte
	binary.LittleEndian.PutUint64(b[0:], binary.BigEndian.Uint64(k))
	copy(b[8:], v)
	e, err := layout.DecodeExtent(b[:], m.f.g)
	if err != nil {
		return e, corruptf("inode %d: extent tree: %v", m.ino, err)
	}
	return e, nil
}

func extEnd(e layout.Extent) uint64 { return e.Logical + uint64(e.Len) }

// find returns the first extent that ends after file block l: the one
// containing l, or else the next one.
func (m *emap) find(l uint64) (layout.Extent, bool, error) {
	if m.tree == nil {
		for _, e := range m.inl {
			if extEnd(e) > l {
				return e, true, nil
			}
		}
		return layout.Extent{}, false, nil
	}
	k, v, ok, err := m.tree.Floor(extKey(l))
	if err != nil {
		return layout.Extent{}, false, err
	}
	if ok {
		e, err := m.decode(k, v)
		if err != nil {
			return e, false, err
		}
		if extEnd(e) > l {
			return e, true, nil
		}
	}
	it := m.tree.Seek(extKey(l))
	if !it.Next() {
		return layout.Extent{}, false, it.Err()
	}
	e, err := m.decode(it.Key(), it.Value())
	return e, err == nil, err
}

// last returns the extent with the highest file blocks.
func (m *emap) last() (layout.Extent, bool, error) {
	if m.tree == nil {
		if len(m.inl) == 0 {
			return layout.Extent{}, false, nil
		}
		return m.inl[len(m.inl)-1], true, nil
	}
	it := m.tree.SeekLast()
	if !it.Prev() {
		return layout.Extent{}, false, it.Err()
	}
	e, err := m.decode(it.Key(), it.Value())
	return e, err == nil, err
}

func (m *emap) del(e layout.Extent) error {
	m.dirty = true
	if m.tree == nil {
		i := slices.IndexFunc(m.inl, func(x layout.Extent) bool { return x.Logical == e.Logical })
		if i >= 0 {
			m.inl = slices.Delete(m.inl, i, i+1)
		}
		return nil
	}
	_, err := m.tree.Delete(extKey(e.Logical))
	return err
}

func (m *emap) put(e layout.Extent) error {
	m.dirty = true
	if m.tree == nil {
		i, _ := slices.BinarySearchFunc(m.inl, e.Logical, func(x layout.Extent, l uint64) int {
			switch {
			case x.Logical < l:
				return -1
			case x.Logical > l:
				return 1
			}
			return 0
		})
		m.inl = slices.Insert(m.inl, i, e)
		return nil
	}
	return m.tree.Put(extKey(e.Logical), extVal(e))
}

// remove unmaps file blocks [l, l+n) and returns the pieces it unmapped
// (their device blocks are the caller's to free or remap). At most limit
// extents are touched (0: no limit); more reports that some of the range
// is still mapped.
func (m *emap) remove(l, n uint64, limit int) (removed []layout.Extent, more bool, err error) {
	end := l + n
	if end < l {
		end = math.MaxUint64
	}
	var hit []layout.Extent
	for pos := l; pos < end; {
		e, ok, err := m.find(pos)
		if err != nil {
			return nil, false, err
		}
		if !ok || e.Logical >= end {
			break
		}
		if limit > 0 && len(hit) == limit {
			more = true
			end = e.Logical
			break
		}
		hit = append(hit, e)
		pos = extEnd(e)
	}
	for _, e := range hit {
		if err := m.del(e); err != nil {
			return nil, false, err
		}
		if e.Logical < l {
			if err := m.put(layout.Extent{Logical: e.Logical, Physical: e.Physical, Len: uint32(l - e.Logical), Flags: e.Flags}); err != nil {
				return nil, false, err
			}
		}
		if extEnd(e) > end {
			if err := m.put(layout.Extent{Logical: end, Physical: e.Physical + (end - e.Logical), Len: uint32(extEnd(e) - end), Flags: e.Flags}); err != nil {
				return nil, false, err
			}
		}
		s, t := max(l, e.Logical), min(end, extEnd(e))
		removed = append(removed, layout.Extent{Logical: s, Physical: e.Physical + (s - e.Logical), Len: uint32(t - s), Flags: e.Flags})
	}
	return removed, more, nil
}

// insert maps e, whose file blocks must be unmapped, merging it with the
// extents it continues.
func (m *emap) insert(e layout.Extent) error {
	if e.Logical > 0 {
		p, ok, err := m.find(e.Logical - 1)
		if err != nil {
			return err
		}
		if ok && extEnd(p) == e.Logical && p.Physical+uint64(p.Len) == e.Physical && p.Flags == e.Flags && uint64(p.Len)+uint64(e.Len) <= maxExtLen {
			if err := m.del(p); err != nil {
				return err
			}
			e = layout.Extent{Logical: p.Logical, Physical: p.Physical, Len: p.Len + e.Len, Flags: e.Flags}
		}
	}
	q, ok, err := m.find(extEnd(e))
	if err != nil {
		return err
	}
	if ok && q.Logical == extEnd(e) && e.Physical+uint64(e.Len) == q.Physical && q.Flags == e.Flags && uint64(q.Len)+uint64(e.Len) <= maxExtLen {
		if err := m.del(q); err != nil {
			return err
		}
		e.Len += q.Len
	}
	return m.put(e)
}

// inlineCap is how many extents fit in the fork beside inline attributes.
func inlineCap(in *layout.Inode) int {
	if in.ForkOffset != 0 {
		return int(in.ForkOffset) / layout.ExtentSize
	}
	return layout.MaxInlineExtents
}

// save stores the map in the working inode: inline extents, converted to
// a tree when they no longer fit, or the tree's root (a tree left empty
// goes back to inline).
func (m *emap) save() error {
	in := m.in
	if m.tree != nil {
		empty := false
		if m.dirty {
			it := m.tree.Seek(nil)
			empty = !it.Next()
			if err := it.Err(); err != nil {
				return err
			}
		}
		if m.dirty && !empty {
			// A one-leaf tree whose extents fit inline goes back inline.
			if d, err := m.tree.Depth(); err != nil {
				return err
			} else if d == 1 {
				var few []layout.Extent
				it := m.tree.Seek(nil)
				for len(few) <= inlineCap(in) && it.Next() {
					e, err := m.decode(it.Key(), it.Value())
					if err != nil {
						return err
					}
					few = append(few, e)
				}
				if err := it.Err(); err != nil {
					return err
				}
				if len(few) <= inlineCap(in) {
					m.inl = few
					empty = true
				}
			}
		}
		if empty {
			if err := m.tree.Destroy(); err != nil {
				return err
			}
			m.tree = nil
			in.DataFormat = layout.DataExtents
			clear(in.Fork[:m.dataEnd()])
			for i, e := range m.inl {
				e.Encode(in.Fork[i*layout.ExtentSize:])
			}
			in.ForkCount = uint8(len(m.inl))
			return nil
		}
		binary.LittleEndian.PutUint64(in.Fork[0:], m.tree.Root)
		return nil
	}
	if !m.dirty {
		return nil
	}
	if len(m.inl) > inlineCap(in) {
		goal := uint64(0)
		if len(m.inl) > 0 {
			goal = m.inl[0].Physical
		}
		t, err := btree.Create(m.tx, m.f.extCfg(m.ino, m.alloc, goal))
		if err != nil {
			return err
		}
		for _, e := range m.inl {
			if err := t.Put(extKey(e.Logical), extVal(e)); err != nil {
				return err
			}
		}
		m.tree, m.inl = t, nil
		clear(in.Fork[:m.dataEnd()])
		in.DataFormat = layout.DataBTree
		in.ForkCount = 1
		binary.LittleEndian.PutUint64(in.Fork[0:], t.Root)
		return nil
	}
	clear(in.Fork[:m.dataEnd()])
	for i, e := range m.inl {
		e.Encode(in.Fork[i*layout.ExtentSize:])
	}
	in.ForkCount = uint8(len(m.inl))
	return nil
}

// dataEnd is where the data fork ends: the inline attributes' start.
func (m *emap) dataEnd() int {
	if m.in.ForkOffset != 0 {
		return int(m.in.ForkOffset)
	}
	return layout.ForkSize
}

// extents returns every extent (fsck-style checks, tests).
func (m *emap) extents() ([]layout.Extent, error) {
	if m.tree == nil {
		return slices.Clone(m.inl), nil
	}
	var out []layout.Extent
	it := m.tree.Seek(nil)
	for it.Next() {
		e, err := m.decode(it.Key(), it.Value())
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, it.Err()
}
