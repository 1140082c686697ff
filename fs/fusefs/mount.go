package fusefs

import (
	"errors"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// MountOptions say how a filesystem is attached to the directory tree.
type MountOptions struct {
	// Device is the mount's source, shown in /proc/mounts and df: the
	// absolute path of the device or image.
	Device string
	// Subtype makes the kernel type "fuse.<Subtype>"; empty gives plain
	// "fuse" (what fstests expects with FSTYP=fuse).
	Subtype string
	// ReadOnly mounts with MS_RDONLY: the kernel refuses every change.
	ReadOnly bool
	// AllowOther lets users other than the mounter in; the kernel then
	// checks permissions itself (default_permissions is always on).
	AllowOther bool
	// Flags are the other MS_* flags: MS_NOSUID, MS_NODEV, MS_NOEXEC,
	// MS_NOATIME, MS_NODIRATIME, MS_RELATIME, MS_STRICTATIME.
	Flags uintptr
	// ACL turns on POSIX ACLs (system.posix_acl_access and _default),
	// enforced by the kernel.
	ACL bool
	// WritebackCache turns on the kernel's writeback cache: writes are
	// gathered in the page cache and reach agfs at writeback, fsync or
	// close, and the kernel keeps mtime and size itself.
	WritebackCache bool
	// URing serves requests over io_uring, one queue per CPU, where the
	// kernel allows it (uring.go); otherwise, or when not root, requests
	// come through /dev/fuse as usual.
	URing bool
	// Debug logs every FUSE request and reply to Logger.
	Debug bool
	// Logger receives go-fuse's messages; nil means log.Default().
	Logger *log.Logger
}

// Tuning of the FUSE connection (see docs and DESIGN.md, "The FUSE layer").
const (
	// maxWrite is the largest READ or WRITE request: 1 MiB, the kernel's
	// limit (fuse.MAX_KERNEL_WRITE), unless max_pages_limit is lower.
	maxWrite = fuse.MAX_KERNEL_WRITE
	// maxBackground is how many asynchronous requests (readahead,
	// writeback, RELEASE, FORGET) the kernel keeps in flight.
	maxBackground = 64
	// maxInflightBytes bounds the request buffers go-fuse holds at once,
	// so a storm of requests cannot exhaust memory.
	maxInflightBytes = 128 << 20
)

// Server is a mounted agfs filesystem.
type Server struct {
	fs     *FS
	srv    *fuse.Server
	mnt    string
	direct bool   // mounted with mount(2), not fusermount
	dev    string // "major:minor" of the mount, as in mountinfo
}

// Mount attaches f at mnt and answers the kernel's INIT: when Mount
// returns, the mount is live and Serve must be called to answer requests.
//
// As root it calls mount(2) itself, as go-fuse's DirectMount does, but with
// its own type and flags (go-fuse always sets a subtype); otherwise it asks
// fusermount3, and the type is then always fuse.agfs.
func Mount(f *FS, mnt string, o MountOptions) (*Server, error) {
	mnt, err := filepath.Abs(mnt)
	if err != nil {
		return nil, err
	}
	fo := &fuse.MountOptions{
		AllowOther:              o.AllowOther,
		FsName:                  o.Device,
		Name:                    o.Subtype,
		MaxWrite:                kernelMaxWrite(),
		MaxBackground:           maxBackground,
		MaxInflightRequestBytes: maxInflightBytes,
		EnableSymlinkCaching:    true,
		// Every change to file data comes through this kernel (agfs is
		// the device's only user), and the kernel itself drops what a
		// truncate, punch, zero range or copy_file_range replaces. So a
		// new mtime is no reason to drop a file's whole page cache, which
		// is what automatic invalidation does at the next GETATTR after a
		// write: read-after-write workloads then read everything again.
		ExplicitDataCacheControl: true,
		// HANDLE_KILLPRIV_V2: agfs clears setuid, setgid and file
		// capabilities itself when data or owner change (fs's
		// ClearPrivileges and SetAttr), as the kernel tells it to. The
		// kernel then stops asking for security.capability before
		// every write, a round trip per write(2).
		ExtraCapabilities: fuse.CAP_READDIRPLUS_AUTO | fuse.CAP_HANDLE_KILLPRIV_V2,
		Debug:             o.Debug,
		Logger:            o.Logger,
		PanicHandler:      f.panicked,
	}
	if fo.Name == "" {
		fo.Name = "agfs" // fusermount only; the direct mount uses Subtype
	}
	if o.WritebackCache {
		// DIRECT_IO_ALLOW_MMAP: the files openFlags sends around the
		// cache when space is low can still be mapped shared.
		fo.ExtraCapabilities |= fuse.CAP_WRITEBACK_CACHE | fuse.CAP_DIRECT_IO_ALLOW_MMAP
	}
	if o.ACL {
		// The kernel then leaves the umask to us: it does not apply where
		// the directory has a default ACL.
		fo.EnableAcl = true
		fo.ExtraCapabilities |= fuse.CAP_DONT_MASK
	}
	f.aclOn = o.ACL
	f.writeback = o.WritebackCache
	f.dirtyMax.Store(defaultDirtyMax)

	s := &Server{fs: f, mnt: mnt}
	if os.Geteuid() == 0 {
		var u *uring
		if o.URing && uringAvailable() == nil {
			if u, err = newURing(fo.MaxWrite, f.log); err != nil {
				f.log.Printf("agfs: not using io_uring: %v", err)
			} else {
				fo.ExtraCapabilities |= fuse.CAP_OVER_IO_URING
			}
		}
		fd, err := s.mountDirect(o, fo.MaxWrite)
		if err == nil {
			s.direct = true
			s.srv, err = fuse.NewServer(f, fmt.Sprintf("/dev/fd/%d", fd), fo)
			if err != nil {
				u.abandon()
				unix.Unmount(mnt, unix.MNT_DETACH)
				unix.Close(fd)
				return nil, fmt.Errorf("mount %s: %w", mnt, err)
			}
			s.startURing(u, fd, fo)
			return s, nil
		}
		u.abandon()
		if !errors.Is(err, syscall.EPERM) {
			return nil, fmt.Errorf("mount %s: %w", mnt, err)
		}
	}

	fo.Options = append([]string{"default_permissions"}, flagOptions(o)...)
	s.srv, err = fuse.NewServer(f, mnt, fo)
	if err != nil {
		return nil, fmt.Errorf("mount %s: %w", mnt, err)
	}
	if m, ok := findMount(mnt, o.Device); ok {
		s.dev = m.Dev
	}
	return s, nil
}

var readerProcs sync.Once

// addReaderProcs doubles GOMAXPROCS, once per process, when the first
// server starts serving: go-fuse sized its pool of readers from GOMAXPROCS
// in NewServer, before. go-fuse keeps up to
// GOMAXPROCS goroutines (at least two) blocked in read(2) on /dev/fuse,
// and each holds one of the runtime's Ps while it waits. With one P per
// CPU, the default, no P is then ever idle while the mount waits for
// requests, so the runtime's monitor thread takes the P back from a
// blocked reader at each of its ticks (every 20 µs while it finds
// something to do) and starts a thread to look for work with it
// (runtime.retake, handoffp), a wake-up and a context switch each time.
// Measured on 2 CPUs while untarring the Go tree: the monitor's share of
// the daemon's CPU samples fell from 18% to 7% with the Ps doubled, the
// retakes from 4.6% to 0.6%; rm -rf of the tree took 2.5 s instead of
// 2.8 s (medians of 3). Idle Ps cost nothing, and the kernel still runs
// at most one thread per CPU.
func addReaderProcs() {
	readerProcs.Do(func() { runtime.GOMAXPROCS(2 * runtime.GOMAXPROCS(0)) })
}

// mountDirect opens /dev/fuse and mounts it at s.mnt; it returns the fd.
func (s *Server) mountDirect(o MountOptions, maxRead int) (int, error) {
	fd, err := unix.Open("/dev/fuse", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open /dev/fuse: %w", err)
	}
	data := []string{
		"fd=" + strconv.Itoa(fd),
		fmt.Sprintf("rootmode=%o", syscall.S_IFDIR),
		"user_id=" + strconv.Itoa(os.Geteuid()),
		"group_id=" + strconv.Itoa(os.Getegid()),
		"max_read=" + strconv.Itoa(maxRead),
		"default_permissions",
	}
	if o.AllowOther {
		data = append(data, "allow_other")
	}
	fstype := "fuse"
	if o.Subtype != "" {
		fstype += "." + o.Subtype
	}
	flags := o.Flags
	if o.ReadOnly {
		flags |= unix.MS_RDONLY
	}
	if err := unix.Mount(o.Device, s.mnt, fstype, flags, strings.Join(data, ",")); err != nil {
		unix.Close(fd)
		return -1, err
	}
	if m, ok := findMount(s.mnt, o.Device); ok {
		s.dev = m.Dev
	}
	return fd, nil
}

// flagOptions spells the mount flags as fusermount options.
func flagOptions(o MountOptions) []string {
	var r []string
	if o.ReadOnly {
		r = append(r, "ro")
	}
	for _, f := range []struct {
		bit  uintptr
		name string
	}{
		{unix.MS_NOSUID, "nosuid"}, {unix.MS_NODEV, "nodev"}, {unix.MS_NOEXEC, "noexec"},
		{unix.MS_NOATIME, "noatime"}, {unix.MS_NODIRATIME, "nodiratime"},
		{unix.MS_RELATIME, "relatime"}, {unix.MS_STRICTATIME, "strictatime"},
	} {
		if o.Flags&f.bit != 0 {
			r = append(r, f.name)
		}
	}
	return r
}

// kernelMaxWrite is maxWrite, or less where the kernel allows less per
// request (/proc/sys/fs/fuse/max_pages_limit), as go-fuse computes it.
func kernelMaxWrite() int {
	b, err := os.ReadFile("/proc/sys/fs/fuse/max_pages_limit")
	if err != nil {
		return maxWrite
	}
	pages, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pages <= 0 {
		return maxWrite
	}
	return min(maxWrite, pages*os.Getpagesize())
}

// MountPoint is the absolute path the filesystem is mounted on.
func (s *Server) MountPoint() string { return s.mnt }

// Serve answers requests until the filesystem is unmounted, then waits for
// the requests still in flight. It reports whether the fs core is
// consistent and may be closed normally (no handler panicked).
func (s *Server) Serve() bool {
	go s.tuneBDI()
	addReaderProcs()
	s.srv.Serve()
	if u := s.fs.ring.Load(); u != nil && !u.wait(10*time.Second) {
		s.fs.log.Printf("agfs: io_uring queues still busy 10 s after the connection ended")
	}
	return s.fs.drain()
}

// startURing puts u to work once INIT has agreed on io_uring: the rings
// get their own descriptor of the connection (go-fuse closes its own when
// Serve returns), and a ProtocolServer that has seen the same INIT.
func (s *Server) startURing(u *uring, fd int, fo *fuse.MountOptions) {
	if u == nil {
		return
	}
	init := *s.srv.KernelSettings()
	if init.Flags64()&fuse.CAP_OVER_IO_URING == 0 {
		u.abandon()
		return
	}
	ringFD, err := unix.Dup(fd)
	if err != nil {
		s.fs.log.Printf("agfs: not using io_uring: %v", err)
		u.abandon()
		refuseURing(fd)
		return
	}
	ps := fuse.NewProtocolServer(s.fs, fo)
	in := unsafe.Slice((*byte)(unsafe.Pointer(&init)), unsafe.Sizeof(init))
	ps.HandleRequest([][]byte{in}, [][]byte{make([]byte, 4096)})
	u.run(ringFD, ps)
	s.fs.ring.Store(u)
}

// readaheadKB is the kernel readahead of an agfs mount. A FUSE mount gets
// the kernel's 128 KiB, and go-fuse cannot offer more at INIT; each
// readahead request is one O_DIRECT read, so sequential reads wait on the
// device 128 KiB at a time. 4 MiB lets several 1 MiB reads run at once
// (a cold sequential read of 1 GiB went from about 400 to 650 MB/s).
const readaheadKB = 4096

// defaultDirtyMax is the dirty data the kernel is assumed to hold for the
// mount until its bdi says (or where it cannot say: kernels before 6.2).
// The kernel gives a FUSE mount 1% of the dirty limit (strictly
// enforced), tens of MiB on most machines.
const defaultDirtyMax = 64 << 20

// dirtyWanted is the dirty data agfs lets the kernel hold for a mount in
// writeback mode: a sixteenth of the filesystem, at most dirtyWantedMax,
// and never less than the kernel gives by itself.
//
// The kernel's 1% of the dirty limit is a guard against FUSE daemons it
// cannot trust to write back; agfs's daemon runs as root. At 43 MiB it
// throttled a 1 GiB dd to about 0.94 GB/s, at 256 MiB 1.18 GB/s (means of
// 8 interleaved runs). The sixteenth keeps small filesystems as they were:
// files opened for writing bypass the cache once free space falls below
// twice this (lowSpace), which must stay a small part of the filesystem.
func dirtyWanted(fsBytes int64) int64 {
	return min(fsBytes/16, dirtyWantedMax)
}

const dirtyWantedMax = 256 << 20

// tuneBDI sets the mount's readahead and dirty limit and learns the limit
// once INIT is done: the kernel clamps the readahead to the INIT reply's
// max_readahead, so it must come after. A statfs of the mount point
// returns only then (requests wait for INIT). Without root, or on a
// kernel without the bdi in sysfs (max_bytes is Linux 6.2+), both stay as
// they are.
func (s *Server) tuneBDI() {
	if s.dev == "" {
		return
	}
	var st unix.Statfs_t
	if err := unix.Statfs(s.mnt, &st); err != nil || !s.mounted() {
		return
	}
	bdi := "/sys/class/bdi/" + s.dev + "/"
	os.WriteFile(bdi+"read_ahead_kb", []byte(strconv.Itoa(readaheadKB)), 0)
	maxBytes := func() int64 {
		b, err := os.ReadFile(bdi + "max_bytes")
		if err != nil {
			return 0
		}
		n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		if err != nil {
			return 0
		}
		return n
	}
	n := maxBytes()
	sb := s.fs.core.Superblock()
	if want := dirtyWanted(int64(sb.BlockCount) * int64(sb.BlockSize)); s.fs.writeback && n > 0 && want > n {
		os.WriteFile(bdi+"max_bytes", []byte(strconv.FormatInt(want, 10)), 0)
		n = maxBytes()
	}
	if n > 0 {
		s.fs.dirtyMax.Store(n)
	}
}

// Unmount detaches the filesystem, so that Serve returns. If the mount is
// busy, its FUSE connection is aborted (umount2 MNT_FORCE, which FUSE
// answers by aborting) and it is detached lazily: processes still using it
// get ENOTCONN, as with libfuse on SIGTERM, and agfs can close cleanly.
func (s *Server) Unmount() error {
	if !s.direct {
		if err := s.srv.Unmount(); err != nil {
			if out, err := exec.Command("fusermount3", "-u", "-z", s.mnt).CombinedOutput(); err != nil {
				return fmt.Errorf("unmount %s: %v: %s", s.mnt, err, strings.TrimSpace(string(out)))
			}
		}
		return nil
	}
	if !s.mounted() {
		return nil // already gone (umount(8) came first)
	}
	err := unix.Unmount(s.mnt, 0)
	if err == nil || err == unix.EINVAL {
		return nil
	}
	if err != unix.EBUSY {
		return fmt.Errorf("unmount %s: %w", s.mnt, err)
	}
	return s.Abort()
}

// Abort ends the FUSE connection: every pending and later request fails
// with ENOTCONN, Serve returns, and the mount is detached.
func (s *Server) Abort() error {
	if !s.mounted() {
		return nil
	}
	err := unix.Unmount(s.mnt, unix.MNT_FORCE)
	if err == nil || err == unix.EINVAL {
		return nil
	}
	if err := unix.Unmount(s.mnt, unix.MNT_DETACH); err != nil && err != unix.EINVAL {
		return fmt.Errorf("unmount %s: %w", s.mnt, err)
	}
	return nil
}

// mounted reports whether this server's mount is still the one visible at
// its mount point, so that unmounting by path cannot hit another mount.
func (s *Server) mounted() bool {
	m, ok := topMount(s.mnt)
	return ok && (s.dev == "" || m.Dev == s.dev)
}
