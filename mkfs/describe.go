package mkfs

import (
	"fmt"
	"strings"

	"agfs/layout"
)

// Describe renders a filesystem's geometry for a person, in the manner of
// mkfs.xfs: one line per area with its sizes in blocks and bytes.
func Describe(sb *layout.Superblock, device string) string {
	bs := int64(sb.BlockSize)
	size := func(blocks uint64) string { return layout.Bytes(int64(blocks) * bs) }
	var b strings.Builder
	fmt.Fprintf(&b, "agfs on %s: uuid %s, label %q\n", device, FormatUUID(sb.UUID), sb.Label)
	fmt.Fprintf(&b, "  data   bsize=%-6d blocks=%d (%s)\n", bs, sb.BlockCount, size(sb.BlockCount))
	fmt.Fprintf(&b, "  ags    count=%-6d agsize=%d blocks (%s), last AG %d blocks\n",
		sb.AGCount, sb.AGBlocks, size(sb.AGBlocks), sb.AGLen(sb.AGCount-1))
	fmt.Fprintf(&b, "  inodes isize=%-6d per AG=%d, total=%d, table %d blocks per AG\n",
		layout.InodeSize, sb.InodesPerAG, uint64(sb.InodesPerAG)*uint64(sb.AGCount), sb.InodeTableBlocks)
	fmt.Fprintf(&b, "  bitmap blocks per AG: %d for blocks, %d for inodes\n", sb.BlockBitmapBlocks, sb.InodeBitmapBlocks)
	fmt.Fprintf(&b, "  log    internal in AG 0 at block %d, blocks=%d (%s)\n", sb.LogStart, sb.LogBlocks, size(sb.LogBlocks))
	return b.String()
}

// FormatUUID renders a UUID in its canonical 8-4-4-4-12 form.
func FormatUUID(u [16]byte) string {
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}

// ParseUUID reads a UUID in canonical form (hyphens optional).
func ParseUUID(s string) ([16]byte, error) {
	var u [16]byte
	h := strings.ReplaceAll(s, "-", "")
	if len(h) != 32 {
		return u, fmt.Errorf("%q is not a UUID (want 32 hex digits, as 8-4-4-4-12)", s)
	}
	for i := range u {
		var v byte
		for _, c := range h[2*i : 2*i+2] {
			v <<= 4
			switch {
			case c >= '0' && c <= '9':
				v |= byte(c - '0')
			case c >= 'a' && c <= 'f':
				v |= byte(c - 'a' + 10)
			case c >= 'A' && c <= 'F':
				v |= byte(c - 'A' + 10)
			default:
				return u, fmt.Errorf("%q is not a UUID: %q is not a hex digit", s, c)
			}
		}
		u[i] = v
	}
	return u, nil
}
