package fusefs

import (
	"sync"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// The kernel's writeback cache (mount option writeback_cache) lets write(2)
// return once the data is in the page cache. The kernel sends WRITE later
// (background writeback, fsync, close, munmap), with FUSE_WRITE_CACHE set;
// it keeps size and mtime itself, sends mtime and ctime with SETATTR when it
// writes the inode, and clears setuid/setgid with SETATTR at write(2)
// (Documentation/filesystems/fuse-io.rst). Two things then need help here:
//
//   - Errors of a writeback, ENOSPC above all. The kernel records them in
//     the file's mapping, so fsync(2) and close(2) report them, but write(2)
//     itself never asks agfs anything: a program writing until the disk is
//     full would write forever. It does ask when its cached attributes are
//     stale: fuse_cache_write_iter refreshes size and mode with a GETATTR
//     that carries the file handle (FUSE_GETATTR_FH) and fails write(2) with
//     that GETATTR's error. So a failed writeback records its errno for the
//     inode and drops the kernel's attributes (NOTIFY_INVAL_INODE, without
//     touching cached data); the next GETATTR made for an open file (write,
//     or a read past EOF or lseek SEEK_END, never stat(2)) answers that
//     errno, once.
//   - SEEK_DATA and SEEK_HOLE: see Lseek.

// wbErrors holds, per inode, the error of a failed writeback not yet
// reported through GETATTR.
type wbErrors struct {
	mu  sync.Mutex
	ino map[uint64]syscall.Errno
}

// writebackFailed records that a writeback WRITE of ino failed with e and
// makes the kernel ask for ino's attributes again.
func (f *FS) writebackFailed(ino uint64, e syscall.Errno) {
	f.wbErr.mu.Lock()
	if f.wbErr.ino == nil {
		f.wbErr.ino = map[uint64]syscall.Errno{}
	}
	f.wbErr.ino[ino] = e
	f.wbErr.mu.Unlock()
	if f.srv != nil {
		// A negative offset invalidates the attributes only: nothing here
		// waits for the page cache, which is being written back.
		f.srv.InodeNotify(ino, -1, 0)
	}
}

// takeWritebackError returns (and forgets) the recorded writeback error of
// ino, if the GETATTR in was made for an open file.
func (f *FS) takeWritebackError(in *fuse.GetAttrIn) syscall.Errno {
	if in.Flags()&fuse.FUSE_GETATTR_FH == 0 {
		return 0
	}
	f.wbErr.mu.Lock()
	defer f.wbErr.mu.Unlock()
	e := f.wbErr.ino[in.NodeId]
	delete(f.wbErr.ino, in.NodeId)
	return e
}

// forgetWritebackError drops ino's recorded error: the last close has
// reported it already (fuse_flush checks the mapping's errors).
func (f *FS) forgetWritebackError(ino uint64) {
	f.wbErr.mu.Lock()
	delete(f.wbErr.ino, ino)
	f.wbErr.mu.Unlock()
}
