package fs_test

import (
	"bytes"
	"math/rand/v2"
	"syscall"
	"testing"

	"agfs/fs"
	"agfs/layout"
)

// fileModel checks a file against a byte slice.
func checkFile(t testing.TB, e *env, ino uint64, want []byte) {
	t.Helper()
	a := e.attr(ino)
	if a.Size != uint64(len(want)) {
		t.Fatalf("size %d, want %d", a.Size, len(want))
	}
	got := e.read(ino, 0, len(want)+100)
	if !bytes.Equal(got, want) {
		i := 0
		for i < len(got) && i < len(want) && got[i] == want[i] {
			i++
		}
		t.Fatalf("content differs at byte %d (got %d bytes, want %d)", i, len(got), len(want))
	}
}

func TestRandomWrites(t *testing.T) {
	for _, bs := range []uint32{4096, 16384} {
		e := newEnv(t, 128<<20, layout.Params{BlockSize: bs})
		f := e.mknod(root, "f")
		rng := rand.New(rand.NewPCG(1, uint64(bs)))
		var model []byte
		for i := range 400 {
			off := rng.IntN(3 << 20)
			n := 1 + rng.IntN(40000)
			if rng.IntN(4) == 0 {
				n = 1 + rng.IntN(10)
			}
			p := make([]byte, n)
			for j := range p {
				p[j] = byte(rng.Uint32())
			}
			e.write(f, p, int64(off))
			if off+n > len(model) {
				model = append(model, make([]byte, off+n-len(model))...)
			}
			copy(model[off:], p)
			if i%50 == 0 {
				checkFile(t, e, f, model)
			}
		}
		checkFile(t, e, f, model)
		ext, format, err := e.f.Extents(f)
		if err != nil {
			t.Fatal(err)
		}
		if format != layout.DataBTree || len(ext) < 7 {
			t.Fatalf("format %d with %d extents", format, len(ext))
		}
		e.reopen()
		checkFile(t, e, f, model)
		// Unaligned reads everywhere.
		for range 200 {
			off := rng.IntN(len(model))
			n := rng.IntN(20000)
			got := e.read(f, int64(off), n)
			if !bytes.Equal(got, model[off:min(len(model), off+n)]) {
				t.Fatalf("read %d at %d", n, off)
			}
		}
	}
}

func TestTruncate(t *testing.T) {
	e := newEnv(t, 64<<20, layoutDefault)
	f := e.mknod(root, "f")
	data := pattern(50000, 3)
	e.write(f, data, 0)
	free0 := e.f.StatFS().Bfree
	// Down into the middle of a block: the tail must read as zeroes after
	// growing again.
	if _, err := e.f.SetAttr(f, fs.SetAttr{Valid: fs.SetSize, Size: 10000}); err != nil {
		t.Fatal(err)
	}
	if a := e.attr(f); a.Size != 10000 || a.Blocks != 3*8 {
		t.Fatalf("after truncate: %+v", a)
	}
	if e.f.StatFS().Bfree != free0+10 {
		t.Fatalf("freed %d blocks", e.f.StatFS().Bfree-free0)
	}
	if _, err := e.f.SetAttr(f, fs.SetAttr{Valid: fs.SetSize, Size: 30000}); err != nil {
		t.Fatal(err)
	}
	want := append(bytes.Clone(data[:10000]), make([]byte, 20000)...)
	checkFile(t, e, f, want)
	e.write(f, []byte("x"), 20000) // into the hole beyond the old end
	want[20000] = 'x'
	checkFile(t, e, f, want)
	// Huge sparse file, beyond 4 GiB.
	big := int64(5<<30 + 123)
	e.write(f, []byte("tail"), big)
	if a := e.attr(f); a.Size != uint64(big+4) {
		t.Fatalf("size %d", a.Size)
	}
	if got := e.read(f, big-2, 10); string(got) != "\x00\x00tail" {
		t.Fatalf("read %q", got)
	}
	if got := e.read(f, 3<<30, 4); !bytes.Equal(got, make([]byte, 4)) {
		t.Fatal("hole")
	}
	e.reopen()
	if _, err := e.f.SetAttr(f, fs.SetAttr{Valid: fs.SetSize, Size: 0}); err != nil {
		t.Fatal(err)
	}
	if a := e.attr(f); a.Size != 0 || a.Blocks != 0 {
		t.Fatalf("truncated to 0: %+v", a)
	}
	_, err := e.f.SetAttr(e.mkdir(root, "d"), fs.SetAttr{Valid: fs.SetSize})
	wantErr(t, "truncate dir", err, syscall.EISDIR)
	_, err = e.f.Write(e.lookup(root, "d"), []byte("x"), 0)
	wantErr(t, "write dir", err, syscall.EISDIR)
	_, err = e.f.Write(f, []byte("x"), -1)
	wantErr(t, "negative offset", err, syscall.EINVAL)
}

func TestManyExtentsTruncateInBatches(t *testing.T) {
	e := newEnv(t, 256<<20, layout.Params{})
	f := e.mknod(root, "f")
	g := e.mknod(root, "g")
	// Interleave two files so that every block of f is its own extent.
	for i := range 6000 {
		e.write(f, []byte{1}, int64(i)*4096)
		e.write(g, []byte{2}, int64(i)*4096)
	}
	ext, _, _ := e.f.Extents(f)
	if len(ext) < 5000 {
		t.Fatalf("%d extents", len(ext))
	}
	e.deep()
	if _, err := e.f.SetAttr(f, fs.SetAttr{Valid: fs.SetSize, Size: 1}); err != nil {
		t.Fatal(err)
	}
	if a := e.attr(f); a.Blocks != 8 {
		t.Fatalf("blocks %d", a.Blocks)
	}
	e.deep()
	if err := e.f.Unlink(root, "g"); err != nil {
		t.Fatal(err)
	}
}

// TestClearPrivileges checks what a change of data or owner takes away,
// as Linux does: file capabilities always; setuid, and setgid with
// group-execute, for a caller without CAP_FSETID and on every chown.
func TestClearPrivileges(t *testing.T) {
	e := newEnv(t, 64<<20, layoutDefault)
	f := e.mknod(root, "f")
	const caps = "security.capability"
	set := func(mode uint32, withCaps bool) {
		t.Helper()
		if _, err := e.f.SetAttr(f, fs.SetAttr{Valid: fs.SetMode, Mode: mode}); err != nil {
			t.Fatal(err)
		}
		if withCaps {
			if err := e.f.SetXattr(f, caps, []byte("caps"), 0); err != nil {
				t.Fatal(err)
			}
		}
	}
	check := func(what string, mode uint32, withCaps bool) {
		t.Helper()
		if m := e.attr(f).Mode & 07777; m != mode {
			t.Errorf("%s: mode %o, want %o", what, m, mode)
		}
		_, err := e.f.GetXattr(f, caps, nil)
		if has := err == nil; has != withCaps {
			t.Errorf("%s: has capabilities %v, want %v (%v)", what, has, withCaps, err)
		}
		if _, err := e.f.GetXattr(f, "user.keep", nil); err != nil {
			t.Errorf("%s: user.keep: %v", what, err)
		}
	}
	clearPriv := func(kill, wantChanged bool) {
		t.Helper()
		changed, err := e.f.ClearPrivileges(f, kill)
		if err != nil || changed != wantChanged {
			t.Fatalf("ClearPrivileges(kill=%v): changed %v, %v; want changed %v", kill, changed, err, wantChanged)
		}
	}
	if err := e.f.SetXattr(f, "user.keep", []byte("1"), 0); err != nil {
		t.Fatal(err)
	}

	set(06755, false)
	e.write(f, []byte("x"), 0) // Write itself leaves them
	check("write", 06755, false)
	clearPriv(false, false) // privileged caller, nothing to clear: no transaction
	check("privileged, no caps", 06755, false)
	set(06755, true)
	clearPriv(false, true)
	check("privileged", 06755, false)
	set(06755, true)
	clearPriv(true, true)
	check("unprivileged", 0755, false)
	clearPriv(true, false)
	set(06745, false) // setgid without group exec: mandatory locking, kept
	clearPriv(true, true)
	check("unprivileged, setgid without group exec", 02745, false)

	set(06755, true)
	if _, err := e.f.SetAttr(f, fs.SetAttr{Valid: fs.SetSize, Size: 1}); err != nil {
		t.Fatal(err)
	}
	check("truncate by a privileged caller", 06755, false)
	set(06755, true)
	if _, err := e.f.SetAttr(f, fs.SetAttr{Valid: fs.SetSize | fs.SetKillPriv, Size: 0}); err != nil {
		t.Fatal(err)
	}
	check("truncate by an unprivileged caller", 0755, false)
	set(06755, true)
	if _, err := e.f.SetAttr(f, fs.SetAttr{Valid: fs.SetUID, UID: 5}); err != nil {
		t.Fatal(err)
	}
	check("chown", 0755, false)
	if a := e.attr(f); a.UID != 5 {
		t.Errorf("chown: uid %d", a.UID)
	}
	set(06755, true)
	if _, err := e.f.SetAttr(f, fs.SetAttr{Valid: fs.SetMode, Mode: 06775}); err != nil {
		t.Fatal(err)
	}
	check("chmod", 06775, true)

	d := e.mkdir(root, "d")
	if _, err := e.f.SetAttr(d, fs.SetAttr{Valid: fs.SetMode, Mode: 02755}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.f.SetAttr(d, fs.SetAttr{Valid: fs.SetGID, GID: 5}); err != nil {
		t.Fatal(err)
	}
	if m := e.attr(d).Mode & 07777; m != 02755 {
		t.Fatalf("dir mode %o after chgrp", m)
	}
}

func TestTimes(t *testing.T) {
	e := newEnv(t, 64<<20, layoutDefault)
	f := e.mknod(root, "f")
	a0 := e.attr(f)
	r0 := e.attr(root)
	if a0.Mtime != a0.Ctime || a0.Btime != a0.Mtime || r0.Mtime != a0.Mtime {
		t.Fatalf("create times %+v root %+v", a0, r0)
	}
	e.write(f, []byte("x"), 0)
	a1 := e.attr(f)
	if a1.Mtime <= a0.Mtime || a1.Ctime != a1.Mtime || a1.Atime != a0.Atime {
		t.Fatalf("write times %+v", a1)
	}
	a2, err := e.f.SetAttr(f, fs.SetAttr{Valid: fs.SetAtime | fs.SetMtime, Atime: 1e9, Mtime: 2e9 + 5})
	if err != nil || a2.Atime != 1e9 || a2.Mtime != 2e9+5 || a2.Ctime <= a1.Ctime {
		t.Fatalf("utimens %+v %v", a2, err)
	}
	a3, _ := e.f.SetAttr(f, fs.SetAttr{Valid: fs.SetMtimeNow})
	if a3.Mtime <= a2.Ctime-1 || a3.Atime != 1e9 {
		t.Fatalf("utimens now %+v", a3)
	}
	if _, err := e.f.Link(f, root, "g"); err != nil {
		t.Fatal(err)
	}
	a4 := e.attr(f)
	if a4.Ctime <= a3.Ctime || a4.Mtime != a3.Mtime {
		t.Fatalf("link times %+v", a4)
	}
	if err := e.f.Rename(root, "g", root, "h", 0); err != nil {
		t.Fatal(err)
	}
	if a5 := e.attr(f); a5.Ctime <= a4.Ctime {
		t.Fatal("rename ctime")
	}
}

func TestFallocateAndSeek(t *testing.T) {
	e := newEnv(t, 64<<20, layoutDefault)
	f := e.mknod(root, "f")
	for _, mode := range []uint32{0x04, 0x08, 0x20, 0x40, fs.FallocPunchHole, fs.FallocPunchHole | fs.FallocZeroRange | fs.FallocKeepSize} {
		wantErr(t, "unsupported mode", e.f.Fallocate(f, mode, 0, 4096), syscall.EOPNOTSUPP)
	}
	wantErr(t, "zero length", e.f.Fallocate(f, 0, 0, 0), syscall.EINVAL)
	free0 := e.f.StatFS().Bfree
	if err := e.f.Fallocate(f, 0, 1000, 100000); err != nil {
		t.Fatal(err)
	}
	if a := e.attr(f); a.Size != 101000 || a.Blocks != 25*8 || free0-e.f.StatFS().Bfree != 25 {
		t.Fatalf("fallocate: %+v", a)
	}
	checkFile(t, e, f, make([]byte, 101000))
	// Preallocated space is a hole to SEEK_DATA.
	if _, err := e.f.Lseek(f, 0, fs.SeekData); err != syscall.ENXIO {
		t.Fatalf("seek data in unwritten file: %v", err)
	}
	e.write(f, []byte("abc"), 50000)
	if off, err := e.f.Lseek(f, 0, fs.SeekData); err != nil || off != 49152 {
		t.Fatalf("seek data: %d %v", off, err)
	}
	if off, err := e.f.Lseek(f, 49152, fs.SeekHole); err != nil || off != 53248 {
		t.Fatalf("seek hole: %d %v", off, err)
	}
	if _, err := e.f.Lseek(f, 101000, fs.SeekHole); err != syscall.ENXIO {
		t.Fatalf("seek hole at EOF: %v", err)
	}
	if off, err := e.f.Lseek(f, 60000, fs.SeekHole); err != nil || off != 60000 {
		t.Fatalf("seek hole in hole: %d %v", off, err)
	}
	want := make([]byte, 101000)
	copy(want[50000:], "abc")
	checkFile(t, e, f, want)
	// KEEP_SIZE beyond EOF.
	if err := e.f.Fallocate(f, fs.FallocKeepSize, 200000, 8192); err != nil {
		t.Fatal(err)
	}
	if a := e.attr(f); a.Size != 101000 || a.Blocks != 28*8 {
		t.Fatalf("keep size: %+v", a)
	}
	// Punch a hole through written data.
	data := pattern(101000, 9)
	e.write(f, data, 0)
	if err := e.f.Fallocate(f, fs.FallocPunchHole|fs.FallocKeepSize, 5000, 20000); err != nil {
		t.Fatal(err)
	}
	copy(data[5000:25000], make([]byte, 20000))
	checkFile(t, e, f, data)
	if a := e.attr(f); a.Blocks != (28-4)*8 {
		t.Fatalf("punch: blocks %d", a.Blocks/8)
	}
	if off, _ := e.f.Lseek(f, 5000, fs.SeekHole); off != 8192 {
		t.Fatalf("hole after punch at %d", off)
	}
	// Zero a range.
	if err := e.f.Fallocate(f, fs.FallocZeroRange, 30000, 40000); err != nil {
		t.Fatal(err)
	}
	copy(data[30000:70000], make([]byte, 40000))
	checkFile(t, e, f, data)
	if err := e.f.Fallocate(f, fs.FallocZeroRange, 100000, 10000); err != nil {
		t.Fatal(err)
	}
	data = append(data, make([]byte, 9000)...)
	copy(data[100000:], make([]byte, 1000))
	checkFile(t, e, f, data)
	e.reopen()
	checkFile(t, e, f, data)
	wantErr(t, "fallocate dir", e.f.Fallocate(root, 0, 0, 1), syscall.EISDIR)
}

func TestCopyFileRange(t *testing.T) {
	e := newEnv(t, 64<<20, layoutDefault)
	a := e.mknod(root, "a")
	b := e.mknod(root, "b")
	data := pattern(3<<20+17, 5)
	e.write(a, data, 0)
	n, err := e.f.CopyFileRange(a, 100, b, 7, 5<<20)
	if err != nil || n != int64(len(data)-100) {
		t.Fatalf("copy: %d %v", n, err)
	}
	checkFile(t, e, b, append(make([]byte, 7), data[100:]...))
	_, err = e.f.CopyFileRange(a, 0, a, 10, 100)
	wantErr(t, "overlapping", err, syscall.EINVAL)
}

func TestXattrs(t *testing.T) {
	e := newEnv(t, 64<<20, layoutDefault)
	f := e.mknod(root, "f")
	d := e.mkdir(root, "d")
	l, _ := e.f.Symlink(root, "l", "target", me)
	get := func(ino uint64, name string) string {
		t.Helper()
		n, err := e.f.GetXattr(ino, name, nil)
		if err != nil {
			t.Fatalf("get %s size: %v", name, err)
		}
		buf := make([]byte, n)
		if _, err := e.f.GetXattr(ino, name, buf); err != nil {
			t.Fatalf("get %s: %v", name, err)
		}
		return string(buf)
	}
	for _, ino := range []uint64{f, d, l.Ino} {
		if err := e.f.SetXattr(ino, "user.a", []byte("1"), 0); err != nil {
			t.Fatal(err)
		}
		if get(ino, "user.a") != "1" {
			t.Fatal("get")
		}
	}
	_, err := e.f.GetXattr(f, "user.nope", nil)
	wantErr(t, "missing", err, syscall.ENODATA)
	_, err = e.f.GetXattr(f, "user.a", make([]byte, 0))
	if err != nil {
		t.Fatal(err)
	}
	wantErr(t, "create existing", e.f.SetXattr(f, "user.a", []byte("2"), 1), syscall.EEXIST)
	wantErr(t, "replace missing", e.f.SetXattr(f, "user.b", []byte("2"), 2), syscall.ENODATA)
	wantErr(t, "bad namespace", e.f.SetXattr(f, "foo.b", []byte("2"), 0), syscall.EOPNOTSUPP)
	wantErr(t, "too big", e.f.SetXattr(f, "user.big", make([]byte, 65537), 0), syscall.E2BIG)
	big := string(pattern(65536, 1))
	if err := e.f.SetXattr(f, "user.big", []byte(big), 0); err != nil {
		t.Fatal(err)
	}
	_, err = e.f.GetXattr(f, "user.big", make([]byte, 10))
	wantErr(t, "small buffer", err, syscall.ERANGE)
	for i := range 50 {
		if err := e.f.SetXattr(f, "user.n"+string(rune('a'+i%26))+string(rune('a'+i/26)), pattern(i*10, byte(i)), 0); err != nil {
			t.Fatal(err)
		}
	}
	n, _ := e.f.ListXattr(f, nil)
	list := make([]byte, n)
	if _, err := e.f.ListXattr(f, list); err != nil {
		t.Fatal(err)
	}
	if c := bytes.Count(list, []byte{0}); c != 52 {
		t.Fatalf("%d names listed", c)
	}
	_, err = e.f.ListXattr(f, make([]byte, 3))
	wantErr(t, "list small buffer", err, syscall.ERANGE)
	// Data extents and inline attributes share the fork.
	for i := range 10 {
		e.write(f, []byte("x"), int64(i)*8192)
	}
	e.deep()
	e.reopen()
	if get(f, "user.big") != big || get(f, "user.a") != "1" || get(d, "user.a") != "1" {
		t.Fatal("after reopen")
	}
	if err := e.f.RemoveXattr(f, "user.big"); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "remove missing", e.f.RemoveXattr(f, "user.big"), syscall.ENODATA)
	if err := e.f.Unlink(root, "f"); err != nil {
		t.Fatal(err)
	}
}

// TestGrowKeepsPreallocation: truncating a file up keeps the blocks
// preallocated past its old size with FALLOC_FL_KEEP_SIZE, as ext4 and XFS
// do (xfstests generic/034); only a shrink frees them.
func TestGrowKeepsPreallocation(t *testing.T) {
	e := newEnv(t, 64<<20, layout.Params{})
	f := e.mknod(root, "f")
	e.write(f, pattern(4096, 1), 0)
	if err := e.f.Fallocate(f, fs.FallocKeepSize, 0, 1<<20); err != nil {
		t.Fatal(err)
	}
	before := e.attr(f).Blocks
	if _, err := e.f.SetAttr(f, fs.SetAttr{Valid: fs.SetSize, Size: 512 << 10}); err != nil {
		t.Fatal(err)
	}
	if got := e.attr(f).Blocks; got != before {
		t.Fatalf("growing to 512 KiB left %d sectors allocated, want %d", got, before)
	}
	checkFile(t, e, f, append(pattern(4096, 1), make([]byte, 512<<10-4096)...))
	if _, err := e.f.SetAttr(f, fs.SetAttr{Valid: fs.SetSize, Size: 8192}); err != nil {
		t.Fatal(err)
	}
	if got := e.attr(f).Blocks; got != 16 {
		t.Fatalf("shrinking to 8 KiB left %d sectors allocated, want 16", got)
	}
}
