package layout

import (
	"encoding/binary"
	"fmt"
)

// AGHeader is the per-AG allocation state: its counters and the high-water
// marks behind which its bitmaps and inode table are initialised. It is the
// second block of every AG.
//
// Lazy initialisation: mkfs writes only the first bitmap blocks (those that
// cover the AG's own metadata) and no inode-table block. A bitmap block at
// index ≥ BlockBitmapInit (or InodeBitmapInit) has never been written and
// means "all free"; an inode-table block at index ≥ InodeTableInit has never
// been written and holds no inode. So formatting costs a few blocks per AG
// whatever the device size.
//
//	off size field
//	  0   64 common header (magic "AGAH", owner = AG number)
//	 64    4 AG number
//	 68    4 reserved
//	 72    8 length             blocks in this AG
//	 80    8 free blocks
//	 88    8 free inodes
//	 96    8 directories        directories with their inode in this AG
//	104    4 block bitmap init  bitmap blocks written (high-water mark)
//	108    4 inode bitmap init
//	112    4 inode table init   inode-table blocks written
//	116    4 reserved
//	120    8 orphan head        first inode of the AG's orphan list, 0 = none
//	128  ...  zero
type AGHeader struct {
	AG              uint32
	Length          uint64
	FreeBlocks      uint64
	FreeInodes      uint64
	Dirs            uint64
	BlockBitmapInit uint32
	InodeBitmapInit uint32
	InodeTableInit  uint32
	OrphanHead      uint64
}

// AG header field offsets, for transactions that change one field.
const (
	OffAGFreeBlocks      = 80
	OffAGFreeInodes      = 88
	OffAGDirs            = 96
	OffAGBlockBitmapInit = 104
	OffAGInodeBitmapInit = 108
	OffAGInodeTableInit  = 112
	OffAGOrphanHead      = 120
)

// Encode writes h into b (one block, header included) for geometry g. The
// caller seals it.
func (h *AGHeader) Encode(b []byte, g *Geometry) {
	clear(b)
	PutHeader(b, MagicAGHeader, g.AGHeaderBlock(h.AG), uint64(h.AG))
	le := binary.LittleEndian
	le.PutUint32(b[64:], h.AG)
	le.PutUint64(b[72:], h.Length)
	le.PutUint64(b[OffAGFreeBlocks:], h.FreeBlocks)
	le.PutUint64(b[OffAGFreeInodes:], h.FreeInodes)
	le.PutUint64(b[OffAGDirs:], h.Dirs)
	le.PutUint32(b[OffAGBlockBitmapInit:], h.BlockBitmapInit)
	le.PutUint32(b[OffAGInodeBitmapInit:], h.InodeBitmapInit)
	le.PutUint32(b[OffAGInodeTableInit:], h.InodeTableInit)
	le.PutUint64(b[OffAGOrphanHead:], h.OrphanHead)
}

// DecodeAGHeader verifies b as AG ag's header under geometry g and seed,
// and decodes it. Field values that would be impossible for g are
// reported as corruption.
func DecodeAGHeader(b []byte, g *Geometry, seed uint64, ag uint32) (*AGHeader, error) {
	blk := g.AGHeaderBlock(ag)
	if err := Check(b, seed, MagicAGHeader, blk, uint64(ag)); err != nil {
		return nil, fmt.Errorf("ag %d: header: %w", ag, err)
	}
	le := binary.LittleEndian
	h := &AGHeader{
		AG:              le.Uint32(b[64:]),
		Length:          le.Uint64(b[72:]),
		FreeBlocks:      le.Uint64(b[OffAGFreeBlocks:]),
		FreeInodes:      le.Uint64(b[OffAGFreeInodes:]),
		Dirs:            le.Uint64(b[OffAGDirs:]),
		BlockBitmapInit: le.Uint32(b[OffAGBlockBitmapInit:]),
		InodeBitmapInit: le.Uint32(b[OffAGInodeBitmapInit:]),
		InodeTableInit:  le.Uint32(b[OffAGInodeTableInit:]),
		OrphanHead:      le.Uint64(b[OffAGOrphanHead:]),
	}
	bad := func(format string, a ...any) error {
		return fmt.Errorf("ag %d: header block %d: %w: "+format, append([]any{ag, blk, ErrCorrupt}, a...)...)
	}
	switch {
	case h.AG != ag:
		return nil, bad("AG number %d", h.AG)
	case h.Length != g.AGLen(ag):
		return nil, bad("length %d, geometry says %d", h.Length, g.AGLen(ag))
	case h.FreeBlocks > h.Length:
		return nil, bad("%d free blocks in an AG of %d", h.FreeBlocks, h.Length)
	case h.FreeInodes >= uint64(g.InodesPerAG): // index 0 is never free
		return nil, bad("%d free inodes of %d", h.FreeInodes, g.InodesPerAG)
	case h.BlockBitmapInit > g.BlockBitmapBlocks:
		return nil, bad("block bitmap init mark %d beyond %d blocks", h.BlockBitmapInit, g.BlockBitmapBlocks)
	case h.InodeBitmapInit > g.InodeBitmapBlocks:
		return nil, bad("inode bitmap init mark %d beyond %d blocks", h.InodeBitmapInit, g.InodeBitmapBlocks)
	case h.InodeTableInit > g.InodeTableBlocks:
		return nil, bad("inode table init mark %d beyond %d blocks", h.InodeTableInit, g.InodeTableBlocks)
	}
	return h, nil
}
