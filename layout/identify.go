package layout

import (
	"bytes"
	"encoding/binary"
)

// IdentifyBytes is how much of a device's start Identify wants to see.
const IdentifyBytes = 128 << 10

// Identify names the filesystem or partition table whose signature starts
// the given bytes of a device (agfs, ext2/3/4, XFS, btrfs, GPT, MBR), or
// returns "" when it recognises none. mkfs uses it to refuse to overwrite
// something by accident; mount uses it to say what a non-agfs device is.
func Identify(head []byte) string {
	at := func(off int, sig []byte) bool {
		return len(head) >= off+len(sig) && bytes.Equal(head[off:off+len(sig)], sig)
	}
	le16 := func(off int) uint16 {
		if len(head) < off+2 {
			return 0
		}
		return binary.LittleEndian.Uint16(head[off:])
	}
	switch {
	case len(head) >= 4 && binary.LittleEndian.Uint32(head) == MagicSuper:
		return "an agfs filesystem"
	case at(0, []byte("XFSB")):
		return "an XFS filesystem"
	case le16(1024+56) == 0xEF53:
		return ext2Family(head)
	case at(65536+64, []byte("_BHRfS_M")):
		return "a btrfs filesystem"
	case at(512, []byte("EFI PART")):
		return "a GPT partition table"
	case le16(510) == 0xAA55 && mbrHasPartitions(head):
		return "an MBR partition table"
	}
	return ""
}

// ext2Family tells ext4 from ext3 from ext2 by their feature flags, as
// blkid does.
func ext2Family(head []byte) string {
	sb := head[1024:]
	if len(sb) < 0x68 {
		return "an ext2/3/4 filesystem"
	}
	compat := binary.LittleEndian.Uint32(sb[0x5C:])
	incompat := binary.LittleEndian.Uint32(sb[0x60:])
	const hasJournal, ext4Incompat = 0x4, 0x40 | 0x80 | 0x200 // journal; extents, 64bit, flex_bg
	switch {
	case incompat&ext4Incompat != 0:
		return "an ext4 filesystem"
	case compat&hasJournal != 0:
		return "an ext3 filesystem"
	}
	return "an ext2 filesystem"
}

// mbrHasPartitions reports whether any of the four MBR partition entries is
// in use, so that a boot sector that merely ends in 0x55AA is not mistaken
// for a partition table.
func mbrHasPartitions(head []byte) bool {
	for i := 0; i < 4; i++ {
		e := head[446+16*i : 446+16*i+16]
		if e[4] != 0 && binary.LittleEndian.Uint32(e[12:]) != 0 {
			return true
		}
	}
	return false
}
