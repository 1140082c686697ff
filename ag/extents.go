package ag

import (
	"cmp"

	"agfs/bitmap"
	"agfs/rbtree"
)

// freeIndex is the in-memory index of an AG's free extents (maximal runs
// of clear bits in its block bitmap), kept twice:
//
//   - byStart, keyed by start, augmented with the longest run in each
//     subtree, answers "the free run containing or following block b" and
//     "the first run at or after b of at least n blocks" in O(log n);
//   - bySize, keyed by (length, start), answers "the smallest run of at
//     least n blocks" (best fit) and "the longest run" in O(log n).
//
// Positions are AG-relative block numbers (bit numbers of the bitmap). The
// index is derived state: it is built from the bitmap and never stored.
// Extents in it never touch (neighbours are merged on insertion).
type freeIndex struct {
	byStart *rbtree.Tree[uint64, span]
	bySize  *rbtree.Tree[sizeKey, struct{}]
	free    uint64 // blocks in all extents
}

// span is the value of a byStart node: the extent's length, and the
// longest extent in the node's subtree (the augmentation).
type span struct {
	n, maxN uint64
}

func fixSpan(self, l, r *span) {
	self.maxN = self.n
	if l != nil && l.maxN > self.maxN {
		self.maxN = l.maxN
	}
	if r != nil && r.maxN > self.maxN {
		self.maxN = r.maxN
	}
}

type sizeKey struct{ n, start uint64 }

func cmpSize(a, b sizeKey) int {
	if c := cmp.Compare(a.n, b.n); c != 0 {
		return c
	}
	return cmp.Compare(a.start, b.start)
}

func newFreeIndex() *freeIndex {
	return &freeIndex{
		byStart: rbtree.NewAugmented[uint64, span](cmp.Compare[uint64], fixSpan),
		bySize:  rbtree.New[sizeKey, struct{}](cmpSize),
	}
}

// buildFreeIndex walks the bitmap's alternating clear and set runs.
func buildFreeIndex(b *bitmap.Bitmap) *freeIndex {
	x := newFreeIndex()
	for i := uint64(0); i < b.Len(); {
		s, ok := b.NextClear(i)
		if !ok {
			break
		}
		e, ok := b.NextSet(s)
		if !ok {
			e = b.Len()
		}
		x.add(s, e-s)
		i = e
	}
	return x
}

// add records [s, s+n) as an extent; it must not touch another one.
func (x *freeIndex) add(s, n uint64) {
	x.byStart.Put(s, span{n: n})
	x.bySize.Put(sizeKey{n, s}, struct{}{})
	x.free += n
}

// del forgets the extent starting at s of length n.
func (x *freeIndex) del(s, n uint64) {
	x.byStart.Delete(s)
	x.bySize.Delete(sizeKey{n, s})
	x.free -= n
}

// containing returns the extent holding block b.
func (x *freeIndex) containing(b uint64) (s, n uint64, ok bool) {
	s, v, ok := x.byStart.Floor(b)
	if !ok || b >= s+v.n {
		return 0, 0, false
	}
	return s, v.n, true
}

// insert marks [s, s+n) free, merging it with the extents on either side.
// The range must not overlap a free extent.
func (x *freeIndex) insert(s, n uint64) {
	if ps, pv, ok := x.byStart.Floor(s); ok && ps+pv.n == s {
		x.del(ps, pv.n)
		s, n = ps, n+pv.n
	}
	if nv, ok := x.byStart.Get(s + n); ok {
		x.del(s+n, nv.n)
		n += nv.n
	}
	x.add(s, n)
}

// remove marks [s, s+n) used; the range must lie within one free extent,
// which is split around it.
func (x *freeIndex) remove(s, n uint64) {
	es, en, ok := x.containing(s)
	if !ok || s+n > es+en {
		panic("ag: freeIndex.remove of a range that is not free")
	}
	x.del(es, en)
	if s > es {
		x.add(es, s-es)
	}
	if end := es + en; s+n < end {
		x.add(s+n, end-(s+n))
	}
}

// firstFit returns the lowest-addressed extent at or after from (by start)
// of at least n blocks.
func (x *freeIndex) firstFit(from, n uint64) (s, l uint64, ok bool) {
	s, v, ok := x.byStart.FirstMatch(from,
		func(v *span) bool { return v.maxN >= n },
		func(v *span) bool { return v.n >= n })
	return s, v.n, ok
}

// lastFit returns the highest-addressed extent starting at or before to of
// at least n blocks.
func (x *freeIndex) lastFit(to, n uint64) (s, l uint64, ok bool) {
	s, v, ok := x.byStart.LastMatch(to,
		func(v *span) bool { return v.maxN >= n },
		func(v *span) bool { return v.n >= n })
	return s, v.n, ok
}

// bestFit returns the smallest extent of at least n blocks (the lowest one
// among equals).
func (x *freeIndex) bestFit(n uint64) (s, l uint64, ok bool) {
	k, _, ok := x.bySize.Ceil(sizeKey{n, 0})
	return k.start, k.n, ok
}

// longest returns the longest extent (the lowest one among equals).
func (x *freeIndex) longest() (s, l uint64, ok bool) {
	k, _, ok := x.bySize.Max()
	if !ok {
		return 0, 0, false
	}
	// Max gives the highest start among the longest; prefer the lowest.
	if k2, _, ok2 := x.bySize.Ceil(sizeKey{k.n, 0}); ok2 {
		k = k2
	}
	return k.start, k.n, true
}
