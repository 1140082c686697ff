package disk

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"unsafe"
)

var (
	// ErrBusy means another Open (in this process or another) holds the
	// device: it is mounted, being formatted or being checked.
	ErrBusy = errors.New("in use by another process (mounted or being formatted?)")
	// ErrReadOnly is returned by WriteAt on a device opened read-only.
	ErrReadOnly = errors.New("device is opened read-only")
	// ErrUnaligned is returned for an offset or length that is not a
	// multiple of SectorSize. File refuses such requests even when it does
	// buffered I/O, so a misaligned caller fails the same way on every host
	// instead of only where O_DIRECT is in effect.
	ErrUnaligned = errors.New("offset or length is not a multiple of the sector size")
)

// Options say how to open a device.
type Options struct {
	// ReadOnly opens without write access and takes a shared lock, so
	// several read-only users (fsck -n, dump) may coexist, but not with a
	// writer.
	ReadOnly bool
	// Direct asks for O_DIRECT, bypassing the host page cache so agfs's own
	// cache is the only one and Flush has less to write. Where the host
	// cannot do direct I/O (tmpfs, some network filesystems) the File
	// silently uses buffered I/O; File.Direct reports which one it got.
	Direct bool
}

// bounceSize is the size of the aligned buffers unaligned O_DIRECT requests
// are copied through. Larger requests are done in chunks of this size.
const bounceSize = 256 << 10

// File is a Device over a regular file (an image) or a block device.
//
// It is safe for concurrent use. It holds a lock on the device for as long
// as it is open, so two agfs processes never write the same device.
type File struct {
	path     string
	readOnly bool
	size     int64

	// mu is held shared by every operation on fd and exclusively by Close,
	// so Close cannot release the descriptor number while a pread or
	// pwrite is using it (the number could be reused by an unrelated open
	// and receive our write).
	mu     sync.RWMutex
	fd     int
	closed bool

	direct   bool
	memAlign int // address alignment O_DIRECT needs for buffers
	offAlign int // offset and length alignment O_DIRECT needs
	bounce   sync.Pool

	// rmw is held shared by aligned direct writes and exclusively by a
	// read-modify-write, which rewrites neighbouring sectors with the
	// contents it read: a concurrent write to one of them would be lost.
	rmw sync.RWMutex
}

var _ Device = (*File)(nil)

// Open opens the regular file or block device at path as a Device and locks
// it: a second Open of the same device, from this process or another, fails
// with an error wrapping ErrBusy until the first is closed.
//
// The lock is a flock on the file, exclusive for writers and shared for
// read-only opens, so checkers may run side by side but never next to a
// writer; the kernel drops it when the process dies, so a crash never
// leaves a stale lock behind. A block device opened for writing is also
// opened with O_EXCL, which keeps it away from kernel mounts and other
// tools (mkfs) that claim devices that way rather than with flock.
//
// The size of a regular file is its length when opened; agfs never grows
// it (see CreateImage). A trailing partial sector is not part of the device.
func Open(path string, opts Options) (*File, error) {
	kind, err := statKind(path)
	if err != nil {
		return nil, fmt.Errorf("disk: open %s: %w", path, unwrapPathError(err))
	}
	if kind == kindOther {
		return nil, fmt.Errorf("disk: open %s: not a regular file or block device", path)
	}

	direct := opts.Direct
	fd, err := openFD(path, openFlags(kind, opts.ReadOnly, direct))
	if err != nil && direct && errors.Is(err, syscall.EINVAL) {
		// The host filesystem refuses O_DIRECT (older tmpfs, some FUSE
		// filesystems): use the page cache instead.
		direct = false
		fd, err = openFD(path, openFlags(kind, opts.ReadOnly, false))
	}
	if err != nil {
		if kind == kindBlock && errors.Is(err, syscall.EBUSY) {
			return nil, fmt.Errorf("disk: %s: %w", path, ErrBusy)
		}
		return nil, fmt.Errorf("disk: open %s: %w", path, err)
	}

	f := &File{path: path, readOnly: opts.ReadOnly, fd: fd}
	if err := f.setup(kind, direct); err != nil {
		closeFD(fd)
		return nil, err
	}
	return f, nil
}

// setup locks the freshly opened descriptor, learns the device size and
// settles on direct or buffered I/O.
func (f *File) setup(kind fileKind, direct bool) error {
	if err := lockFD(f.fd, f.readOnly); err != nil {
		if err == errBusyLock {
			return fmt.Errorf("disk: %s: %w", f.path, ErrBusy)
		}
		return fmt.Errorf("disk: lock %s: %w", f.path, err)
	}
	size, err := deviceSize(f.fd, kind)
	if err != nil {
		return fmt.Errorf("disk: size of %s: %w", f.path, err)
	}
	f.size = size / SectorSize * SectorSize

	if direct {
		f.memAlign, f.offAlign, direct = dioAlignment(f.fd, kind)
		// Unusable alignments: not a power of two, larger than a bounce
		// buffer, or a device whose last aligned block would reach past
		// its end (writing it back would grow the image).
		if direct && (!powerOfTwo(f.memAlign) || !powerOfTwo(f.offAlign) ||
			f.offAlign > bounceSize || f.size%int64(f.offAlign) != 0) {
			direct = false
		}
		if !direct {
			if err := clearDirect(f.fd); err != nil {
				return fmt.Errorf("disk: %s: turning off O_DIRECT: %w", f.path, err)
			}
		}
	}
	f.direct = direct
	if direct {
		f.bounce.New = func() any {
			b := alignedBuffer(bounceSize, f.memAlign)
			return &b
		}
	}
	return nil
}

// Direct reports whether the File does direct I/O (O_DIRECT), which is
// false when it was not asked for or when the host could not provide it.
func (f *File) Direct() bool { return f.direct }

// Size is the device length in bytes, a multiple of SectorSize.
func (f *File) Size() int64 { return f.size }

// ReadAt reads len(p) bytes at off. As with os.File, reading past the end
// returns the bytes before it and io.EOF.
func (f *File) ReadAt(p []byte, off int64) (int, error) {
	if err := f.check("read", p, off); err != nil {
		return 0, err
	}
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.closed {
		return 0, f.closedError()
	}
	if len(p) == 0 {
		return 0, nil
	}
	if off >= f.size {
		return 0, io.EOF
	}
	want := p
	if rest := f.size - off; int64(len(p)) > rest {
		want = p[:rest]
	}
	var n int
	var err error
	if f.direct {
		n, err = f.directRead(want, off)
	} else {
		n, err = preadFull(f.fd, want, off)
	}
	if err != nil {
		return n, f.ioError("read", len(p), off, err)
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// WriteAt writes p at off. The write is not durable until Flush.
func (f *File) WriteAt(p []byte, off int64) (int, error) {
	if f.readOnly {
		return 0, f.ioError("write", len(p), off, ErrReadOnly)
	}
	if err := f.check("write", p, off); err != nil {
		return 0, err
	}
	if off+int64(len(p)) > f.size {
		return 0, f.ioError("write", len(p), off, fmt.Errorf("%w (size %d)", ErrOutOfRange, f.size))
	}
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.closed {
		return 0, f.closedError()
	}
	var n int
	var err error
	if f.direct {
		n, err = f.directWrite(p, off)
	} else {
		n, err = pwriteFull(f.fd, p, off)
	}
	if err != nil {
		return n, f.ioError("write", len(p), off, err)
	}
	return n, nil
}

// Flush makes every write that returned before it durable (fdatasync, which
// also flushes the device's volatile write cache).
func (f *File) Flush() error {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.closed {
		return f.closedError()
	}
	if err := fdatasync(f.fd); err != nil {
		return fmt.Errorf("disk: %s: flush: %w", f.path, err)
	}
	return nil
}

// Close releases the device and its lock. It does not flush.
func (f *File) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return f.closedError()
	}
	f.closed = true
	if err := closeFD(f.fd); err != nil {
		return fmt.Errorf("disk: close %s: %w", f.path, err)
	}
	return nil
}

// directRead reads through O_DIRECT. Requests whose memory, offset or
// length is not aligned as the host requires go through a bounce buffer
// covering the surrounding aligned range.
func (f *File) directRead(p []byte, off int64) (int, error) {
	end := off + int64(len(p))
	start, alignedEnd := f.alignDown(off), f.alignUp(end)
	if start == off && alignedEnd == end && memAligned(p, f.memAlign) {
		return preadSplit(f.fd, p, off)
	}
	buf := f.bounce.Get().(*[]byte)
	defer f.bounce.Put(buf)
	for cs := start; cs < alignedEnd; cs += int64(len(*buf)) {
		ce := min(cs+int64(len(*buf)), alignedEnd)
		chunk := (*buf)[:ce-cs]
		lo, hi := max(cs, off), min(ce, end)
		if _, err := preadFull(f.fd, chunk, cs); err != nil {
			return int(lo - off), err
		}
		copy(p[lo-off:hi-off], chunk[lo-cs:])
	}
	return len(p), nil
}

// directWrite writes through O_DIRECT, copying through a bounce buffer when
// p is not suitably aligned in memory.
//
// When the host needs a coarser offset alignment than SectorSize (a 4096
// byte block filesystem, a 4Kn disk) and the request is only 512-aligned,
// the surrounding aligned blocks are read, patched and written back. That
// read-modify-write is the slow path: an extra read, and it excludes all
// other writes while it runs. It is not atomic with respect to a crash
// either, but the sectors it rewrites hold the data that was just read, so
// a torn write leaves each of them old or new, as for any write.
func (f *File) directWrite(p []byte, off int64) (int, error) {
	end := off + int64(len(p))
	start, alignedEnd := f.alignDown(off), f.alignUp(end)
	if start == off && alignedEnd == end {
		f.rmw.RLock()
		defer f.rmw.RUnlock()
		if memAligned(p, f.memAlign) {
			return pwriteFull(f.fd, p, off)
		}
	} else {
		f.rmw.Lock()
		defer f.rmw.Unlock()
	}
	buf := f.bounce.Get().(*[]byte)
	defer f.bounce.Put(buf)
	for cs := start; cs < alignedEnd; cs += int64(len(*buf)) {
		ce := min(cs+int64(len(*buf)), alignedEnd)
		chunk := (*buf)[:ce-cs]
		lo, hi := max(cs, off), min(ce, end)
		if lo > cs || hi < ce {
			if _, err := preadFull(f.fd, chunk, cs); err != nil {
				return int(lo - off), err
			}
		}
		copy(chunk[lo-cs:], p[lo-off:hi-off])
		if _, err := pwriteFull(f.fd, chunk, cs); err != nil {
			return int(lo - off), err
		}
	}
	return len(p), nil
}

func (f *File) alignDown(off int64) int64 { return off &^ int64(f.offAlign-1) }
func (f *File) alignUp(off int64) int64   { return f.alignDown(off + int64(f.offAlign) - 1) }

// check validates a request's offset and length before it reaches the
// kernel, so the error names the request rather than being a bare EINVAL.
func (f *File) check(op string, p []byte, off int64) error {
	if off < 0 {
		return f.ioError(op, len(p), off, ErrOutOfRange)
	}
	if off%SectorSize != 0 || len(p)%SectorSize != 0 {
		return f.ioError(op, len(p), off, ErrUnaligned)
	}
	return nil
}

func (f *File) ioError(op string, n int, off int64, err error) error {
	return fmt.Errorf("disk: %s: %s of %d bytes at offset %d: %w", f.path, op, n, off, err)
}

func (f *File) closedError() error {
	return fmt.Errorf("%w (%s)", ErrClosed, f.path)
}

// CreateImage makes sure path is an image file of at least size bytes: it
// creates the file if missing and grows it with ftruncate, so the new space
// is sparse and costs no disk blocks until written (a 1 TiB image is free).
// It never shrinks a file, since that would cut off a filesystem that
// might live in it, and it refuses block devices, whose size is fixed and
// which Open uses directly.
func CreateImage(path string, size int64) error {
	if size < 0 {
		return fmt.Errorf("disk: create image %s: negative size %d", path, size)
	}
	kind, err := statKind(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return fmt.Errorf("disk: create image %s: %w", path, unwrapPathError(err))
	case kind == kindBlock:
		return fmt.Errorf("disk: create image %s: it is a block device; use it directly without a size", path)
	case kind == kindOther:
		return fmt.Errorf("disk: create image %s: exists and is not a regular file", path)
	}

	file, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("disk: create image %s: %w", path, unwrapPathError(err))
	}
	defer file.Close()
	// Growing a mounted image is harmless to agfs, but a file someone holds
	// is not one to touch behind their back.
	if err := lockFD(int(file.Fd()), false); err != nil {
		if err == errBusyLock {
			return fmt.Errorf("disk: %s: %w", path, ErrBusy)
		}
		return fmt.Errorf("disk: lock %s: %w", path, err)
	}
	st, err := file.Stat()
	if err != nil {
		return fmt.Errorf("disk: create image %s: %w", path, unwrapPathError(err))
	}
	if st.Size() < size {
		if err := file.Truncate(size); err != nil {
			return fmt.Errorf("disk: create image %s: growing to %d bytes: %w", path, size, unwrapPathError(err))
		}
	}
	if err := file.Sync(); err != nil {
		return fmt.Errorf("disk: create image %s: %w", path, unwrapPathError(err))
	}
	// A new file's name is durable only once its directory is synced.
	if err := syncDir(filepath.Dir(path)); err != nil {
		return fmt.Errorf("disk: create image %s: %w", path, err)
	}
	return file.Close()
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// IsBlockDevice reports whether path is (or is a symlink to) a block
// device, for tools that must treat devices and image files differently.
func IsBlockDevice(path string) (bool, error) {
	kind, err := statKind(path)
	if err != nil {
		return false, fmt.Errorf("disk: %s: %w", path, unwrapPathError(err))
	}
	return kind == kindBlock, nil
}

// unwrapPathError strips the *os.PathError around err: our messages name
// the path themselves and would otherwise say it twice.
func unwrapPathError(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

func powerOfTwo(n int) bool { return n > 0 && n&(n-1) == 0 }

// alignedBuffer returns size bytes whose first byte's address is a multiple
// of align (a power of two): O_DIRECT transfers need aligned memory, and Go
// cannot ask its allocator for that, so allocate with slack and slice.
func alignedBuffer(size, align int) []byte {
	b := make([]byte, size+align)
	shift := 0
	if r := int(uintptr(unsafe.Pointer(&b[0])) & uintptr(align-1)); r != 0 {
		shift = align - r
	}
	return b[shift : shift+size : shift+size]
}

// memAligned reports whether p starts at an address that is a multiple of
// align, so it can go to the kernel without a bounce copy.
func memAligned(p []byte, align int) bool {
	return len(p) == 0 || uintptr(unsafe.Pointer(&p[0]))&uintptr(align-1) == 0
}

// readPiece is the size of the pieces preadSplit reads in parallel. A
// virtual disk serves one large O_DIRECT read as a queue of requests of
// its own size limit, one after the other; several smaller reads in
// flight at once keep more of them busy.
const readPiece = 256 << 10

// preadSplit reads p at off, in pieces of readPiece read concurrently when
// p is larger than two of them. It returns how many bytes from the start
// of p were read.
func preadSplit(fd int, p []byte, off int64) (int, error) {
	n := (len(p) + readPiece - 1) / readPiece
	if n <= 2 {
		return preadFull(fd, p, off)
	}
	done := make([]int, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := 1; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lo := i * readPiece
			done[i], errs[i] = preadFull(fd, p[lo:min(lo+readPiece, len(p))], off+int64(lo))
		}()
	}
	done[0], errs[0] = preadFull(fd, p[:readPiece], off)
	wg.Wait()
	total := 0
	for i := range n {
		total += done[i]
		if errs[i] != nil {
			return total, errs[i]
		}
	}
	return total, nil
}
