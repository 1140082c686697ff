package fs_test

import (
	"fmt"
	"slices"
	"strings"
	"syscall"
	"testing"

	"agfs/fs"
)

func TestCreateLookupErrors(t *testing.T) {
	e := newEnv(t, 64<<20, layoutDefault)
	f := e.mknod(root, "a")
	_, err := e.f.Mknod(root, "a", syscall.S_IFREG|0644, 0, me)
	wantErr(t, "mknod existing", err, syscall.EEXIST)
	_, err = e.f.Mkdir(root, "a", 0755, me)
	wantErr(t, "mkdir existing", err, syscall.EEXIST)
	_, err = e.f.Lookup(root, "nope")
	wantErr(t, "lookup missing", err, syscall.ENOENT)
	_, err = e.f.Lookup(f, "x")
	wantErr(t, "lookup in a file", err, syscall.ENOTDIR)
	_, err = e.f.Mknod(f, "x", syscall.S_IFREG|0644, 0, me)
	wantErr(t, "mknod in a file", err, syscall.ENOTDIR)
	long := strings.Repeat("n", 256)
	_, err = e.f.Mknod(root, long, syscall.S_IFREG|0644, 0, me)
	wantErr(t, "256-byte name", err, syscall.ENAMETOOLONG)
	_, err = e.f.Lookup(root, long)
	wantErr(t, "lookup 256-byte name", err, syscall.ENAMETOOLONG)
	ok := strings.Repeat("n", 255)
	e.mknod(root, ok)
	if e.lookup(root, ok) == 0 {
		t.Fatal("255-byte name")
	}
	_, err = e.f.Mknod(root, "s/x", syscall.S_IFREG|0644, 0, me)
	wantErr(t, "slash", err, syscall.EINVAL)
	_, err = e.f.Mknod(root, "d", syscall.S_IFDIR|0755, 0, me)
	wantErr(t, "mknod dir", err, syscall.EPERM)
	_, err = e.f.GetAttr(12345678)
	wantErr(t, "getattr of a free inode", err, syscall.ESTALE)

	// Special files.
	for _, m := range []uint32{syscall.S_IFIFO, syscall.S_IFSOCK, syscall.S_IFCHR, syscall.S_IFBLK} {
		a, err := e.f.Mknod(root, fmt.Sprintf("sp%o", m), m|0600, 0x0801, me)
		if err != nil {
			t.Fatal(err)
		}
		if a.Mode != m|0600 || (m == syscall.S_IFCHR || m == syscall.S_IFBLK) != (a.Rdev == 0x0801) {
			t.Fatalf("special %o: %+v", m, a)
		}
	}
	a := e.attr(f)
	if a.UID != me.UID || a.GID != me.GID || a.Nlink != 1 || a.Size != 0 || a.Gen == 0 {
		t.Fatalf("new file %+v", a)
	}
	e.reopen()
	if got := e.attr(e.lookup(root, "a")); got != a {
		t.Fatalf("after reopen %+v, want %+v", got, a)
	}
}

func TestSetgidDirectory(t *testing.T) {
	e := newEnv(t, 64<<20, layoutDefault)
	d := e.mkdir(root, "d")
	if _, err := e.f.SetAttr(d, fs.SetAttr{Valid: fs.SetMode | fs.SetGID, Mode: 02775, GID: 77}); err != nil {
		t.Fatal(err)
	}
	f := e.attr(e.mknod(d, "f"))
	sub := e.attr(e.mkdir(d, "sub"))
	if f.GID != 77 || sub.GID != 77 || sub.Mode&syscall.S_ISGID == 0 || f.Mode&syscall.S_ISGID != 0 {
		t.Fatalf("file %+v dir %+v", f, sub)
	}
}

func TestMkdirRmdirLinks(t *testing.T) {
	e := newEnv(t, 64<<20, layoutDefault)
	d := e.mkdir(root, "d")
	if e.attr(root).Nlink != 4 || e.attr(d).Nlink != 2 {
		t.Fatal("nlink after mkdir")
	}
	s := e.mkdir(d, "s")
	e.mknod(s, "f")
	if e.attr(d).Nlink != 3 {
		t.Fatal("nlink of parent")
	}
	wantErr(t, "rmdir non-empty", e.f.Rmdir(d, "s"), syscall.ENOTEMPTY)
	wantErr(t, "rmdir file", e.f.Rmdir(s, "f"), syscall.ENOTDIR)
	wantErr(t, "unlink dir", e.f.Unlink(d, "s"), syscall.EISDIR)
	wantErr(t, "rmdir .", e.f.Rmdir(d, "."), syscall.EINVAL)
	wantErr(t, "rmdir ..", e.f.Rmdir(d, ".."), syscall.ENOTEMPTY)
	wantErr(t, "rmdir missing", e.f.Rmdir(d, "zz"), syscall.ENOENT)
	if err := e.f.Unlink(s, "f"); err != nil {
		t.Fatal(err)
	}
	if err := e.f.Rmdir(d, "s"); err != nil {
		t.Fatal(err)
	}
	if e.attr(d).Nlink != 2 {
		t.Fatal("nlink after rmdir")
	}
	// A removed directory still referenced is empty and takes no new entries.
	e.f.Ref(d)
	if err := e.f.Rmdir(root, "d"); err != nil {
		t.Fatal(err)
	}
	if a := e.attr(d); a.Nlink != 0 {
		t.Fatalf("removed dir %+v", a)
	}
	_, err := e.f.Mknod(d, "x", syscall.S_IFREG|0644, 0, me)
	wantErr(t, "create in removed dir", err, syscall.ENOENT)
	if got := e.names(d); len(got) != 2 {
		t.Fatalf("removed dir lists %q", got)
	}
	e.deep()
	e.f.Forget(d, 1)
	if _, err := e.f.GetAttr(d); err == nil {
		t.Fatal("forgotten removed dir still there")
	}
	if e.attr(root).Nlink != 3 {
		t.Fatal("root nlink")
	}
}

func TestLinkUnlink(t *testing.T) {
	e := newEnv(t, 64<<20, layoutDefault)
	f := e.mknod(root, "a")
	e.write(f, []byte("hello"), 0)
	d := e.mkdir(root, "d")
	if a, err := e.f.Link(f, d, "b"); err != nil || a.Nlink != 2 {
		t.Fatalf("link: %+v %v", a, err)
	}
	_, err := e.f.Link(f, d, "b")
	wantErr(t, "link existing", err, syscall.EEXIST)
	_, err = e.f.Link(d, root, "dd")
	wantErr(t, "link dir", err, syscall.EPERM)
	if err := e.f.Unlink(root, "a"); err != nil {
		t.Fatal(err)
	}
	if got := e.read(e.lookup(d, "b"), 0, 10); string(got) != "hello" {
		t.Fatalf("read %q", got)
	}
	if e.attr(f).Nlink != 1 {
		t.Fatal("nlink")
	}
	wantErr(t, "unlink missing", e.f.Unlink(root, "a"), syscall.ENOENT)
	e.reopen()
	if err := e.f.Unlink(d, "b"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.f.GetAttr(f); err == nil {
		t.Fatal("unreferenced unlinked inode still there")
	}
}

func TestSymlink(t *testing.T) {
	e := newEnv(t, 64<<20, layoutDefault)
	for _, n := range []int{1, 100, 160, 161, 1000, 4095} {
		target := strings.Repeat("x/", n)[:n]
		a, err := e.f.Symlink(root, fmt.Sprint("l", n), target, me)
		if err != nil {
			t.Fatal(err)
		}
		if a.Mode != syscall.S_IFLNK|0777 || a.Size != uint64(n) {
			t.Fatalf("symlink %d: %+v", n, a)
		}
		got, err := e.f.Readlink(a.Ino)
		if err != nil || got != target {
			t.Fatalf("readlink %d: %q %v", n, got, err)
		}
	}
	_, err := e.f.Symlink(root, "big", strings.Repeat("x", 4096), me)
	wantErr(t, "4096-byte target", err, syscall.ENAMETOOLONG)
	_, err = e.f.Symlink(root, "empty", "", me)
	wantErr(t, "empty target", err, syscall.ENOENT)
	_, err = e.f.Readlink(e.mknod(root, "f"))
	wantErr(t, "readlink of a file", err, syscall.EINVAL)
	e.reopen()
	got, err := e.f.Readlink(e.lookup(root, "l4095"))
	if err != nil || len(got) != 4095 {
		t.Fatalf("after reopen: %d %v", len(got), err)
	}
	for _, n := range []int{1, 161, 4095} {
		if err := e.f.Unlink(root, fmt.Sprint("l", n)); err != nil {
			t.Fatal(err)
		}
	}
}

func TestRename(t *testing.T) {
	e := newEnv(t, 64<<20, layoutDefault)
	a := e.mkdir(root, "a")
	b := e.mkdir(root, "b")
	f := e.mknod(a, "f")
	g := e.mknod(b, "g")
	e.write(g, []byte("g"), 0)

	// Plain move across directories.
	if err := e.f.Rename(a, "f", b, "f2", 0); err != nil {
		t.Fatal(err)
	}
	if e.lookup(b, "f2") != f {
		t.Fatal("moved")
	}
	_, err := e.f.Lookup(a, "f")
	wantErr(t, "old name", err, syscall.ENOENT)
	// Overwrite: g's inode loses its link.
	e.f.Ref(g)
	if err := e.f.Rename(b, "f2", b, "g", 0); err != nil {
		t.Fatal(err)
	}
	if e.lookup(b, "g") != f || e.attr(g).Nlink != 0 {
		t.Fatal("overwrite")
	}
	e.deep() // g is an orphan now
	e.f.Forget(g, 1)
	// NOREPLACE.
	e.mknod(a, "x")
	wantErr(t, "noreplace", e.f.Rename(a, "x", b, "g", fs.RenameNoReplace), syscall.EEXIST)
	if err := e.f.Rename(a, "x", b, "y", fs.RenameNoReplace); err != nil {
		t.Fatal(err)
	}
	// Directories.
	s := e.mkdir(a, "s")
	e.mkdir(s, "t")
	wantErr(t, "into itself", e.f.Rename(a, "s", s, "s2", 0), syscall.EINVAL)
	wantErr(t, "into its subtree", e.f.Rename(root, "a", s, "a2", 0), syscall.EINVAL)
	wantErr(t, "dir over file", e.f.Rename(a, "s", b, "g", 0), syscall.ENOTDIR)
	wantErr(t, "file over dir", e.f.Rename(b, "g", a, "s", 0), syscall.EISDIR)
	e.mkdir(b, "full")
	e.mknod(e.lookup(b, "full"), "z")
	wantErr(t, "over non-empty dir", e.f.Rename(a, "s", b, "full", 0), syscall.ENOTEMPTY)
	empty := e.mkdir(b, "empty")
	if err := e.f.Rename(a, "s", b, "empty", 0); err != nil {
		t.Fatal(err)
	}
	if e.lookup(b, "empty") != s || e.lookup(s, "..") != b {
		t.Fatal("dir over empty dir")
	}
	if _, err := e.f.GetAttr(empty); err == nil {
		t.Fatal("replaced dir not freed")
	}
	if e.attr(a).Nlink != 2 || e.attr(b).Nlink != 4 {
		t.Fatalf("nlinks a %d b %d", e.attr(a).Nlink, e.attr(b).Nlink)
	}
	wantErr(t, "missing", e.f.Rename(a, "nope", b, "q", 0), syscall.ENOENT)
	wantErr(t, "bad flags", e.f.Rename(a, "x", b, "q", 4), syscall.EINVAL)
	wantErr(t, "both flags", e.f.Rename(a, "x", b, "q", 3), syscall.EINVAL)
	// Same inode under two names: nothing happens.
	if _, err := e.f.Link(f, b, "f3"); err != nil {
		t.Fatal(err)
	}
	if err := e.f.Rename(b, "g", b, "f3", 0); err != nil {
		t.Fatal(err)
	}
	if e.lookup(b, "g") != f || e.lookup(b, "f3") != f {
		t.Fatal("rename onto a hard link of itself")
	}
	e.reopen()
	if e.lookup(e.lookup(root, "b"), "empty") != s {
		t.Fatal("after reopen")
	}
}

func TestRenameExchange(t *testing.T) {
	e := newEnv(t, 64<<20, layoutDefault)
	a := e.mkdir(root, "a")
	b := e.mkdir(root, "b")
	f := e.mknod(a, "f")
	d := e.mkdir(b, "d")
	wantErr(t, "exchange with missing", e.f.Rename(a, "f", b, "nope", fs.RenameExchange), syscall.ENOENT)
	if err := e.f.Rename(a, "f", b, "d", fs.RenameExchange); err != nil {
		t.Fatal(err)
	}
	if e.lookup(a, "f") != d || e.lookup(b, "d") != f || e.lookup(d, "..") != a {
		t.Fatal("exchange")
	}
	if e.attr(a).Nlink != 3 || e.attr(b).Nlink != 2 {
		t.Fatalf("nlink a %d b %d", e.attr(a).Nlink, e.attr(b).Nlink)
	}
	var ents []fs.DirEntry
	e.f.ReadDir(a, 0, false, func(x fs.DirEntry) bool { ents = append(ents, x); return true })
	if len(ents) != 3 || ents[2].Mode != syscall.S_IFDIR {
		t.Fatalf("entry type after exchange: %+v", ents)
	}
	// A directory with an ancestor of itself.
	s := e.mkdir(d, "s")
	wantErr(t, "exchange with ancestor", e.f.Rename(d, "s", root, "a", fs.RenameExchange), syscall.EINVAL)
	_ = s
	e.reopen()
}

func TestReadDirCookies(t *testing.T) {
	e := newEnv(t, 64<<20, layoutDefault)
	d := e.mkdir(root, "d")
	const n = 2000
	for i := range n {
		e.mknod(d, fmt.Sprintf("file-%05d", i))
	}
	var all []fs.DirEntry
	if err := e.f.ReadDir(d, 0, true, func(x fs.DirEntry) bool { all = append(all, x); return true }); err != nil {
		t.Fatal(err)
	}
	if len(all) != n+2 || all[0].Name != "." || all[1].Name != ".." || all[1].Ino != root {
		t.Fatalf("%d entries", len(all))
	}
	for _, x := range all {
		if x.Attr == nil || x.Attr.Ino != x.Ino {
			t.Fatalf("plus entry %+v", x)
		}
	}
	// Resume from every cookie, 10 entries at a time, while entries
	// come and go: those present throughout appear exactly once.
	seen := map[string]int{}
	cookie := uint64(0)
	for round := 0; ; round++ {
		k := 0
		err := e.f.ReadDir(d, cookie, false, func(x fs.DirEntry) bool {
			seen[x.Name]++
			cookie = x.Next
			k++
			return k < 10
		})
		if err != nil {
			t.Fatal(err)
		}
		if k == 0 {
			break
		}
		e.mknod(d, fmt.Sprintf("new-%d", round))
		if round < n/2 {
			if err := e.f.Unlink(d, fmt.Sprintf("file-%05d", n-1-round)); err != nil {
				t.Fatal(err)
			}
		}
	}
	for i := range n / 2 {
		if c := seen[fmt.Sprintf("file-%05d", i)]; c != 1 {
			t.Fatalf("file-%05d seen %d times", i, c)
		}
	}
	for name, c := range seen {
		if c != 1 {
			t.Fatalf("%s seen %d times", name, c)
		}
	}
	names := e.names(d)
	if !slices.Contains(names, "new-0") {
		t.Fatal("new entry missing")
	}
}
