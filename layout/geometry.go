package layout

import (
	"fmt"
	"math/bits"
)

// Geometry fixes where everything lives. It is chosen by mkfs, stored in the
// superblock, and never changes for the life of the filesystem.
//
// Every allocation group (AG) has the same relative layout:
//
//	rel 0                superblock (the primary in AG 0, a copy elsewhere)
//	rel 1                AG header
//	rel 2                block bitmap   (BlockBitmapBlocks blocks)
//	...                  inode bitmap   (InodeBitmapBlocks blocks)
//	...                  inode table    (InodeTableBlocks blocks)
//	AG 0 only            log            (LogBlocks blocks, at LogStart)
//	...                  data
//
// AG g starts at block g*AGBlocks; the last AG may be shorter.
type Geometry struct {
	BlockSize         uint32 // bytes, a power of two in [MinBlockSize, MaxBlockSize]
	BlockCount        uint64 // blocks the filesystem uses (≤ the device's)
	AGBlocks          uint64 // blocks per AG (the last AG may have fewer)
	AGCount           uint32
	InodesPerAG       uint32 // a multiple of InodesPerBlock
	InodeShift        uint8  // ino = ag<<InodeShift | index
	BlockBitmapBlocks uint32 // per AG
	InodeBitmapBlocks uint32 // per AG
	InodeTableBlocks  uint32 // per AG
	LogStart          uint64 // absolute block number, inside AG 0
	LogBlocks         uint64
}

// Limits on geometry.
const (
	MinBlockSize = 1024
	// MinFSBlockSize is the smallest block size a whole filesystem may use:
	// the allocation layers work with 1 KiB blocks, but the directory
	// B+tree needs 4 KiB nodes to hold 255-byte names, and blocks smaller
	// than a page buy nothing under FUSE.
	MinFSBlockSize = 4096
	MaxBlockSize   = 65536
	// InodeSize is the fixed size of an on-disk inode.
	InodeSize = 256
	// MinAGDataBlocks is how many data blocks an AG must have beyond its
	// metadata to be worth having.
	MinAGDataBlocks = 64
	// MinLogBlocks is the smallest log that mkfs accepts.
	MinLogBlocks = 64
	// MaxAGCount bounds the AG count (the AG number is kept in 32 bits).
	MaxAGCount = 1 << 20
)

// BitsPerBitmapBlock is how many bits one bitmap block holds after its header.
func (g *Geometry) BitsPerBitmapBlock() uint64 { return uint64(g.BlockSize-HeaderSize) * 8 }

// InodesPerBlock is how many inodes one inode-table block holds after its header.
func (g *Geometry) InodesPerBlock() uint32 { return (g.BlockSize - HeaderSize) / InodeSize }

// AGStart is the absolute number of AG ag's first block.
func (g *Geometry) AGStart(ag uint32) uint64 { return uint64(ag) * g.AGBlocks }

// AGLen is the number of blocks in AG ag.
func (g *Geometry) AGLen(ag uint32) uint64 {
	if ag == g.AGCount-1 {
		return g.BlockCount - g.AGStart(ag)
	}
	return g.AGBlocks
}

// SuperBlock is where AG ag keeps its superblock (the primary for AG 0).
func (g *Geometry) SuperBlock(ag uint32) uint64 { return g.AGStart(ag) }

// AGHeaderBlock is the absolute block number of AG ag's header.
func (g *Geometry) AGHeaderBlock(ag uint32) uint64 { return g.AGStart(ag) + 1 }

// BlockBitmapStart is the first block of AG ag's block bitmap.
func (g *Geometry) BlockBitmapStart(ag uint32) uint64 { return g.AGStart(ag) + 2 }

// InodeBitmapStart is the first block of AG ag's inode bitmap.
func (g *Geometry) InodeBitmapStart(ag uint32) uint64 {
	return g.BlockBitmapStart(ag) + uint64(g.BlockBitmapBlocks)
}

// InodeTableStart is the first block of AG ag's inode table.
func (g *Geometry) InodeTableStart(ag uint32) uint64 {
	return g.InodeBitmapStart(ag) + uint64(g.InodeBitmapBlocks)
}

// MetaBlocks is the number of blocks at the start of every AG taken by its
// superblock, header, bitmaps and inode table (not counting AG 0's log).
func (g *Geometry) MetaBlocks() uint64 {
	return 2 + uint64(g.BlockBitmapBlocks) + uint64(g.InodeBitmapBlocks) + uint64(g.InodeTableBlocks)
}

// ReservedBlocks is the number of blocks at the start of AG ag that are never
// free: its metadata, and in AG 0 the log.
func (g *Geometry) ReservedBlocks(ag uint32) uint64 {
	if ag == 0 {
		return g.MetaBlocks() + g.LogBlocks
	}
	return g.MetaBlocks()
}

// AGOf returns the AG holding absolute block blk.
func (g *Geometry) AGOf(blk uint64) uint32 { return uint32(blk / g.AGBlocks) }

// Ino composes an inode number from an AG and an index within it.
func (g *Geometry) Ino(ag uint32, index uint32) uint64 {
	return uint64(ag)<<g.InodeShift | uint64(index)
}

// SplitIno splits an inode number into AG and index; ok is false when the
// number names no inode slot of this filesystem.
func (g *Geometry) SplitIno(ino uint64) (ag uint32, index uint32, ok bool) {
	a := ino >> g.InodeShift
	i := ino & (1<<g.InodeShift - 1)
	if a >= uint64(g.AGCount) || i >= uint64(g.InodesPerAG) {
		return 0, 0, false
	}
	return uint32(a), uint32(i), true
}

// InodeLocation returns the inode-table block holding inode index idx of AG
// ag, and the byte offset of the inode within that block.
func (g *Geometry) InodeLocation(ag uint32, idx uint32) (blk uint64, off int) {
	ipb := g.InodesPerBlock()
	return g.InodeTableStart(ag) + uint64(idx/ipb), HeaderSize + int(idx%ipb)*InodeSize
}

// Params are mkfs's choices; zero values mean "pick the default".
type Params struct {
	DeviceBytes   int64  // size of the device
	BlockSize     uint32 // default 4096
	AGCount       uint32 // exclusive with AGBytes
	AGBytes       int64
	BytesPerInode int64 // default 16 KiB
	LogBytes      int64 // default 1% of the device, clamped to [16 MiB, 1 GiB] and to half of AG 0
}

// Defaults.
const (
	DefaultBlockSize     = 4096
	DefaultBytesPerInode = 16384
	defaultMaxAGs        = 64
	defaultMinAGBytes    = 16 << 20
	defaultBigAGBytes    = 1 << 30
	defaultLogMin        = 16 << 20
	defaultLogMax        = 1 << 30
)

// NewGeometry validates p and computes the geometry mkfs will write. Its
// errors are one-line messages fit to show a user.
func NewGeometry(p Params) (Geometry, error) {
	var g Geometry
	bs := p.BlockSize
	if bs == 0 {
		bs = DefaultBlockSize
	}
	if bs < MinBlockSize || bs > MaxBlockSize || bs&(bs-1) != 0 {
		return g, fmt.Errorf("block size %d is invalid: it must be a power of two from %d to %d", bs, MinBlockSize, MaxBlockSize)
	}
	g.BlockSize = bs
	if p.DeviceBytes <= 0 {
		return g, fmt.Errorf("device size %d is invalid", p.DeviceBytes)
	}
	blocks := uint64(p.DeviceBytes) / uint64(bs)
	if p.AGCount != 0 && p.AGBytes != 0 {
		return g, fmt.Errorf("give either an AG count or an AG size, not both")
	}
	bpi := p.BytesPerInode
	if bpi == 0 {
		bpi = DefaultBytesPerInode
	}
	if bpi < int64(InodeSize) || bpi > 1<<30 {
		return g, fmt.Errorf("bytes per inode %d is invalid: it must be from %d to 1 GiB", bpi, InodeSize)
	}

	var agBlocks uint64
	switch {
	case p.AGCount != 0:
		if p.AGCount > MaxAGCount {
			return g, fmt.Errorf("AG count %d is too large (at most %d)", p.AGCount, MaxAGCount)
		}
		if uint64(p.AGCount) > blocks {
			return g, fmt.Errorf("AG count %d is more than the device's %d blocks", p.AGCount, blocks)
		}
		agBlocks = (blocks + uint64(p.AGCount) - 1) / uint64(p.AGCount)
	case p.AGBytes != 0:
		if p.AGBytes < 0 || uint64(p.AGBytes)%uint64(bs) != 0 {
			return g, fmt.Errorf("AG size %d is invalid: it must be a multiple of the block size %d", p.AGBytes, bs)
		}
		agBlocks = uint64(p.AGBytes) / uint64(bs)
	default:
		agBlocks = defaultAGBlocks(uint64(p.DeviceBytes), bs)
	}
	if agBlocks == 0 {
		return g, fmt.Errorf("AG size is zero")
	}
	agBlocks = min(agBlocks, blocks)
	g.AGBlocks = agBlocks
	count := (blocks + agBlocks - 1) / agBlocks

	// Per-AG metadata is sized for a full AG so every AG looks alike.
	g.InodesPerAG = inodesFor(agBlocks, bs, bpi, g.InodesPerBlock())
	if g.InodesPerAG == 0 {
		return g, fmt.Errorf("bytes per inode %d gives too many inodes per AG", bpi)
	}
	g.InodeShift = uint8(bits.Len32(g.InodesPerAG - 1))
	if uint64(g.InodeShift)+uint64(bits.Len64(count)) > 64 {
		return g, fmt.Errorf("too many AGs (%d) for %d inodes per AG", count, g.InodesPerAG)
	}
	g.BlockBitmapBlocks = uint32((agBlocks + g.BitsPerBitmapBlock() - 1) / g.BitsPerBitmapBlock())
	g.InodeBitmapBlocks = uint32((uint64(g.InodesPerAG) + g.BitsPerBitmapBlock() - 1) / g.BitsPerBitmapBlock())
	g.InodeTableBlocks = g.InodesPerAG / g.InodesPerBlock()

	minAG := g.MetaBlocks() + MinAGDataBlocks
	if agBlocks < minAG {
		return g, fmt.Errorf("AG size of %d blocks is too small: an AG needs at least %d blocks (%s)",
			agBlocks, minAG, Bytes(int64(minAG)*int64(bs)))
	}
	// A last AG too small to be useful is left off, as XFS does.
	if last := blocks - (count-1)*agBlocks; last < minAG && count > 1 {
		count--
	}
	if count > MaxAGCount {
		return g, fmt.Errorf("AG count %d is too large (at most %d): choose a larger AG size", count, MaxAGCount)
	}
	g.AGCount = uint32(count)
	g.BlockCount = min(blocks, count*agBlocks)

	logBlocks, err := logBlocksFor(p.LogBytes, g)
	if err != nil {
		return g, err
	}
	g.LogStart = g.InodeTableStart(0) + uint64(g.InodeTableBlocks)
	g.LogBlocks = logBlocks
	if g.LogStart+g.LogBlocks+MinAGDataBlocks > g.AGLen(0) {
		need := g.MetaBlocks() + g.LogBlocks + MinAGDataBlocks
		if g.AGLen(0) < g.AGBlocks || blocks < need {
			return g, fmt.Errorf("device of %s is too small: it needs at least %s for one AG and a %s log",
				Bytes(p.DeviceBytes), Bytes(int64(need)*int64(bs)), Bytes(int64(g.LogBlocks)*int64(bs)))
		}
		return g, fmt.Errorf("log of %s does not fit in AG 0 (%s): choose a smaller log or larger AGs",
			Bytes(int64(g.LogBlocks)*int64(bs)), Bytes(int64(g.AGLen(0))*int64(bs)))
	}
	return g, g.Validate()
}

// defaultAGBlocks picks four AGs for small devices and AGs of at least
// 1 GiB, at most 64 of them, for large ones.
func defaultAGBlocks(dev uint64, bs uint32) uint64 {
	var agBytes uint64
	switch {
	case dev <= 4*defaultBigAGBytes:
		agBytes = max(defaultMinAGBytes, (dev+3)/4)
	default:
		agBytes = max(defaultBigAGBytes, (dev+defaultMaxAGs-1)/defaultMaxAGs)
	}
	return (agBytes + uint64(bs) - 1) / uint64(bs)
}

func inodesFor(agBlocks uint64, bs uint32, bpi int64, ipb uint32) uint32 {
	n := agBlocks * uint64(bs) / uint64(bpi)
	n = max(n, 2*uint64(ipb))
	n = (n + uint64(ipb) - 1) / uint64(ipb) * uint64(ipb)
	if n > 1<<31 {
		return 0
	}
	return uint32(n)
}

func logBlocksFor(logBytes int64, g Geometry) (uint64, error) {
	bs := uint64(g.BlockSize)
	if logBytes != 0 {
		if logBytes < 0 || uint64(logBytes)%bs != 0 {
			return 0, fmt.Errorf("log size %d is invalid: it must be a multiple of the block size %d", logBytes, bs)
		}
		n := uint64(logBytes) / bs
		if n < MinLogBlocks {
			return 0, fmt.Errorf("log size %s is too small: the log needs at least %d blocks (%s)",
				Bytes(logBytes), MinLogBlocks, Bytes(int64(MinLogBlocks*bs)))
		}
		return n, nil
	}
	dev := g.BlockCount * bs
	b := min(max(dev/100, defaultLogMin), defaultLogMax)
	n := b / bs
	// Never let the default log take more than half of AG 0's free space.
	if half := (g.AGLen(0) - g.MetaBlocks()) / 2; n > half {
		n = max(half, MinLogBlocks)
	}
	return n, nil
}

// Validate checks that a geometry is self-consistent, so that a corrupt
// superblock cannot make later arithmetic overflow, divide by zero or index
// out of range.
func (g *Geometry) Validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: geometry: "+format, append([]any{ErrCorrupt}, a...)...)
	}
	bs := g.BlockSize
	switch {
	case bs < MinBlockSize || bs > MaxBlockSize || bs&(bs-1) != 0:
		return bad("block size %d", bs)
	case g.AGCount == 0 || g.AGCount > MaxAGCount:
		return bad("AG count %d", g.AGCount)
	case g.AGBlocks == 0 || g.AGBlocks > 1<<48:
		return bad("AG size %d blocks", g.AGBlocks)
	case g.BlockCount > uint64(g.AGCount)*g.AGBlocks || g.BlockCount <= uint64(g.AGCount-1)*g.AGBlocks:
		return bad("block count %d does not match %d AGs of %d blocks", g.BlockCount, g.AGCount, g.AGBlocks)
	case g.InodesPerAG == 0 || g.InodesPerAG%g.InodesPerBlock() != 0:
		return bad("inodes per AG %d", g.InodesPerAG)
	case g.InodeShift > 32 || uint64(g.InodesPerAG) > 1<<g.InodeShift:
		return bad("inode shift %d for %d inodes per AG", g.InodeShift, g.InodesPerAG)
	case uint64(g.BlockBitmapBlocks)*g.BitsPerBitmapBlock() < g.AGBlocks:
		return bad("%d block bitmap blocks cannot cover %d blocks", g.BlockBitmapBlocks, g.AGBlocks)
	case uint64(g.InodeBitmapBlocks)*g.BitsPerBitmapBlock() < uint64(g.InodesPerAG):
		return bad("%d inode bitmap blocks cannot cover %d inodes", g.InodeBitmapBlocks, g.InodesPerAG)
	case g.InodeTableBlocks != g.InodesPerAG/g.InodesPerBlock():
		return bad("inode table of %d blocks for %d inodes", g.InodeTableBlocks, g.InodesPerAG)
	case g.MetaBlocks() >= g.AGLen(g.AGCount-1):
		return bad("AG metadata (%d blocks) fills the last AG", g.MetaBlocks())
	case g.LogStart != g.InodeTableStart(0)+uint64(g.InodeTableBlocks) || g.LogBlocks < MinLogBlocks || g.LogStart+g.LogBlocks > g.AGLen(0):
		return bad("log at %d+%d does not fit in AG 0", g.LogStart, g.LogBlocks)
	}
	return nil
}

// Bytes renders a byte count with a binary unit (e.g. "1 GiB", "1.5 MiB").
func Bytes(n int64) string {
	const units = "KMGTPE"
	if n < 1024 {
		return fmt.Sprintf("%d B", n)
	}
	v, i := float64(n)/1024, 0
	for v >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	if v == float64(int64(v)) {
		return fmt.Sprintf("%d %ciB", int64(v), units[i])
	}
	return fmt.Sprintf("%.1f %ciB", v, units[i])
}
