package bitmap

// SetRange sets bits [start, start+n), a word at a time. Allocating an
// extent is one call however long it is.
func (b *Bitmap) SetRange(start, n uint64) {
	b.checkRange(start, n)
	b.eachBlockSpan(start, start+n, func(blk int, s, e uint64) {
		var changed uint64
		for s < e {
			k := s / 64
			m := wordMask(s%64, min(e-k*64, 64))
			changed += popcount(m &^ b.words[k])
			b.words[k] |= m
			s = k*64 + 64
		}
		b.ones += changed
		b.free[blk] -= changed
	})
}

// ClearRange clears bits [start, start+n), a word at a time.
func (b *Bitmap) ClearRange(start, n uint64) {
	b.checkRange(start, n)
	b.eachBlockSpan(start, start+n, func(blk int, s, e uint64) {
		var changed uint64
		for s < e {
			k := s / 64
			m := wordMask(s%64, min(e-k*64, 64))
			changed += popcount(m & b.words[k])
			b.words[k] &^= m
			s = k*64 + 64
		}
		b.ones -= changed
		b.free[blk] += changed
	})
}

// RangeIsClear reports whether every bit of [start, start+n) is clear: the
// check a caller makes before claiming a specific extent. An empty range is
// clear.
func (b *Bitmap) RangeIsClear(start, n uint64) bool {
	b.checkRange(start, n)
	_, found := b.nextOne(start, start+n)
	return !found
}

// RangeIsSet reports whether every bit of [start, start+n) is set: the check
// before freeing an extent, which catches a double free. An empty range is
// set.
func (b *Bitmap) RangeIsSet(start, n uint64) bool {
	b.checkRange(start, n)
	_, found := b.nextZero(start, start+n)
	return !found
}

// eachBlockSpan splits [s, e) at block boundaries and calls fn for each
// piece, so that per-block counts can be updated piecewise.
func (b *Bitmap) eachBlockSpan(s, e uint64, fn func(blk int, s, e uint64)) {
	for s < e {
		blk := s / b.bpb
		end := min(e, (blk+1)*b.bpb)
		fn(int(blk), s, end)
		s = end
	}
}
