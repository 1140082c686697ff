package fsck

import (
	"bytes"
	"encoding/binary"
	"sync"
	"syscall"
	"testing"

	"agfs/disk"
	"agfs/fs"
	"agfs/layout"
	"agfs/mkfs"
)

// fuzzImage is a small populated image and the blocks of it that hold
// metadata, made once per process.
var fuzzImage = sync.OnceValues(func() ([]byte, []uint64) {
	const size = 16 << 20
	dev := disk.NewMem(size)
	sb, err := mkfs.Plan(size, mkfs.Options{})
	if err != nil {
		panic(err)
	}
	if err := mkfs.Format(dev, sb); err != nil {
		panic(err)
	}
	f, err := fs.Open(dev, fs.Options{})
	if err != nil {
		panic(err)
	}
	d, err := f.Mkdir(layout.RootIno, "d", 0755, me)
	if err != nil {
		panic(err)
	}
	for i := range 40 {
		a, err := f.Mknod(d.Ino, string(rune('a'+i%26))+string(rune('a'+i/26)), syscall.S_IFREG|0644, 0, me)
		if err != nil {
			panic(err)
		}
		// Every other block: one file's map becomes an extent tree.
		for k := range 1 + 12*(i%7/6) {
			if _, err := f.Write(a.Ino, bytes.Repeat([]byte{byte(i)}, 100), int64(2*k*4096)); err != nil {
				panic(err)
			}
		}
		if i%5 == 0 {
			if err := f.SetXattr(a.Ino, "user.x", bytes.Repeat([]byte{1}, 40*(i%3)+1), 0); err != nil {
				panic(err)
			}
		}
	}
	if _, err := f.Symlink(d.Ino, "ln", "target", me); err != nil {
		panic(err)
	}
	if err := f.Close(); err != nil {
		panic(err)
	}
	img := bytes.Clone(dev.Bytes())
	// Metadata blocks: those that carry a common header naming
	// themselves.
	var meta []uint64
	bs := uint64(sb.BlockSize)
	for blk := range sb.BlockCount {
		if h := layout.ReadHeader(img[blk*bs:]); h.Magic != 0 && h.Blkno == blk {
			meta = append(meta, blk)
		}
	}
	return img, meta
})

// FuzzRepair damages a small populated image with the fuzzer's patches,
// each aimed at one of its metadata blocks (2 bytes: which block; 2: the
// offset in it; 1: a length; then the bytes), and runs fsck -y. It must
// not panic, and when it says it repaired the filesystem, a second check
// must find it clean and the filesystem must open.
func FuzzRepair(f *testing.F) {
	f.Add([]byte{0, 0, 0, 100, 4, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{3, 0, 0, 64, 8, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1, 0, 2, 1})
	f.Add([]byte{7, 0, 0x0f, 0xf0, 16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{1, 0, 0, 24, 8, 0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, patch []byte) {
		base, meta := fuzzImage()
		img := bytes.Clone(base)
		const bs = 4096 // mkfs's default block size
		for len(patch) >= 5 {
			blk := meta[int(binary.LittleEndian.Uint16(patch))%len(meta)]
			off := int(binary.LittleEndian.Uint16(patch[2:])) % bs
			n := min(int(patch[4]), len(patch)-5, bs-off)
			copy(img[int(blk)*bs+off:], patch[5:5+n])
			patch = patch[5+n:]
		}
		dev := disk.NewMemFrom(img)
		res, err := Repair(dev, Options{Mode: Yes})
		if err != nil {
			return // reported as an operational error: a clear message, no panic
		}
		if res.Code() > ExitCorrected {
			return // left uncorrected, with its reasons
		}
		if rep, err := Check(dev); err != nil || !rep.Clean() {
			t.Fatalf("repair said exit %d, but the second check: %v %v (fixes %v)", res.Code(), err, rep.Problems, res.Fixes)
		}
		fsys, err := fs.Open(dev, fs.Options{})
		if err != nil {
			t.Fatalf("repaired image does not open: %v", err)
		}
		if err := fsys.Close(); err != nil {
			t.Fatalf("repaired image does not close: %v", err)
		}
	})
}

// FuzzRepairRandomDevice hands Repair a device of nothing but the
// fuzzer's bytes (behind a valid superblock or not): no panic, and an
// answer.
func FuzzRepairRandomDevice(f *testing.F) {
	base, _ := fuzzImage()
	f.Add(base[:8192])
	f.Add(make([]byte, 4096))
	f.Add([]byte("AGSB"))
	f.Fuzz(func(t *testing.T, b []byte) {
		img := make([]byte, 1<<20)
		copy(img, b)
		// An error is the expected answer; a panic or a hang fails.
		Repair(disk.NewMemFrom(img), Options{Mode: Yes}) //nolint:errcheck

	})
}
