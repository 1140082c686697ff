package fsck

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strings"
	"syscall"
	"testing"

	"agfs/disk"
	"agfs/fs"
	"agfs/layout"
)

// expectRepaired repairs a copy of img with -y and expects the repair to
// say it corrected something, a second check to be clean, and the
// filesystem to open.
func expectRepaired(t *testing.T, img []byte) *Result {
	t.Helper()
	dev := disk.NewMemFrom(bytes.Clone(img))
	res, err := Repair(dev, Options{Mode: Yes})
	if err != nil {
		t.Fatalf("repair: %v", err)
	}
	for _, f := range res.Fixes {
		t.Logf("fixed: %s", f)
	}
	if code := res.Code(); code != ExitCorrected {
		t.Fatalf("repair: exit %d after %d passes, left %v", code, res.Passes, res.Remaining())
	}
	if rep := mustCheck(t, dev); !rep.Clean() {
		t.Fatalf("second check after repair: %v", rep.Problems)
	}
	f, err := fs.Open(dev, fs.Options{})
	if err != nil {
		t.Fatalf("open after repair: %v", err)
	}
	if err := f.Close(); err != nil {
		t.Fatalf("close after repair: %v", err)
	}
	return res
}

func repairOf(t *testing.T, dev disk.Device, mode Mode) *Result {
	t.Helper()
	res, err := Repair(dev, Options{Mode: mode})
	if err != nil {
		t.Fatalf("repair: %v", err)
	}
	return res
}

func TestRepairLeavesCleanImageAlone(t *testing.T) {
	p := populate(t, false)
	before := bytes.Clone(p.dev.Bytes())
	for _, mode := range []Mode{NoChange, Preen, Yes} {
		if res := repairOf(t, p.dev, mode); res.Code() != ExitClean || len(res.Fixes) != 0 {
			t.Fatalf("mode %d on a clean image: exit %d, fixes %v", mode, res.Code(), res.Fixes)
		}
	}
	if !bytes.Equal(before, p.dev.Bytes()) {
		t.Fatal("repair of a clean image wrote to it")
	}
}

// TestRepairCrashedImage: a dirty log and orphans are what a crash
// leaves, not damage: -n and -y exit 0, and -y writes the log home.
func TestRepairCrashedImage(t *testing.T) {
	p := populate(t, true)
	crashed := bytes.Clone(p.dev.Bytes())
	if res := repairOf(t, p.dev, NoChange); res.Code() != ExitClean || !bytes.Equal(crashed, p.dev.Bytes()) {
		t.Fatalf("-n on a crashed image: exit %d, or it wrote", res.Code())
	}
	res := repairOf(t, p.dev, Yes)
	if res.Code() != ExitClean || res.LogReplayed == 0 {
		t.Fatalf("-y on a crashed image: exit %d, %d transactions replayed", res.Code(), res.LogReplayed)
	}
	if rep := mustCheck(t, p.dev); !rep.Clean() || rep.Log.Replayed != 0 {
		t.Fatalf("after -y: %v, log %+v", rep.Problems, rep.Log)
	}
}

func TestNoChangeNeverWrites(t *testing.T) {
	p := populate(t, false)
	img := bytes.Clone(p.dev.Bytes())
	clear(p.block(img, p.sb.InodeTableStart(0)))
	dev := disk.NewMemFrom(bytes.Clone(img))
	if res := repairOf(t, dev, NoChange); res.Code() != ExitUncorrected || len(res.Fixes) != 0 || res.After != nil {
		t.Fatalf("-n on damage: exit %d, fixes %v", res.Code(), res.Fixes)
	}
	if !bytes.Equal(img, dev.Bytes()) {
		t.Fatal("-n wrote to the device")
	}
}

// TestPreen: -p makes the repairs that lose nothing, and refuses (writing
// nothing) when any other is needed.
func TestPreen(t *testing.T) {
	p := populate(t, false)
	clean := p.dev.Bytes()
	setNlink := func(img []byte, ino uint64, n uint32) {
		tblk, s := p.slot(img, ino)
		d := p.inode(img, ino)
		d.Nlink = n
		d.Encode(s)
		p.reseal(p.block(img, tblk))
	}

	t.Run("safe", func(t *testing.T) {
		img := bytes.Clone(clean)
		setNlink(img, p.file, 7)
		hblk := p.sb.AGHeaderBlock(1)
		b := p.block(img, hblk)
		binary.LittleEndian.PutUint64(b[layout.OffAGFreeBlocks:], 12)
		p.reseal(b)
		dev := disk.NewMemFrom(img)
		res := repairOf(t, dev, Preen)
		if res.Code() != ExitCorrected {
			t.Fatalf("-p: exit %d, fixes %v, left %v", res.Code(), res.Fixes, res.Remaining())
		}
		for _, f := range res.Fixes {
			if !f.Safe {
				t.Errorf("-p made an unsafe fix: %s", f)
			}
		}
		if rep := mustCheck(t, dev); !rep.Clean() {
			t.Fatalf("after -p: %v", rep.Problems)
		}
	})
	t.Run("unsafe", func(t *testing.T) {
		img := bytes.Clone(clean)
		setNlink(img, p.file, 7)
		// A directory whose slot cannot be used: clearing it loses names.
		tblk, s := p.slot(img, p.dirC)
		s[94] = 0 // data format 0: a directory needs 2
		p.reseal(p.block(img, tblk))
		dev := disk.NewMemFrom(bytes.Clone(img))
		res := repairOf(t, dev, Preen)
		if res.Code() != ExitUncorrected || !res.Refused || len(res.Fixes) == 0 {
			t.Fatalf("-p on unsafe damage: exit %d, refused %v, fixes %v", res.Code(), res.Refused, res.Fixes)
		}
		if !bytes.Equal(img, dev.Bytes()) {
			t.Fatal("-p refused, but wrote")
		}
		expectRepaired(t, img)
	})
}

func TestRepairPrimarySuperblock(t *testing.T) {
	p := populate(t, false)
	img := bytes.Clone(p.dev.Bytes())
	for i := range p.block(img, 0) {
		p.block(img, 0)[i] = byte(i * 7)
	}
	expectRepaired(t, img)
	dev := disk.NewMemFrom(img)
	repairOf(t, dev, Yes)
	if rep := mustCheck(t, dev); rep.SuperFrom != 0 || !rep.Super.SameGeometry(p.sb) {
		t.Fatalf("superblock now from ag %d", rep.SuperFrom)
	}
}

func TestRepairLostLog(t *testing.T) {
	p := populate(t, false)
	img := bytes.Clone(p.dev.Bytes())
	clear(p.block(img, p.sb.LogStart))
	clear(p.block(img, p.sb.LogStart+1))
	if res := expectRepaired(t, img); !res.LogReset {
		t.Fatalf("the log was not reset: %v", res.Fixes)
	}
}

// TestRepairLinksIntoLostFound: with /lost+found removed and a directory
// made unusable, its children are linked into a new /lost+found and read
// back whole.
func TestRepairLinksIntoLostFound(t *testing.T) {
	p := populate(t, false)
	f, err := fs.Open(p.dev, fs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Rmdir(layout.RootIno, fs.LostFound); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	img := bytes.Clone(p.dev.Bytes())
	tblk, s := p.slot(img, p.dirC)
	s[94] = 0
	p.reseal(p.block(img, tblk))
	dev := disk.NewMemFrom(img)
	if res := repairOf(t, dev, Yes); res.Code() != ExitCorrected {
		t.Fatalf("exit %d, left %v", res.Code(), res.Remaining())
	}
	f, err = fs.Open(dev, fs.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	lf, err := f.Lookup(layout.RootIno, fs.LostFound)
	if err != nil {
		t.Fatalf("no /lost+found after repair: %v", err)
	}
	// dirC held the FIFO and the device: each is now "#ino".
	a, err := f.Lookup(lf.Ino, fmt.Sprintf("#%d", p.fifo))
	if err != nil || a.Mode&syscall.S_IFMT != syscall.S_IFIFO || a.Nlink != 1 {
		t.Fatalf("FIFO in /lost+found: %+v, %v", a, err)
	}
	// The file linked from dirC keeps its other names, one link fewer.
	a, err = f.Lookup(p.dirA, "file")
	if err != nil || a.Nlink != 2 {
		t.Fatalf("file: %+v, %v", a, err)
	}
}

// TestRepairBlockClaimedTwice: two inodes map the same blocks; one keeps
// them, the other loses the extent.
func TestRepairBlockClaimedTwice(t *testing.T) {
	p := populate(t, false)
	img := bytes.Clone(p.dev.Bytes())
	// The FIFO's slot becomes a regular file mapping file's first extent
	// (with the same LSN: the tie goes to the lower inode number).
	src := p.inode(img, p.file)
	tblk, s := p.slot(img, p.fifo)
	d := p.inode(img, p.fifo)
	d.Mode = syscall.S_IFREG | 0644
	d.DataFormat, d.ForkCount = layout.DataExtents, 1
	copy(d.Fork[:layout.ExtentSize], src.Fork[:layout.ExtentSize])
	d.Blocks = uint64(binary.LittleEndian.Uint32(src.Fork[16:]))
	d.Encode(s)
	p.reseal(p.block(img, tblk))
	res := expectRepaired(t, img)
	found := false
	for _, f := range res.Fixes {
		found = found || strings.Contains(f.What, "also claimed")
	}
	if !found {
		t.Fatalf("no fix for the block claimed twice: %v", res.Fixes)
	}
}
