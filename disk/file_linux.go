package disk

// The Linux system calls behind File. They work on raw descriptors and
// return bare errnos; file.go adds the path and offset a user needs.

import (
	"errors"
	"io"
	"unsafe"

	"golang.org/x/sys/unix"
)

// fileKind is what a path names, as far as Open cares.
type fileKind int

const (
	kindRegular fileKind = iota
	kindBlock
	kindOther
)

// statKind follows symlinks, so /dev/disk/by-id/... names are recognised
// as the block devices they point to.
func statKind(path string) (fileKind, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return kindOther, err
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		return kindRegular, nil
	case unix.S_IFBLK:
		return kindBlock, nil
	}
	return kindOther, nil
}

// openFlags builds the open(2) flags for a device. A block device opened for
// writing gets O_EXCL, which on Linux claims the device in the kernel: the
// open fails with EBUSY while it is mounted by any filesystem or claimed by
// another O_EXCL opener (mkfs, another agfs).
func openFlags(kind fileKind, readOnly, direct bool) int {
	flags := unix.O_CLOEXEC
	if readOnly {
		flags |= unix.O_RDONLY
	} else {
		flags |= unix.O_RDWR
		if kind == kindBlock {
			flags |= unix.O_EXCL
		}
	}
	if direct {
		flags |= unix.O_DIRECT
	}
	return flags
}

func openFD(path string, flags int) (int, error) {
	for {
		fd, err := unix.Open(path, flags, 0)
		if err != unix.EINTR {
			return fd, err
		}
	}
}

// lockFD takes a non-blocking flock on the open file: shared for read-only
// opens, exclusive otherwise. flock locks belong to the open file
// description, so a second Open in the same process conflicts just like one
// in another process, and the kernel drops the lock when the descriptor is
// closed, even if the process dies. It reports errBusyLock when someone else
// holds a conflicting lock.
func lockFD(fd int, shared bool) error {
	how := unix.LOCK_EX | unix.LOCK_NB
	if shared {
		how = unix.LOCK_SH | unix.LOCK_NB
	}
	for {
		err := unix.Flock(fd, how)
		switch err {
		case unix.EINTR:
			continue
		case unix.EWOULDBLOCK:
			return errBusyLock
		}
		return err
	}
}

// errBusyLock is lockFD's "somebody else holds it"; Open turns it into
// ErrBusy with the path.
var errBusyLock = errors.New("lock held")

// deviceSize is the length of what fd refers to: st_size is 0 for block
// devices, whose length only the BLKGETSIZE64 ioctl knows.
func deviceSize(fd int, kind fileKind) (int64, error) {
	if kind == kindBlock {
		var size uint64
		_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.BLKGETSIZE64, uintptr(unsafe.Pointer(&size)))
		if errno != 0 {
			return 0, errno
		}
		return int64(size), nil
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return 0, err
	}
	return st.Size, nil
}

// Alignments assumed when the kernel cannot tell us (statx STATX_DIOALIGN is
// Linux 6.1+ for files, later for block devices, and not every filesystem
// fills it in). A page is enough for any memory-alignment rule in practice,
// and 4096 covers the block size of every common filesystem; a request that
// is only 512-aligned then takes File's read-modify-write path, which is slow
// but correct.
const (
	fallbackMemAlign    = 4096
	fallbackOffsetAlign = 4096
)

// dioAlignment reports the memory and file-offset alignment O_DIRECT needs
// on fd, or ok=false when direct I/O is pointless or impossible there and
// the caller should switch to buffered I/O.
func dioAlignment(fd int, kind fileKind) (memAlign, offAlign int, ok bool) {
	var stx unix.Statx_t
	err := unix.Statx(fd, "", unix.AT_EMPTY_PATH, unix.STATX_DIOALIGN, &stx)
	if err == nil && stx.Mask&unix.STATX_DIOALIGN != 0 {
		if stx.Dio_offset_align == 0 {
			return 0, 0, false // the filesystem says: no direct I/O here
		}
		return int(stx.Dio_mem_align), int(stx.Dio_offset_align), true
	}
	if kind == kindBlock {
		if ss, err := unix.IoctlGetInt(fd, unix.BLKSSZGET); err == nil && ss > 0 {
			return fallbackMemAlign, ss, true
		}
		return fallbackMemAlign, fallbackOffsetAlign, true
	}
	// tmpfs (Linux 6.6+) accepts O_DIRECT but has no device behind it:
	// "direct" I/O there is page-cache I/O with alignment rules added, so
	// report it honestly as buffered.
	var sfs unix.Statfs_t
	if err := unix.Fstatfs(fd, &sfs); err == nil && (sfs.Type == unix.TMPFS_MAGIC || sfs.Type == unix.RAMFS_MAGIC) {
		return 0, 0, false
	}
	return fallbackMemAlign, fallbackOffsetAlign, true
}

// clearDirect turns O_DIRECT off on an open descriptor (Linux allows
// changing it with F_SETFL), so falling back to buffered I/O does not need
// a second open that could race with another process for the lock.
func clearDirect(fd int) error {
	flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	if err != nil {
		return err
	}
	_, err = unix.FcntlInt(uintptr(fd), unix.F_SETFL, flags&^unix.O_DIRECT)
	return err
}

// preadFull reads len(p) bytes at off, retrying short reads. Reaching end
// of file first is io.ErrUnexpectedEOF: callers only read inside the device
// size, so it means the file shrank under us.
func preadFull(fd int, p []byte, off int64) (int, error) {
	done := 0
	for done < len(p) {
		n, err := unix.Pread(fd, p[done:], off+int64(done))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return done, err
		}
		if n == 0 {
			return done, io.ErrUnexpectedEOF
		}
		done += n
	}
	return done, nil
}

// pwriteFull writes all of p at off, retrying short writes.
func pwriteFull(fd int, p []byte, off int64) (int, error) {
	done := 0
	for done < len(p) {
		n, err := unix.Pwrite(fd, p[done:], off+int64(done))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return done, err
		}
		if n == 0 {
			return done, io.ErrShortWrite
		}
		done += n
	}
	return done, nil
}

// fdatasync rather than fsync: agfs never changes the image's size or
// relies on its timestamps, so flushing the data (and whatever metadata is
// needed to read it back) is all durability requires.
func fdatasync(fd int) error {
	for {
		err := unix.Fdatasync(fd)
		if err != unix.EINTR {
			return err
		}
	}
}

func closeFD(fd int) error {
	return unix.Close(fd)
}
