package bitmap

import (
	"fmt"

	"agfs/layout"
)

// Codec names what a bitmap's blocks are on disk, so that each block can be
// stamped with, and checked against, its kind, its place and its owner: a
// block of another bitmap, another AG or another filesystem, or a torn or
// misdirected write, then fails verification instead of being believed.
type Codec struct {
	Magic      uint32 // layout.MagicBlockBitmap or layout.MagicInodeBitmap
	Seed       uint64 // filesystem checksum seed
	Owner      uint64 // header owner, the AG number
	FirstBlock uint64 // device block number of bitmap block 0
	BlockSize  int    // bytes per block, header included
}

// BitsPerBlock is how many bits a block of BlockSize bytes holds after its
// header: the bitsPerBlock to give New.
func (c Codec) BitsPerBlock() uint64 { return uint64(c.BlockSize-layout.HeaderSize) * 8 }

// Encode writes block blk of b into dst (BlockSize bytes): header and
// payload, sealed with LSN 0. Callers that log the block reseal it with the
// transaction's LSN.
func (c Codec) Encode(b *Bitmap, blk int, dst []byte) {
	c.checkBitmap(b)
	dst = dst[:c.BlockSize]
	layout.PutHeader(dst, c.Magic, c.FirstBlock+uint64(blk), c.Owner)
	b.BlockPayload(blk, dst[layout.HeaderSize:])
	layout.Seal(dst, c.Seed, 0)
}

// Decode verifies src as block blk of b and loads its bits into b. On error
// b is unchanged and the error wraps layout.ErrCorrupt, naming the bitmap
// block and its device block.
func (c Codec) Decode(b *Bitmap, blk int, src []byte) error {
	c.checkBitmap(b)
	b.checkBlock(blk)
	if err := c.checkHeader(src, blk); err != nil {
		return err
	}
	if err := b.LoadPayload(blk, src[layout.HeaderSize:]); err != nil {
		return c.wrap(blk, err)
	}
	return nil
}

// Verify checks src as block blk of a bitmap of nbits bits without loading
// it, as fsck does before trusting anything: the common header, and that no
// bit past nbits is set. Errors are as for Decode.
func (c Codec) Verify(src []byte, blk int, nbits uint64) error {
	bpb := c.BitsPerBlock()
	if blk < 0 || uint64(blk) >= (nbits+bpb-1)/bpb {
		panic(fmt.Sprintf("bitmap: block %d out of range for %d bits", blk, nbits))
	}
	if err := c.checkHeader(src, blk); err != nil {
		return err
	}
	start := uint64(blk) * bpb
	if !tailClear(src[layout.HeaderSize:], min(bpb, nbits-start)) {
		return c.wrap(blk, fmt.Errorf("%w: bits set past the end of a %d-bit bitmap", layout.ErrCorrupt, nbits))
	}
	return nil
}

// checkHeader checks src's length and common header.
func (c Codec) checkHeader(src []byte, blk int) error {
	if len(src) != c.BlockSize {
		return c.wrap(blk, fmt.Errorf("%w: block is %d bytes, want %d", layout.ErrCorrupt, len(src), c.BlockSize))
	}
	if err := layout.Check(src, c.Seed, c.Magic, c.FirstBlock+uint64(blk), c.Owner); err != nil {
		return c.wrap(blk, err)
	}
	return nil
}

// wrap names the bitmap block and its device block in err.
func (c Codec) wrap(blk int, err error) error {
	return fmt.Errorf("bitmap block %d (device block %d): %w", blk, c.FirstBlock+uint64(blk), err)
}

// checkBitmap panics if b was not laid out for this codec's block size, a
// bug that would otherwise write a misframed block.
func (c Codec) checkBitmap(b *Bitmap) {
	if b.bpb != c.BitsPerBlock() {
		panic(fmt.Sprintf("bitmap: %d bits per block, codec for %d-byte blocks holds %d", b.bpb, c.BlockSize, c.BitsPerBlock()))
	}
}
