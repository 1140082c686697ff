package layout

import (
	"encoding/binary"
	"fmt"
)

// Inode is one InodeSize-byte slot of an inode-table block. Inode-table
// blocks carry the common header (magic "AGIT", owner = AG number) and then
// InodesPerBlock() slots; the block checksum covers them all. A slot whose
// mode is zero is free.
//
//	off size field
//	  0    4 mode         st_mode: file type and permission bits
//	  4    4 uid
//	  8    4 gid
//	 12    4 nlink
//	 16    8 size         bytes
//	 24    8 blocks       blocks owned (data, extent nodes, xattr block)
//	 32    8 atime        Unix ns
//	 40    8 mtime        Unix ns
//	 48    8 ctime        Unix ns
//	 56    8 btime        Unix ns (birth)
//	 64    4 generation   bumped each time the slot is reused
//	 68    4 flags        InodeFlag* bits
//	 72    8 xattr block  0 = none
//	 80    8 next orphan  next inode on the AG's orphan list, 0 = end
//	 88    4 rdev         device number of a char/block special file
//	 92    2 fork offset  start of inline xattrs within the fork area, 0 = none
//	 94    1 data format  DataExtents, DataInline or DataBTree
//	 95    1 fork count   extents (or B+tree root entries) in the data fork
//	 96  160 fork area    data fork, then inline xattrs from fork offset
type Inode struct {
	Mode       uint32
	UID, GID   uint32
	Nlink      uint32
	Size       uint64
	Blocks     uint64
	Atime      int64
	Mtime      int64
	Ctime      int64
	Btime      int64
	Generation uint32
	Flags      uint32
	XattrBlock uint64
	NextOrphan uint64
	Rdev       uint32
	ForkOffset uint16
	DataFormat uint8
	ForkCount  uint8
	Fork       [ForkSize]byte
}

// ForkSize is the size of an inode's fork area.
const ForkSize = InodeSize - 96

// Data fork formats.
const (
	DataExtents uint8 = 0 // Fork holds ForkCount Extent records
	DataInline  uint8 = 1 // Fork holds the file's bytes (short symlinks, tiny dirs)
	DataBTree   uint8 = 2 // Fork holds the root of an extent B+tree
)

// MaxInlineExtents is how many extent records fit in the fork area.
const MaxInlineExtents = ForkSize / ExtentSize

// Decode reads the inode slot in b (InodeSize bytes). It checks only what
// must hold for the fields to be used safely; the block checksum has been
// verified by the caller.
func (in *Inode) Decode(b []byte) error {
	le := binary.LittleEndian
	in.Mode = le.Uint32(b[0:])
	in.UID = le.Uint32(b[4:])
	in.GID = le.Uint32(b[8:])
	in.Nlink = le.Uint32(b[12:])
	in.Size = le.Uint64(b[16:])
	in.Blocks = le.Uint64(b[24:])
	in.Atime = int64(le.Uint64(b[32:]))
	in.Mtime = int64(le.Uint64(b[40:]))
	in.Ctime = int64(le.Uint64(b[48:]))
	in.Btime = int64(le.Uint64(b[56:]))
	in.Generation = le.Uint32(b[64:])
	in.Flags = le.Uint32(b[68:])
	in.XattrBlock = le.Uint64(b[72:])
	in.NextOrphan = le.Uint64(b[80:])
	in.Rdev = le.Uint32(b[88:])
	in.ForkOffset = le.Uint16(b[92:])
	in.DataFormat = b[94]
	in.ForkCount = b[95]
	copy(in.Fork[:], b[96:InodeSize])
	switch {
	case in.ForkOffset > ForkSize:
		return fmt.Errorf("%w: inode fork offset %d beyond %d", ErrCorrupt, in.ForkOffset, ForkSize)
	case in.DataFormat > DataBTree:
		return fmt.Errorf("%w: inode data format %d", ErrCorrupt, in.DataFormat)
	case in.DataFormat != DataInline && int(in.ForkCount) > MaxInlineExtents:
		return fmt.Errorf("%w: inode has %d inline extents, at most %d fit", ErrCorrupt, in.ForkCount, MaxInlineExtents)
	}
	return nil
}

// Encode writes the inode into b (InodeSize bytes).
func (in *Inode) Encode(b []byte) {
	le := binary.LittleEndian
	le.PutUint32(b[0:], in.Mode)
	le.PutUint32(b[4:], in.UID)
	le.PutUint32(b[8:], in.GID)
	le.PutUint32(b[12:], in.Nlink)
	le.PutUint64(b[16:], in.Size)
	le.PutUint64(b[24:], in.Blocks)
	le.PutUint64(b[32:], uint64(in.Atime))
	le.PutUint64(b[40:], uint64(in.Mtime))
	le.PutUint64(b[48:], uint64(in.Ctime))
	le.PutUint64(b[56:], uint64(in.Btime))
	le.PutUint32(b[64:], in.Generation)
	le.PutUint32(b[68:], in.Flags)
	le.PutUint64(b[72:], in.XattrBlock)
	le.PutUint64(b[80:], in.NextOrphan)
	le.PutUint32(b[88:], in.Rdev)
	le.PutUint16(b[92:], in.ForkOffset)
	b[94] = in.DataFormat
	b[95] = in.ForkCount
	copy(b[96:InodeSize], in.Fork[:])
}

// Extent maps Len blocks of a file starting at logical block Logical to the
// device blocks starting at Physical.
//
//	off size field
//	  0    8 logical   file block
//	  8    8 physical  device block
//	 16    4 length    blocks, > 0
//	 20    4 flags     ExtentUnwritten: allocated, reads as zeroes
type Extent struct {
	Logical  uint64
	Physical uint64
	Len      uint32
	Flags    uint32
}

// ExtentSize is the encoded size of an Extent.
const ExtentSize = 24

// ExtentUnwritten marks a preallocated extent whose blocks read as zeroes.
const ExtentUnwritten uint32 = 1 << 0

// Encode writes e into b (ExtentSize bytes).
func (e Extent) Encode(b []byte) {
	le := binary.LittleEndian
	le.PutUint64(b[0:], e.Logical)
	le.PutUint64(b[8:], e.Physical)
	le.PutUint32(b[16:], e.Len)
	le.PutUint32(b[20:], e.Flags)
}

// MaxFileBytes bounds every file: agfs keeps sizes below it, so no extent
// reaches past it either, and the byte offset of any file block fits an
// int64 (FORMAT.md §7, §12.2).
const MaxFileBytes = 1 << 62

// DecodeExtent reads an Extent from b and checks it against geometry g.
func DecodeExtent(b []byte, g *Geometry) (Extent, error) {
	le := binary.LittleEndian
	e := Extent{
		Logical:  le.Uint64(b[0:]),
		Physical: le.Uint64(b[8:]),
		Len:      le.Uint32(b[16:]),
		Flags:    le.Uint32(b[20:]),
	}
	switch {
	case e.Len == 0:
		return e, fmt.Errorf("%w: extent of length zero", ErrCorrupt)
	case e.Physical >= g.BlockCount || uint64(e.Len) > g.BlockCount-e.Physical:
		return e, fmt.Errorf("%w: extent %d+%d beyond the device's %d blocks", ErrCorrupt, e.Physical, e.Len, g.BlockCount)
	case e.Logical+uint64(e.Len) < e.Logical:
		return e, fmt.Errorf("%w: extent at file block %d overflows", ErrCorrupt, e.Logical)
	case e.Logical+uint64(e.Len) > MaxFileBytes/uint64(g.BlockSize):
		return e, fmt.Errorf("%w: extent at file block %d+%d reaches past 2^62 bytes", ErrCorrupt, e.Logical, e.Len)
	case e.Flags&^ExtentUnwritten != 0:
		return e, fmt.Errorf("%w: extent flags %#x", ErrCorrupt, e.Flags)
	}
	return e, nil
}

// DirForkBytes is how much of the fork a directory (and an extent-tree
// file) uses: bytes 0–7 hold the B+tree root block, and for a directory
// bytes 8–15 the parent's inode number (what ".." names; the root's is
// itself). See FORMAT.md §12.2–§12.3.
const DirForkBytes = 16

// TreeRoot is the root block of the B+tree in the data fork (DataBTree).
func (in *Inode) TreeRoot() uint64 { return binary.LittleEndian.Uint64(in.Fork[0:]) }

// SetTreeRoot stores the root block of the data fork's B+tree.
func (in *Inode) SetTreeRoot(r uint64) { binary.LittleEndian.PutUint64(in.Fork[0:], r) }

// Parent is a directory's parent inode number.
func (in *Inode) Parent() uint64 { return binary.LittleEndian.Uint64(in.Fork[8:]) }

// SetParent stores a directory's parent inode number.
func (in *Inode) SetParent(p uint64) { binary.LittleEndian.PutUint64(in.Fork[8:], p) }

// XattrStart is where the inline attribute area starts, or would start:
// the fork offset when set; otherwise after the data fork — the target of
// an inline symlink, the 16 bytes of a B+tree fork, or the inline extents
// rounded to at least one record (FORMAT.md §11.3).
func (in *Inode) XattrStart() int {
	if in.ForkOffset != 0 {
		return int(in.ForkOffset)
	}
	switch in.DataFormat {
	case DataInline:
		return int(min(in.Size, ForkSize))
	case DataBTree:
		return DirForkBytes
	}
	return max(int(in.ForkCount), 1) * ExtentSize
}
