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

// TestTimesOfUnlinked: the kernel's time flush after an unlink (writeback
// cache: its ctime, the mtime agfs has) costs no transaction while nothing
// has the file open, and is kept like any other change while something
// does. A real change of times is always kept.
func TestTimesOfUnlinked(t *testing.T) {
	e := newEnv(t, 64<<20, layoutDefault)
	free0 := e.f.StatFS()
	commits := func() uint64 { return e.f.Stats().Log.Commits }
	for _, open := range []bool{false, true} {
		f := e.mknod(root, "f")
		e.write(f, pattern(100000, 1), 0)
		e.f.Ref(f) // the kernel's reference, dropped by Forget
		if open {
			if err := e.f.OpenFile(f); err != nil {
				t.Fatal(err)
			}
		}
		if err := e.f.Unlink(root, "f"); err != nil {
			t.Fatal(err)
		}
		flush := fs.SetAttr{Valid: fs.SetMtime | fs.SetCtime, Mtime: e.attr(f).Mtime, Ctime: 2e18}
		c0 := commits()
		a, err := e.f.SetAttr(f, flush)
		if err != nil {
			t.Fatal(err)
		}
		if a.Mtime != flush.Mtime || a.Ctime != flush.Ctime || a.Nlink != 0 || a.Size != 100000 {
			t.Fatalf("open %v: reply %+v", open, a)
		}
		want := uint64(0)
		if open {
			want = 1
		}
		if got := commits() - c0; got != want {
			t.Fatalf("open %v: %d commits for the time flush, want %d", open, got, want)
		}
		if got := e.attr(f); open && got.Ctime != flush.Ctime {
			t.Fatalf("ctime of an open unlinked file not kept: %+v", got)
		}
		// A new mtime, or anything but times, goes through a transaction.
		touch := fs.SetAttr{Valid: fs.SetMtime | fs.SetCtime, Mtime: 1e18, Ctime: 2e18}
		if a, err := e.f.SetAttr(f, touch); err != nil || a.Mtime != touch.Mtime {
			t.Fatalf("open %v: utimens: %+v %v", open, a, err)
		}
		if got := e.attr(f); got.Mtime != touch.Mtime {
			t.Fatalf("open %v: mtime of an unlinked file not kept: %+v", open, got)
		}
		if _, err := e.f.SetAttr(f, fs.SetAttr{Valid: fs.SetMode, Mode: 0600}); err != nil {
			t.Fatal(err)
		}
		if got := commits() - c0; got != want+2 {
			t.Fatalf("open %v: utimens and chmod made %d commits in all, want %d", open, got, want+2)
		}
		if open {
			e.f.Release(f)
		}
		c1 := commits()
		e.f.Forget(f, 1)
		if got := commits() - c1; got != 1 {
			t.Fatalf("open %v: reclaiming a file of one extent took %d transactions", open, got)
		}
		if _, err := e.f.GetAttr(f); err == nil {
			t.Fatalf("open %v: inode still there after the last reference", open)
		}
		e.deep()
	}
	if st := e.f.StatFS(); st.Bfree != free0.Bfree || st.Ffree != free0.Ffree {
		t.Fatalf("space not back: %+v vs %+v", st, free0)
	}
}

// TestReclaimManyExtents: a file of more extents than one transaction
// frees is reclaimed in several, and all of its space comes back.
func TestReclaimManyExtents(t *testing.T) {
	e := newEnv(t, 64<<20, layoutDefault)
	free0 := e.f.StatFS()
	f := e.mknod(root, "f")
	const extents = 1100 // over two batches of freeBatch (512)
	for i := range extents {
		e.write(f, pattern(4096, byte(i)), int64(2*i)*4096) // a hole after each block
	}
	ext, _, err := e.f.Extents(f)
	if err != nil || len(ext) != extents {
		t.Fatalf("%d extents, %v", len(ext), err)
	}
	e.f.Ref(f)
	if err := e.f.Unlink(root, "f"); err != nil {
		t.Fatal(err)
	}
	c0 := e.f.Stats().Log.Commits
	e.f.Forget(f, 1)
	if got := e.f.Stats().Log.Commits - c0; got != 3 {
		t.Fatalf("reclaim took %d transactions, want 3", got)
	}
	if _, err := e.f.GetAttr(f); err == nil {
		t.Fatal("inode still there after the last reference")
	}
	if st := e.f.StatFS(); st.Bfree != free0.Bfree || st.Ffree != free0.Ffree {
		t.Fatalf("space not back: %+v vs %+v", st, free0)
	}
	e.deep()
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
