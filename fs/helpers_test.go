package fs_test

import (
	"bytes"
	"errors"
	"syscall"
	"testing"

	"agfs/disk"
	"agfs/fs"
	"agfs/fsck"
	"agfs/layout"
	"agfs/mkfs"
)

// env is a filesystem on an in-memory device for one test. Its cleanup
// checks it deeply (fs.Deep), closes it, and runs fsck.Check on the image.
type env struct {
	t   testing.TB
	dev *disk.Mem
	f   *fs.FS
	sb  *layout.Superblock
	opt fs.Options
}

func format(t testing.TB, dev disk.Device, p layout.Params) *layout.Superblock {
	t.Helper()
	sb, err := mkfs.Plan(dev.Size(), mkfs.Options{Params: p})
	if err != nil {
		t.Fatal(err)
	}
	if err := mkfs.Format(dev, sb); err != nil {
		t.Fatal(err)
	}
	return sb
}

func newEnv(t testing.TB, size int64, p layout.Params) *env {
	t.Helper()
	dev := disk.NewMem(size)
	e := &env{t: t, dev: dev, sb: format(t, dev, p)}
	e.open()
	t.Cleanup(func() {
		if t.Failed() {
			if e.f != nil {
				e.f.Close()
			}
			return
		}
		if e.f != nil {
			e.deep()
			if err := e.f.Close(); err != nil {
				t.Errorf("close: %v", err)
			}
			e.f = nil
		}
		checkImage(t, e.dev)
	})
	return e
}

func checkImage(t testing.TB, dev disk.Device) {
	t.Helper()
	rep, err := fsck.Check(dev)
	if err != nil {
		t.Errorf("fsck: %v", err)
		return
	}
	if !rep.Clean() {
		t.Errorf("fsck: %v", rep.Problems)
	}
}

func (e *env) open() {
	e.t.Helper()
	f, err := fs.Open(e.dev, e.opt)
	if err != nil {
		e.t.Fatalf("open: %v", err)
	}
	e.f = f
}

// reopen closes and opens the filesystem again, checking it in between.
func (e *env) reopen() {
	e.t.Helper()
	e.deep()
	if err := e.f.Close(); err != nil {
		e.t.Fatalf("close: %v", err)
	}
	checkImage(e.t, e.dev)
	e.open()
	e.deep()
}

// crash drops the open FS without closing it and opens the image from its
// bytes as they are (what was written, flushed or not: a Mem keeps every
// write).
func (e *env) crash() {
	e.t.Helper()
	img := bytes.Clone(e.dev.Bytes())
	e.dev = disk.NewMemFrom(img)
	e.f = nil // abandoned (its goroutines stay; the old Mem is not closed)
	e.open()
}

func (e *env) deep() {
	e.t.Helper()
	if err := e.f.Deep(); err != nil {
		e.t.Fatalf("deep check: %v", err)
	}
}

var root = uint64(layout.RootIno)

var layoutDefault = layout.Params{}

var me = fs.Caller{UID: 1000, GID: 1000}

func (e *env) mknod(dir uint64, name string) uint64 {
	e.t.Helper()
	a, err := e.f.Mknod(dir, name, syscall.S_IFREG|0644, 0, me)
	if err != nil {
		e.t.Fatalf("mknod %s: %v", name, err)
	}
	return a.Ino
}

func (e *env) mkdir(dir uint64, name string) uint64 {
	e.t.Helper()
	a, err := e.f.Mkdir(dir, name, 0755, me)
	if err != nil {
		e.t.Fatalf("mkdir %s: %v", name, err)
	}
	return a.Ino
}

func (e *env) write(ino uint64, p []byte, off int64) {
	e.t.Helper()
	n, err := e.f.Write(ino, p, off)
	if err != nil || n != len(p) {
		e.t.Fatalf("write %d bytes at %d: %d, %v", len(p), off, n, err)
	}
}

func (e *env) read(ino uint64, off int64, n int) []byte {
	e.t.Helper()
	buf := make([]byte, n)
	k, err := e.f.Read(ino, buf, off)
	if err != nil {
		e.t.Fatalf("read %d bytes at %d: %v", n, off, err)
	}
	return buf[:k]
}

func (e *env) attr(ino uint64) fs.Attr {
	e.t.Helper()
	a, err := e.f.GetAttr(ino)
	if err != nil {
		e.t.Fatalf("getattr %d: %v", ino, err)
	}
	return a
}

func (e *env) lookup(dir uint64, name string) uint64 {
	e.t.Helper()
	a, err := e.f.Lookup(dir, name)
	if err != nil {
		e.t.Fatalf("lookup %s: %v", name, err)
	}
	return a.Ino
}

func (e *env) names(dir uint64) []string {
	e.t.Helper()
	var out []string
	err := e.f.ReadDir(dir, 0, false, func(d fs.DirEntry) bool {
		out = append(out, d.Name)
		return true
	})
	if err != nil {
		e.t.Fatalf("readdir: %v", err)
	}
	return out
}

func wantErr(t testing.TB, what string, err error, want syscall.Errno) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: got %v, want %v", what, err, want)
	}
}

func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7+i/4096) ^ seed
	}
	return b
}

func errorsIs(err error, target syscall.Errno) bool { return errors.Is(err, target) }
