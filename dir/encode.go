package dir

import (
	"encoding/binary"
	"fmt"
	"syscall"

	"github.com/cespare/xxhash/v2"
)

// Position space (see the package doc).
const (
	// MinPos is the lowest position: 0, 1 and 2 are the readdir start,
	// "." and "..".
	MinPos uint64 = 3
	// MaxPos is the highest position, so cookies fit a signed 64-bit
	// offset.
	MaxPos uint64 = 1<<63 - 1

	// NameMax is the longest name (NAME_MAX).
	NameMax = 255

	posSize = 8
	valSize = 9
)

// Hash returns the home position of name in a filesystem whose directory
// hash seed is seed: xxhash64 of the name seeded with seed, masked to 63
// bits, and 0, 1, 2 moved to 3, 4, 5.
func Hash(seed uint64, name string) uint64 {
	var d xxhash.Digest
	d.ResetWithSeed(seed)
	d.WriteString(name)
	return fold(d.Sum64())
}

// fold maps a 64-bit hash into [MinPos, MaxPos].
func fold(h uint64) uint64 {
	h &= MaxPos
	if h < MinPos {
		h += MinPos
	}
	return h
}

func next(p uint64) uint64 {
	if p >= MaxPos {
		return MinPos
	}
	return p + 1
}

func prev(p uint64) uint64 {
	if p <= MinPos {
		return MaxPos
	}
	return p - 1
}

// CheckName validates a name to be stored: ENAMETOOLONG over 255 bytes,
// EINVAL when empty, "." or "..", or holding '/' or NUL.
func CheckName(name string) error {
	if len(name) > NameMax {
		return syscall.ENAMETOOLONG
	}
	if !validName(name) {
		return syscall.EINVAL
	}
	return nil
}

func validName(name string) bool {
	if name == "" || name == "." || name == ".." || len(name) > NameMax {
		return false
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c == '/' || c == 0 {
			return false
		}
	}
	return true
}

// ValidType reports whether t is a file type an entry may have (DT_*,
// DT_UNKNOWN and DT_WHT excluded).
func ValidType(t uint8) bool {
	switch t {
	case syscall.DT_FIFO, syscall.DT_CHR, syscall.DT_DIR, syscall.DT_BLK,
		syscall.DT_REG, syscall.DT_LNK, syscall.DT_SOCK:
		return true
	}
	return false
}

// posKey is the key of the tombstone at p, and the least key of any
// entry at p.
func posKey(p uint64) []byte {
	var k [posSize]byte
	binary.BigEndian.PutUint64(k[:], p)
	return k[:]
}

func encodeKey(p uint64, name string) []byte {
	k := make([]byte, posSize+len(name))
	binary.BigEndian.PutUint64(k, p)
	copy(k[posSize:], name)
	return k
}

func encodeVal(ino uint64, typ uint8) []byte {
	v := make([]byte, valSize)
	binary.LittleEndian.PutUint64(v, ino)
	v[8] = typ
	return v
}

// rawEntry is a decoded key and value. name aliases the key.
type rawEntry struct {
	pos  uint64
	name []byte // empty for a tombstone
	ino  uint64
	typ  uint8
}

func (e *rawEntry) tomb() bool { return len(e.name) == 0 }

// decode parses a key and value; the error says what is wrong (the caller
// adds the directory and layout.ErrCorrupt).
func decode(k, v []byte) (rawEntry, error) {
	var e rawEntry
	if len(k) < posSize {
		return e, fmt.Errorf("key %x of %d bytes, want at least %d", k, len(k), posSize)
	}
	e.pos = binary.BigEndian.Uint64(k)
	if e.pos < MinPos || e.pos > MaxPos {
		return e, fmt.Errorf("key %x: position %#x outside [%#x, %#x]", k, e.pos, MinPos, MaxPos)
	}
	e.name = k[posSize:]
	if len(e.name) == 0 {
		if len(v) != 0 {
			return e, fmt.Errorf("tombstone at %#x has a %d-byte value", e.pos, len(v))
		}
		return e, nil
	}
	if !validName(string(e.name)) {
		return e, fmt.Errorf("entry at %#x: invalid name %q", e.pos, e.name)
	}
	if len(v) != valSize {
		return e, fmt.Errorf("entry %q at %#x: value of %d bytes, want %d", e.name, e.pos, len(v), valSize)
	}
	e.ino = binary.LittleEndian.Uint64(v)
	e.typ = v[8]
	if e.ino == 0 {
		return e, fmt.Errorf("entry %q at %#x: inode 0", e.name, e.pos)
	}
	if !ValidType(e.typ) {
		return e, fmt.Errorf("entry %q at %#x: invalid file type %d", e.name, e.pos, e.typ)
	}
	return e, nil
}
