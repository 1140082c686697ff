package fsck

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"strings"
	"syscall"
	"testing"

	"agfs/ag"
	"agfs/disk"
	"agfs/fs"
	"agfs/layout"
	"agfs/mkfs"
	"agfs/wal"
)

// newImage formats an in-memory device of size bytes.
func newImage(t testing.TB, size int64, o mkfs.Options) (*disk.Mem, *layout.Superblock) {
	t.Helper()
	dev := disk.NewMem(size)
	sb, err := mkfs.Plan(size, o)
	if err != nil {
		t.Fatal(err)
	}
	if err := mkfs.Format(dev, sb); err != nil {
		t.Fatal(err)
	}
	return dev, sb
}

func TestFreshImageIsClean(t *testing.T) {
	for _, tc := range []struct {
		size int64
		o    mkfs.Options
	}{
		{64 << 20, mkfs.Options{}},
		{256 << 20, mkfs.Options{Params: layout.Params{BlockSize: 16384}}},
		{300 << 20, mkfs.Options{Params: layout.Params{AGCount: 7, BlockSize: 8192}}},
	} {
		dev, sb := newImage(t, tc.size, tc.o)
		rep, err := Check(dev)
		if err != nil {
			t.Fatal(err)
		}
		if !rep.Clean() {
			t.Fatalf("fresh %s image: %v", layout.Bytes(tc.size), rep.Problems)
		}
		if rep.FreeBlocks == 0 || rep.FreeBlocks >= sb.BlockCount {
			t.Fatalf("free blocks %d of %d", rep.FreeBlocks, sb.BlockCount)
		}
		// mkfs made the root directory and lost+found (FORMAT.md §12.7),
		// and nothing else.
		if st := rep.Inodes; st.Used != 2 || st.Dirs != 2 || st.Entries != 1 || st.Orphans != 0 {
			t.Fatalf("fresh image holds %+v, want the root and lost+found", st)
		}
		f, err := fs.Open(dev, fs.Options{ReadOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		lf, err := f.Lookup(layout.RootIno, fs.LostFound)
		f.Close()
		if err != nil || lf.Mode != syscall.S_IFDIR|0700 || lf.Nlink != 2 {
			t.Fatalf("lost+found: %+v, %v", lf, err)
		}
		want := uint64(sb.AGCount)*uint64(sb.InodesPerAG-1) - rep.Inodes.Used
		if rep.FreeInodes != want {
			t.Fatalf("free inodes %d, want %d", rep.FreeInodes, want)
		}
	}
}

// TestFlippedBitIsNamed flips one random bit in every block mkfs wrote
// (superblocks, AG headers, bitmaps, inode tables, log superblocks, and
// the index blocks of the root and lost+found) and expects Check to report
// a problem naming that block.
func TestFlippedBitIsNamed(t *testing.T) {
	dev, sb := newImage(t, 64<<20, mkfs.Options{})
	img := dev.Bytes()
	bs := int(sb.BlockSize)
	rng := rand.New(rand.NewPCG(1, 2))
	checked := 0
	for blk := 0; blk < len(img)/bs; blk++ {
		block := img[blk*bs : (blk+1)*bs]
		if bytes.Count(block, []byte{0}) == bs {
			continue // never written: not metadata in use
		}
		bit := rng.IntN(bs * 8)
		bad := bytes.Clone(img)
		bad[blk*bs+bit/8] ^= 1 << (bit % 8)
		rep, err := Check(disk.NewMemFrom(bad))
		if err != nil {
			t.Fatalf("block %d bit %d: %v", blk, bit, err)
		}
		name := fmt.Sprintf("block %d", blk)
		found := false
		for _, p := range rep.Problems {
			if strings.Contains(p.String(), name) {
				found = true
			}
		}
		if !found {
			t.Errorf("bit %d of block %d flipped: problems %v do not name %q", bit, blk, rep.Problems, name)
		}
		checked++
	}
	if checked < int(sb.AGCount)*4 {
		t.Fatalf("only %d metadata blocks found", checked)
	}
	t.Logf("%d metadata blocks corrupted one at a time, each named", checked)
}

func TestNotAgfs(t *testing.T) {
	dev := disk.NewMem(64 << 20)
	sb := make([]byte, 4096)
	sb[1024+56], sb[1024+57] = 0x53, 0xEF
	dev.WriteAt(sb, 0)
	if _, err := Check(dev); err == nil || !strings.Contains(err.Error(), "ext2") {
		t.Fatalf("ext2 device: %v", err)
	}
}

func TestPrimarySuperblockLost(t *testing.T) {
	dev, sb := newImage(t, 64<<20, mkfs.Options{})
	dev.WriteAt(make([]byte, sb.BlockSize), 0)
	rep, err := Check(dev)
	if err != nil {
		t.Fatal(err)
	}
	if rep.SuperFrom == 0 || !rep.Super.SameGeometry(sb) {
		t.Fatalf("superblock from AG %d, geometry %+v", rep.SuperFrom, rep.Super.Geometry)
	}
	if rep.Clean() {
		t.Fatal("a lost primary superblock was not reported")
	}
}

// TestDirtyLogIsReplayedInMemory crashes a mounted-like session (the log is
// never closed) and expects Check to see the committed allocations while
// leaving the device untouched.
func TestDirtyLogIsReplayedInMemory(t *testing.T) {
	dev, sb := newImage(t, 64<<20, mkfs.Options{})
	region := wal.Region{BlockSize: int(sb.BlockSize), Start: sb.LogStart, Blocks: sb.LogBlocks}
	log, _, err := wal.Open(dev, region, sb.Seed(), wal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	groups, err := ag.OpenGroups(log, sb)
	if err != nil {
		t.Fatal(err)
	}
	const n = 50
	for i := range n {
		tx := log.Begin()
		if _, err := groups.AllocBlocks(tx, 3, sb.AGStart(uint32(i)%sb.AGCount), ag.Near); err != nil {
			t.Fatal(err)
		}
		lsn, err := tx.Commit()
		if err != nil {
			t.Fatal(err)
		}
		if err := log.Wait(lsn); err != nil {
			t.Fatal(err)
		}
	}
	crashed := bytes.Clone(dev.Bytes()) // the log is never closed: a crash
	rep, err := Check(disk.NewMemFrom(bytes.Clone(crashed)))
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Clean() {
		t.Fatalf("crashed image: %v", rep.Problems)
	}
	if rep.Log == nil || rep.Log.Replayed == 0 {
		t.Fatalf("no transaction replayed: %+v", rep.Log)
	}
	clean, _ := newImage(t, 64<<20, mkfs.Options{})
	cleanRep, err := Check(clean)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := rep.FreeBlocks, cleanRep.FreeBlocks-3*n; got != want {
		t.Fatalf("free blocks after replay %d, want %d", got, want)
	}
	dev2 := disk.NewMemFrom(bytes.Clone(crashed))
	if _, err := Check(dev2); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(dev2.Bytes(), crashed) {
		t.Fatal("Check wrote to the device")
	}
}
