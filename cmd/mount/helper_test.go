package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"agfs/fs/fusefs/fusetest"
)

// helperScript runs in a private mount namespace: it puts the installed
// mount.fuse.agfs where mount(8) looks for helpers (/sbin, here
// /usr/sbin), then mounts with mount -t fuse.agfs and through an fstab line.
const helperScript = `
set -e
T=$1 IMG=$2 MNT=$3 HELPER=$4
cleanup() { umount "$MNT" 2>/dev/null || { umount -f "$MNT"; umount -l "$MNT"; } 2>/dev/null || true; }
trap cleanup EXIT
mkdir "$T/orig" "$T/sbin"
mount --bind /usr/sbin "$T/orig"
for f in "$T"/orig/*; do ln -s "$f" "$T/sbin/"; done
ln -sfn "$HELPER" "$T/sbin/mount.fuse.agfs"
mount --bind "$T/sbin" /usr/sbin

mount -t fuse.agfs -o allow_other,dev "$IMG" "$MNT"
echo "type: $(findmnt -rn -o FSTYPE,SOURCE --mountpoint "$MNT")"
echo hello >"$MNT/f"
umount "$MNT"

echo "$IMG $MNT fuse.agfs allow_other,noatime,nofail 0 0" >"$T/fstab"
mount --bind "$T/fstab" /etc/fstab
mount "$MNT"
echo "fstab: $(findmnt -n -o FSTYPE --mountpoint "$MNT") $(cat "$MNT/f")"
case ",$(findmnt -n -o VFS-OPTIONS --mountpoint "$MNT")," in *,noatime,*) echo noatime ;; esac
umount "$MNT"
`

// TestMountHelper: make install puts mount.fuse.agfs in place, and mount(8)
// mounts agfs with it, from the command line and from fstab, with the
// kernel type fuse and the image's absolute path as the source.
func TestMountHelper(t *testing.T) {
	fusetest.Require(t)
	for _, p := range []string{"make", "unshare", "mount", "findmnt"} {
		if _, err := exec.LookPath(p); err != nil {
			t.Skipf("no %s", p)
		}
	}
	root, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	prefix, sbin := filepath.Join(tmp, "prefix"), filepath.Join(tmp, "sbin")
	make := exec.Command("make", "-C", filepath.Dir(strings.TrimSpace(string(root))), "install",
		"BIN="+filepath.Join(tmp, "bin"), "PREFIX="+prefix, "SBINDIR="+sbin)
	if out, err := make.CombinedOutput(); err != nil {
		t.Fatalf("make install: %v\n%s", err, out)
	}
	for _, c := range []string{"mkfs", "mount", "fsck"} {
		if _, err := os.Stat(filepath.Join(prefix, "sbin", c+".agfs")); err != nil {
			t.Errorf("make install: %v", err)
		}
	}
	helper := filepath.Join(sbin, "mount.fuse.agfs")
	if l, err := os.Readlink(helper); err != nil || l != filepath.Join(prefix, "sbin", "mount.agfs") {
		t.Fatalf("make install: %s -> %q (%v), want a symlink to mount.agfs", helper, l, err)
	}

	img := fusetest.Format(t, "64M")
	mnt := newDir(t)
	ns := filepath.Join(tmp, "ns")
	if err := os.Mkdir(ns, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("unshare", "-m", "--propagation", "private", "bash", "-c", helperScript, "helper", ns, img, mnt, helper)
	out, err := cmd.CombinedOutput()
	if rerr := fusetest.WaitReleased(img, 30*time.Second); rerr != nil {
		t.Error(rerr)
	}
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	want := "type: fuse " + img + "\nfstab: fuse hello\nnoatime\n"
	if string(out) != want {
		t.Errorf("got\n%s\nwant\n%s", out, want)
	}
	fusetest.CheckClosed(t, img)
}
