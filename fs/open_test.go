package fs_test

import (
	"bytes"
	"encoding/binary"
	"strings"
	"syscall"
	"testing"

	"agfs/disk"
	"agfs/fs"
	"agfs/layout"
)

func TestOpenRefuses(t *testing.T) {
	dev := disk.NewMem(64 << 20)
	sb := format(t, dev, layoutDefault)
	good := bytes.Clone(dev.Bytes())
	patch := func(off int, v uint64, size int) []byte {
		img := bytes.Clone(good)
		b := img[:sb.BlockSize]
		switch size {
		case 4:
			binary.LittleEndian.PutUint32(b[off:], uint32(v))
		case 8:
			binary.LittleEndian.PutUint64(b[off:], v)
		}
		layout.Seal(b, sb.Seed(), layout.ReadHeader(b).LSN)
		return img
	}
	for _, tc := range []struct {
		name string
		img  []byte
		want string
	}{
		{"newer version", patch(64, 2, 4), "newer"},
		{"incompat feature", patch(168, 1<<7, 8), "incompatible features"},
		{"bad geometry", patch(88, uint64(sb.AGCount+1), 4), "geometry"},
		{"not agfs", make([]byte, 64<<20), "not an agfs superblock"},
		{"ro-compat feature", patch(160, 1<<3, 8), "read-only"},
		{"truncated device", good[:32<<20], "smaller than the filesystem"},
	} {
		_, err := fs.Open(disk.NewMemFrom(tc.img), fs.Options{})
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
	// An unknown ro-compat feature still opens read-only.
	f, err := fs.Open(disk.NewMemFrom(patch(160, 1<<3, 8)), fs.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
}

func TestSuperblockState(t *testing.T) {
	e := newEnv(t, 64<<20, layoutDefault)
	if err := e.f.Log().Checkpoint(); err != nil {
		t.Fatal(err)
	}
	sb, err := fs.ReadSuperblock(e.dev)
	if err != nil || sb.State&layout.StateClean != 0 || sb.MountCount != 1 {
		t.Fatalf("mounted: state %v count %d %v", sb.State, sb.MountCount, err)
	}
	e.reopen()
	e.f.Close()
	sb, err = fs.ReadSuperblock(e.dev)
	if err != nil || sb.State&layout.StateClean == 0 || sb.MountCount != 2 {
		t.Fatalf("closed: state %v count %d %v", sb.State, sb.MountCount, err)
	}
	e.open()
}

func TestGenerationAndReuse(t *testing.T) {
	e := newEnv(t, 64<<20, layoutDefault)
	a, _ := e.f.Mknod(root, "a", syscall.S_IFREG|0644, 0, me)
	if err := e.f.Unlink(root, "a"); err != nil {
		t.Fatal(err)
	}
	b, _ := e.f.Mknod(root, "b", syscall.S_IFREG|0644, 0, me)
	if b.Ino != a.Ino || b.Gen != a.Gen+1 {
		t.Fatalf("reuse: %d gen %d after %d gen %d", b.Ino, b.Gen, a.Ino, a.Gen)
	}
}

func TestENOSPC(t *testing.T) {
	e := newEnv(t, 48<<20, layout.Params{AGCount: 2})
	f := e.mknod(root, "big")
	buf := pattern(1<<20, 1)
	var off int64
	for {
		n, err := e.f.Write(f, buf, off)
		off += int64(n)
		if err != nil {
			wantErr(t, "full", err, syscall.ENOSPC)
			break
		}
		if n < len(buf) {
			break
		}
	}
	e.deep()
	if _, err := e.f.Write(f, buf, off); !errorsIs(err, syscall.ENOSPC) {
		t.Fatalf("write on a full fs: %v", err)
	}
	err := e.f.Fallocate(e.mknod(root, "pre"), 0, 0, 10<<20)
	wantErr(t, "fallocate on a full fs", err, syscall.ENOSPC)
	checkFile(t, e, f, bytes.Repeat(buf, int(off)/len(buf)+1)[:off])
	if err := e.f.Unlink(root, "big"); err != nil {
		t.Fatal(err)
	}
	e.write(e.mknod(root, "after"), buf, 0)
	// Inodes run out too.
	d := e.mkdir(root, "many")
	for i := 0; ; i++ {
		_, err := e.f.Mknod(d, "f"+strings.Repeat("x", i%50)+string(rune('a'+i%26))+strings.Repeat("y", i/1300), syscall.S_IFREG|0644, 0, me)
		if err != nil {
			if errorsIs(err, syscall.EEXIST) {
				continue
			}
			wantErr(t, "out of inodes", err, syscall.ENOSPC)
			break
		}
	}
	e.deep()
}
