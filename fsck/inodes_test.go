package fsck

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"agfs/disk"
	"agfs/fs"
	"agfs/layout"
	"agfs/mkfs"
	"agfs/wal"
)

// populated is an image made by package fs with one of everything.
type populated struct {
	dev *disk.Mem
	sb  *layout.Superblock
	// inodes of interest
	file, big, frag, dirA, dirC, bigDir, fifo, longLink uint64
	bigLinks                                            int
}

var me = fs.Caller{UID: 1000, GID: 1000}

// populate formats a 64 MiB image and fills it through package fs: nested
// directories, files with data, a FIFO and a device, short and long
// symlinks, hard links, inline attributes and an attribute tree, a file
// whose holes make its map an extent tree of two levels, renames, and a
// directory of bigLinks hard links with long names, whose index is three
// levels deep. With crash, the FS is left open (after a Sync, with a file
// and a directory removed while open: orphans) and the image is what was
// written.
func populate(t testing.TB, crash bool) *populated {
	t.Helper()
	p := &populated{bigLinks: 4000}
	p.dev, p.sb = newImage(t, 64<<20, mkfs.Options{})
	f, err := fs.Open(p.dev, fs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	must := func(a fs.Attr, err error) uint64 {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return a.Ino
	}
	check := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	write := func(ino uint64, b []byte, off int64) {
		t.Helper()
		if n, err := f.Write(ino, b, off); err != nil || n != len(b) {
			t.Fatalf("write: %d, %v", n, err)
		}
	}
	const root = layout.RootIno
	p.dirA = must(f.Mkdir(root, "a", 0755, me))
	dirB := must(f.Mkdir(p.dirA, "b", 0755, me))
	p.dirC = must(f.Mkdir(dirB, "c", 0700, me))
	p.file = must(f.Mknod(p.dirA, "file", syscall.S_IFREG|0644, 0, me))
	write(p.file, bytes.Repeat([]byte("agfs"), 5000), 0)
	check(f.SetXattr(p.file, "user.small", []byte("v"), 0))
	must(f.Link(p.file, p.dirC, "file-link"))
	must(f.Link(p.file, root, "file-link2"))
	p.big = must(f.Mknod(dirB, "big-xattrs", syscall.S_IFREG|0600, 0, me))
	write(p.big, []byte("x"), 1<<20) // a hole, then one block
	check(f.SetXattr(p.big, "user.big", bytes.Repeat([]byte{7}, 6000), 0))
	check(f.SetXattr(p.big, "trusted.t", []byte("t"), 0))
	check(f.SetXattr(p.dirA, "user.dir", []byte("on a directory"), 0))
	p.fifo = must(f.Mknod(p.dirC, "fifo", syscall.S_IFIFO|0644, 0, me))
	must(f.Mknod(p.dirC, "tty", syscall.S_IFCHR|0600, 5<<8|1, me))
	must(f.Symlink(p.dirA, "short", "file", me))
	// Renames: a directory moved (its parent pointer changes), a file
	// renamed over another (which is freed).
	must(f.Mkdir(root, "moved", 0755, me))
	check(f.Rename(root, "moved", dirB, "moved-here", 0))
	must(f.Mknod(root, "old", syscall.S_IFREG|0644, 0, me))
	must(f.Mknod(root, "new", syscall.S_IFREG|0644, 0, me))
	check(f.Rename(root, "old", root, "new", 0))
	p.longLink = must(f.Symlink(dirB, "long", strings.Repeat("long/", 100), me))
	// Every other block written: no two extents merge, and 300 of them
	// need an extent tree of more than one leaf.
	p.frag = must(f.Mknod(root, "fragmented", syscall.S_IFREG|0644, 0, me))
	blk := bytes.Repeat([]byte{0xa5}, int(p.sb.BlockSize))
	for i := range 300 {
		write(p.frag, blk, int64(2*i)*int64(p.sb.BlockSize))
	}
	// Hard links with long names: many index leaves, cheaply.
	p.bigDir = must(f.Mkdir(root, "big", 0755, me))
	target := must(f.Mknod(p.bigDir, "target", syscall.S_IFREG|0644, 0, me))
	long := strings.Repeat("n", 240)
	for i := range p.bigLinks {
		must(f.Link(target, p.bigDir, fmt.Sprintf("%s-%05d", long, i)))
	}
	if crash {
		orphan := must(f.Mknod(p.dirA, "orphan", syscall.S_IFREG|0644, 0, me))
		write(orphan, []byte("still open"), 0)
		check(f.OpenFile(orphan))
		check(f.Unlink(p.dirA, "orphan"))
		gone := must(f.Mkdir(p.dirA, "gone", 0755, me))
		check(f.OpenFile(gone))
		check(f.Rmdir(p.dirA, "gone"))
		check(f.Sync())
		p.dev = disk.NewMemFrom(bytes.Clone(p.dev.Bytes())) // the FS is abandoned
		return p
	}
	check(f.Close())
	return p
}

func mustCheck(t testing.TB, dev disk.Device) *Report {
	t.Helper()
	rep, err := Check(dev)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func TestPopulatedImageIsClean(t *testing.T) {
	for _, crash := range []bool{false, true} {
		t.Run(map[bool]string{false: "closed", true: "crashed"}[crash], func(t *testing.T) {
			p := populate(t, crash)
			start := time.Now()
			rep := mustCheck(t, p.dev)
			t.Logf("checked in %v: %+v", time.Since(start), rep.Inodes)
			if !rep.Clean() {
				t.Fatalf("populated image: %v", rep.Problems)
			}
			st := rep.Inodes
			wantOrphans := map[bool]uint64{false: 0, true: 2}[crash]
			orphanDir := wantOrphans / 2
			switch {
			case st.Dirs != 7+orphanDir || st.Symlinks != 2 || st.Special != 2 || st.Files != 5+wantOrphans-orphanDir:
				t.Errorf("counts %+v", st)
			case st.Orphans != wantOrphans:
				t.Errorf("%d orphans, want %d", st.Orphans, wantOrphans)
			case st.ExtentTrees != 1 || st.MaxExtentTree < 2:
				t.Errorf("%d extent trees, deepest %d levels: want one of at least 2", st.ExtentTrees, st.MaxExtentTree)
			case st.XattrTrees != 1:
				t.Errorf("%d xattr trees, want 1", st.XattrTrees)
			case st.MaxIndexDepth < 3:
				t.Errorf("deepest directory index has %d levels, want at least 3", st.MaxIndexDepth)
			}
			if crash && rep.Log.Replayed == 0 {
				t.Error("the crashed image replayed nothing")
			}
			if want := uint64(p.sb.AGCount)*uint64(p.sb.InodesPerAG-1) - st.Used; rep.FreeInodes != want {
				t.Errorf("free inodes %d, want %d", rep.FreeInodes, want)
			}
		})
	}
}

// image helpers: raw access to a populated image's blocks.

func (p *populated) block(img []byte, blk uint64) []byte {
	bs := uint64(p.sb.BlockSize)
	return img[blk*bs : (blk+1)*bs]
}

// reseal recomputes a changed block's checksum, so only the deeper checks
// can see the change.
func (p *populated) reseal(b []byte) {
	layout.Seal(b, p.sb.Seed(), layout.ReadHeader(b).LSN)
}

// slot returns ino's inode-table block and slot bytes in img.
func (p *populated) slot(img []byte, ino uint64) (uint64, []byte) {
	a, idx, _ := p.sb.SplitIno(ino)
	blk, off := p.sb.InodeLocation(a, idx)
	return blk, p.block(img, blk)[off : off+layout.InodeSize]
}

func (p *populated) inode(img []byte, ino uint64) layout.Inode {
	var d layout.Inode
	_, s := p.slot(img, ino)
	if err := d.Decode(s); err != nil {
		panic(err)
	}
	return d
}

// nodes lists the blocks of img holding a tree node with magic owned by
// ino, and the level of each.
func (p *populated) nodes(img []byte, magic uint32, ino uint64) (blks []uint64, levels []int) {
	for blk := range p.sb.BlockCount {
		b := p.block(img, blk)
		if h := layout.ReadHeader(b); h.Magic == magic && h.Owner == ino && h.Blkno == blk {
			blks = append(blks, blk)
			levels = append(levels, int(binary.LittleEndian.Uint16(b[64:])))
		}
	}
	return blks, levels
}

// leaf returns a leaf of ino's tree that is not its root.
func (p *populated) leaf(t *testing.T, img []byte, magic uint32, ino, root uint64) uint64 {
	t.Helper()
	blks, levels := p.nodes(img, magic, ino)
	for i, blk := range blks {
		if levels[i] == 0 && blk != root {
			return blk
		}
	}
	t.Fatalf("inode %d has no %s leaf but its root (nodes %v)", ino, layout.MagicName(magic), blks)
	return 0
}

// expectNamed checks img and expects a problem containing every one of
// words, and no problem when the image is left undamaged.
func expectNamed(t *testing.T, img []byte, words ...string) {
	t.Helper()
	rep := mustCheck(t, disk.NewMemFrom(img))
	for _, p := range rep.Problems {
		s := p.String()
		all := true
		for _, w := range words {
			if !strings.Contains(s, w) {
				all = false
				break
			}
		}
		if all {
			t.Logf("%s", s)
			expectRepaired(t, img)
			return
		}
	}
	t.Errorf("no problem names all of %q: %v", words, rep.Problems)
}

func TestDamageIsNamed(t *testing.T) {
	p := populate(t, false)
	clean := p.dev.Bytes()
	if rep := mustCheck(t, p.dev); !rep.Clean() {
		t.Fatalf("populated image: %v", rep.Problems)
	}
	inoName := func(ino uint64) string { return fmt.Sprintf("inode %d", ino) }
	blkName := func(blk uint64) string { return fmt.Sprintf("block %d", blk) }
	flip := func(img []byte, blk uint64) {
		p.block(img, blk)[int(p.sb.BlockSize)-7] ^= 0x10
	}

	t.Run("extent tree node", func(t *testing.T) {
		img := bytes.Clone(clean)
		d := p.inode(img, p.frag)
		if d.DataFormat != layout.DataBTree {
			t.Fatalf("fragmented file has data format %d", d.DataFormat)
		}
		leaf := p.leaf(t, img, layout.MagicExtentNode, p.frag, d.TreeRoot())
		flip(img, leaf)
		expectNamed(t, img, inoName(p.frag), blkName(leaf), "extent tree")
	})
	t.Run("extent tree entry", func(t *testing.T) {
		// A valid node whose first extent has length 0.
		img := bytes.Clone(clean)
		d := p.inode(img, p.frag)
		leaf := p.leaf(t, img, layout.MagicExtentNode, p.frag, d.TreeRoot())
		b := p.block(img, leaf)
		o := int(binary.LittleEndian.Uint16(b[96:])) // slot 0
		binary.LittleEndian.PutUint32(b[o+4+8+8:], 0)
		p.reseal(b)
		expectNamed(t, img, inoName(p.frag), blkName(leaf), "length zero")
	})
	t.Run("directory index node", func(t *testing.T) {
		img := bytes.Clone(clean)
		d := p.inode(img, p.bigDir)
		leaf := p.leaf(t, img, layout.MagicDirNode, p.bigDir, d.TreeRoot())
		flip(img, leaf)
		expectNamed(t, img, inoName(p.bigDir), blkName(leaf), "directory index")
	})
	t.Run("directory index structure", func(t *testing.T) {
		// A resealed leaf whose first key no longer sorts first.
		img := bytes.Clone(clean)
		d := p.inode(img, p.bigDir)
		leaf := p.leaf(t, img, layout.MagicDirNode, p.bigDir, d.TreeRoot())
		b := p.block(img, leaf)
		o := int(binary.LittleEndian.Uint16(b[96:]))
		b[o+4] ^= 0x7f // the position's top byte
		p.reseal(b)
		expectNamed(t, img, inoName(p.bigDir), blkName(leaf))
	})
	t.Run("xattr tree node", func(t *testing.T) {
		img := bytes.Clone(clean)
		d := p.inode(img, p.big)
		if d.XattrBlock == 0 {
			t.Fatal("no xattr tree")
		}
		flip(img, d.XattrBlock)
		expectNamed(t, img, inoName(p.big), blkName(d.XattrBlock), "xattr tree")
	})
	t.Run("inline xattrs", func(t *testing.T) {
		img := bytes.Clone(clean)
		tblk, s := p.slot(img, p.file)
		d := p.inode(img, p.file)
		if d.ForkOffset == 0 {
			t.Fatal("no inline xattrs")
		}
		s[96+int(d.ForkOffset)] = 9 // namespace 9
		p.reseal(p.block(img, tblk))
		expectNamed(t, img, inoName(p.file), blkName(tblk), "inline attributes")
	})

	// Inode slots, changed and resealed.
	slotCases := []struct {
		name   string
		ino    uint64
		change func(d *layout.Inode)
		want   string
	}{
		{"file type", p.file, func(d *layout.Inode) { d.Mode = 0o170644 }, "no valid file type"},
		{"file nlink +1", p.file, func(d *layout.Inode) { d.Nlink++ }, "nlink 4, but 3 directory entries"},
		{"file nlink -1", p.file, func(d *layout.Inode) { d.Nlink-- }, "nlink 2, but 3 directory entries"},
		{"dir nlink -1", p.dirA, func(d *layout.Inode) { d.Nlink-- }, "directory nlink 2, but 2 + 1 subdirectories"},
		{"nlink 0", p.fifo, func(d *layout.Inode) { d.Nlink = 0 }, "not on the orphan list"},
		{"dir parent", p.dirC, func(d *layout.Inode) { binary.LittleEndian.PutUint64(d.Fork[8:], p.dirA) }, "parent pointer"},
		{"dir format", p.dirA, func(d *layout.Inode) { d.DataFormat = layout.DataExtents }, "directory with data format 0"},
		{"symlink size", p.longLink, func(d *layout.Inode) { d.Size = 5000 }, "symlink of 5000 bytes"},
		{"fifo size", p.fifo, func(d *layout.Inode) { d.Size = 1 }, "FIFO of size 1"},
		{"fork count past fork offset", p.file, func(d *layout.Inode) { d.ForkCount = 2 }, "runs past the fork offset"},
		{"inline extent", p.file, func(d *layout.Inode) { binary.LittleEndian.PutUint32(d.Fork[16:], 0) }, "length zero"},
		{"blocks", p.big, func(d *layout.Inode) { d.Blocks++ }, "blocks"},
		{"free slot", p.fifo, func(d *layout.Inode) { *d = layout.Inode{Generation: d.Generation} }, "its slot is free"},
	}
	for _, tc := range slotCases {
		t.Run(tc.name, func(t *testing.T) {
			img := bytes.Clone(clean)
			tblk, s := p.slot(img, tc.ino)
			d := p.inode(img, tc.ino)
			tc.change(&d)
			d.Encode(s)
			p.reseal(p.block(img, tblk))
			expectNamed(t, img, inoName(tc.ino), blkName(tblk), tc.want)
		})
	}

	t.Run("inode bitmap bit", func(t *testing.T) {
		img := bytes.Clone(clean)
		a, idx, _ := p.sb.SplitIno(p.fifo)
		b := p.block(img, p.sb.InodeBitmapStart(a))
		b[layout.HeaderSize+int(idx/8)] &^= 1 << (idx % 8)
		p.reseal(b)
		tblk, _ := p.slot(img, p.fifo)
		expectNamed(t, img, inoName(p.fifo), blkName(tblk), "free in the inode bitmap")
	})
	t.Run("unreachable directory", func(t *testing.T) {
		// a's entry "b" made to name c: b is unreachable, c named twice.
		img := bytes.Clone(clean)
		blks, _ := p.nodes(img, layout.MagicDirNode, p.dirA)
		if len(blks) != 1 {
			t.Fatalf("dir a has %d index nodes", len(blks))
		}
		// Rewrite the entry naming b in a's (single-leaf) index to name c.
		b := p.block(img, blks[0])
		dirB := uint64(0)
		leafEntries(b, func(_ int, k, v []byte) bool {
			if string(k[8:]) == "b" {
				dirB = binary.LittleEndian.Uint64(v)
				binary.LittleEndian.PutUint64(v, p.dirC)
			}
			return true
		})
		if dirB == 0 {
			t.Fatal("no entry b")
		}
		p.reseal(b)
		expectNamed(t, img, inoName(dirB), "not named by any directory")
		expectNamed(t, img, inoName(p.dirC), "named by 2 directories")
	})
}

// TestFlippedBitInTreesIsNamed flips a bit in every metadata block of a
// populated image (every tree node included, interior ones too) and
// expects a problem naming the block.
func TestFlippedBitInTreesIsNamed(t *testing.T) {
	p := populate(t, false)
	clean := p.dev.Bytes()
	bs := int(p.sb.BlockSize)
	var blks []uint64
	kinds := map[string]int{}
	for blk := range p.sb.BlockCount {
		h := layout.ReadHeader(p.block(clean, blk))
		if h.Blkno != blk || layout.MagicName(h.Magic)[0] != '"' {
			continue
		}
		if blk >= p.sb.LogStart+2 && blk < p.sb.LogStart+p.sb.LogBlocks {
			continue // the log ring: sectors, no block headers
		}
		blks = append(blks, blk)
		kinds[layout.MagicName(h.Magic)]++
	}
	if raceEnabled {
		sample := blks[:0:0]
		for i := 0; i < len(blks); i += 7 {
			sample = append(sample, blks[i])
		}
		blks = sample
	}
	img := bytes.Clone(clean)
	for i, blk := range blks {
		bit := (i * 7919) % (bs * 8)
		img[int(blk)*bs+bit/8] ^= 1 << (bit % 8)
		rep := mustCheck(t, disk.NewMemFrom(img))
		img[int(blk)*bs+bit/8] ^= 1 << (bit % 8)
		name := regexp.MustCompile(fmt.Sprintf(`\bblock %d\b`, blk))
		found := false
		for _, pr := range rep.Problems {
			found = found || name.MatchString(pr.String())
		}
		// One bad block, one problem, or a few (the AG phase and the
		// inode phase may both see an inode-table block); never a
		// cascade through what could not be read.
		if len(rep.Problems) > 2 {
			t.Errorf("bit %d of block %d flipped: %d problems: %v", bit, blk, len(rep.Problems), rep.Problems)
		}
		if !found {
			t.Errorf("bit %d of block %d (%s) flipped: problems %v do not name it", bit, blk, layout.MagicName(layout.ReadHeader(p.block(clean, blk)).Magic), rep.Problems)
		}
	}
	t.Logf("%d metadata blocks (%v) corrupted one at a time, each named", len(blks), kinds)
}

// TestLostLogStillChecksInodes: with both log superblocks gone the log
// cannot be replayed; the home blocks are still checked as they are.
func TestLostLogStillChecksInodes(t *testing.T) {
	p := populate(t, false)
	img := bytes.Clone(p.dev.Bytes())
	clear(p.block(img, p.sb.LogStart))
	clear(p.block(img, p.sb.LogStart+1))
	rep := mustCheck(t, disk.NewMemFrom(img))
	if rep.Inodes.Used != 16 {
		t.Errorf("inode phase saw %+v", rep.Inodes)
	}
	for _, pr := range rep.Problems {
		if strings.Contains(pr.String(), "inode") {
			t.Errorf("inode problem on an image whose log alone is lost: %v", pr)
		}
	}
	if rep.Clean() {
		t.Error("lost log superblocks not reported")
	}
	t.Log(rep.Problems)
}

// TestOrphanListDamage damages the orphan lists of a crashed image.
func TestOrphanListDamage(t *testing.T) {
	p := populate(t, true)
	// Replay the log for real, so the lists are in their home blocks.
	region := wal.Region{BlockSize: int(p.sb.BlockSize), Start: p.sb.LogStart, Blocks: p.sb.LogBlocks}
	if _, err := wal.Recover(p.dev, region, p.sb.Seed()); err != nil {
		t.Fatal(err)
	}
	clean := p.dev.Bytes()
	if rep := mustCheck(t, p.dev); !rep.Clean() || rep.Inodes.Orphans != 2 {
		t.Fatalf("recovered image: %v, %+v", rep.Problems, rep.Inodes)
	}
	var orphans []uint64 // heads of the lists
	var heads []uint64   // their AG header blocks
	for a := range p.sb.AGCount {
		hblk := p.sb.AGHeaderBlock(a)
		if h := binary.LittleEndian.Uint64(p.block(clean, hblk)[layout.OffAGOrphanHead:]); h != 0 {
			orphans, heads = append(orphans, h), append(heads, hblk)
		}
	}
	if len(orphans) == 0 {
		t.Fatal("no orphan list")
	}
	setSlot := func(img []byte, ino uint64, change func(d *layout.Inode)) uint64 {
		tblk, s := p.slot(img, ino)
		d := p.inode(img, ino)
		change(&d)
		d.Encode(s)
		p.reseal(p.block(img, tblk))
		return tblk
	}
	setHead := func(img []byte, i int, ino uint64) {
		b := p.block(img, heads[i])
		binary.LittleEndian.PutUint64(b[layout.OffAGOrphanHead:], ino)
		p.reseal(b)
	}

	t.Run("orphan with links", func(t *testing.T) {
		img := bytes.Clone(clean)
		tblk := setSlot(img, orphans[0], func(d *layout.Inode) { d.Nlink = 1 })
		expectNamed(t, img, fmt.Sprintf("inode %d", orphans[0]), fmt.Sprintf("block %d", tblk), "on the orphan list, but nlink 1")
	})
	t.Run("loop", func(t *testing.T) {
		img := bytes.Clone(clean)
		tblk := setSlot(img, orphans[0], func(d *layout.Inode) { d.NextOrphan = orphans[0] })
		expectNamed(t, img, fmt.Sprintf("orphan inode %d", orphans[0]), fmt.Sprintf("block %d", tblk), "loops")
	})
	t.Run("free inode", func(t *testing.T) {
		img := bytes.Clone(clean)
		a, _, _ := p.sb.SplitIno(orphans[0])
		setHead(img, 0, p.sb.Ino(a, p.sb.InodesPerAG-1))
		expectNamed(t, img, fmt.Sprintf("header block %d", heads[0]), "free inode")
	})
	t.Run("linked inode", func(t *testing.T) {
		// A file with names put on the list: both its links and the
		// entries naming it are wrong.
		img := bytes.Clone(clean)
		a, _, _ := p.sb.SplitIno(p.file)
		hblk := p.sb.AGHeaderBlock(a)
		b := p.block(img, hblk)
		binary.LittleEndian.PutUint64(b[layout.OffAGOrphanHead:], p.file)
		p.reseal(b)
		expectNamed(t, img, fmt.Sprintf("inode %d", p.file), "on the orphan list, but nlink 3")
		expectNamed(t, img, fmt.Sprintf("names inode %d, which is on the orphan list", p.file))
	})
	t.Run("no longer on the list", func(t *testing.T) {
		img := bytes.Clone(clean)
		setHead(img, 0, 0)
		tblk, _ := p.slot(img, orphans[0])
		expectNamed(t, img, fmt.Sprintf("inode %d", orphans[0]), fmt.Sprintf("block %d", tblk), "nlink 0, but not on the orphan list")
	})
}
