package fusefs

import (
	"errors"
	"io"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"

	"agfs/disk"
	"agfs/layout"
)

// Errno maps an error from the fs core to the errno the kernel is given:
// a syscall.Errno anywhere in the chain is answered as itself; corrupt
// metadata is EIO (logged, with its location, as EUCLEAN would be); a
// read-only device is EROFS; anything else is EIO.
func Errno(err error) syscall.Errno {
	if err == nil {
		return 0
	}
	var errno syscall.Errno
	switch {
	case errors.Is(err, layout.ErrCorrupt):
		return syscall.EIO
	case errors.As(err, &errno) && errno != 0:
		return errno
	case errors.Is(err, disk.ErrReadOnly):
		return syscall.EROFS
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, disk.ErrOutOfRange):
		return syscall.EIO
	}
	return syscall.EIO
}

// status answers a request with err, logging what the caller cannot be
// told: corruption and errors that carry no errno of their own.
func (f *FS) status(op string, ino uint64, err error) fuse.Status {
	e := Errno(err)
	if e == syscall.EIO {
		f.log.Printf("agfs: %s on inode %d: %v", op, ino, err)
	}
	return fuse.Status(e)
}
