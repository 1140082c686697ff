package wal

import (
	"encoding/binary"
	"errors"
	"fmt"

	"agfs/disk"
	"agfs/layout"

	"github.com/cespare/xxhash/v2"
)

// LSN is a byte position in the unwrapped log stream (see the package doc).
type LSN uint64

// Region is the log's place on the device, in blocks of BlockSize bytes.
type Region struct {
	BlockSize int
	Start     uint64 // first block (log superblock A)
	Blocks    uint64 // blocks in the log, superblocks included
}

// Sector layout.
const (
	sectorSize    = disk.SectorSize // 512
	sectorHdr     = 32
	sectorPayload = sectorSize - sectorHdr // 480

	sectorMagic uint32 = 'A' | 'G'<<8 | 'L'<<16 | 'G'<<24 // "AGLG"

	soMagic = 0
	soUsed  = 4
	soLSN   = 8
	soEpoch = 16
	soSum   = 24
)

// Log superblock layout (after the common 64-byte header).
const (
	sbSeq       = 64
	sbTail      = 72
	sbEpoch     = 80
	sbFlags     = 84
	sbBlockSize = 88
	sbVersion   = 92
	sbStart     = 96
	sbBlocks    = 104
	sbEnd       = 112

	sbFlagClean = 1

	logVersion = 1
)

// Record kinds.
const (
	recDelta  = 1
	recImage  = 2
	recInit   = 3
	recCommit = 4

	deltaHdr   = 1 + 8 + 2 + 2 // kind, block, offset, length
	imageHdr   = 1 + 8         // kind, block (then the whole block)
	commitSize = 1 + 8 + 4 + 8 // kind, txid, count, hash

	maxDelta = 0xFFFF // a delta's length is a u16
)

// Limits on the region.
const (
	minBlockSize = 1024
	maxBlockSize = 65536
	minLogBlocks = 4 // two superblocks and two blocks of sectors
)

// Errors.
var (
	// ErrCorrupt is wrapped by recovery errors about log contents that
	// cannot have been written by this package.
	ErrCorrupt = errors.New("log corrupt")
	// ErrReadOnly is returned by writes to a log opened ReadOnly.
	ErrReadOnly = errors.New("log is read-only")
	// ErrClosed is returned by operations on a closed log.
	ErrClosed = errors.New("log is closed")
	// ErrTooLarge is returned by Commit for a transaction that cannot fit in
	// the log even when it is empty.
	ErrTooLarge = errors.New("transaction larger than the log")
	// ErrTxDone is returned by operations on a committed or aborted Tx.
	ErrTxDone = errors.New("transaction already committed or aborted")
)

// geom is the derived geometry of a region.
type geom struct {
	Region
	bs        uint64 // block size
	devBlocks uint64 // blocks on the device
	dataOff   int64  // byte offset of the first sector
	nSect     uint64 // N
	ring      uint64 // N*512, bytes of sectors
	capacity  uint64 // max head-tail: ring - bs
}

func newGeom(dev disk.Device, r Region) (geom, error) {
	g := geom{Region: r}
	bs := r.BlockSize
	if bs < minBlockSize || bs > maxBlockSize || bs&(bs-1) != 0 {
		return g, fmt.Errorf("wal: region: block size %d is not a power of two in [%d, %d]", bs, minBlockSize, maxBlockSize)
	}
	g.bs = uint64(bs)
	g.devBlocks = uint64(dev.Size()) / g.bs
	if r.Blocks < minLogBlocks {
		return g, fmt.Errorf("wal: region: %d blocks is too small (minimum %d)", r.Blocks, minLogBlocks)
	}
	if r.Start > g.devBlocks || r.Blocks > g.devBlocks-r.Start {
		return g, fmt.Errorf("wal: region: blocks [%d, %d) reach past the device's %d blocks", r.Start, r.Start+r.Blocks, g.devBlocks)
	}
	if r.Blocks > 1<<40 {
		return g, fmt.Errorf("wal: region: %d blocks is too large", r.Blocks)
	}
	g.dataOff = int64((r.Start + 2) * g.bs)
	g.ring = (r.Blocks - 2) * g.bs
	g.nSect = g.ring / sectorSize
	g.capacity = g.ring - g.bs
	return g, nil
}

// inLog reports whether blk lies inside the log region.
func (g *geom) inLog(blk uint64) bool { return blk >= g.Start && blk-g.Start < g.Blocks }

// checkBlock validates a block number named by a transaction or a record.
func (g *geom) checkBlock(blk uint64) error {
	if blk >= g.devBlocks {
		return fmt.Errorf("%w: block %d is outside the device (%d blocks)", layout.ErrCorrupt, blk, g.devBlocks)
	}
	if g.inLog(blk) {
		return fmt.Errorf("%w: block %d is inside the log [%d, %d)", layout.ErrCorrupt, blk, g.Start, g.Start+g.Blocks)
	}
	return nil
}

// physOff is the device byte offset of stream position p (a multiple of
// 512 for sector starts).
func (g *geom) physOff(p uint64) int64 { return g.dataOff + int64(p%g.ring) }

// LSN arithmetic. A payload position is an LSN whose offset in its sector
// is at least sectorHdr; head and tail are always payload positions.

// norm turns a stream position into the payload position of the same byte
// or, inside a sector header, of the sector's first payload byte.
func norm(p uint64) uint64 {
	if p%sectorSize < sectorHdr {
		return p - p%sectorSize + sectorHdr
	}
	return p
}

// advance returns the payload position n payload bytes after p.
func advance(p uint64, n uint64) uint64 {
	off := p%sectorSize - sectorHdr
	total := off + n
	return p - p%sectorSize + total/sectorPayload*sectorSize + sectorHdr + total%sectorPayload
}

// canon returns the canonical position of an empty log at or after p: the
// first payload byte of a block boundary (p itself if it is one).
func canon(p, bs uint64) uint64 {
	if p%bs == sectorHdr {
		return p
	}
	return (p+bs-1)/bs*bs + sectorHdr
}

// maxPayload is the largest number of record bytes that fit in an empty log.
func (g *geom) maxPayload() uint64 {
	s := g.capacity / sectorSize
	if s < 2 {
		return 0
	}
	return (s - 1) * sectorPayload
}

// sectorSum is the checksum of a sector: xxhash64, seeded, of the sector
// with its checksum field taken as zero.
func sectorSum(d *xxhash.Digest, s []byte, seed uint64) uint64 {
	var zero [8]byte
	d.ResetWithSeed(seed)
	d.Write(s[:soSum])
	d.Write(zero[:])
	d.Write(s[soSum+8 : sectorSize])
	return d.Sum64()
}

// sealSector writes the header of sector s at stream position lsn (a
// multiple of 512) with used payload bytes.
func sealSector(d *xxhash.Digest, s []byte, lsn uint64, used int, epoch uint32, seed uint64) {
	binary.LittleEndian.PutUint32(s[soMagic:], sectorMagic)
	binary.LittleEndian.PutUint16(s[soUsed:], uint16(used))
	binary.LittleEndian.PutUint16(s[soUsed+2:], 0)
	binary.LittleEndian.PutUint64(s[soLSN:], lsn)
	binary.LittleEndian.PutUint32(s[soEpoch:], epoch)
	binary.LittleEndian.PutUint32(s[soEpoch+4:], 0)
	binary.LittleEndian.PutUint64(s[soSum:], sectorSum(d, s, seed))
}

// checkSector validates sector s expected at stream position lsn and
// returns its used count, or an error saying why it is not part of the
// stream.
func checkSector(d *xxhash.Digest, s []byte, lsn uint64, epoch uint32, seed uint64) (int, error) {
	if m := binary.LittleEndian.Uint32(s[soMagic:]); m != sectorMagic {
		return 0, fmt.Errorf("bad magic %#08x", m)
	}
	if got := binary.LittleEndian.Uint64(s[soLSN:]); got != lsn {
		return 0, fmt.Errorf("sector is from LSN %d (an earlier lap)", got)
	}
	if sum, want := sectorSum(d, s, seed), binary.LittleEndian.Uint64(s[soSum:]); sum != want {
		return 0, fmt.Errorf("checksum mismatch (stored %#016x, computed %#016x)", want, sum)
	}
	if e := binary.LittleEndian.Uint32(s[soEpoch:]); e != epoch {
		return 0, fmt.Errorf("epoch %d, log superblock says %d", e, epoch)
	}
	used := int(binary.LittleEndian.Uint16(s[soUsed:]))
	if used > sectorPayload {
		return 0, fmt.Errorf("used %d > %d", used, sectorPayload)
	}
	return used, nil
}

// super is a decoded log superblock.
type super struct {
	seq   uint64
	tail  uint64
	epoch uint32
	clean bool
}

// encodeSuper fills b (one block) with superblock s for copy blk.
func encodeSuper(b []byte, g *geom, blk uint64, s super, seed uint64) {
	clear(b)
	layout.PutHeader(b, layout.MagicLogSuper, blk, layout.OwnerNone)
	binary.LittleEndian.PutUint64(b[sbSeq:], s.seq)
	binary.LittleEndian.PutUint64(b[sbTail:], s.tail)
	binary.LittleEndian.PutUint32(b[sbEpoch:], s.epoch)
	var flags uint32
	if s.clean {
		flags |= sbFlagClean
	}
	binary.LittleEndian.PutUint32(b[sbFlags:], flags)
	binary.LittleEndian.PutUint32(b[sbBlockSize:], uint32(g.bs))
	binary.LittleEndian.PutUint32(b[sbVersion:], logVersion)
	binary.LittleEndian.PutUint64(b[sbStart:], g.Start)
	binary.LittleEndian.PutUint64(b[sbBlocks:], g.Blocks)
	layout.Seal(b, seed, s.tail)
}

// decodeSuper verifies and decodes superblock copy blk.
func decodeSuper(b []byte, g *geom, blk uint64, seed uint64) (super, error) {
	var s super
	if err := layout.Check(b, seed, layout.MagicLogSuper, blk, layout.OwnerNone); err != nil {
		return s, err
	}
	if v := binary.LittleEndian.Uint32(b[sbVersion:]); v != logVersion {
		return s, fmt.Errorf("block %d: %w: log version %d (this binary knows %d)", blk, layout.ErrUnsupported, v, logVersion)
	}
	if bs := binary.LittleEndian.Uint32(b[sbBlockSize:]); uint64(bs) != g.bs {
		return s, fmt.Errorf("block %d: %w: block size %d, expected %d", blk, layout.ErrCorrupt, bs, g.bs)
	}
	st, n := binary.LittleEndian.Uint64(b[sbStart:]), binary.LittleEndian.Uint64(b[sbBlocks:])
	if st != g.Start || n != g.Blocks {
		return s, fmt.Errorf("block %d: %w: log superblock describes blocks [%d, +%d), expected [%d, +%d)", blk, layout.ErrCorrupt, st, n, g.Start, g.Blocks)
	}
	flags := binary.LittleEndian.Uint32(b[sbFlags:])
	if flags&^sbFlagClean != 0 {
		return s, fmt.Errorf("block %d: %w: unknown log flags %#x", blk, layout.ErrUnsupported, flags)
	}
	s.seq = binary.LittleEndian.Uint64(b[sbSeq:])
	s.tail = binary.LittleEndian.Uint64(b[sbTail:])
	s.epoch = binary.LittleEndian.Uint32(b[sbEpoch:])
	s.clean = flags&sbFlagClean != 0
	if s.tail%sectorSize < sectorHdr || s.tail > 1<<62 {
		return s, fmt.Errorf("block %d: %w: tail %d is not a payload position", blk, layout.ErrCorrupt, s.tail)
	}
	if h := layout.ReadHeader(b); h.LSN != s.tail {
		return s, fmt.Errorf("block %d: %w: header LSN %d differs from tail %d", blk, layout.ErrCorrupt, h.LSN, s.tail)
	}
	for _, c := range b[sbEnd:] {
		if c != 0 {
			return s, fmt.Errorf("block %d: %w: reserved bytes are not zero", blk, layout.ErrCorrupt)
		}
	}
	return s, nil
}

// Record encoding helpers.

func putDelta(dst []byte, blk uint64, off int, before, after []byte) []byte {
	dst = append(dst, recDelta)
	dst = binary.LittleEndian.AppendUint64(dst, blk)
	dst = binary.LittleEndian.AppendUint16(dst, uint16(off))
	dst = binary.LittleEndian.AppendUint16(dst, uint16(len(after)))
	dst = append(dst, before...)
	return append(dst, after...)
}

func putImage(dst []byte, kind byte, blk uint64, img []byte) []byte {
	dst = append(dst, kind)
	dst = binary.LittleEndian.AppendUint64(dst, blk)
	return append(dst, img...)
}

func putCommit(dst []byte, txid uint64, count uint32, hash uint64) []byte {
	dst = append(dst, recCommit)
	dst = binary.LittleEndian.AppendUint64(dst, txid)
	dst = binary.LittleEndian.AppendUint32(dst, count)
	return binary.LittleEndian.AppendUint64(dst, hash)
}

// record is a decoded record.
type record struct {
	kind   byte
	pos    uint64 // LSN of its first byte
	blk    uint64 // delta, image, init
	off    int    // delta
	before []byte // delta
	after  []byte // delta: new bytes; image/init: the block
	txid   uint64 // commit
	count  uint32 // commit
	hash   uint64 // commit
}

// byteSource is the stream records are decoded from.
type byteSource interface {
	// next returns the next n bytes of the stream (valid until the next
	// call) or ok=false when the stream ends first.
	next(n int) (b []byte, ok bool)
	// pos is the LSN of the next byte.
	pos() uint64
}

// decodeRecord reads one record from src. It returns ok=false when the
// stream ends inside it, and an error when the bytes cannot be a record.
// Block numbers are validated by the caller. raw receives the record's
// bytes (for the transaction hash).
func decodeRecord(src byteSource, bs int, raw func([]byte)) (rec record, ok bool, err error) {
	rec.pos = src.pos()
	b, ok := src.next(1)
	if !ok {
		return rec, false, nil
	}
	rec.kind = b[0]
	if rec.kind != recCommit {
		raw(b) // the hash covers every record before the commit record
	}
	switch rec.kind {
	case recDelta:
		h, ok := src.next(deltaHdr - 1)
		if !ok {
			return rec, false, nil
		}
		raw(h)
		rec.blk = binary.LittleEndian.Uint64(h)
		rec.off = int(binary.LittleEndian.Uint16(h[8:]))
		n := int(binary.LittleEndian.Uint16(h[10:]))
		if n == 0 || rec.off+n > bs {
			return rec, false, fmt.Errorf("delta for block %d: range [%d, %d) is empty or outside a %d-byte block", rec.blk, rec.off, rec.off+n, bs)
		}
		d, ok := src.next(2 * n)
		if !ok {
			return rec, false, nil
		}
		raw(d)
		rec.before = append([]byte(nil), d[:n]...)
		rec.after = append([]byte(nil), d[n:]...)
	case recImage, recInit:
		h, ok := src.next(8)
		if !ok {
			return rec, false, nil
		}
		raw(h)
		rec.blk = binary.LittleEndian.Uint64(h)
		d, ok := src.next(bs)
		if !ok {
			return rec, false, nil
		}
		raw(d)
		rec.after = append([]byte(nil), d...)
	case recCommit:
		h, ok := src.next(commitSize - 1)
		if !ok {
			return rec, false, nil
		}
		rec.txid = binary.LittleEndian.Uint64(h)
		rec.count = binary.LittleEndian.Uint32(h[8:])
		rec.hash = binary.LittleEndian.Uint64(h[12:])
	default:
		return rec, false, fmt.Errorf("unknown record kind %d", rec.kind)
	}
	return rec, true, nil
}
