package main

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"agfs/cmd/internal/cli"
	"agfs/disk"
	"agfs/fs/fusefs"
	"agfs/fs/fusefs/fusetest"
	"agfs/tests/src/leak"
)

func TestScanOptions(t *testing.T) {
	c := parse(t, "mount.agfs", "-o", "noscan,scan_interval=250ms,scan_rate=0", "img", "mnt")
	if !c.fs.NoScan || c.fs.ScanInterval != 250*time.Millisecond || c.fs.ScanRate >= 0 {
		t.Errorf("scan options not applied: %+v", c.fs)
	}
	if c := parse(t, "mount.agfs", "-o", "noscan,scan,scan_rate=500", "img", "mnt"); c.fs.NoScan || c.fs.ScanRate != 500 {
		t.Errorf("scan after noscan, scan_rate=500: %+v", c.fs)
	}
	for _, bad := range []string{"scan_rate=-1", "scan_rate=fast", "scan_interval=0s", "scan_interval=soon", "noscan=1", "scan_rate"} {
		if _, _, err := parseArgs("mount.agfs", []string{"-o", bad, "img", "mnt"}); err == nil {
			t.Errorf("-o %s accepted", bad)
		}
	}
	for _, args := range [][]string{{"--stats"}, {"--stats", "a", "b"}} {
		_, _, err := parseArgs("mount.agfs", args)
		var ue cli.UsageError
		if !asUsage(err, &ue) {
			t.Errorf("%q: %v, want a usage error", args, err)
		}
	}
}

// TestStats: a leak planted on the unmounted image is reclaimed by the
// scanner of the mount, as --stats shows; the stats attribute is read-only
// and not listed.
func TestStats(t *testing.T) {
	fusetest.Require(t)
	img := fusetest.Format(t, "64M")
	dev, err := disk.Open(img, disk.Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = leak.Plant(dev)
	dev.Close()
	if err != nil {
		t.Fatal(err)
	}
	mnt := fusetest.Mount(t, img, "scan_interval=20ms", "scan_rate=0")
	var out string
	for deadline := time.Now().Add(20 * time.Second); ; {
		code, o := mountCmd(t, "--stats", mnt)
		if code != 0 {
			t.Fatalf("--stats: exit %d: %s", code, o)
		}
		out = o
		if strings.Contains(out, "scan.reclaimed_unowned_blocks 1\n") && strings.Contains(out, "scan.reclaimed_unnamed_inodes 1\n") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no reclaim after 20 s:\n%s", out)
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, want := range []string{"scan.enabled 1\n", "scan.reclaimed_unlinked_inodes 1\n", "scan.errors 0\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("--stats lacks %q:\n%s", want, out)
		}
	}
	buf := make([]byte, 4096)
	n, err := unix.Listxattr(mnt, buf)
	if err != nil || strings.Contains(string(buf[:n]), fusefs.StatsXattr) {
		t.Errorf("listxattr of the root: %q, %v; want no %s", buf[:n], err, fusefs.StatsXattr)
	}
	if err := unix.Setxattr(mnt, fusefs.StatsXattr, []byte("x"), 0); !errors.Is(err, unix.EPERM) {
		t.Errorf("setxattr %s: %v, want EPERM", fusefs.StatsXattr, err)
	}
	if err := unix.Removexattr(mnt, fusefs.StatsXattr); !errors.Is(err, unix.EPERM) {
		t.Errorf("removexattr %s: %v, want EPERM", fusefs.StatsXattr, err)
	}
	sub := mnt + "/d"
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{sub, t.TempDir()} {
		code, o := mountCmd(t, "--stats", dir)
		if code == 0 || !strings.Contains(o, "not the root of an agfs mount") {
			t.Errorf("--stats %s: exit %d, %q; want a refusal", dir, code, o)
		}
	}
	if err := fusetest.Unmount(mnt, img); err != nil {
		t.Fatal(err)
	}
	fusetest.Check(t, img)
}
