package fusefs_test

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"

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
