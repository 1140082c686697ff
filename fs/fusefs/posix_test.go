package fusefs_test

import (
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/hanwen/go-fuse/v2/posixtest"

	"agfs/fs/fusefs/fusetest"
)

func TestMain(m *testing.M) { os.Exit(fusetest.Main(m)) }

// invalid are posixtest tests that fail on every Linux filesystem, tmpfs
// and ext4 included, so their failure says nothing about agfs.
var invalid = map[string]string{
	// It expects a second fcntl(F_SETLK) on another descriptor of the same
	// file, from the same process, to fail with EAGAIN; POSIX record locks
	// belong to the process, so the kernel grants it (go-fuse's own
	// TestAll skips this test too).
	"FcntlFlockLocksFile": "POSIX locks are per process: the test expects EAGAIN where every filesystem grants the lock",
}

func posixNames() []string {
	names := make([]string, 0, len(posixtest.All))
	for name := range posixtest.All {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

// TestPosix runs go-fuse's posixtest suite, each test on a fresh agfs image
// mounted by mount.agfs in its own process, and checks the image with fsck
// after the unmount (it must also have been closed cleanly).
func TestPosix(t *testing.T) {
	fusetest.Require(t)
	for _, name := range posixNames() {
		t.Run(name, func(t *testing.T) {
			if why, ok := invalid[name]; ok {
				t.Skip(why)
			}
			img := fusetest.Format(t, "64M")
			mnt := fusetest.Mount(t, img, "allow_other")
			// A subdirectory, as go-fuse runs the suite: the root holds
			// lost+found, and some tests want an empty directory.
			dir := filepath.Join(mnt, name)
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			posixtest.All[name](t, dir)
			if err := fusetest.Unmount(mnt, img); err != nil {
				t.Fatal(err)
			}
			fusetest.CheckClosed(t, img)
		})
	}
}

// TestPosixWritebackCache runs the suite again with the kernel's writeback
// cache on.
func TestPosixWritebackCache(t *testing.T) {
	fusetest.Require(t)
	img := fusetest.Format(t, "128M")
	mnt := fusetest.Mount(t, img, "allow_other", "writeback_cache")
	runPosixIn(t, mnt)
	if err := fusetest.Unmount(mnt, img); err != nil {
		t.Fatal(err)
	}
	fusetest.CheckClosed(t, img)
}

// runPosixIn runs every posixtest test on the one mount at mnt, each in a
// subdirectory of its own.
func runPosixIn(t *testing.T, mnt string) {
	for _, name := range posixNames() {
		t.Run(name, func(t *testing.T) {
			if why, ok := invalid[name]; ok {
				t.Skip(why)
			}
			dir := filepath.Join(mnt, name)
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			posixtest.All[name](t, dir)
		})
	}
}
