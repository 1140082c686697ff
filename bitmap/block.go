package bitmap

import (
	"encoding/binary"
	"fmt"

	"agfs/layout"
)

// PayloadSize is the number of payload bytes in each block: the bits after
// the block header, bit j of the block being byte j/8, bit j%8.
func (b *Bitmap) PayloadSize() int { return int(b.bpb / 8) }

// ByteSpan says where bits [start, start+n) live on disk: in block blk,
// payload bytes [off, off+length). A transaction that changes those bits
// logs exactly those bytes rather than the whole block.
//
// If the range crosses into the next block, the span covers only its part
// in the first block (up to that block's end); the caller continues from
// the start of block blk+1 (see BlockRange) with the rest. n must be at
// least 1.
func (b *Bitmap) ByteSpan(start, n uint64) (blk int, off int, length int) {
	b.checkRange(start, n)
	if n == 0 {
		panic("bitmap: ByteSpan of an empty range")
	}
	blk = int(start / b.bpb)
	bStart, bLen := b.BlockRange(blk)
	first := start - bStart
	last := min(first+n, bLen) - 1
	return blk, int(first / 8), int(last/8 - first/8 + 1)
}

// BlockPayload copies the raw bits of block blk into dst, which must hold at
// least PayloadSize bytes. Bits past Len in the last block are written as
// zero.
func (b *Bitmap) BlockPayload(blk int, dst []byte) {
	b.checkBlock(blk)
	dst = dst[:b.PayloadSize()]
	k := uint64(blk) * b.wpb
	for j := uint64(0); j < b.wpb; j++ {
		var w uint64
		if k+j < uint64(len(b.words)) {
			w = b.words[k+j]
		}
		binary.LittleEndian.PutUint64(dst[j*8:], w)
	}
}

// LoadPayload installs src (at least PayloadSize bytes of raw bits) as the
// contents of block blk, updating the counts. Decode uses it after
// verifying a block read from disk; a caller that treats a never-written
// block as all free loads zeroes, or simply leaves the block as New made it.
//
// Bits past Len in the last block must be clear: a set one would be
// counted in no extent and means the block is not what it claims. In that
// case the error wraps layout.ErrCorrupt and the bitmap is unchanged.
func (b *Bitmap) LoadPayload(blk int, src []byte) error {
	b.checkBlock(blk)
	src = src[:b.PayloadSize()]
	start, n := b.BlockRange(blk)
	if !tailClear(src, n) {
		return fmt.Errorf("%w: bits set past the end of a %d-bit bitmap", layout.ErrCorrupt, b.nbits)
	}
	k := start / 64
	var ones uint64
	for j := uint64(0); j < (n+63)/64; j++ {
		w := binary.LittleEndian.Uint64(src[j*8:])
		ones += popcount(w)
		b.words[k+j] = w
	}
	b.ones += ones - (n - b.free[blk])
	b.free[blk] = n - ones
	return nil
}

// tailClear reports whether every payload bit from bit valid on is clear.
func tailClear(payload []byte, valid uint64) bool {
	i := valid / 8
	if r := valid % 8; r != 0 {
		if payload[i]>>r != 0 {
			return false
		}
		i++
	}
	for _, c := range payload[i:] {
		if c != 0 {
			return false
		}
	}
	return true
}
