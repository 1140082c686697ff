package fusefs_test

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"agfs/fs/fusefs"
	"agfs/fs/fusefs/fusetest"
)

// transportStats reads the mount's io_uring counters: queues, and
// requests answered over them.
func transportStats(t *testing.T, mnt string) (queues, requests int) {
	t.Helper()
	buf := make([]byte, 64<<10)
	n, err := unix.Getxattr(mnt, fusefs.StatsXattr, buf)
	if err != nil {
		t.Fatalf("stats: %v", err)
	}
	found := 0
	sc := bufio.NewScanner(bytes.NewReader(buf[:n]))
	for sc.Scan() {
		name, v, _ := strings.Cut(sc.Text(), " ")
		x, _ := strconv.Atoi(v)
		switch name {
		case "fuse.uring_queues":
			queues, found = x, found+1
		case "fuse.uring_requests":
			requests, found = x, found+1
		}
	}
	if found != 2 {
		t.Fatalf("stats lack the fuse.uring_* counters:\n%s", buf[:n])
	}
	return queues, requests
}

// TestPosixURing runs go-fuse's posixtest suite on a mount whose requests
// travel over io_uring (-o uring, which also turns the kernel's switch
// on): one queue per possible CPU, and the suite's requests counted on
// them. fsck must find the image clean afterwards.
func TestPosixURing(t *testing.T) {
	fusetest.Require(t)
	img := fusetest.Format(t, "128M")
	mnt := fusetest.Mount(t, img, "allow_other", "uring")
	b, err := os.ReadFile("/sys/devices/system/cpu/possible")
	if err != nil {
		t.Fatal(err)
	}
	queues, before := transportStats(t, mnt)
	if queues == 0 {
		t.Fatalf("-o uring: no io_uring queue (possible CPUs %s); see the mount's log", strings.TrimSpace(string(b)))
	}
	runPosixIn(t, mnt)
	if _, after := transportStats(t, mnt); after-before < 1000 {
		t.Errorf("%d requests over io_uring during the suite; want thousands", after-before)
	}
	if err := fusetest.Unmount(mnt, img); err != nil {
		t.Fatal(err)
	}
	fusetest.CheckClosed(t, img)
}

// TestNoURing: -o nouring keeps every request on /dev/fuse.
func TestNoURing(t *testing.T) {
	fusetest.Require(t)
	img := fusetest.Format(t, "64M")
	mnt := fusetest.Mount(t, img, "nouring")
	if err := os.WriteFile(filepath.Join(mnt, "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if queues, requests := transportStats(t, mnt); queues != 0 || requests != 0 {
		t.Errorf("-o nouring: %d queues, %d requests over io_uring", queues, requests)
	}
}
