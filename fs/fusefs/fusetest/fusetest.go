// Package fusetest runs agfs mounts for tests: it builds mkfs.agfs and
// mount.agfs, formats images in temporary directories, and mounts them
// with the real mount.agfs in a separate process (a test that mounts in its
// own process can deadlock against itself, see go-fuse's "Deadlocks").
//
// Every mount is undone when its test ends, whatever the outcome: unmount
// (retried while busy), then a forced unmount (which aborts the FUSE
// connection) and a lazy detach, then a wait until the daemon has released
// the image. A watchdog aborts a mount that outlives its deadline, so a hung
// filesystem fails its test instead of hanging the run.
package fusetest

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"agfs/disk"
	"agfs/fs/fusefs"
	"agfs/fsck"
	"agfs/internal/mountinfo"
	"agfs/layout"
)

// Watchdog is how long a mount may live before it is aborted.
var Watchdog = 5 * time.Minute

var (
	binOnce sync.Once
	binDir  string
	binErr  error
)

// Main runs the tests and removes the binaries built for them. Call it from
// TestMain.
func Main(m *testing.M) int {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	return code
}

// Require skips a test that cannot mount: not root, or no /dev/fuse.
func Require(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting needs root")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skip("no /dev/fuse")
	}
}

// Bin builds mkfs.agfs, mount.agfs and fsck.agfs (once per test binary)
// and returns their directory.
func Bin(t testing.TB) string {
	t.Helper()
	binOnce.Do(func() {
		binDir, binErr = os.MkdirTemp("", "agfs-bin.")
		if binErr != nil {
			return
		}
		for _, c := range []string{"mkfs", "mount", "fsck"} {
			cmd := exec.Command("go", "build", "-o", filepath.Join(binDir, c+".agfs"), "agfs/cmd/"+c)
			if out, err := cmd.CombinedOutput(); err != nil {
				binErr = fmt.Errorf("go build agfs/cmd/%s: %v\n%s", c, err, out)
				return
			}
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binDir
}

// Format makes a fresh image of the given size ("64M") in a temporary
// directory of the test, formatted by mkfs.agfs with extra arguments.
func Format(t testing.TB, size string, args ...string) string {
	t.Helper()
	img := filepath.Join(t.TempDir(), "agfs.img")
	out, err := Run(t, "mkfs.agfs", append(append([]string{"-q", "-s", size}, args...), img)...)
	if err != nil {
		t.Fatalf("mkfs.agfs: %v: %s", err, out)
	}
	return img
}

// Run runs one of the built commands and returns its combined output.
func Run(t testing.TB, name string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(filepath.Join(Bin(t), name), args...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// Mount mounts img on a new directory with mount.agfs (which returns once
// the mount is live) and returns the directory. It is unmounted when the
// test ends.
func Mount(t testing.TB, img string, opts ...string) string {
	t.Helper()
	mnt := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	MountAt(t, img, mnt, opts...)
	return mnt
}

// MountAt is Mount on an existing directory.
func MountAt(t testing.TB, img, mnt string, opts ...string) {
	t.Helper()
	args := []string{img, mnt}
	if len(opts) > 0 {
		args = append(args, "-o", strings.Join(opts, ","))
	}
	cmd := exec.Command(filepath.Join(Bin(t), "mount.agfs"), args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	Guard(t, img, mnt)
	if err != nil {
		t.Fatalf("mount.agfs %s: %v: %s", strings.Join(args, " "), err, out.String())
	}
	if !Mounted(mnt) {
		t.Fatalf("mount.agfs returned, but %s is not mounted", mnt)
	}
}

// Guard makes sure mnt is unmounted and img released when the test ends,
// and aborts the mount if it outlives Watchdog.
func Guard(t testing.TB, img, mnt string) {
	timer := time.AfterFunc(Watchdog, func() {
		syscall.Unmount(mnt, syscall.MNT_FORCE)
		syscall.Unmount(mnt, syscall.MNT_DETACH)
	})
	t.Cleanup(func() {
		timer.Stop()
		if err := Unmount(mnt, img); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
}

// Mounted reports whether an agfs filesystem is mounted on mnt.
func Mounted(mnt string) bool {
	ms, _ := mountinfo.Read(mountinfo.Self)
	for _, m := range ms {
		if m.MountPoint == mnt && fusefs.IsAgfsType(m.FSType) {
			return true
		}
	}
	return false
}

// Unmount unmounts mnt (if mounted) and waits until img is released. A
// mount that stays busy is aborted and detached, and an error returned.
func Unmount(mnt, img string) error {
	var err error
	if Mounted(mnt) {
		for i := 0; i < 20 && Mounted(mnt); i++ {
			if err = syscall.Unmount(mnt, 0); err == nil || err == syscall.EINVAL {
				err = nil
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if err != nil {
			syscall.Unmount(mnt, syscall.MNT_FORCE)
			syscall.Unmount(mnt, syscall.MNT_DETACH)
			err = fmt.Errorf("%s stayed busy (%v): aborted and detached", mnt, err)
		}
	}
	if img != "" {
		if werr := WaitReleased(img, 30*time.Second); werr != nil {
			err = errors.Join(err, werr)
		}
	}
	return err
}

// WaitReleased waits until no process holds img (its lock can be taken).
func WaitReleased(img string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		dev, err := disk.Open(img, disk.Options{})
		if err == nil {
			dev.Close()
			return nil
		}
		if !errors.Is(err, disk.ErrBusy) {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s still held %v after unmount", img, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Check runs the offline checker on img (which must be released) and
// fails the test on any problem.
func Check(t testing.TB, img string) { check(t, img, false) }

// CheckClosed is Check, and also requires that the filesystem was closed
// cleanly: marked clean, with an empty log.
func CheckClosed(t testing.TB, img string) { check(t, img, true) }

func check(t testing.TB, img string, closed bool) {
	t.Helper()
	dev, err := disk.Open(img, disk.Options{ReadOnly: true})
	if err != nil {
		t.Fatalf("fsck: %v", err)
	}
	defer dev.Close()
	r, err := fsck.Check(dev)
	if err != nil {
		t.Fatalf("fsck: %v", err)
	}
	if !r.Clean() {
		for _, p := range r.Problems {
			t.Errorf("fsck: %v", p)
		}
		t.Fatalf("fsck: %s is not clean (%d problems)", img, len(r.Problems))
	}
	if closed {
		if r.Super != nil && r.Super.State&layout.StateClean == 0 {
			t.Errorf("%s is not marked clean (state %#x)", img, r.Super.State)
		}
		if r.Log != nil && !r.Log.Clean {
			t.Errorf("%s: the log was not closed cleanly: %d transactions to replay", img, r.Log.Replayed)
		}
	}
}
