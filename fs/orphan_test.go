package fs_test

import (
	"bytes"
	"syscall"
	"testing"

	"agfs/disk"
	"agfs/fs"
)

func TestUnlinkWhileOpen(t *testing.T) {
	e := newEnv(t, 64<<20, layoutDefault)
	free0 := e.f.StatFS()
	f := e.mknod(root, "f")
	data := pattern(1<<20, 4)
	e.write(f, data, 0)
	if err := e.f.SetXattr(f, "user.big", pattern(5000, 1), 0); err != nil {
		t.Fatal(err)
	}
	if err := e.f.OpenFile(f); err != nil {
		t.Fatal(err)
	}
	if err := e.f.Unlink(root, "f"); err != nil {
		t.Fatal(err)
	}
	// Still readable and writable through the handle; space still used.
	if got := e.read(f, 0, 1<<20); !bytes.Equal(got, data) {
		t.Fatal("read after unlink")
	}
	e.write(f, []byte("more"), 1<<20)
	if a := e.attr(f); a.Nlink != 0 {
		t.Fatalf("nlink %d", a.Nlink)
	}
	if e.f.StatFS().Bfree >= free0.Bfree-256 {
		t.Fatal("space freed while open")
	}
	e.deep() // the orphan accounts for its blocks
	e.f.Release(f)
	if _, err := e.f.GetAttr(f); err == nil {
		t.Fatal("released orphan still there")
	}
	if st := e.f.StatFS(); st.Bfree != free0.Bfree || st.Ffree != free0.Ffree {
		t.Fatalf("space not back: %+v vs %+v", st, free0)
	}
	if e.f.TableSize() != 0 {
		t.Fatalf("%d inodes left in memory", e.f.TableSize())
	}
}

// TestUnlinkWhileOpenCrash: the orphan list brings the space back after a
// crash.
func TestUnlinkWhileOpenCrash(t *testing.T) {
	e := newEnv(t, 64<<20, layoutDefault)
	free0 := e.f.StatFS()
	var inos []uint64
	for i := range 5 {
		f := e.mknod(root, string(rune('a'+i)))
		e.write(f, pattern(300000, byte(i)), 0)
		if err := e.f.OpenFile(f); err != nil {
			t.Fatal(err)
		}
		inos = append(inos, f)
	}
	d := e.mkdir(root, "dir")
	e.f.Ref(d)
	for i := range 5 {
		if err := e.f.Unlink(root, string(rune('a'+i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.f.Rmdir(root, "dir"); err != nil {
		t.Fatal(err)
	}
	e.f.Release(inos[2]) // one goes now, the others stay on the list
	if err := e.f.FsyncDir(root); err != nil {
		t.Fatal(err)
	}
	e.deep()
	e.crash()
	if e.f.Orphans != 5 {
		t.Fatalf("%d orphans reclaimed", e.f.Orphans)
	}
	if st := e.f.StatFS(); st.Bfree != free0.Bfree || st.Ffree != free0.Ffree {
		t.Fatalf("space not back: %+v vs %+v", st, free0)
	}
	e.deep()
	checkImage(t, e.dev)
}

// TestOrphanOnClose: Close frees unlinked inodes still referenced.
func TestOrphanOnClose(t *testing.T) {
	e := newEnv(t, 64<<20, layoutDefault)
	free0 := e.f.StatFS()
	f := e.mknod(root, "f")
	e.write(f, pattern(100000, 1), 0)
	e.f.Ref(f)
	if err := e.f.Unlink(root, "f"); err != nil {
		t.Fatal(err)
	}
	e.reopen()
	if e.f.Orphans != 0 {
		t.Fatal("orphans left by Close")
	}
	if st := e.f.StatFS(); st.Bfree != free0.Bfree {
		t.Fatal("space not back")
	}
}

func TestReadOnly(t *testing.T) {
	e := newEnv(t, 64<<20, layoutDefault)
	f := e.mknod(root, "f")
	e.write(f, []byte("data"), 0)
	if err := e.f.Sync(); err != nil {
		t.Fatal(err)
	}
	img := bytes.Clone(e.dev.Bytes()) // dirty log
	rodev := disk.NewMemFrom(bytes.Clone(img))
	ro, err := fs.Open(rodev, fs.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	a, err := ro.Lookup(root, "f")
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 10)
	if n, err := ro.Read(a.Ino, buf, 0); err != nil || string(buf[:n]) != "data" {
		t.Fatalf("read %q %v", buf[:n], err)
	}
	_, err = ro.Mknod(root, "g", 0100644, 0, me)
	wantErr(t, "create on read-only", err, syscall.EROFS)
	if err := ro.Close(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(img, rodev.Bytes()) {
		t.Fatal("a read-only open wrote the device")
	}
}
