package fusefs

import (
	"errors"
	"io"
	"math"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// openFlags are the FOPEN_ flags of an open file. The kernel may keep a
// file's cached pages across opens: nothing but the kernel changes agfs
// files, and it invalidates them itself when it sees mtime or size change.
//
// With the writeback cache, write(2) returns once the kernel has the
// bytes, and a full filesystem shows only when the kernel writes them back:
// fsync(2) and close(2) fail, which many programs ignore. So a file opened
// for writing while the free space is less than twice what the kernel may
// hold dirty for the mount bypasses the cache (direct I/O): its write(2)
// reaches agfs and fails with ENOSPC itself. Its shared mappings still go
// through the page cache (DIRECT_IO_ALLOW_MMAP, mount.go).
func (f *FS) openFlags(flags uint32) uint32 {
	if f.writeback && flags&syscall.O_ACCMODE != syscall.O_RDONLY && f.lowSpace() {
		return fuse.FOPEN_KEEP_CACHE | fuse.FOPEN_DIRECT_IO
	}
	return fuse.FOPEN_KEEP_CACHE
}

// lowSpace reports whether less than twice dirtyMax is free.
func (f *FS) lowSpace() bool {
	st := f.core.StatFS()
	return st.Bavail*uint64(st.Bsize) < 2*uint64(f.dirtyMax.Load())
}

// Open counts an open handle. O_TRUNC never arrives here: the kernel
// truncates with SETATTR first (go-fuse does not negotiate ATOMIC_O_TRUNC).
func (f *FS) Open(cancel <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	if !f.enter() {
		return fuse.EIO
	}
	defer f.leave()
	if err := f.core.OpenFile(in.NodeId); err != nil {
		return f.status("open", in.NodeId, err)
	}
	*out = fuse.OpenOut{OpenFlags: f.openFlags(in.Flags)}
	return fuse.OK
}

func (f *FS) Release(cancel <-chan struct{}, in *fuse.ReleaseIn) {
	if !f.enter() {
		return
	}
	defer f.leave()
	f.forgetWritebackError(in.NodeId)
	f.core.Release(in.NodeId)
}

func (f *FS) Read(cancel <-chan struct{}, in *fuse.ReadIn, buf []byte) (fuse.ReadResult, fuse.Status) {
	if !f.enter() {
		return nil, fuse.EIO
	}
	defer f.leave()
	if int(in.Size) > len(buf) {
		buf = make([]byte, in.Size)
	}
	n, err := f.core.Read(in.NodeId, buf[:in.Size], int64(in.Offset))
	if err != nil && !errors.Is(err, io.EOF) && n == 0 {
		return nil, f.status("read", in.NodeId, err)
	}
	return fuse.ReadResultData(buf[:n]), fuse.OK
}

func (f *FS) Write(cancel <-chan struct{}, in *fuse.WriteIn, data []byte) (uint32, fuse.Status) {
	if !f.enter() {
		return 0, fuse.EIO
	}
	defer f.leave()
	if err := f.clearPrivileges(in.NodeId, in.WriteFlags&fuse.WRITE_KILL_SUIDGID != 0); err != nil {
		return 0, f.status("write", in.NodeId, err)
	}
	n, err := f.core.Write(in.NodeId, data, int64(in.Offset))
	if n < len(data) && in.WriteFlags&fuse.WRITE_CACHE != 0 {
		// The kernel does not retry the rest of a short writeback, so
		// it must fail; the core stops short only at ENOSPC.
		if err == nil {
			err = syscall.ENOSPC
		}
		st := f.status("write", in.NodeId, err)
		f.writebackFailed(in.NodeId, syscall.Errno(st))
		return 0, st
	}
	if err != nil && n == 0 {
		return 0, f.status("write", in.NodeId, err)
	}
	return uint32(n), fuse.OK
}

// Flush (FLUSH is sent at every close(2)) answers ENOSYS, so the kernel
// stops sending it, saving a round trip per close. (go-fuse's default
// answers OK, which keeps it coming.) There is nothing to do: writes reach
// agfs as they happen, with the writeback cache the kernel writes its
// dirty pages (and close(2) reports their errors) before it would send
// FLUSH, POSIX locks are the kernel's own (agfs does not take GETLK and
// SETLK, so no lock waits for FLUSH to be released), and durability is
// fsync's business.
func (f *FS) Flush(cancel <-chan struct{}, in *fuse.FlushIn) fuse.Status { return fuse.ENOSYS }

// clearPrivileges is fs.ClearPrivileges before a change to ino's data.
// The kernel does not expect the change to alter the mode, so when it did
// the attributes it caches are dropped (a notification that leaves the
// page cache alone); the next stat asks again.
func (f *FS) clearPrivileges(ino uint64, kill bool) error {
	changed, err := f.core.ClearPrivileges(ino, kill)
	if changed && f.srv != nil {
		f.srv.InodeNotify(ino, -1, 0)
	}
	return err
}

// privilegedCaller reports whether the caller of a request is taken to
// have CAP_FSETID (and so keeps setuid and setgid). With
// HANDLE_KILLPRIV_V2 (mount.go) the kernel clears neither on FALLOCATE
// and COPY_FILE_RANGE and, unlike for WRITE and SETATTR, does not say
// whether the caller has the capability; root is taken to have it.
func privilegedCaller(h *fuse.InHeader) bool { return h.Uid == 0 }

// fsyncFdatasync is FUSE_FSYNC_FDATASYNC: only the data and the metadata
// needed to read it back must be durable.
const fsyncFdatasync = 1

func (f *FS) Fsync(cancel <-chan struct{}, in *fuse.FsyncIn) fuse.Status {
	if !f.enter() {
		return fuse.EIO
	}
	defer f.leave()
	if err := f.core.Fsync(in.NodeId, in.FsyncFlags&fsyncFdatasync != 0); err != nil {
		return f.status("fsync", in.NodeId, err)
	}
	return fuse.OK
}

// Fallocate passes every mode to the core, which answers EOPNOTSUPP for the
// ones it lacks (fsx and xfs_io then skip them rather than fail).
func (f *FS) Fallocate(cancel <-chan struct{}, in *fuse.FallocateIn) fuse.Status {
	if !f.enter() {
		return fuse.EIO
	}
	defer f.leave()
	if in.Offset > math.MaxInt64 || in.Length > math.MaxInt64 {
		return fuse.Status(syscall.EFBIG)
	}
	if err := f.clearPrivileges(in.NodeId, !privilegedCaller(&in.InHeader)); err != nil {
		return f.status("fallocate", in.NodeId, err)
	}
	if err := f.core.Fallocate(in.NodeId, in.Mode, int64(in.Offset), int64(in.Length)); err != nil {
		return f.status("fallocate", in.NodeId, err)
	}
	return fuse.OK
}

// Lseek answers SEEK_DATA and SEEK_HOLE; the kernel does the other whences
// itself.
//
// With the writeback cache, the kernel sends LSEEK without writing its dirty
// pages first (fs/fuse/file.c, fuse_lseek), so agfs would report as holes
// ranges already written. Invalidating the pages from the offset on makes
// the kernel write the dirty ones back (launder_folio) before the
// notification returns, and the inode lock the kernel holds during LSEEK
// keeps write(2) from dirtying more. The price is that those pages are read
// again from agfs when next used.
func (f *FS) Lseek(cancel <-chan struct{}, in *fuse.LseekIn, out *fuse.LseekOut) fuse.Status {
	if f.writeback && f.srv != nil && in.Offset <= math.MaxInt64 {
		if st := f.srv.InodeNotify(in.NodeId, int64(in.Offset), 0); st != fuse.OK && st != fuse.ENOENT {
			return st
		}
	}
	if !f.enter() {
		return fuse.EIO
	}
	defer f.leave()
	off, err := f.core.Lseek(in.NodeId, int64(in.Offset), int(in.Whence))
	if err != nil {
		return f.status("lseek", in.NodeId, err)
	}
	out.Offset = uint64(off)
	return fuse.OK
}

// maxCopy bounds one COPY_FILE_RANGE: the reply counts bytes in 32 bits;
// copy_file_range(2) returns a short count and callers loop.
const maxCopy = math.MaxUint32 &^ (1<<20 - 1)

func (f *FS) CopyFileRange(cancel <-chan struct{}, in *fuse.CopyFileRangeIn) (uint32, fuse.Status) {
	if !f.enter() {
		return 0, fuse.EIO
	}
	defer f.leave()
	if in.Flags != 0 {
		return 0, fuse.EINVAL
	}
	n := min(in.Len, maxCopy)
	if err := f.clearPrivileges(in.NodeIdOut, !privilegedCaller(&in.InHeader)); err != nil {
		return 0, f.status("copy_file_range", in.NodeIdOut, err)
	}
	done, err := f.core.CopyFileRange(in.NodeId, int64(in.OffIn), in.NodeIdOut, int64(in.OffOut), int64(n))
	if err != nil && done == 0 {
		return 0, f.status("copy_file_range", in.NodeId, err)
	}
	return uint32(done), fuse.OK
}
