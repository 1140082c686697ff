package bitmap

import "math/bits"

// FindFirstZero returns the first clear bit at or after hint, wrapping round
// to bit 0 so that the whole bitmap is searched; false if every bit is set.
// A hint at or past Len means 0. Allocators pass their last position as the
// hint so consecutive allocations are laid out in order and do not rescan
// the full start of the bitmap each time.
func (b *Bitmap) FindFirstZero(hint uint64) (uint64, bool) {
	if hint >= b.nbits {
		hint = 0
	}
	if i, ok := b.nextZero(hint, b.nbits); ok {
		return i, true
	}
	return b.nextZero(0, hint)
}

// NextClear returns the first clear bit at or after i, without wrapping;
// false if there is none. With NextSet it walks the bitmap as alternating
// runs, which is how extent indexes are built from it.
func (b *Bitmap) NextClear(i uint64) (uint64, bool) {
	if i >= b.nbits {
		return 0, false
	}
	return b.nextZero(i, b.nbits)
}

// NextSet returns the first set bit at or after i, without wrapping; false
// if there is none.
func (b *Bitmap) NextSet(i uint64) (uint64, bool) {
	if i >= b.nbits {
		return 0, false
	}
	return b.nextOne(i, b.nbits)
}

// nextZero returns the first clear bit in [from, to), to ≤ Len, stepping
// over full blocks by their free count and over full words whole.
func (b *Bitmap) nextZero(from, to uint64) (uint64, bool) {
	for from < to {
		blk := from / b.bpb
		end := min(to, (blk+1)*b.bpb)
		if b.free[blk] != 0 {
			k := from / 64
			z := ^b.words[k] & (^uint64(0) << (from % 64))
			for {
				if z != 0 {
					if i := k*64 + uint64(bits.TrailingZeros64(z)); i < end {
						return i, true
					}
					break
				}
				if k++; k*64 >= end {
					break
				}
				z = ^b.words[k]
			}
		}
		from = end
	}
	return 0, false
}

// nextOne returns the first set bit in [from, to), to ≤ Len, stepping over
// empty blocks by their free count and over empty words whole.
func (b *Bitmap) nextOne(from, to uint64) (uint64, bool) {
	for from < to {
		blk := from / b.bpb
		end := min(to, (blk+1)*b.bpb)
		if _, n := b.BlockRange(int(blk)); b.free[blk] != n {
			k := from / 64
			w := b.words[k] & (^uint64(0) << (from % 64))
			for {
				if w != 0 {
					if i := k*64 + uint64(bits.TrailingZeros64(w)); i < end {
						return i, true
					}
					break
				}
				if k++; k*64 >= end {
					break
				}
				w = b.words[k]
			}
		}
		from = end
	}
	return 0, false
}

// lastOne returns the last set bit before to; the caller knows there is one
// in to's block, so the backward scan stays within it.
func (b *Bitmap) lastOne(to uint64) uint64 {
	k := (to - 1) / 64
	w := b.words[k] & wordMask(0, to-k*64)
	for w == 0 {
		k--
		w = b.words[k]
	}
	return k*64 + 63 - uint64(bits.LeadingZeros64(w))
}
