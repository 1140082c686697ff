package ag

import (
	"errors"
	"fmt"
	"io"

	"agfs/bitmap"
	"agfs/disk"
	"agfs/layout"
)

// Verify checks AG ag of the filesystem sb describes by reading dev
// directly (offline: no log, no cache; replay the log first). It checks
//
//   - the superblock copy (checksum, fields, same geometry as sb);
//   - the AG header (checksum, fields);
//   - every initialised block-bitmap and inode-bitmap block (checksum,
//     magic, address, owner, no bit set past the end of the AG or of the
//     inode count);
//   - that every reserved block (superblock, header, bitmaps, inode table,
//     AG 0's log) and inode index 0 are marked used;
//   - that the header's free-block and free-inode counters equal the
//     bitmaps, and that it counts no more directories than used inodes;
//   - every initialised inode-table block's common header (checksum,
//     magic, address, owner), and that no used inode lies beyond the
//     inode-table init mark.
//
// Each problem is one error, wrapping layout.ErrCorrupt (or the device's
// error), that names the AG and the block. No error means the AG is sound.
func Verify(dev disk.Device, sb *layout.Superblock, ag uint32) []error {
	x, err := newAGGeom(sb, ag)
	if err != nil {
		return []error{err}
	}
	v := &verifier{x: x, dev: dev, buf: make([]byte, x.bs)}
	v.run(sb)
	return v.errs
}

type verifier struct {
	x    *agGeom
	dev  disk.Device
	buf  []byte
	errs []error
}

func (v *verifier) fail(format string, a ...any) {
	v.errs = append(v.errs, fmt.Errorf("ag %d: "+format, append([]any{v.x.ag}, a...)...))
}

func (v *verifier) corrupt(format string, a ...any) {
	v.errs = append(v.errs, fmt.Errorf("ag %d: %w: "+format, append([]any{v.x.ag, layout.ErrCorrupt}, a...)...))
}

// read reads device block blk into v.buf.
func (v *verifier) read(what string, blk uint64) bool {
	if _, err := v.dev.ReadAt(v.buf, int64(blk)*int64(v.x.bs)); err != nil && !errors.Is(err, io.EOF) {
		v.fail("%s (device block %d): read: %w", what, blk, err)
		return false
	} else if err != nil {
		v.fail("%s (device block %d): beyond the end of the device: %w", what, blk, layout.ErrCorrupt)
		return false
	}
	return true
}

func (v *verifier) run(sb *layout.Superblock) {
	x, g := v.x, v.x.g
	if v.read("superblock copy", g.SuperBlock(x.ag)) {
		copySB, err := layout.DecodeSuperblock(v.buf, x.ag)
		switch {
		case err != nil:
			v.fail("superblock copy (device block %d): %w", g.SuperBlock(x.ag), err)
		case !copySB.SameGeometry(sb):
			v.corrupt("superblock copy (device block %d) describes another filesystem or geometry", g.SuperBlock(x.ag))
		}
	}

	hblk := g.AGHeaderBlock(x.ag)
	if !v.read("header", hblk) {
		return
	}
	h, err := layout.DecodeAGHeader(v.buf, g, x.seed, x.ag)
	if err != nil {
		// Without the marks nothing else can be read with confidence.
		v.errs = append(v.errs, fmt.Errorf("%w (device block %d)", err, hblk))
		return
	}

	bm, bok := v.bitmap("block", x.bcodec, x.newBlockBitmap(), h.BlockBitmapInit)
	im, iok := v.bitmap("inode", x.icodec, x.newInodeBitmap(), h.InodeBitmapInit)

	if bok {
		if h.BlockBitmapInit < x.initialBitmapBlocks() {
			v.corrupt("header block %d: block bitmap init mark %d leaves reserved blocks uncovered (they need %d bitmap blocks)",
				hblk, h.BlockBitmapInit, x.initialBitmapBlocks())
		}
		// Report each bitmap block with a reserved bit clear once.
		for i := uint64(0); i < x.reserved; {
			c, ok := bm.NextClear(i)
			if !ok || c >= x.reserved {
				break
			}
			blk := c / bm.BitsPerBlock()
			v.corrupt("block bitmap block %d (device block %d): reserved block %d marked free",
				blk, x.bcodec.FirstBlock+blk, x.start+c)
			i = (blk + 1) * bm.BitsPerBlock()
		}
		if want := x.length - bm.Weight(); h.FreeBlocks != want {
			v.corrupt("header block %d: %d free blocks, the block bitmap has %d", hblk, h.FreeBlocks, want)
		}
	}
	if iok {
		if h.InodeBitmapInit == 0 || !im.Test(0) {
			v.corrupt("inode bitmap block 0 (device block %d): reserved inode index 0 marked free", x.icodec.FirstBlock)
		}
		if want := uint64(g.InodesPerAG) - im.Weight(); h.FreeInodes != want {
			v.corrupt("header block %d: %d free inodes, the inode bitmap has %d", hblk, h.FreeInodes, want)
		}
		if used := im.Weight(); used > 0 && h.Dirs > used-1 {
			v.corrupt("header block %d: %d directories but only %d inodes in use", hblk, h.Dirs, used-1)
		}
		// Used inodes must live in initialised inode-table blocks.
		first := uint64(h.InodeTableInit) * uint64(g.InodesPerBlock())
		if first == 0 {
			first = 1 // index 0 is marked used but is no inode
		}
		if i, ok := im.NextSet(first); ok {
			tb, _ := g.InodeLocation(x.ag, uint32(i))
			v.corrupt("inode bitmap: inode %d (index %d) is in use but its inode-table block %d is beyond the init mark %d",
				g.Ino(x.ag, uint32(i)), i, tb, h.InodeTableInit)
		}
	}

	for i := range h.InodeTableInit {
		blk := g.InodeTableStart(x.ag) + uint64(i)
		if !v.read(fmt.Sprintf("inode table block %d", i), blk) {
			continue
		}
		if err := layout.Check(v.buf, x.seed, layout.MagicInodeTable, blk, uint64(x.ag)); err != nil {
			v.fail("inode table block %d (device block %d): %w", i, blk, err)
		}
	}
}

// bitmap verifies and loads the first init blocks of a bitmap; ok is false
// when one of them could not be loaded (the counts then mean nothing).
func (v *verifier) bitmap(kind string, c bitmap.Codec, b *bitmap.Bitmap, init uint32) (*bitmap.Bitmap, bool) {
	ok := true
	for i := range int(init) {
		blk := c.FirstBlock + uint64(i)
		if !v.read(fmt.Sprintf("%s bitmap block %d", kind, i), blk) {
			ok = false
			continue
		}
		if i >= b.Blocks() {
			// A block past the last one the AG needs (the last AG can be
			// short): it must describe nothing.
			if err := layout.Check(v.buf, c.Seed, c.Magic, blk, c.Owner); err != nil {
				v.fail("%s bitmap block %d (device block %d): %w", kind, i, blk, err)
				ok = false
			} else if !allZero(v.buf[layout.HeaderSize:]) {
				v.corrupt("%s bitmap block %d (device block %d): bits set past the end of the AG", kind, i, blk)
				ok = false
			}
			continue
		}
		if err := c.Decode(b, i, v.buf); err != nil {
			v.fail("%s %w", kind, err)
			ok = false
		}
	}
	return b, ok
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
