// Package layout defines agfs's on-disk format: the byte layout of every
// metadata structure, its encoder and decoder, and its verifier. It is the
// code twin of docs/FORMAT.md; the two must agree.
//
// Every metadata block starts with the same 64-byte header, so a block read
// from anywhere can say what it is, where it belongs and who owns it, and a
// misdirected, torn or stale write is detectable from the block alone:
//
//	off size field
//	  0    4 magic     kind of block (Magic*)
//	  4    4 flags     reserved, zero
//	  8    8 blkno     the block's own number on the device
//	 16    8 owner     AG number, inode number, or OwnerNone
//	 24    8 lsn       LSN of the last log transaction written into the block
//	 32    8 checksum  xxhash64 of the whole block with this field zero,
//	                   seeded with the filesystem's checksum seed
//	 40   24 reserved  zero
package layout

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cespare/xxhash/v2"
)

// HeaderSize is the size of the common metadata block header.
const HeaderSize = 64

// Header field offsets, shared by every metadata block.
const (
	offMagic    = 0
	offFlags    = 4
	offBlkno    = 8
	offOwner    = 16
	OffLSN      = 24
	OffChecksum = 32
)

// Block magics. Each is four ASCII bytes read as a little-endian uint32, so
// a hex dump shows the name.
const (
	MagicSuper       uint32 = 'A' | 'G'<<8 | 'S'<<16 | 'B'<<24 // "AGSB" superblock
	MagicAGHeader    uint32 = 'A' | 'G'<<8 | 'A'<<16 | 'H'<<24 // "AGAH" allocation group header
	MagicBlockBitmap uint32 = 'A' | 'G'<<8 | 'B'<<16 | 'B'<<24 // "AGBB" block bitmap
	MagicInodeBitmap uint32 = 'A' | 'G'<<8 | 'I'<<16 | 'B'<<24 // "AGIB" inode bitmap
	MagicInodeTable  uint32 = 'A' | 'G'<<8 | 'I'<<16 | 'T'<<24 // "AGIT" inode table block
	MagicExtentNode  uint32 = 'A' | 'G'<<8 | 'E'<<16 | 'X'<<24 // "AGEX" extent B+tree node
	MagicDirNode     uint32 = 'A' | 'G'<<8 | 'D'<<16 | 'R'<<24 // "AGDR" directory B+tree node
	MagicXattrNode   uint32 = 'A' | 'G'<<8 | 'X'<<16 | 'A'<<24 // "AGXA" extended attribute block
	MagicLogSuper    uint32 = 'A' | 'G'<<8 | 'L'<<16 | 'S'<<24 // "AGLS" log superblock
)

// OwnerNone marks a block that belongs to the whole filesystem, not to one
// AG or inode (the log superblock).
const OwnerNone = ^uint64(0)

// Sentinel errors. Verifiers wrap ErrCorrupt with the block and the reason,
// so callers test with errors.Is and users read the wrapped message.
var (
	// ErrCorrupt: a structure failed its verifier (bad magic, checksum,
	// self-address, owner or an impossible field value).
	ErrCorrupt = errors.New("metadata corrupt")
	// ErrChecksum is the ErrCorrupt kind for a checksum mismatch alone.
	ErrChecksum = fmt.Errorf("%w: checksum mismatch", ErrCorrupt)
	// ErrUnsupported: the format version or an incompat feature is newer
	// than this binary understands.
	ErrUnsupported = errors.New("unsupported format")
)

// Header is the decoded common header.
type Header struct {
	Magic uint32
	Blkno uint64
	Owner uint64
	LSN   uint64
	Sum   uint64
}

// ReadHeader decodes the common header of b without verifying it.
func ReadHeader(b []byte) Header {
	return Header{
		Magic: binary.LittleEndian.Uint32(b[offMagic:]),
		Blkno: binary.LittleEndian.Uint64(b[offBlkno:]),
		Owner: binary.LittleEndian.Uint64(b[offOwner:]),
		LSN:   binary.LittleEndian.Uint64(b[OffLSN:]),
		Sum:   binary.LittleEndian.Uint64(b[OffChecksum:]),
	}
}

// PutHeader writes magic, blkno and owner into b's header and clears the
// reserved bytes. LSN and checksum are set by Seal.
func PutHeader(b []byte, magic uint32, blkno, owner uint64) {
	clear(b[:HeaderSize])
	binary.LittleEndian.PutUint32(b[offMagic:], magic)
	binary.LittleEndian.PutUint64(b[offBlkno:], blkno)
	binary.LittleEndian.PutUint64(b[offOwner:], owner)
}

// Checksum is the xxhash64 of block b (any length > HeaderSize) seeded with
// seed, computed as if the checksum field were zero.
func Checksum(b []byte, seed uint64) uint64 {
	var zero [8]byte
	d := xxhash.NewWithSeed(seed)
	d.Write(b[:OffChecksum])
	d.Write(zero[:])
	d.Write(b[OffChecksum+8:])
	return d.Sum64()
}

// Seal stamps lsn into b's header and sets its checksum. It is the write
// verifier's last step: every metadata block is sealed just before it goes
// to the device.
func Seal(b []byte, seed, lsn uint64) {
	binary.LittleEndian.PutUint64(b[OffLSN:], lsn)
	binary.LittleEndian.PutUint64(b[OffChecksum:], Checksum(b, seed))
}

// Check is the read verifier for the common header: the checksum, then the
// magic, the self-address and the owner. It returns an error wrapping
// ErrCorrupt that names the block and what is wrong.
func Check(b []byte, seed uint64, magic uint32, blkno, owner uint64) error {
	h := ReadHeader(b)
	if h.Magic == 0 && allZero(b) {
		return fmt.Errorf("block %d: %w: block is all zeroes (never written)", blkno, ErrCorrupt)
	}
	if sum := Checksum(b, seed); sum != h.Sum {
		return fmt.Errorf("block %d (%s): %w (stored %#016x, computed %#016x)",
			blkno, MagicName(h.Magic), ErrChecksum, h.Sum, sum)
	}
	if h.Magic != magic {
		return fmt.Errorf("block %d: %w: magic is %s, want %s", blkno, ErrCorrupt, MagicName(h.Magic), MagicName(magic))
	}
	if h.Blkno != blkno {
		return fmt.Errorf("block %d (%s): %w: claims to be block %d (misdirected write?)", blkno, MagicName(magic), ErrCorrupt, h.Blkno)
	}
	if h.Owner != owner {
		return fmt.Errorf("block %d (%s): %w: owner is %d, want %d", blkno, MagicName(magic), ErrCorrupt, h.Owner, owner)
	}
	return nil
}

// MagicName renders a magic as its four ASCII letters, or as hex when it is
// not printable.
func MagicName(m uint32) string {
	var s [4]byte
	binary.LittleEndian.PutUint32(s[:], m)
	for _, c := range s {
		if c < ' ' || c > '~' {
			return fmt.Sprintf("%#08x", m)
		}
	}
	return fmt.Sprintf("%q", s[:])
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// SeedFromUUID derives the checksum seed from the filesystem UUID. Seeding
// every checksum with it makes a block copied from another agfs image fail
// verification.
func SeedFromUUID(uuid [16]byte) uint64 {
	return xxhash.Sum64(uuid[:])
}
