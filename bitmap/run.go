package bitmap

import (
	"fmt"
	"math/bits"
)

// FindFreeRun returns the first start of a run of n clear bits whose start
// is a multiple of align (0 or 1: any start), searching starts at or after
// hint and then wrapping round to starts before it; false if there is none.
// A run never wraps: it lies wholly within [0, Len). A hint at or past Len
// means 0. n must be at least 1.
//
// The search is linear in the words it reads, however fragmented the
// bitmap: it walks words, not runs, testing every start in a word at once
// with shift-and-and, and it steps over full words and full blocks whole.
// A block whose free count is below n cannot hold a run of its own, so only
// its first and last clear stretches (which may join runs in neighbouring
// blocks) are looked at.
func (b *Bitmap) FindFreeRun(n, align, hint uint64) (uint64, bool) {
	if n == 0 {
		panic(fmt.Sprintf("bitmap: FindFreeRun of %d bits", n))
	}
	if n > b.nbits || n > b.nbits-b.ones {
		return 0, false
	}
	if align == 0 {
		align = 1
	}
	if align > b.nbits {
		// Only start 0 is a multiple of such an align; capping it keeps
		// rounding up from overflowing without changing the answer.
		align = b.nbits
	}
	if hint >= b.nbits {
		hint = 0
	}
	f := newRunFinder(b, n, align)
	if i, ok := f.scan(hint, b.nbits); ok {
		return i, true
	}
	// Starts before hint: such a run ends before hint+n-1.
	return f.scan(0, min(b.nbits, hint+n-1))
}

// runFinder is one FindFreeRun search: the request and the clear run open at
// the scan position.
type runFinder struct {
	b        *Bitmap
	n        uint64
	align    uint64
	pow2     bool   // align is a power of two: round up by masking
	pattern  uint64 // bit p set iff p < 64 is a multiple of align
	open     bool   // the bit before the scan position is clear...
	runStart uint64 // ...and the clear run holding it starts here
}

func newRunFinder(b *Bitmap, n, align uint64) *runFinder {
	f := &runFinder{b: b, n: n, align: align, pow2: align&(align-1) == 0, pattern: 1}
	// Doubling: each step copies the multiples found so far past them.
	for s := align; s < 64; s *= 2 {
		f.pattern |= f.pattern << s
	}
	return f
}

// roundUp is the first multiple of align at or after x.
func (f *runFinder) roundUp(x uint64) uint64 {
	if f.pow2 {
		return (x + f.align - 1) &^ (f.align - 1)
	}
	return (x + f.align - 1) / f.align * f.align
}

// extend notes that bits from start up to the scan position are clear,
// opening a run at start unless one is already open.
func (f *runFinder) extend(start uint64) {
	if !f.open {
		f.open, f.runStart = true, start
	}
}

// fit reports the first aligned start in the open run, which ends at end,
// that leaves room for n bits.
func (f *runFinder) fit(end uint64) (uint64, bool) {
	if !f.open || end-f.runStart < f.n {
		return 0, false
	}
	a := f.roundUp(f.runStart)
	return a, a < end && end-a >= f.n
}

// alignMask has bit p set iff bit 64k+p of the bitmap is a multiple of align.
func (f *runFinder) alignMask(k uint64) uint64 {
	return f.pattern << (f.roundUp(k*64) - k*64)
}

// scan finds the first aligned run of n clear bits within [from, to): bits
// outside that window count as set.
func (f *runFinder) scan(from, to uint64) (uint64, bool) {
	b := f.b
	f.open = false
	endWord := (to + 63) / 64
	for k := from / 64; k < endWord; {
		blk := k / b.wpb
		kEnd := min((blk+1)*b.wpb, endWord)
		bStart, bLen := b.BlockRange(int(blk))
		free := b.free[blk]
		switch whole := bStart >= from && bStart+bLen <= to; {
		case free == 0:
			f.open = false
		case whole && free == bLen:
			f.extend(bStart)
			if a, ok := f.fit(bStart + bLen); ok {
				return a, true
			}
		case whole && free < f.n:
			// No run fits inside the block, so only its clear head
			// (closing the open run) and clear tail (opening the next
			// one) matter.
			head, _ := b.nextOne(bStart, bStart+bLen)
			if head > bStart {
				f.extend(bStart)
				if a, ok := f.fit(head); ok {
					return a, true
				}
			}
			f.open = false
			if last := b.lastOne(bStart + bLen); last+1 < bStart+bLen {
				f.extend(last + 1)
			}
		default:
			if a, ok := f.scanWords(k, kEnd, from, to); ok {
				return a, true
			}
		}
		k = kEnd
	}
	return 0, false
}

// scanWords is scan over words [k, kEnd), one word at a time.
func (f *runFinder) scanWords(k, kEnd, from, to uint64) (uint64, bool) {
	for ; k < kEnd; k++ {
		base := k * 64
		w := f.b.words[k]
		if base < from {
			w |= wordMask(0, from-base)
		}
		if base+64 > to {
			w |= wordMask(to-base, 64)
		}
		switch w {
		case ^uint64(0):
			f.open = false
		case 0:
			f.extend(base)
			if a, ok := f.fit(base + 64); ok {
				return a, true
			}
		default:
			// The open run continues through the word's low clear bits.
			if t := uint64(bits.TrailingZeros64(w)); t > 0 || f.open {
				f.extend(base)
				if a, ok := f.fit(base + t); ok {
					return a, true
				}
			}
			// Runs inside the word: m has bit p set iff bits p..p+n-1
			// are all clear. A word with a set bit holds none of 64.
			if f.n < 64 {
				if m := clearRuns(^w, f.n); m != 0 {
					if m &= f.alignMask(k); m != 0 {
						return base + uint64(bits.TrailingZeros64(m)), true
					}
				}
			}
			// The word's high clear bits open the next run.
			f.open = false
			if lz := uint64(bits.LeadingZeros64(w)); lz > 0 {
				f.extend(base + 64 - lz)
			}
		}
	}
	return 0, false
}

// clearRuns returns z with bit p kept iff bits p..p+n-1 of z are all set,
// using O(log n) shift-and steps: after each step, a kept bit vouches for
// l bits, and and-ing with a copy shifted by s makes it vouch for l+s.
func clearRuns(z, n uint64) uint64 {
	for l := uint64(1); l < n; {
		s := min(l, n-l)
		z &= z >> s
		l += s
	}
	return z
}
