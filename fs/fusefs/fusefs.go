// Package fusefs serves an agfs filesystem (package agfs/fs) to the kernel
// over FUSE, with go-fuse's raw API.
//
// Decisions:
//   - NodeId is the inode number (the root is 1) and Generation the on-disk
//     generation, so there is no node table: the kernel's own references
//     are counted by the fs core (fs.Ref / fs.Forget). Every reply that
//     hands the kernel a new reference adds one: LOOKUP, CREATE, MKNOD,
//     MKDIR, SYMLINK, LINK, TMPFILE and every READDIRPLUS entry except "."
//     and "..". FORGET and BATCH_FORGET subtract what the kernel says.
//   - Open handles are counted too (fs.OpenFile / fs.Release), so an
//     unlinked file lives while it is open. Handles carry no state: the
//     file handle number is always 0.
//   - Requests run concurrently; this layer holds no lock of its own on
//     the request path beyond a read-locked gate that lets Serve wait for
//     requests in flight before the filesystem is closed.
//   - Permissions are checked by the kernel (default_permissions), POSIX
//     ACLs included; this layer keeps ACLs and modes in sync and passes
//     default ACLs on (acl.go).
//   - A panic in a handler shuts the filesystem down: it is logged, every
//     later request gets EIO, and the device is not written again (the log
//     replays at the next mount), as XFS does on a forced shutdown.
package fusefs

import (
	"log"
	"math"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"

	"agfs/fs"
)

// Options tune the FUSE layer. The zero value is usable.
type Options struct {
	// EntryTimeout, AttrTimeout and NegativeTimeout are how long the
	// kernel may trust a name, an inode's attributes and the absence of a
	// name. agfs is the only writer of its device and every change goes
	// through the kernel, so they can be long; zero means DefaultTimeout.
	// A negative value turns the cache off.
	EntryTimeout, AttrTimeout, NegativeTimeout time.Duration
	// Logger receives errors the kernel cannot be told about (corruption,
	// panics). Nil means log.Default().
	Logger *log.Logger
}

// DefaultTimeout is the entry, attribute and negative-entry timeout when
// Options leaves them zero: libfuse's default.
const DefaultTimeout = time.Second

// FS is a fuse.RawFileSystem over an agfs filesystem. Operations it does not
// implement answer ENOSYS (fuse.NewDefaultRawFileSystem).
type FS struct {
	fuse.RawFileSystem

	core    *fs.FS
	log     *log.Logger
	blksize uint32

	entryTTL, attrTTL, negTTL time.Duration

	// gate is held shared by every request and exclusively by drain.
	gate   sync.RWMutex
	closed bool
	// down is set by a panic: the core may be inconsistent, so nothing
	// touches it again.
	down atomic.Bool

	tmpSeq atomic.Uint64

	// aclOn: POSIX ACLs are negotiated (set by Mount); dontMask: the
	// kernel leaves the umask to us (learnt at INIT).
	aclOn, dontMask bool
	// writeback: the kernel's writeback cache is on (asked for by Mount,
	// confirmed at INIT), so file data may sit dirty in the page cache
	// where agfs cannot see it.
	writeback bool
	wbErr     wbErrors
	// dirtyMax is the most file data, in bytes, the kernel may hold
	// dirty for this mount (its bdi's max_bytes, learnt after INIT); with
	// the writeback cache, files opened for writing while less than twice
	// that is free bypass the cache (openFlags).
	dirtyMax atomic.Int64
	// srv sends notifications to the kernel (set at INIT).
	srv *fuse.Server
	// ring is the io_uring transport, when requests travel over it (set
	// after INIT); its counters join the stats.
	ring atomic.Pointer[uring]
	acls aclLocks
}

// New wraps core. The caller keeps ownership of core: after the server
// stops (Server.Serve returns) it closes it.
func New(core *fs.FS, o Options) *FS {
	ttl := func(d time.Duration) time.Duration {
		switch {
		case d == 0:
			return DefaultTimeout
		case d < 0:
			return 0
		}
		return d
	}
	f := &FS{
		RawFileSystem: fuse.NewDefaultRawFileSystem(),
		core:          core,
		log:           o.Logger,
		entryTTL:      ttl(o.EntryTimeout),
		attrTTL:       ttl(o.AttrTimeout),
		negTTL:        ttl(o.NegativeTimeout),
	}
	if f.log == nil {
		f.log = log.Default()
	}
	f.blksize = core.StatFS().Bsize
	if f.blksize == 0 {
		f.blksize = 4096
	}
	return f
}

func (f *FS) String() string { return "agfs" }

// enter admits a request; it returns false once the filesystem is closed
// or shut down, and the request must then answer EIO. A true return must be
// paired with leave.
func (f *FS) enter() bool {
	if f.down.Load() {
		return false
	}
	f.gate.RLock()
	if f.closed {
		f.gate.RUnlock()
		return false
	}
	return true
}

func (f *FS) leave() { f.gate.RUnlock() }

// drain waits for the requests in flight and refuses any later one. It
// reports whether the core is still consistent (no handler panicked), that
// is whether it may be closed normally.
func (f *FS) drain() bool {
	f.gate.Lock()
	f.closed = true
	f.gate.Unlock()
	return !f.down.Load()
}

// ShutDown reports whether a handler panicked and the filesystem was shut
// down.
func (f *FS) ShutDown() bool { return f.down.Load() }

// panicked is the server's PanicHandler.
func (f *FS) panicked(v any) fuse.Status {
	if !f.down.Swap(true) {
		f.log.Printf("agfs: internal error, filesystem shut down (every request now fails with EIO; unmount and run fsck.agfs): %v", v)
	}
	return fuse.EIO
}

func caller(h *fuse.InHeader) fs.Caller { return fs.Caller{UID: h.Uid, GID: h.Gid} }

// fillAttr converts an fs.Attr into the kernel's attributes.
func (f *FS) fillAttr(a *fs.Attr, out *fuse.Attr) {
	out.Ino = a.Ino
	out.Size = a.Size
	out.Blocks = a.Blocks
	out.Atime, out.Atimensec = splitNs(a.Atime)
	out.Mtime, out.Mtimensec = splitNs(a.Mtime)
	out.Ctime, out.Ctimensec = splitNs(a.Ctime)
	out.Mode = a.Mode
	out.Nlink = a.Nlink
	out.Uid = a.UID
	out.Gid = a.GID
	out.Rdev = a.Rdev
	out.Blksize = f.blksize
	out.Flags = 0
}

// fillEntry answers a request that gives the kernel a reference to a.
func (f *FS) fillEntry(a *fs.Attr, out *fuse.EntryOut) {
	out.NodeId = a.Ino
	out.Generation = uint64(a.Gen)
	out.SetEntryTimeout(f.entryTTL)
	out.SetAttrTimeout(f.attrTTL)
	f.fillAttr(a, &out.Attr)
}

// splitNs splits Unix nanoseconds into seconds and nanoseconds, rounding
// toward minus infinity as struct timespec does for times before 1970.
func splitNs(ns int64) (uint64, uint32) {
	t := time.Unix(0, ns)
	return uint64(t.Unix()), uint32(t.Nanosecond())
}

// joinNs is the inverse of splitNs. Times beyond what int64 nanoseconds
// hold (years before 1678 or after 2262) are clamped, as filesystems clamp
// timestamps to their range.
func joinNs(sec uint64, nsec uint32) int64 {
	const maxSec = math.MaxInt64/1_000_000_000 - 1
	s := int64(sec)
	switch {
	case s > maxSec:
		return math.MaxInt64
	case s < -maxSec:
		return math.MinInt64
	}
	return s*1e9 + int64(nsec)
}

func isDir(mode uint32) bool { return mode&syscall.S_IFMT == syscall.S_IFDIR }
