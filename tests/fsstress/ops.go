package main

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// expected are the errors an operation may meet when other workers change
// its names under it: a name gone, taken, of another type, a directory
// not empty or renamed into itself, a symbolic link loop, an attribute
// not there, a fifo with no reader (at the open: ENXIO, or at a write
// after its last reader went: EPIPE), an attribute on a special file or
// link to a directory (EPERM), a full filesystem. Anything else is the
// filesystem's failure.
var expected = [...]syscall.Errno{
	unix.ENOENT, unix.EEXIST, unix.ENOTDIR, unix.EISDIR, unix.ENOTEMPTY,
	unix.EINVAL, unix.ELOOP, unix.EMLINK, unix.ENODATA, unix.ENXIO,
	unix.EPIPE, unix.EAGAIN, unix.EPERM, unix.ESPIPE, unix.ENOSPC,
}

// Names the operations choose from: directories d0-d2 up to two deep
// under a worker's tree or the shared one, leaves f0-f7 (and the
// directory names, so that renames and unlinks meet directories).
const (
	dirNames  = 3
	leafNames = 8
	maxDepth  = 2
	maxOffset = 256 << 10 // writes, truncates and fallocates stay below
	maxIO     = 64 << 10  // bytes of one write, read, copy or fallocate
)

// An operation picks its names, says what it does (begin), does it, and
// returns the first error.
type operation struct {
	name   string
	weight int
	do     func(w *worker) error
}

var operations = []operation{
	{"creat", 14, (*worker).creat},
	{"write", 10, (*worker).write},
	{"read", 6, (*worker).read},
	{"truncate", 4, (*worker).truncate},
	{"falloc", 4, (*worker).falloc},
	{"mkdir", 6, (*worker).mkdir},
	{"rmdir", 2, (*worker).rmdir},
	{"unlink", 4, (*worker).unlink},
	{"rename", 8, (*worker).rename},
	{"link", 3, (*worker).link},
	{"symlink", 3, (*worker).symlink},
	{"readlink", 2, (*worker).readlink},
	{"mknod", 1, (*worker).mknod},
	{"stat", 4, (*worker).stat},
	{"chmod", 2, (*worker).chmod},
	{"chown", 2, (*worker).chown},
	{"utimes", 2, (*worker).utimes},
	{"setxattr", 3, (*worker).setxattr},
	{"getxattr", 2, (*worker).getxattr},
	{"listxattr", 1, (*worker).listxattr},
	{"removexattr", 1, (*worker).removexattr},
	{"readdir", 4, (*worker).readdir},
	{"fsync", 2, (*worker).fsync},
	{"copyrange", 2, (*worker).copyRange},
	{"syncfs", 1, (*worker).syncfs},
	{"unlinked", 1, (*worker).unlinkedOpen},
}

type worker struct {
	r   *stressRun
	id  int
	rnd *rand.Rand
	buf []byte
}

func newWorker(r *stressRun, id int) *worker {
	return &worker{r: r, id: id, rnd: rand.New(rand.NewPCG(r.cfg.seed, uint64(id))), buf: make([]byte, maxIO)}
}

func (w *worker) loop() {
	for i := 0; i < w.r.cfg.ops && !w.r.failed.Load(); i++ {
		op := w.pick()
		err := op.do(w)
		w.r.doing[w.id].Store(nil)
		w.r.ops.Add(1)
		var errno syscall.Errno
		switch {
		case err == nil:
		case errors.As(err, &errno) && slices.Contains(expected[:], errno):
			w.r.count(errno)
		default:
			w.r.failf("worker %d, operation %d: %s: %v (%s)", w.id, i, op.name, err, errnoName(err))
			return
		}
		if w.r.cfg.verbose {
			w.r.logf("w%d %d %s: %v", w.id, i, op.name, err)
		}
	}
}

// errnoName is the symbolic name of err's errno ("EIO"), or "no errno".
func errnoName(err error) string {
	var e syscall.Errno
	if !errors.As(err, &e) {
		return "no errno"
	}
	if n := unix.ErrnoName(e); n != "" {
		return n
	}
	return fmt.Sprintf("errno %d", int(e))
}

func (w *worker) pick() operation {
	n := w.rnd.IntN(w.r.weight)
	for _, o := range w.r.operations {
		if n < o.weight {
			return o
		}
		n -= o.weight
	}
	panic("unreachable")
}

// begin records what the worker is about to do, for the stall report.
func (w *worker) begin(format string, a ...any) {
	w.r.doing[w.id].Store(&inFlight{what: fmt.Sprintf(format, a...), since: time.Now()})
}

// dir is a directory name: the worker's tree (two times in three) or the
// shared one, and up to maxDepth directories below it, shallow ones
// more often (half at the top) so that most names exist.
func (w *worker) dir() string {
	top := -1
	if w.rnd.IntN(3) != 0 {
		top = w.id
	}
	p := w.r.top(top)
	for depth := 0; depth < maxDepth && w.rnd.IntN(2) == 0; depth++ {
		p = filepath.Join(p, fmt.Sprintf("d%d", w.rnd.IntN(dirNames)))
	}
	return p
}

// leaf is a name in a directory: a file name f0-f7 mostly, a directory
// name sometimes.
func (w *worker) leaf() string {
	if w.rnd.IntN(6) == 0 {
		return filepath.Join(w.dir(), fmt.Sprintf("d%d", w.rnd.IntN(dirNames)))
	}
	return filepath.Join(w.dir(), fmt.Sprintf("f%d", w.rnd.IntN(leafNames)))
}

// short is p without DIR, for reports.
func (w *worker) short(p string) string { return strings.TrimPrefix(p, w.r.cfg.dir+"/") }

// data fills part of the worker's buffer with a pattern and returns it.
func (w *worker) data(n int) []byte {
	b := w.buf[:n]
	c := byte(w.rnd.Uint32())
	for i := range b {
		b[i] = c + byte(i)
	}
	return b
}

// open opens p without blocking on a fifo (fifos are among the names).
func (w *worker) open(p string, flag int) (int, error) {
	fd, err := unix.Open(p, flag|unix.O_NONBLOCK|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return -1, fmt.Errorf("open %s: %w", w.short(p), err)
	}
	return fd, nil
}

// withFD opens p, runs f on it and closes it; the first error wins.
func (w *worker) withFD(p string, flag int, f func(fd int) error) error {
	fd, err := w.open(p, flag)
	if err != nil {
		return err
	}
	err = f(fd)
	if cerr := unix.Close(fd); err == nil && cerr != nil {
		err = fmt.Errorf("close %s: %w", w.short(p), cerr)
	}
	return err
}

func (w *worker) creat() error {
	p := filepath.Join(w.dir(), fmt.Sprintf("f%d", w.rnd.IntN(leafNames)))
	flag := unix.O_CREAT | unix.O_WRONLY
	if w.rnd.IntN(4) == 0 {
		flag |= unix.O_EXCL
	}
	if w.rnd.IntN(4) == 0 {
		flag |= unix.O_TRUNC
	}
	n := w.rnd.IntN(8 << 10)
	w.begin("creat %s flags %#x, write %d", w.short(p), flag, n)
	return w.withFD(p, flag, func(fd int) error {
		_, err := unix.Write(fd, w.data(n))
		return err
	})
}

func (w *worker) write() error {
	p := w.leaf()
	off, n := w.rnd.Int64N(maxOffset), 1+w.rnd.IntN(maxIO)
	flag := unix.O_WRONLY
	if w.rnd.IntN(8) == 0 {
		flag |= unix.O_APPEND
	}
	w.begin("write %s at %d, %d bytes, flags %#x", w.short(p), off, n, flag)
	return w.withFD(p, flag, func(fd int) error {
		if flag&unix.O_APPEND != 0 {
			_, err := unix.Write(fd, w.data(n))
			return err
		}
		_, err := unix.Pwrite(fd, w.data(n), off)
		return err
	})
}

func (w *worker) read() error {
	p := w.leaf()
	off, n := w.rnd.Int64N(maxOffset+maxIO), 1+w.rnd.IntN(maxIO)
	w.begin("read %s at %d, %d bytes", w.short(p), off, n)
	return w.withFD(p, unix.O_RDONLY, func(fd int) error {
		_, err := unix.Pread(fd, w.buf[:n], off)
		return err
	})
}

func (w *worker) truncate() error {
	p, size := w.leaf(), w.rnd.Int64N(maxOffset)
	w.begin("truncate %s to %d", w.short(p), size)
	return unix.Truncate(p, size)
}

var fallocModes = []uint32{
	0,
	unix.FALLOC_FL_KEEP_SIZE,
	unix.FALLOC_FL_PUNCH_HOLE | unix.FALLOC_FL_KEEP_SIZE,
	unix.FALLOC_FL_ZERO_RANGE,
	unix.FALLOC_FL_ZERO_RANGE | unix.FALLOC_FL_KEEP_SIZE,
}

// falloc calls fallocate with one of fallocModes. A mode the filesystem
// answers EOPNOTSUPP is not used again, as fsstress and fsx do, and the
// summary names it.
func (w *worker) falloc() error {
	p, i := w.leaf(), w.rnd.IntN(len(fallocModes))
	mode := fallocModes[i]
	off, n := w.rnd.Int64N(maxOffset), 1+w.rnd.Int64N(maxIO)
	if w.r.unsupported.Load()&(1<<i) != 0 {
		return nil
	}
	w.begin("fallocate %s mode %#x at %d, %d bytes", w.short(p), mode, off, n)
	return w.withFD(p, unix.O_WRONLY, func(fd int) error {
		err := unix.Fallocate(fd, mode, off, n)
		if err == unix.EOPNOTSUPP {
			w.r.unsupported.Or(1 << i)
			return nil
		}
		return err
	})
}

func (w *worker) mkdir() error {
	p := filepath.Join(w.dir(), fmt.Sprintf("d%d", w.rnd.IntN(dirNames)))
	w.begin("mkdir %s", w.short(p))
	return unix.Mkdir(p, 0o755)
}

func (w *worker) rmdir() error {
	p := w.leaf()
	w.begin("rmdir %s", w.short(p))
	return unix.Rmdir(p)
}

func (w *worker) unlink() error {
	p := w.leaf()
	w.begin("unlink %s", w.short(p))
	return unix.Unlink(p)
}

func (w *worker) rename() error {
	from, to := w.leaf(), w.leaf()
	flags := []uint{0, 0, unix.RENAME_NOREPLACE, unix.RENAME_EXCHANGE}[w.rnd.IntN(4)]
	w.begin("rename %s to %s, flags %d", w.short(from), w.short(to), flags)
	return unix.Renameat2(unix.AT_FDCWD, from, unix.AT_FDCWD, to, flags)
}

func (w *worker) link() error {
	from, to := w.leaf(), w.leaf()
	w.begin("link %s to %s", w.short(from), w.short(to))
	return unix.Link(from, to)
}

// symlink makes a link to a name below its own directory (never "..", so
// no link leads out of the trees); one in four is longer than fits in an
// inode.
func (w *worker) symlink() error {
	p := w.leaf()
	var t strings.Builder
	for range w.rnd.IntN(3) {
		fmt.Fprintf(&t, "d%d/", w.rnd.IntN(dirNames))
	}
	if w.rnd.IntN(4) == 0 {
		for t.Len() < 200+w.rnd.IntN(800) {
			t.WriteString("d0/")
		}
	}
	fmt.Fprintf(&t, "f%d", w.rnd.IntN(leafNames))
	w.begin("symlink %s to %d bytes", w.short(p), t.Len())
	return unix.Symlink(t.String(), p)
}

func (w *worker) readlink() error {
	p := w.leaf()
	w.begin("readlink %s", w.short(p))
	_, err := unix.Readlink(p, w.buf[:4096])
	return err
}

func (w *worker) mknod() error {
	p := w.leaf()
	w.begin("mknod %s fifo", w.short(p))
	return unix.Mknod(p, unix.S_IFIFO|0o644, 0)
}

func (w *worker) stat() error {
	p := w.leaf()
	var st unix.Stat_t
	if w.rnd.IntN(2) == 0 {
		w.begin("stat %s", w.short(p))
		return unix.Stat(p, &st)
	}
	w.begin("lstat %s", w.short(p))
	return unix.Lstat(p, &st)
}

func (w *worker) chmod() error {
	p, mode := w.leaf(), uint32(w.rnd.IntN(0o10000))
	w.begin("chmod %s %o", w.short(p), mode)
	return unix.Chmod(p, mode)
}

var ids = []int{0, 1000, 65534}

func (w *worker) chown() error {
	p, uid, gid := w.leaf(), ids[w.rnd.IntN(len(ids))], ids[w.rnd.IntN(len(ids))]
	w.begin("lchown %s %d:%d", w.short(p), uid, gid)
	return unix.Lchown(p, uid, gid)
}

func (w *worker) utimes() error {
	p := w.leaf()
	ts := make([]unix.Timespec, 2)
	for i := range ts {
		switch w.rnd.IntN(4) {
		case 0:
			ts[i] = unix.Timespec{Nsec: unix.UTIME_NOW}
		case 1:
			ts[i] = unix.Timespec{Nsec: unix.UTIME_OMIT}
		default:
			ts[i] = unix.NsecToTimespec(w.rnd.Int64N(4e18))
		}
	}
	w.begin("utimensat %s %v", w.short(p), ts)
	return unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW)
}

func (w *worker) attrName() string { return fmt.Sprintf("user.a%d", w.rnd.IntN(4)) }

// setxattr sets an attribute of up to 3,000 bytes: small ones stay in
// the inode, large ones need a block.
func (w *worker) setxattr() error {
	p, name, n := w.leaf(), w.attrName(), w.rnd.IntN(3000)
	flags := []int{0, unix.XATTR_CREATE, unix.XATTR_REPLACE}[w.rnd.IntN(3)]
	w.begin("lsetxattr %s %s, %d bytes, flags %d", w.short(p), name, n, flags)
	return unix.Lsetxattr(p, name, w.data(n), flags)
}

func (w *worker) getxattr() error {
	p, name := w.leaf(), w.attrName()
	w.begin("lgetxattr %s %s", w.short(p), name)
	_, err := unix.Lgetxattr(p, name, w.buf)
	return err
}

func (w *worker) listxattr() error {
	p := w.leaf()
	w.begin("llistxattr %s", w.short(p))
	_, err := unix.Llistxattr(p, w.buf)
	return err
}

func (w *worker) removexattr() error {
	p, name := w.leaf(), w.attrName()
	w.begin("lremovexattr %s %s", w.short(p), name)
	return unix.Lremovexattr(p, name)
}

// readdir lists a directory to its end (O_DIRECTORY: a fifo renamed to
// a directory's name must not block the open).
func (w *worker) readdir() error {
	p := w.dir()
	w.begin("readdir %s", w.short(p))
	return w.withFD(p, unix.O_RDONLY|unix.O_DIRECTORY, func(fd int) error {
		for {
			n, err := unix.Getdents(fd, w.buf)
			if n <= 0 || err != nil {
				return err
			}
		}
	})
}

func (w *worker) fsync() error {
	p, data := w.leaf(), w.rnd.IntN(2) == 0
	w.begin("fsync %s (data only %v)", w.short(p), data)
	return w.withFD(p, unix.O_RDONLY, func(fd int) error {
		if data {
			return unix.Fdatasync(fd)
		}
		return unix.Fsync(fd)
	})
}

func (w *worker) copyRange() error {
	from, to := w.leaf(), w.leaf()
	roff, woff, n := w.rnd.Int64N(maxOffset), w.rnd.Int64N(maxOffset), 1+w.rnd.IntN(maxIO)
	w.begin("copy_file_range %s at %d to %s at %d, %d bytes", w.short(from), roff, w.short(to), woff, n)
	return w.withFD(from, unix.O_RDONLY, func(in int) error {
		return w.withFD(to, unix.O_WRONLY, func(out int) error {
			_, err := unix.CopyFileRange(in, &roff, out, &woff, n, 0)
			return err
		})
	})
}

func (w *worker) syncfs() error {
	w.begin("syncfs")
	return w.withFD(w.r.cfg.dir, unix.O_RDONLY|unix.O_DIRECTORY, unix.Syncfs)
}

// unlinkedOpen writes to a file after its last name is gone, and
// sometimes fsyncs it, before the close frees it.
func (w *worker) unlinkedOpen() error {
	p := filepath.Join(w.dir(), fmt.Sprintf("f%d", w.rnd.IntN(leafNames)))
	n, sync := 1+w.rnd.IntN(maxIO), w.rnd.IntN(2) == 0
	w.begin("open, unlink, write %d bytes, fsync %v, close %s", n, sync, w.short(p))
	return w.withFD(p, unix.O_CREAT|unix.O_RDWR, func(fd int) error {
		if err := unix.Unlink(p); err != nil {
			return fmt.Errorf("unlink %s: %w", w.short(p), err)
		}
		if _, err := unix.Pwrite(fd, w.data(n), w.rnd.Int64N(maxOffset)); err != nil {
			return err
		}
		if sync {
			return unix.Fsync(fd)
		}
		return nil
	})
}
