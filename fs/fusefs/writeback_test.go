package fusefs_test

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"agfs/fs/fusefs/fusetest"
)

// TestWritebackENOSPC: with the writeback cache, write(2) only fills the
// page cache, yet a program writing until the disk is full must get ENOSPC
// from write(2) soon after the space runs out, not write forever; and the
// filesystem is consistent afterwards.
func TestWritebackENOSPC(t *testing.T) {
	fusetest.Require(t)
	const size = 32 << 20
	img := fusetest.Format(t, "32M")
	mnt := fusetest.Mount(t, img, "writeback_cache")
	f, err := os.Create(filepath.Join(mnt, "fill"))
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1<<20)
	var written int64
	for err == nil {
		if written > 8*size {
			t.Fatalf("wrote %d MiB to a %d MiB filesystem without an error", written>>20, size>>20)
		}
		var n int
		n, err = f.Write(buf)
		written += int64(n)
	}
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("write after %d MiB: %v, want ENOSPC", written>>20, err)
	}
	t.Logf("write(2) failed with ENOSPC after %d MiB", written>>20)
	f.Close() // may report the same ENOSPC again
	if err := os.Remove(filepath.Join(mnt, "fill")); err != nil {
		t.Fatal(err)
	}
	if err := fusetest.Unmount(mnt, img); err != nil {
		t.Fatal(err)
	}
	fusetest.CheckClosed(t, img)
}

// TestWritebackSeekData: SEEK_DATA and SEEK_HOLE see data still in the
// kernel's page cache (written, not yet written back).
func TestWritebackSeekData(t *testing.T) {
	fusetest.Require(t)
	img := fusetest.Format(t, "32M")
	mnt := fusetest.Mount(t, img, "writeback_cache")
	f, err := os.Create(filepath.Join(mnt, "sparse"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	const at, n = 1 << 20, 8192
	if _, err := f.WriteAt(make([]byte, n), at); err != nil { // zeros are data too
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte{1}, 3<<20); err != nil {
		t.Fatal(err)
	}
	fd := int(f.Fd())
	for _, c := range []struct {
		whence   int
		off, res int64
	}{
		{unix.SEEK_DATA, 0, at},
		{unix.SEEK_HOLE, at, at + n},
		{unix.SEEK_DATA, at + n, 3 << 20},
	} {
		got, err := unix.Seek(fd, c.off, c.whence)
		if err != nil || got != c.res {
			t.Errorf("lseek(%d, whence %d) = %d, %v; want %d", c.off, c.whence, got, err, c.res)
		}
	}
}

// TestWritebackLowSpace: files opened while space is plentiful use the
// writeback cache; once less than twice the mount's dirty limit is free,
// new files bypass it, so a program that writes small new files until the
// disk is full gets ENOSPC from write(2) itself (it may never look at
// close(2)), and stops.
func TestWritebackLowSpace(t *testing.T) {
	fusetest.Require(t)
	img := fusetest.Format(t, "512M")
	mnt := fusetest.Mount(t, img, "writeback_cache")
	buf := make([]byte, 256<<10)
	var files int
	for ; ; files++ {
		if files > 4096 {
			t.Fatalf("%d files of 256 KiB written to a 512 MiB filesystem without ENOSPC from write(2)", files)
		}
		f, err := os.Create(filepath.Join(mnt, "f"+strconv.Itoa(files)))
		if err != nil {
			t.Fatalf("create after %d files: %v", files, err)
		}
		_, werr := f.Write(buf)
		f.Close() // an error here alone is what must not be the only signal
		if werr != nil {
			if !errors.Is(werr, syscall.ENOSPC) {
				t.Fatalf("write after %d files: %v, want ENOSPC", files, werr)
			}
			break
		}
	}
	t.Logf("write(2) failed with ENOSPC at file %d (%d MiB)", files, files/4)
	if files < 256 {
		t.Errorf("ENOSPC after %d files: the space should have lasted for about 2,000", files)
	}
	if err := fusetest.Unmount(mnt, img); err != nil {
		t.Fatal(err)
	}
	fusetest.CheckClosed(t, img)
}

// TestWritebackDirtyLimit: a large filesystem in writeback mode raises its
// mount's dirty limit (the bdi's max_bytes) to a sixteenth of its size,
// at most 256 MiB; a small one keeps the kernel's, so that the cache is
// not bypassed (lowSpace) on a filesystem that is nearly empty.
func TestWritebackDirtyLimit(t *testing.T) {
	fusetest.Require(t)
	maxBytes := func(mnt string) int64 {
		t.Helper()
		var st unix.Stat_t
		if err := unix.Stat(mnt, &st); err != nil {
			t.Fatal(err)
		}
		bdi := "/sys/class/bdi/" + strconv.Itoa(int(unix.Major(st.Dev))) + ":" + strconv.Itoa(int(unix.Minor(st.Dev)))
		b, err := os.ReadFile(bdi + "/max_bytes")
		if errors.Is(err, os.ErrNotExist) {
			t.Skipf("%s: no max_bytes (Linux 6.2+)", bdi)
		}
		if err != nil {
			t.Fatal(err)
		}
		n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	// tuneBDI runs beside the first requests: give it a moment.
	settled := func(mnt string, ok func(int64) bool) int64 {
		t.Helper()
		var n int64
		for range 100 {
			if n = maxBytes(mnt); ok(n) {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		return n
	}
	small := fusetest.Mount(t, fusetest.Format(t, "32M"), "writeback_cache")
	kernel := maxBytes(small)
	if kernel <= 0 || kernel >= 256<<20 {
		t.Skipf("the kernel gives a FUSE mount %d dirty bytes: nothing to raise", kernel)
	}
	// The kernel stores the limit as a ratio of the dirty threshold, which
	// moves with free memory: allow 1% either way.
	near := func(n, want int64) bool { return n > want*99/100 && n < want*101/100 }
	time.Sleep(200 * time.Millisecond)
	if n := maxBytes(small); !near(n, kernel) {
		t.Errorf("32 MiB filesystem: max_bytes %d, want the kernel's %d", n, kernel)
	}
	big := fusetest.Mount(t, fusetest.Format(t, "8G"), "writeback_cache")
	const want = 256 << 20
	raised := func(n int64) bool { return near(n, want) }
	if n := settled(big, raised); !raised(n) {
		t.Errorf("8 GiB filesystem: max_bytes %d, want about %d", n, want)
	}
	nowb := fusetest.Mount(t, fusetest.Format(t, "8G"), "nowriteback_cache")
	time.Sleep(200 * time.Millisecond)
	if n := maxBytes(nowb); !near(n, kernel) {
		t.Errorf("8 GiB filesystem without the writeback cache: max_bytes %d, want the kernel's %d", n, kernel)
	}
}
