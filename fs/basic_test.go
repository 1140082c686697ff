package fs_test

import (
	"bytes"
	"syscall"
	"testing"

	"agfs/fs"
)

func TestFreshFilesystem(t *testing.T) {
	e := newEnv(t, 64<<20, layoutDefault)
	a := e.attr(root)
	if a.Mode != syscall.S_IFDIR|0755 || a.Nlink != 3 || a.UID != 0 {
		t.Fatalf("root: %+v", a)
	}
	lf := e.lookup(root, fs.LostFound)
	if a := e.attr(lf); a.Mode != syscall.S_IFDIR|0700 || a.Nlink != 2 {
		t.Fatalf("lost+found: %+v", a)
	}
	if got := e.names(root); len(got) != 3 || got[0] != "." || got[1] != ".." || got[2] != fs.LostFound {
		t.Fatalf("root lists %q", got)
	}
	if e.lookup(lf, "..") != root || e.lookup(root, "..") != root {
		t.Fatal("..")
	}
	st := e.f.StatFS()
	if st.Bsize != 4096 || st.Bfree == 0 || st.Ffree != st.Files-2 || st.NameLen != 255 {
		t.Fatalf("statfs %+v", st)
	}
}

func TestSmoke(t *testing.T) {
	e := newEnv(t, 64<<20, layoutDefault)
	d := e.mkdir(root, "d")
	f := e.mknod(d, "f")
	data := pattern(100000, 1)
	e.write(f, data, 0)
	if got := e.read(f, 0, 200000); !bytes.Equal(got, data) {
		t.Fatalf("read back %d bytes", len(got))
	}
	e.reopen()
	f = e.lookup(e.lookup(root, "d"), "f")
	if got := e.read(f, 0, 200000); !bytes.Equal(got, data) {
		t.Fatalf("after reopen: read back %d bytes", len(got))
	}
	if err := e.f.Unlink(d, "f"); err != nil {
		t.Fatal(err)
	}
	if err := e.f.Rmdir(root, "d"); err != nil {
		t.Fatal(err)
	}
	e.deep()
}
