// Package bitmap implements agfs's checksummed bitmaps: an array of bits that
// can be set, cleared, tested and searched (first zero, a free run of N bits
// with optional alignment, next set or clear bit), with its population kept
// current, and that is stored on disk as a sequence of metadata blocks, each
// a common header followed by raw bits.
//
// It knows nothing of allocation groups, inodes or files: the block
// allocator and the inode allocator each keep one Bitmap per AG and decide
// what a bit means.
//
// The in-memory word array is authoritative. The on-disk blocks are views of
// it, produced by BlockPayload or Codec.Encode when a block is written and
// consumed by LoadPayload or Codec.Decode when one is read. Per-block free
// counts and the total weight are maintained on every change rather than
// recomputed, so searches can skip full blocks and callers can read the
// counts in O(1).
package bitmap

import (
	"fmt"
	"math/bits"
)

// Bitmap is nbits bits held in memory as []uint64 words, laid out on disk in
// blocks of BitsPerBlock bits: bit i lives in block i/BitsPerBlock. It is not
// safe for concurrent use; its owner (the AG lock) serialises access.
type Bitmap struct {
	words []uint64 // bit i is words[i/64] bit i%64; bits past nbits are zero
	nbits uint64
	bpb   uint64   // bits per block, a multiple of 64
	wpb   uint64   // words per block
	free  []uint64 // zero bits per block
	ones  uint64   // set bits in total
}

// New returns an all-clear bitmap of nbits bits stored in blocks of
// bitsPerBlock bits.
//
// bitsPerBlock must be a non-zero multiple of 64 so that every block starts
// on a word boundary; that keeps per-block accounting and the block codec
// word-at-a-time. Every real block size qualifies: (blockSize-64)*8 is a
// multiple of 512 for any power-of-two blockSize ≥ 64.
func New(nbits, bitsPerBlock uint64) *Bitmap {
	if bitsPerBlock == 0 || bitsPerBlock%64 != 0 {
		panic(fmt.Sprintf("bitmap: %d bits per block is not a non-zero multiple of 64", bitsPerBlock))
	}
	b := &Bitmap{
		words: make([]uint64, (nbits+63)/64),
		nbits: nbits,
		bpb:   bitsPerBlock,
		wpb:   bitsPerBlock / 64,
		free:  make([]uint64, (nbits+bitsPerBlock-1)/bitsPerBlock),
	}
	for blk := range b.free {
		_, b.free[blk] = b.BlockRange(blk)
	}
	return b
}

// Len is the number of bits.
func (b *Bitmap) Len() uint64 { return b.nbits }

// BitsPerBlock is how many bits each on-disk block holds; the last block
// may hold fewer (see BlockRange).
func (b *Bitmap) BitsPerBlock() uint64 { return b.bpb }

// Blocks is the number of on-disk blocks the bitmap occupies.
func (b *Bitmap) Blocks() int { return len(b.free) }

// BlockRange reports which bits block blk holds: [start, start+n). n is
// BitsPerBlock except in a last block that the bitmap does not fill.
func (b *Bitmap) BlockRange(blk int) (start, n uint64) {
	b.checkBlock(blk)
	start = uint64(blk) * b.bpb
	return start, min(b.bpb, b.nbits-start)
}

// Weight is the number of set bits.
func (b *Bitmap) Weight() uint64 { return b.ones }

// BlockFree is the number of clear bits in block blk. Searches use it to step
// over full blocks without reading them; allocators use it to pick a block.
func (b *Bitmap) BlockFree(blk int) uint64 {
	b.checkBlock(blk)
	return b.free[blk]
}

// Test reports whether bit i is set.
func (b *Bitmap) Test(i uint64) bool {
	b.checkBit(i)
	return b.words[i/64]&(1<<(i%64)) != 0
}

// Set sets bit i. Setting a set bit changes nothing.
func (b *Bitmap) Set(i uint64) {
	b.checkBit(i)
	w, m := &b.words[i/64], uint64(1)<<(i%64)
	if *w&m == 0 {
		*w |= m
		b.ones++
		b.free[i/b.bpb]--
	}
}

// Clear clears bit i. Clearing a clear bit changes nothing.
func (b *Bitmap) Clear(i uint64) {
	b.checkBit(i)
	w, m := &b.words[i/64], uint64(1)<<(i%64)
	if *w&m != 0 {
		*w &^= m
		b.ones--
		b.free[i/b.bpb]++
	}
}

// wordMask has bits [lo, hi) of a word set, for 0 ≤ lo < hi ≤ 64.
func wordMask(lo, hi uint64) uint64 {
	return ^uint64(0) << lo & (^uint64(0) >> (64 - hi))
}

// popcount is bits.OnesCount64 as a uint64, the type every count here uses.
func popcount(w uint64) uint64 { return uint64(bits.OnesCount64(w)) }

func (b *Bitmap) checkBit(i uint64) {
	if i >= b.nbits {
		panic(fmt.Sprintf("bitmap: bit %d out of range [0,%d)", i, b.nbits))
	}
}

// checkRange panics unless [start, start+n) lies within the bitmap. An empty
// range anywhere up to Len is allowed.
func (b *Bitmap) checkRange(start, n uint64) {
	if start > b.nbits || n > b.nbits-start {
		panic(fmt.Sprintf("bitmap: range [%d,+%d) out of range [0,%d)", start, n, b.nbits))
	}
}

func (b *Bitmap) checkBlock(blk int) {
	if blk < 0 || blk >= len(b.free) {
		panic(fmt.Sprintf("bitmap: block %d out of range [0,%d)", blk, len(b.free)))
	}
}
