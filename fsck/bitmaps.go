package fsck

import (
	"bytes"
	"fmt"
	"strings"

	"agfs/bitmap"
	"agfs/layout"
)

// Bitmaps and counters (repair's phase 5), rebuilt from what is
// referenced rather than patched: the block bitmap of each AG is the
// block map the claims and the rebuilt trees left (claims.go), the inode
// bitmap is index 0 and the inodes kept, and the header's counters are
// counted from them. The high-water marks cover everything in use, and
// never move back (a block past a mark reads as free or as no inode, so a
// lower mark would lose what lies behind it). The orphan lists are empty:
// every orphan has been reclaimed (reconnect.go).

func (p *plan) writeAGs(w *writer) error {
	g, seed := p.g, p.sb.Seed()
	bpb := g.BitsPerBitmapBlock()
	inodes := make([]*bitmap.Bitmap, g.AGCount)
	dirs := make([]uint64, g.AGCount)
	for a := range g.AGCount {
		inodes[a] = bitmap.New(uint64(g.InodesPerAG), bpb)
		inodes[a].Set(0)
	}
	for ino, n := range p.nodes {
		a, idx, _ := g.SplitIno(ino)
		inodes[a].Set(uint64(idx))
		if isDir(n.d.Mode) {
			dirs[a]++
		}
	}
	for a := range g.AGCount {
		hblk := g.AGHeaderBlock(a)
		old, herr := layout.DecodeAGHeader(p.old[hblk], g, seed, a)
		if herr != nil {
			old = &layout.AGHeader{}
		}
		blocks, inos := p.space.ag[a], inodes[a]
		h := layout.AGHeader{
			AG:              a,
			Length:          g.AGLen(a),
			FreeBlocks:      blocks.Len() - blocks.Weight(),
			FreeInodes:      inos.Len() - inos.Weight(),
			Dirs:            dirs[a],
			BlockBitmapInit: max(old.BlockBitmapInit, used(blocks)),
			InodeBitmapInit: max(old.InodeBitmapInit, used(inos)),
			InodeTableInit:  max(old.InodeTableInit, p.sc.ags[a].table.init),
		}
		h.BlockBitmapInit = min(h.BlockBitmapInit, g.BlockBitmapBlocks)
		h.InodeBitmapInit = min(h.InodeBitmapInit, g.InodeBitmapBlocks)
		h.InodeTableInit = min(h.InodeTableInit, g.InodeTableBlocks)

		for _, bm := range []struct {
			kind  string
			magic uint32
			first uint64
			b     *bitmap.Bitmap
			init  uint32
		}{
			{"block", layout.MagicBlockBitmap, g.BlockBitmapStart(a), blocks, h.BlockBitmapInit},
			{"inode", layout.MagicInodeBitmap, g.InodeBitmapStart(a), inos, h.InodeBitmapInit},
		} {
			c := bitmap.Codec{Magic: bm.magic, Seed: seed, Owner: uint64(a), FirstBlock: bm.first, BlockSize: int(p.sb.BlockSize)}
			for i := range int(bm.init) {
				blk := bm.first + uint64(i)
				img := make([]byte, p.sb.BlockSize)
				if i < bm.b.Blocks() {
					c.Encode(bm.b, i, img)
				} else {
					// Past what the AG needs (a short last AG): nothing.
					layout.PutHeader(img, bm.magic, blk, uint64(a))
				}
				if p.same(blk, img, bm.magic, uint64(a)) {
					continue
				}
				p.fixAG(int(a), true, "%s bitmap block %d (device block %d): rewritten from the %ss in use", bm.kind, i, blk, bm.kind)
				if err := w.put(blk, img); err != nil {
					return err
				}
			}
		}

		img := make([]byte, p.sb.BlockSize)
		h.Encode(img, g)
		if p.same(hblk, img, layout.MagicAGHeader, uint64(a)) {
			continue
		}
		what := "did not verify: rewritten"
		if herr == nil {
			what = headerChanges(old, &h)
		}
		p.fixAG(int(a), true, "header (device block %d): %s", hblk, what)
		if err := w.put(hblk, img); err != nil {
			return err
		}
	}
	return nil
}

// used is the number of bitmap blocks up to the last one with a bit set.
func used(b *bitmap.Bitmap) uint32 {
	for k := b.Blocks() - 1; k >= 0; k-- {
		if _, n := b.BlockRange(k); b.BlockFree(k) < n {
			return uint32(k) + 1
		}
	}
	return 0
}

// same reports whether block blk as found verifies and holds img's
// payload already.
func (p *plan) same(blk uint64, img []byte, magic uint32, owner uint64) bool {
	old := p.old[blk]
	return old != nil && layout.Check(old, p.sb.Seed(), magic, blk, owner) == nil &&
		bytes.Equal(old[layout.HeaderSize:], img[layout.HeaderSize:])
}

// headerChanges describes what differs between two AG headers.
func headerChanges(old, h *layout.AGHeader) string {
	var out []string
	for _, f := range []struct {
		name     string
		was, now uint64
	}{
		{"free blocks", old.FreeBlocks, h.FreeBlocks},
		{"free inodes", old.FreeInodes, h.FreeInodes},
		{"directories", old.Dirs, h.Dirs},
		{"block bitmap init", uint64(old.BlockBitmapInit), uint64(h.BlockBitmapInit)},
		{"inode bitmap init", uint64(old.InodeBitmapInit), uint64(h.InodeBitmapInit)},
		{"inode table init", uint64(old.InodeTableInit), uint64(h.InodeTableInit)},
		{"orphan list head", old.OrphanHead, h.OrphanHead},
		{"length", old.Length, h.Length},
	} {
		if f.was != f.now {
			out = append(out, fmt.Sprintf("%s %d → %d", f.name, f.was, f.now))
		}
	}
	if len(out) == 0 {
		return "rewritten"
	}
	return strings.Join(out, ", ")
}
