package main

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"agfs/cmd/internal/device"
	"agfs/disk"
	"agfs/fs/fusefs/fusetest"
	"agfs/layout"
)

func TestMain(m *testing.M) { os.Exit(fusetest.Main(m)) }

// mountCmd runs mount.agfs and returns its exit code and output.
func mountCmd(t *testing.T, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(filepath.Join(fusetest.Bin(t), "mount.agfs"), args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, out.String()
	case errors.As(err, &ee):
		return ee.ExitCode(), out.String()
	}
	t.Fatalf("mount.agfs: %v", err)
	return -1, ""
}

// refused checks that mount.agfs fails with one line containing want and
// leaves nothing mounted.
func refused(t *testing.T, want string, img, mnt string, opts ...string) {
	t.Helper()
	args := []string{img, mnt}
	if len(opts) > 0 {
		args = append(args, "-o", strings.Join(opts, ","))
	}
	fusetest.Guard(t, "", mnt)
	code, out := mountCmd(t, args...)
	if code == 0 {
		t.Fatalf("mount.agfs %q succeeded; want a refusal with %q", args, want)
	}
	if !strings.Contains(out, want) || strings.Count(strings.TrimSpace(out), "\n") != 0 {
		t.Errorf("mount.agfs %q: exit %d, output %q; want one line with %q", args, code, out, want)
	}
	if fusetest.Mounted(mnt) {
		t.Errorf("%s is mounted after a refusal", mnt)
	}
}

func newDir(t *testing.T) string {
	d := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(d, 0o755); err != nil {
		t.Fatal(err)
	}
	return d
}

func TestHelp(t *testing.T) {
	code, out := mountCmd(t, "--help")
	if code != 0 || !strings.HasPrefix(out, "NAME\n    mount.agfs") || !strings.Contains(out, "MOUNT OPTIONS") || !strings.Contains(out, "--foreground") {
		t.Errorf("--help: exit %d, output:\n%s", code, out)
	}
	code, out = mountCmd(t, "-o", "bogus", "a", "b")
	if code != exitFailure || out != "mount.agfs: unknown mount option \"bogus\"\n" {
		t.Errorf("unknown option: exit %d, output %q", code, out)
	}
	code, out = mountCmd(t, "onlyone")
	if code != exitUsage || !strings.Contains(out, "Try 'mount.agfs --help'") {
		t.Errorf("usage error: exit %d, output %q", code, out)
	}
}

func TestRefusals(t *testing.T) {
	fusetest.Require(t)
	dir := t.TempDir()

	t.Run("empty device", func(t *testing.T) {
		img := filepath.Join(dir, "zero.img")
		if err := disk.CreateImage(img, 64<<20); err != nil {
			t.Fatal(err)
		}
		refused(t, img+" does not contain an agfs filesystem", img, newDir(t))
	})
	t.Run("ext4", func(t *testing.T) {
		if _, err := exec.LookPath("mkfs.ext4"); err != nil {
			t.Skip("no mkfs.ext4")
		}
		img := filepath.Join(dir, "ext4.img")
		if err := disk.CreateImage(img, 64<<20); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command("mkfs.ext4", "-q", "-F", img).CombinedOutput(); err != nil {
			t.Fatalf("mkfs.ext4: %v %s", err, out)
		}
		refused(t, img+" contains an ext4 filesystem, not agfs", img, newDir(t))
	})
	t.Run("missing device", func(t *testing.T) {
		refused(t, "no such file or directory", filepath.Join(dir, "nothing.img"), newDir(t))
	})
	t.Run("missing mount point", func(t *testing.T) {
		img := fusetest.Format(t, "64M")
		refused(t, "mount point", img, filepath.Join(dir, "nodir"))
	})
	t.Run("mount point not a directory", func(t *testing.T) {
		img := fusetest.Format(t, "64M")
		refused(t, "is not a directory", img, img)
	})
	t.Run("newer format", func(t *testing.T) {
		img := fusetest.Format(t, "64M")
		patchSuperblock(t, img, func(b []byte, s *layout.Superblock) {
			le := b[64:68]
			v := layout.FormatVersion + 1
			le[0], le[1], le[2], le[3] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24)
			layout.Seal(b, s.Seed(), 0)
		})
		refused(t, "newer than this agfs", img, newDir(t))
		img = fusetest.Format(t, "64M")
		patchSuperblock(t, img, func(b []byte, s *layout.Superblock) {
			s.Incompat |= 1 << 62
			s.Encode(b, 0)
		})
		refused(t, "unknown incompatible features", img, newDir(t))
	})
	t.Run("already mounted", func(t *testing.T) {
		img := fusetest.Format(t, "64M")
		mnt := fusetest.Mount(t, img)
		refused(t, img+" is already mounted on "+mnt, img, newDir(t))
	})
	t.Run("held by another program", func(t *testing.T) {
		img := fusetest.Format(t, "64M")
		dev, err := disk.Open(img, disk.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer dev.Close()
		start := time.Now()
		refused(t, fmt.Sprintf("%s is in use by pid %d", img, os.Getpid()), img, newDir(t))
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("refusal took %v: only an agfs daemon is waited for", d)
		}
	})
}

// patchSuperblock rewrites the primary superblock of img.
func patchSuperblock(t *testing.T, img string, patch func(b []byte, s *layout.Superblock)) {
	t.Helper()
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, layout.MaxBlockSize)
	if _, err := f.ReadAt(b, 0); err != nil {
		t.Fatal(err)
	}
	s, err := layout.DecodeSuperblock(b, 0)
	if err != nil {
		t.Fatal(err)
	}
	b = make([]byte, s.BlockSize)
	if _, err := f.ReadAt(b, 0); err != nil {
		t.Fatal(err)
	}
	patch(b, s)
	if _, err := f.WriteAt(b, 0); err != nil {
		t.Fatal(err)
	}
}

func hashFile(t *testing.T, path string) [32]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return [32]byte(h.Sum(nil))
}

func writeTree(t *testing.T, mnt string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(mnt, "d/e"), 0o755); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		p := filepath.Join(mnt, "d", fmt.Sprintf("f%d", i))
		if err := os.WriteFile(p, bytes.Repeat([]byte{byte(i)}, 1000*i), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("d/f3", filepath.Join(mnt, "link")); err != nil {
		t.Fatal(err)
	}
}

func checkTree(t *testing.T, mnt string) {
	t.Helper()
	for i := range 20 {
		p := filepath.Join(mnt, "d", fmt.Sprintf("f%d", i))
		b, err := os.ReadFile(p)
		if err != nil || !bytes.Equal(b, bytes.Repeat([]byte{byte(i)}, 1000*i)) {
			t.Fatalf("%s: %d bytes, %v", p, len(b), err)
		}
	}
	if l, err := os.Readlink(filepath.Join(mnt, "link")); err != nil || l != "d/f3" {
		t.Fatalf("link: %q %v", l, err)
	}
}

// TestReadOnly: a read-only mount serves the files and writes nothing to
// the device, not even the mount time.
func TestReadOnly(t *testing.T) {
	fusetest.Require(t)
	img := fusetest.Format(t, "64M")
	mnt := fusetest.Mount(t, img)
	writeTree(t, mnt)
	if err := fusetest.Unmount(mnt, img); err != nil {
		t.Fatal(err)
	}
	before := hashFile(t, img)

	fusetest.MountAt(t, img, mnt, "ro")
	checkTree(t, mnt)
	if err := os.WriteFile(filepath.Join(mnt, "new"), nil, 0o644); !errors.Is(err, syscall.EROFS) {
		t.Errorf("create on a ro mount: %v, want EROFS", err)
	}
	if err := os.WriteFile(filepath.Join(mnt, "d/f1"), []byte("x"), 0o644); !errors.Is(err, syscall.EROFS) {
		t.Errorf("write on a ro mount: %v, want EROFS", err)
	}
	if err := fusetest.Unmount(mnt, img); err != nil {
		t.Fatal(err)
	}
	if hashFile(t, img) != before {
		t.Error("the image changed under a read-only mount")
	}
	fusetest.CheckClosed(t, img)
}

// TestRemount: a plain umount followed at once by a mount of the same
// image works, and the data is there.
func TestRemount(t *testing.T) {
	fusetest.Require(t)
	img := fusetest.Format(t, "64M")
	mnt := fusetest.Mount(t, img)
	writeTree(t, mnt)
	for i := range 5 {
		if err := syscall.Unmount(mnt, 0); err != nil {
			t.Fatalf("umount %d: %v", i, err)
		}
		start := time.Now()
		fusetest.MountAt(t, img, mnt)
		t.Logf("remount %d took %v", i, time.Since(start))
		checkTree(t, mnt)
		if err := os.WriteFile(filepath.Join(mnt, fmt.Sprintf("round%d", i)), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := fusetest.Unmount(mnt, img); err != nil {
		t.Fatal(err)
	}
	fusetest.CheckClosed(t, img)
}

// TestDaemon: the daemon left the caller's session and process group,
// holds no directory, and has its stdio on /dev/null.
func TestDaemon(t *testing.T) {
	fusetest.Require(t)
	img := fusetest.Format(t, "64M")
	fusetest.Mount(t, img)
	holder, daemon := device.Holder(img)
	if !daemon {
		t.Fatalf("the image is held by %q, not by an agfs daemon", holder)
	}
	var pid int
	fmt.Sscanf(holder, "pid %d", &pid)
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
	pgrp, _ := strconv.Atoi(f[2])
	sid, _ := strconv.Atoi(f[3])
	if sid != pid || pgrp != pid || sid == mySid() {
		t.Errorf("daemon %d: session %d, process group %d; want its own", pid, sid, pgrp)
	}
	if cwd, _ := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid)); cwd != "/" {
		t.Errorf("daemon's working directory is %q, want /", cwd)
	}
	for fd := range 3 {
		if l, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%d", pid, fd)); l != "/dev/null" {
			t.Errorf("daemon's fd %d is %q, want /dev/null", fd, l)
		}
	}
}

// TestSignal: SIGTERM (and SIGINT) unmount, close the filesystem cleanly
// and release the device before the daemon exits, also when the mount is
// busy.
func TestSignal(t *testing.T) {
	fusetest.Require(t)
	for _, tc := range []struct {
		name string
		sig  syscall.Signal
		busy bool
	}{
		{"SIGTERM", syscall.SIGTERM, false},
		{"SIGINT", syscall.SIGINT, false},
		{"SIGTERM busy", syscall.SIGTERM, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img := fusetest.Format(t, "64M")
			mnt := newDir(t)
			cmd := exec.Command(filepath.Join(fusetest.Bin(t), "mount.agfs"), "-f", img, mnt)
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			fusetest.Guard(t, img, mnt)
			exited := make(chan struct{})
			var waitErr error
			go func() { waitErr = cmd.Wait(); close(exited) }()
			t.Cleanup(func() {
				select {
				case <-exited:
				default:
					cmd.Process.Kill()
					<-exited
				}
			})
			for i := 0; !fusetest.Mounted(mnt); i++ {
				if i == 500 {
					t.Fatalf("not mounted after 10 s: %s", out.String())
				}
				time.Sleep(20 * time.Millisecond)
			}
			writeTree(t, mnt)
			if tc.busy {
				f, err := os.Open(filepath.Join(mnt, "d/f5"))
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
			}
			cmd.Process.Signal(tc.sig)
			select {
			case <-exited:
				if waitErr != nil {
					t.Fatalf("daemon: %v: %s", waitErr, out.String())
				}
			case <-time.After(30 * time.Second):
				t.Fatalf("daemon still running 30 s after %v", tc.sig)
			}
			if fusetest.Mounted(mnt) {
				t.Fatalf("%s still mounted after the daemon exited", mnt)
			}
			fusetest.CheckClosed(t, img)
			fusetest.MountAt(t, img, mnt)
			checkTree(t, mnt)
		})
	}
}

func mySid() int {
	sid, _ := unix.Getsid(0)
	return sid
}
