package layout

import (
	"encoding/binary"
	"fmt"
)

// FormatVersion is the on-disk format this code writes. A superblock with a
// larger version is refused.
const FormatVersion = 1

// Feature flags, in the ext4 manner: a binary that meets an unknown compat
// flag may carry on; an unknown ro-compat flag allows only read-only use; an
// unknown incompat flag means the filesystem must not be touched at all.
const (
	KnownCompat   uint64 = 0
	KnownROCompat uint64 = 0
	KnownIncompat uint64 = 0
)

// Superblock states.
const (
	StateClean  uint32 = 1 << 0 // unmounted cleanly: the log is empty
	StateErrors uint32 = 1 << 1 // a mount saw corruption: run fsck
)

// MaxLabel is the longest label, in bytes.
const MaxLabel = 63

// RootIno is the root directory's inode number (FUSE_ROOT_ID).
const RootIno = 1

// Superblock is the filesystem's identity and geometry. The primary lives
// at block 0; AG g keeps a copy in its first block, with blkno and owner set
// to that block and to g, so fsck can rebuild the primary from any AG.
//
//	off size field
//	  0   64 common header (magic "AGSB", owner = AG number)
//	 64    4 version            FormatVersion
//	 68    4 block size         bytes
//	 72    8 block count
//	 80    8 AG blocks
//	 88    4 AG count
//	 92    4 inodes per AG
//	 96    2 inode size         InodeSize
//	 98    1 inode shift
//	 99    1 reserved
//	100    4 block bitmap blocks per AG
//	104    4 inode bitmap blocks per AG
//	108    4 inode table blocks per AG
//	112    8 log start          absolute block
//	120    8 log blocks
//	128   16 UUID
//	144    8 directory hash seed
//	152    8 compat features
//	160    8 ro-compat features
//	168    8 incompat features
//	176    8 root inode         RootIno
//	184    4 state              State* bits
//	188    4 reserved
//	192    8 created            Unix ns
//	200    8 last mounted       Unix ns
//	208    8 last written       Unix ns
//	216    8 mount count
//	224   64 label              NUL-padded UTF-8, at most MaxLabel bytes
//	288  ...  zero
type Superblock struct {
	Geometry
	UUID          [16]byte
	DirHashSeed   uint64
	Compat        uint64
	ROCompat      uint64
	Incompat      uint64
	RootIno       uint64
	State         uint32
	Created       int64
	LastMounted   int64
	LastWritten   int64
	MountCount    uint64
	Label         string
	Version       uint32
	InodeSizeDisk uint16
}

// Seed is the checksum seed of every metadata block of this filesystem.
func (s *Superblock) Seed() uint64 { return SeedFromUUID(s.UUID) }

// Encode writes the superblock copy for AG ag into b (one block) and seals it.
func (s *Superblock) Encode(b []byte, ag uint32) {
	clear(b)
	PutHeader(b, MagicSuper, s.SuperBlock(ag), uint64(ag))
	le := binary.LittleEndian
	le.PutUint32(b[64:], FormatVersion)
	le.PutUint32(b[68:], s.BlockSize)
	le.PutUint64(b[72:], s.BlockCount)
	le.PutUint64(b[80:], s.AGBlocks)
	le.PutUint32(b[88:], s.AGCount)
	le.PutUint32(b[92:], s.InodesPerAG)
	le.PutUint16(b[96:], InodeSize)
	b[98] = s.InodeShift
	le.PutUint32(b[100:], s.BlockBitmapBlocks)
	le.PutUint32(b[104:], s.InodeBitmapBlocks)
	le.PutUint32(b[108:], s.InodeTableBlocks)
	le.PutUint64(b[112:], s.LogStart)
	le.PutUint64(b[120:], s.LogBlocks)
	copy(b[128:144], s.UUID[:])
	le.PutUint64(b[144:], s.DirHashSeed)
	le.PutUint64(b[152:], s.Compat)
	le.PutUint64(b[160:], s.ROCompat)
	le.PutUint64(b[168:], s.Incompat)
	le.PutUint64(b[176:], s.RootIno)
	le.PutUint32(b[184:], s.State)
	le.PutUint64(b[192:], uint64(s.Created))
	le.PutUint64(b[200:], uint64(s.LastMounted))
	le.PutUint64(b[208:], uint64(s.LastWritten))
	le.PutUint64(b[216:], s.MountCount)
	copy(b[224:224+MaxLabel], s.Label)
	Seal(b, s.Seed(), 0)
}

// DecodeSuperblock verifies and decodes the superblock copy of AG ag found
// in b. b must be at least MinBlockSize long; the block size is read from
// the block itself and must match len(b) when len(b) is larger.
func DecodeSuperblock(b []byte, ag uint32) (*Superblock, error) {
	if len(b) < MinBlockSize {
		return nil, fmt.Errorf("superblock: %w: short read of %d bytes", ErrCorrupt, len(b))
	}
	le := binary.LittleEndian
	if m := le.Uint32(b[offMagic:]); m != MagicSuper {
		return nil, fmt.Errorf("superblock of AG %d: %w: not an agfs superblock (magic %s)", ag, ErrCorrupt, MagicName(m))
	}
	s := &Superblock{}
	s.BlockSize = le.Uint32(b[68:])
	if bs := s.BlockSize; bs < MinBlockSize || bs > MaxBlockSize || bs&(bs-1) != 0 || int(bs) > len(b) {
		return nil, fmt.Errorf("superblock of AG %d: %w: block size %d", ag, ErrCorrupt, bs)
	}
	b = b[:s.BlockSize]
	copy(s.UUID[:], b[128:144])
	s.BlockCount = le.Uint64(b[72:])
	s.AGBlocks = le.Uint64(b[80:])
	s.AGCount = le.Uint32(b[88:])
	s.InodesPerAG = le.Uint32(b[92:])
	s.InodeSizeDisk = le.Uint16(b[96:])
	s.InodeShift = b[98]
	s.BlockBitmapBlocks = le.Uint32(b[100:])
	s.InodeBitmapBlocks = le.Uint32(b[104:])
	s.InodeTableBlocks = le.Uint32(b[108:])
	s.LogStart = le.Uint64(b[112:])
	s.LogBlocks = le.Uint64(b[120:])
	if s.AGBlocks == 0 {
		return nil, fmt.Errorf("superblock of AG %d: %w: AG size is zero", ag, ErrCorrupt)
	}
	want := uint64(ag) * s.AGBlocks
	if err := Check(b, s.Seed(), MagicSuper, want, uint64(ag)); err != nil {
		return nil, fmt.Errorf("superblock of AG %d: %w", ag, err)
	}
	s.Version = le.Uint32(b[64:])
	s.DirHashSeed = le.Uint64(b[144:])
	s.Compat = le.Uint64(b[152:])
	s.ROCompat = le.Uint64(b[160:])
	s.Incompat = le.Uint64(b[168:])
	s.RootIno = le.Uint64(b[176:])
	s.State = le.Uint32(b[184:])
	s.Created = int64(le.Uint64(b[192:]))
	s.LastMounted = int64(le.Uint64(b[200:]))
	s.LastWritten = int64(le.Uint64(b[208:]))
	s.MountCount = le.Uint64(b[216:])
	label := b[224 : 224+MaxLabel]
	for i, c := range label {
		if c == 0 {
			label = label[:i]
			break
		}
	}
	s.Label = string(label)

	if s.Version > FormatVersion {
		return nil, fmt.Errorf("superblock: %w: format version %d is newer than this agfs (%d)", ErrUnsupported, s.Version, FormatVersion)
	}
	if unknown := s.Incompat &^ KnownIncompat; unknown != 0 {
		return nil, fmt.Errorf("superblock: %w: unknown incompatible features %#x", ErrUnsupported, unknown)
	}
	if s.InodeSizeDisk != InodeSize {
		return nil, fmt.Errorf("superblock of AG %d: %w: inode size %d, want %d", ag, ErrCorrupt, s.InodeSizeDisk, InodeSize)
	}
	if err := s.Geometry.Validate(); err != nil {
		return nil, fmt.Errorf("superblock of AG %d: %w", ag, err)
	}
	if ag >= s.AGCount {
		return nil, fmt.Errorf("superblock of AG %d: %w: filesystem has only %d AGs", ag, ErrCorrupt, s.AGCount)
	}
	if s.RootIno != RootIno {
		return nil, fmt.Errorf("superblock of AG %d: %w: root inode %d, want %d", ag, ErrCorrupt, s.RootIno, RootIno)
	}
	return s, nil
}

// ReadOnlyOnly reports whether the superblock carries ro-compat features this
// binary does not know, so it may only be mounted read-only.
func (s *Superblock) ReadOnlyOnly() bool { return s.ROCompat&^KnownROCompat != 0 }

// SameGeometry reports whether two superblocks describe the same filesystem
// (copies may differ in state, times and counters, never in these).
func (s *Superblock) SameGeometry(o *Superblock) bool {
	return s.Geometry == o.Geometry && s.UUID == o.UUID && s.DirHashSeed == o.DirHashSeed &&
		s.Incompat == o.Incompat && s.ROCompat == o.ROCompat
}
