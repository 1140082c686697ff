package btree

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"agfs/layout"
)

// Node header fields (absolute offsets in the block).
const (
	offLevel     = layout.HeaderSize // u16
	offCount     = offLevel + 2      // u16
	offBodyStart = offCount + 2      // u32
	offGarbage   = offBodyStart + 4  // u32
	offReserved1 = offGarbage + 4    // u32, zero
	offRight     = offReserved1 + 4  // u64
	offReserved2 = offRight + 8      // u64, zero

	// NodeHeaderSize is the common header plus the node header: where the
	// slot array starts.
	NodeHeaderSize = offReserved2 + 8 // 96

	slotSize  = 2
	entryHdr  = 4 // key length u16, value length u16
	childSize = 8 // interior value: child block number

	keyCap   = 512
	valueCap = 512

	// MaxDepth is the most levels a tree may have (levels 0..MaxDepth-1).
	MaxDepth = 32

	minBlockSize = 1024
	maxBlockSize = 65536

	// mergeGap: a separate log record costs 13 bytes (kind, block,
	// offset, length) and an unchanged byte logged inside a range costs 2
	// (before and after), so changed ranges closer than this are logged as
	// one.
	mergeGap = 6
)

// ErrTooLarge is wrapped by Put's error for a key or value over the
// limits of the tree's block size.
var ErrTooLarge = errors.New("btree: key or value too large")

// Limits are the size limits of a block size (see the package doc).
type Limits struct {
	MaxKey   int // key bytes
	MaxValue int // value bytes
	MaxEntry int // key + value bytes
}

// LimitsFor returns the key and value limits at block size bs.
func LimitsFor(bs int) Limits {
	budget := (bs-NodeHeaderSize)/4 - slotSize - entryHdr
	return Limits{
		MaxKey:   min(keyCap, budget-childSize),
		MaxValue: min(valueCap, budget),
		MaxEntry: min(keyCap+valueCap, budget),
	}
}

func le16(b []byte) int        { return int(binary.LittleEndian.Uint16(b)) }
func le32(b []byte) int        { return int(binary.LittleEndian.Uint32(b)) }
func le64(b []byte) uint64     { return binary.LittleEndian.Uint64(b) }
func put16(b []byte, v int)    { binary.LittleEndian.PutUint16(b, uint16(v)) }
func put32(b []byte, v int)    { binary.LittleEndian.PutUint32(b, uint32(v)) }
func put64(b []byte, v uint64) { binary.LittleEndian.PutUint64(b, v) }

// span is a byte range [lo, hi) of a node changed by the operation.
type span struct{ lo, hi int }

// node is an in-memory view of a node block. The accessors trust the
// block: it passed the verifier when it was read from the device, or this
// package wrote it.
type node struct {
	blk   uint64
	b     []byte // current content: shared (wal.Tx.View) until prep copies it
	orig  []byte // content before the operation's first change; nil if none yet
	fresh bool   // allocated by this operation: logged whole with Init
	freed bool   // freed by this operation: not written
	spans []span // changed ranges (not for fresh nodes)
}

func (n *node) level() int         { return le16(n.b[offLevel:]) }
func (n *node) count() int         { return le16(n.b[offCount:]) }
func (n *node) bodyStart() int     { return le32(n.b[offBodyStart:]) }
func (n *node) garbage() int       { return le32(n.b[offGarbage:]) }
func (n *node) right() uint64      { return le64(n.b[offRight:]) }
func (n *node) slot(i int) int     { return le16(n.b[NodeHeaderSize+slotSize*i:]) }
func (n *node) leaf() bool         { return n.level() == 0 }
func (n *node) slotsEnd() int      { return NodeHeaderSize + slotSize*n.count() }
func (n *node) capacity() int      { return len(n.b) - NodeHeaderSize }
func (n *node) contiguous() int    { return n.bodyStart() - n.slotsEnd() }
func (n *node) free() int          { return n.capacity() - n.used() }
func (n *node) child(i int) uint64 { return le64(n.val(i)) }

// used is the bytes taken by slots and live entry bodies.
func (n *node) used() int {
	return slotSize*n.count() + len(n.b) - n.bodyStart() - n.garbage()
}

// entry returns the key and value of entry i, aliasing the block.
func (n *node) entry(i int) (k, v []byte) {
	o := n.slot(i)
	kl, vl := le16(n.b[o:]), le16(n.b[o+2:])
	k = n.b[o+entryHdr : o+entryHdr+kl : o+entryHdr+kl]
	v = n.b[o+entryHdr+kl : o+entryHdr+kl+vl : o+entryHdr+kl+vl]
	return k, v
}

func (n *node) key(i int) []byte { k, _ := n.entry(i); return k }
func (n *node) val(i int) []byte { _, v := n.entry(i); return v }

// bodySize is the size of entry i's body.
func (n *node) bodySize(i int) int {
	o := n.slot(i)
	return entryHdr + le16(n.b[o:]) + le16(n.b[o+2:])
}

// cost is the node bytes an entry takes: slot and body.
func cost(klen, vlen int) int { return slotSize + entryHdr + klen + vlen }

// search returns the index of the first entry with key ≥ k and whether
// it equals k.
func (n *node) search(k []byte) (int, bool) {
	lo, hi := 0, n.count()
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if bytes.Compare(n.key(m), k) < 0 {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo, lo < n.count() && bytes.Equal(n.key(lo), k)
}

// upper returns the index of the first entry with key > k.
func (n *node) upper(k []byte) int {
	lo, hi := 0, n.count()
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if bytes.Compare(n.key(m), k) <= 0 {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo
}

// childIndex is the child of an interior node whose range holds k: the
// last entry with key ≤ k (entry 0's key is empty, so there is one).
func (n *node) childIndex(k []byte) int {
	return max(n.upper(k)-1, 0)
}

// ---- changes ----

// prep is called before every change: the first of the operation keeps
// the content read as orig and changes a private copy, since what the
// transaction handed out is shared with the cache and other readers.
// Slices of entries taken before it still show the old content.
func (n *node) prep() {
	if n.orig == nil && !n.fresh {
		n.orig = n.b
		n.b = slices.Clone(n.b)
	}
}

func (n *node) mark(lo, hi int) {
	if lo < hi && !n.fresh {
		n.spans = append(n.spans, span{lo, hi})
	}
}

func (n *node) dirty() bool { return n.fresh || len(n.spans) > 0 }

func (n *node) setField16(off, v int) {
	n.prep()
	put16(n.b[off:], v)
	n.mark(off, off+2)
}

func (n *node) setField32(off, v int) {
	n.prep()
	put32(n.b[off:], v)
	n.mark(off, off+4)
}

func (n *node) setLevel(v int)     { n.setField16(offLevel, v) }
func (n *node) setCount(v int)     { n.setField16(offCount, v) }
func (n *node) setBodyStart(v int) { n.setField32(offBodyStart, v) }
func (n *node) setGarbage(v int)   { n.setField32(offGarbage, v) }
func (n *node) setRight(blk uint64) {
	n.prep()
	put64(n.b[offRight:], blk)
	n.mark(offRight, offRight+8)
}

func (n *node) setChild(i int, blk uint64) {
	n.prep()
	o := n.slot(i)
	vo := o + entryHdr + le16(n.b[o:])
	put64(n.b[vo:], blk)
	n.mark(vo, vo+childSize)
}

// setVal overwrites entry i's value with v of the same length.
func (n *node) setVal(i int, v []byte) {
	n.prep()
	o := n.slot(i)
	vo := o + entryHdr + le16(n.b[o:])
	copy(n.b[vo:], v)
	n.mark(vo, vo+len(v))
}

// insertAt inserts (k, v) as entry i. The caller has made sure it fits
// (free() ≥ cost); it compacts the bodies if the contiguous space is short.
func (n *node) insertAt(i int, k, v []byte) {
	n.prep()
	if n.contiguous() < cost(len(k), len(v)) {
		n.compact()
	}
	cnt := n.count()
	o := n.bodyStart() - entryHdr - len(k) - len(v)
	put16(n.b[o:], len(k))
	put16(n.b[o+2:], len(v))
	copy(n.b[o+entryHdr:], k)
	copy(n.b[o+entryHdr+len(k):], v)
	n.mark(o, o+entryHdr+len(k)+len(v))
	s := NodeHeaderSize + slotSize*i
	end := NodeHeaderSize + slotSize*cnt
	copy(n.b[s+slotSize:end+slotSize], n.b[s:end])
	put16(n.b[s:], o)
	n.mark(s, end+slotSize)
	n.setCount(cnt + 1)
	n.setBodyStart(o)
}

// appendEntry adds (k, v) after the last entry.
func (n *node) appendEntry(k, v []byte) { n.insertAt(n.count(), k, v) }

// removeAt removes entry i. Its body becomes garbage unless it is the
// lowest body; an emptied node has its body area reset.
func (n *node) removeAt(i int) {
	n.prep()
	cnt := n.count()
	o, sz := n.slot(i), n.bodySize(i)
	s := NodeHeaderSize + slotSize*i
	end := NodeHeaderSize + slotSize*cnt
	copy(n.b[s:], n.b[s+slotSize:end])
	n.mark(s, end-slotSize)
	n.setCount(cnt - 1)
	switch {
	case cnt == 1:
		n.setBodyStart(len(n.b))
		n.setGarbage(0)
	case o == n.bodyStart():
		n.setBodyStart(o + sz)
	default:
		n.setGarbage(n.garbage() + sz)
	}
}

// truncate drops entries [keep, count): their bodies become garbage.
func (n *node) truncate(keep int) {
	cnt := n.count()
	if keep >= cnt {
		return
	}
	n.prep()
	if keep == 0 {
		n.setCount(0)
		n.setBodyStart(len(n.b))
		n.setGarbage(0)
		return
	}
	dead := 0
	for i := keep; i < cnt; i++ {
		dead += n.bodySize(i)
	}
	n.setCount(keep)
	n.setGarbage(n.garbage() + dead)
}

// compact slides the live bodies up to the block end, highest first, so
// bodies with no garbage above them do not move (and are not logged).
func (n *node) compact() {
	n.prep()
	cnt := n.count()
	idx := make([]int, cnt)
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(a, b int) int { return n.slot(b) - n.slot(a) })
	pos := len(n.b)
	for _, i := range idx {
		o, sz := n.slot(i), n.bodySize(i)
		pos -= sz
		if pos != o {
			copy(n.b[pos:pos+sz], n.b[o:o+sz])
			put16(n.b[NodeHeaderSize+slotSize*i:], pos)
		}
	}
	n.mark(pos, len(n.b))
	n.mark(NodeHeaderSize, NodeHeaderSize+slotSize*cnt)
	n.setBodyStart(pos)
	n.setGarbage(0)
}

// resetLeaf makes n an empty leaf (an emptied interior root).
func (n *node) resetLeaf() {
	n.setLevel(0)
	n.setCount(0)
	n.setBodyStart(len(n.b))
	n.setGarbage(0)
	n.setRight(0)
}

// initNode fills b (one block) as an empty node.
func initNode(b []byte, magic uint32, blk, owner uint64, level int) {
	clear(b)
	layout.PutHeader(b, magic, blk, owner)
	put16(b[offLevel:], level)
	put32(b[offBodyStart:], len(b))
}

// runs returns the changed byte ranges of a changed node, as they should
// be logged: the marked spans merged, trimmed to the bytes that really
// differ from the content before the operation, and split where
// unchanged stretches are longer than mergeGap.
func (n *node) runs(out []span) []span {
	sp := n.spans
	slices.SortFunc(sp, func(a, b span) int { return a.lo - b.lo })
	var merged []span
	for _, s := range sp {
		if k := len(merged); k > 0 && s.lo <= merged[k-1].hi {
			merged[k-1].hi = max(merged[k-1].hi, s.hi)
			continue
		}
		merged = append(merged, s)
	}
	for _, s := range merged {
		i := s.lo
		for i < s.hi {
			for i < s.hi && n.b[i] == n.orig[i] {
				i++
			}
			if i == s.hi {
				break
			}
			start, same := i, 0
			end := i
			for i < s.hi && same <= mergeGap {
				if n.b[i] == n.orig[i] {
					same++
				} else {
					same, end = 0, i+1
				}
				i++
			}
			if k := len(out); k > 0 && start-out[k-1].hi <= mergeGap {
				out[k-1].hi = end
			} else {
				out = append(out, span{start, end})
			}
			i = end
		}
	}
	return out
}

// ---- verification ----

// corrupt builds an error wrapping layout.ErrCorrupt that names the node.
func corrupt(blk, owner uint64, format string, args ...any) error {
	return fmt.Errorf("btree: node %d (owner %d): %w: %s", blk, owner, layout.ErrCorrupt, fmt.Sprintf(format, args...))
}

// checkHeader is the cheap check of every node read, cached or not: the
// common header's identity fields (no checksum: cached blocks carry stale
// ones), the expected level (−1: any) and the slot array's bounds, so the
// accessors cannot run outside the block.
func checkHeader(b []byte, bs int, magic uint32, blk, owner uint64, level int) error {
	if len(b) != bs {
		return corrupt(blk, owner, "block of %d bytes, tree block size %d", len(b), bs)
	}
	h := layout.ReadHeader(b)
	if h.Magic != magic || h.Blkno != blk || h.Owner != owner {
		return corrupt(blk, owner, "header is magic %s block %d owner %d, want %s block %d owner %d",
			layout.MagicName(h.Magic), h.Blkno, h.Owner, layout.MagicName(magic), blk, owner)
	}
	lv := le16(b[offLevel:])
	if level >= 0 && lv != level {
		return corrupt(blk, owner, "level %d, want %d", lv, level)
	}
	if lv >= MaxDepth {
		return corrupt(blk, owner, "level %d, at most %d", lv, MaxDepth-1)
	}
	cnt, bstart := le16(b[offCount:]), le32(b[offBodyStart:])
	if NodeHeaderSize+slotSize*cnt > bstart || bstart > bs {
		return corrupt(blk, owner, "%d slots and body start %d do not fit a %d-byte block", cnt, bstart, bs)
	}
	return nil
}

// checkNode is the structural check of a node (after checkHeader): the
// header fields, every entry inside the body area and within the limits,
// bodies not overlapping and accounting exactly for the body area with
// the garbage, keys strictly ascending, and the interior-node rules.
func checkNode(b []byte, blk, owner uint64) error {
	bs := len(b)
	lim := LimitsFor(bs)
	n := node{b: b}
	if le32(b[offReserved1:]) != 0 || le64(b[offReserved2:]) != 0 {
		return corrupt(blk, owner, "reserved node header fields are not zero")
	}
	cnt, bstart, garbage := n.count(), n.bodyStart(), n.garbage()
	if garbage > bs-bstart {
		return corrupt(blk, owner, "garbage %d exceeds the %d-byte body area", garbage, bs-bstart)
	}
	leaf := n.leaf()
	if !leaf && n.right() != 0 {
		return corrupt(blk, owner, "interior node has right sibling %d", n.right())
	}
	if n.right() == blk && blk != 0 {
		return corrupt(blk, owner, "right sibling is the node itself")
	}
	type ext struct{ lo, hi int }
	exts := make([]ext, 0, cnt)
	live := 0
	for i := range cnt {
		o := n.slot(i)
		if o < bstart || o+entryHdr > bs {
			return corrupt(blk, owner, "entry %d at offset %d is outside the body area [%d, %d)", i, o, bstart, bs)
		}
		kl, vl := le16(b[o:]), le16(b[o+2:])
		end := o + entryHdr + kl + vl
		if end > bs {
			return corrupt(blk, owner, "entry %d (%d+%d bytes at %d) runs past the block end", i, kl, vl, o)
		}
		if kl > lim.MaxKey {
			return corrupt(blk, owner, "entry %d key of %d bytes exceeds %d", i, kl, lim.MaxKey)
		}
		if leaf {
			if vl > lim.MaxValue || kl+vl > lim.MaxEntry {
				return corrupt(blk, owner, "entry %d of %d+%d bytes exceeds the limits", i, kl, vl)
			}
		} else {
			if vl != childSize {
				return corrupt(blk, owner, "interior entry %d value of %d bytes, want %d", i, vl, childSize)
			}
			if i == 0 && kl != 0 {
				return corrupt(blk, owner, "interior entry 0 has a %d-byte key, want none", kl)
			}
			if c := le64(b[end-childSize:]); c == 0 || c == blk {
				return corrupt(blk, owner, "interior entry %d points to block %d", i, c)
			}
		}
		if i > 0 && bytes.Compare(n.key(i-1), n.key(i)) >= 0 {
			return corrupt(blk, owner, "keys of entries %d and %d are not ascending", i-1, i)
		}
		exts = append(exts, ext{o, end})
		live += end - o
	}
	slices.SortFunc(exts, func(a, b ext) int { return a.lo - b.lo })
	for i := 1; i < len(exts); i++ {
		if exts[i].lo < exts[i-1].hi {
			return corrupt(blk, owner, "entry bodies at %d and %d overlap", exts[i-1].lo, exts[i].lo)
		}
	}
	if live+garbage != bs-bstart {
		return corrupt(blk, owner, "live bodies %d + garbage %d != body area %d", live, garbage, bs-bstart)
	}
	return nil
}

// VerifyNode is the full read verifier of a node block: layout.Check
// (checksum, magic, self-address, owner) and the structural checks. Errors
// wrap layout.ErrCorrupt and name the block and owner.
func VerifyNode(b []byte, seed uint64, magic uint32, blk, owner uint64) error {
	if err := layout.Check(b, seed, magic, blk, owner); err != nil {
		return fmt.Errorf("btree: node %d (owner %d): %w", blk, owner, err)
	}
	if len(b) < minBlockSize || len(b) > maxBlockSize {
		return corrupt(blk, owner, "block of %d bytes", len(b))
	}
	if err := checkHeader(b, len(b), magic, blk, owner, -1); err != nil {
		return err
	}
	return checkNode(b, blk, owner)
}
