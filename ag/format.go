package ag

import (
	"fmt"

	"agfs/bitmap"
	"agfs/disk"
	"agfs/layout"
)

// geomOf returns the per-AG facts every entry point needs.
type agGeom struct {
	g        *layout.Geometry
	ag       uint32
	seed     uint64
	bs       int
	start    uint64 // absolute block of the AG's first block
	length   uint64 // blocks in the AG
	reserved uint64 // blocks at the AG's start that are never free
	bcodec   bitmap.Codec
	icodec   bitmap.Codec
}

func newAGGeom(sb *layout.Superblock, ag uint32) (*agGeom, error) {
	g := &sb.Geometry
	if ag >= g.AGCount {
		return nil, fmt.Errorf("ag %d: the filesystem has %d AGs", ag, g.AGCount)
	}
	x := &agGeom{
		g:        g,
		ag:       ag,
		seed:     sb.Seed(),
		bs:       int(g.BlockSize),
		start:    g.AGStart(ag),
		length:   g.AGLen(ag),
		reserved: g.ReservedBlocks(ag),
	}
	x.bcodec = bitmap.Codec{Magic: layout.MagicBlockBitmap, Seed: x.seed, Owner: uint64(ag),
		FirstBlock: g.BlockBitmapStart(ag), BlockSize: x.bs}
	x.icodec = bitmap.Codec{Magic: layout.MagicInodeBitmap, Seed: x.seed, Owner: uint64(ag),
		FirstBlock: g.InodeBitmapStart(ag), BlockSize: x.bs}
	if x.reserved >= x.length {
		return nil, fmt.Errorf("ag %d: %w: %d reserved blocks fill the AG of %d", ag, layout.ErrCorrupt, x.reserved, x.length)
	}
	return x, nil
}

// newBlockBitmap returns an empty in-memory block bitmap for the AG: one
// bit per block of the AG (bit i is block start+i).
func (x *agGeom) newBlockBitmap() *bitmap.Bitmap {
	return bitmap.New(x.length, x.g.BitsPerBitmapBlock())
}

// newInodeBitmap returns an empty in-memory inode bitmap: one bit per inode
// index.
func (x *agGeom) newInodeBitmap() *bitmap.Bitmap {
	return bitmap.New(uint64(x.g.InodesPerAG), x.g.BitsPerBitmapBlock())
}

// initialBitmapBlocks is the number of block-bitmap blocks mkfs writes: those
// holding the bits of the reserved blocks.
func (x *agGeom) initialBitmapBlocks() uint32 {
	bpb := x.g.BitsPerBitmapBlock()
	return uint32((x.reserved + bpb - 1) / bpb)
}

// writeBlock writes one whole block.
func writeBlock(dev disk.Device, blk uint64, b []byte) error {
	if _, err := dev.WriteAt(b, int64(blk)*int64(len(b))); err != nil {
		return fmt.Errorf("write block %d: %w", blk, err)
	}
	return nil
}

// Format writes AG ag of the filesystem sb describes straight to dev, as
// mkfs does, every block sealed with LSN 0:
//
//   - the superblock copy (the primary for AG 0);
//   - the AG header, with exact counters and the lazy-init marks;
//   - the block-bitmap blocks that cover the AG's reserved blocks
//     (superblock, header, bitmaps, inode table and, in AG 0, the log),
//     with those bits set;
//   - inode-bitmap block 0, with index 0 set: inode index 0 of every AG is
//     never used, so inode number 0 is invalid and the root is inode 1.
//
// Nothing else is written: the inode table and the rest of both bitmaps lie
// behind the header's high-water marks and are initialised by transactions
// when first used. Only whole blocks are written. Format does not flush;
// the caller does, once for every AG.
func Format(dev disk.Device, sb *layout.Superblock, ag uint32) error {
	x, err := newAGGeom(sb, ag)
	if err != nil {
		return err
	}
	b := make([]byte, x.bs)

	sb.Encode(b, ag)
	if err := writeBlock(dev, x.g.SuperBlock(ag), b); err != nil {
		return fmt.Errorf("ag %d: superblock copy: %w", ag, err)
	}

	bm := x.newBlockBitmap()
	bm.SetRange(0, x.reserved)
	nb := x.initialBitmapBlocks()
	for blk := range int(nb) {
		x.bcodec.Encode(bm, blk, b)
		if err := writeBlock(dev, x.bcodec.FirstBlock+uint64(blk), b); err != nil {
			return fmt.Errorf("ag %d: block bitmap block %d: %w", ag, blk, err)
		}
	}

	im := x.newInodeBitmap()
	im.Set(0)
	x.icodec.Encode(im, 0, b)
	if err := writeBlock(dev, x.icodec.FirstBlock, b); err != nil {
		return fmt.Errorf("ag %d: inode bitmap block 0: %w", ag, err)
	}

	h := layout.AGHeader{
		AG:              ag,
		Length:          x.length,
		FreeBlocks:      x.length - x.reserved,
		FreeInodes:      uint64(x.g.InodesPerAG) - 1,
		BlockBitmapInit: nb,
		InodeBitmapInit: 1,
	}
	h.Encode(b, x.g)
	layout.Seal(b, x.seed, 0)
	if err := writeBlock(dev, x.g.AGHeaderBlock(ag), b); err != nil {
		return fmt.Errorf("ag %d: header: %w", ag, err)
	}
	return nil
}
