package fusefs

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"agfs/iouring"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// FUSE over io_uring (Linux 6.14+, Documentation/filesystems/fuse-io-uring.rst).
//
// With the classic transport every request is a read(2) of /dev/fuse by
// one daemon thread and its reply a write(2), and the kernel wakes
// whichever reader waited longest, usually on the other CPU from the
// process that made the request. On a small VM each of those cross-CPU
// wake-ups costs more than agfs's work for a typical metadata request
// (docs/DESIGN.md, "The FUSE layer"). Over io_uring the kernel keeps one
// queue per CPU and puts a request on the queue of the CPU it was made
// on; agfs serves each queue with one thread pinned to that CPU, which
// answers a request and fetches the next in one io_uring_enter(2). The
// caller sleeps, the queue's thread runs on the same CPU, and the reply
// wakes the caller there again.
//
// Only requests travel over the rings: FORGET and INTERRUPT still come
// through /dev/fuse, and notifications still go out through it, so the
// go-fuse Server keeps reading /dev/fuse beside the rings.
//
// Each ring entry is a pair of buffers the kernel fills with a request
// and reads the reply from (struct fuse_uring_req_header and a payload):
//
//	header  0..128   in: struct fuse_in_header; out: struct fuse_out_header
//	      128..256   in: the opcode's fixed argument (fuse_write_in, ...)
//	      256..288   struct fuse_uring_ent_in_out: flags, commit_id,
//	                 payload_sz (the bytes used in the payload, both ways)
//	payload          in: names, data; out: every reply argument
//
// go-fuse's ProtocolServer turns such a request, given as a byte stream
// in pieces, into the same RawFileSystem calls the Server makes.
const (
	uringCmdRegister       = 1 // FUSE_IO_URING_CMD_REGISTER
	uringCmdCommitAndFetch = 2 // FUSE_IO_URING_CMD_COMMIT_AND_FETCH

	uringHeaderSize  = 288
	uringOpInOff     = 128
	uringOpInMax     = 128
	uringCommitIDOff = 264
	uringPayloadOff  = 272

	inHeaderSize  = 40 // struct fuse_in_header
	outHeaderSize = 16 // struct fuse_out_header

	// uringDepth is the number of entries per queue. A queue's thread
	// serves one request at a time; the others let the kernel hand it
	// the next request in the same io_uring_enter that commits a reply.
	uringDepth = 4

	// uringWake is the UserData of the eventfd read that wakes a
	// queue's thread when a request served off it has its reply ready.
	uringWake = ^uint64(0)

	opRead  = 15 // FUSE_READ
	opLseek = 46 // FUSE_LSEEK

	// uringParallelRead is the smallest READ served off the queue's
	// thread (offThread).
	uringParallelRead = 64 << 10
)

// eventfdOne is what a write adds to an eventfd's counter: 1, as a
// native-endian uint64.
var eventfdOne = binary.NativeEndian.AppendUint64(nil, 1)

// uringQueue serves the requests the kernel queues for one CPU.
type uringQueue struct {
	qid     int
	ring    *iouring.Ring
	hdrs    []byte // uringDepth headers, page-aligned
	payload []byte // uringDepth payloads of psize bytes
	psize   int
	iov     []unix.Iovec // two per entry: header, payload
	efd     int          // eventfd of served-off-thread replies
	efdBuf  [8]byte
	ready   chan int // entries served off the thread, to commit

	fuseFD int
	ps     *fuse.ProtocolServer
	live   int // entries the kernel holds or this queue is serving
	log    *log.Logger
	served atomic.Uint64 // requests answered, for the stats
}

// uring is the set of queues of one mount, one per possible CPU.
type uring struct {
	queues []*uringQueue
	start  chan *fuse.ProtocolServer // closed without a value: abandon
	fuseFD int
	done   sync.WaitGroup
}

// enableURingParam is the fuse module's switch for FUSE over io_uring
// (off by default): while it is off, the kernel offers it to no server.
const enableURingParam = "/sys/module/fuse/parameters/enable_uring"

// uringAvailable reports why FUSE over io_uring cannot be used here, or
// nil.
func uringAvailable() error {
	on, err := uringSwitch()
	if err == nil && !on {
		err = fmt.Errorf("FUSE over io_uring is off (%s is N)", enableURingParam)
	}
	return err
}

// uringSwitch reads the fuse module's enable_uring; an error means the
// kernel has no FUSE over io_uring.
func uringSwitch() (bool, error) {
	b, err := os.ReadFile(enableURingParam)
	if err != nil {
		return false, errors.New("this kernel has no FUSE over io_uring (Linux 6.14+ with CONFIG_FUSE_IO_URING)")
	}
	return strings.TrimSpace(string(b)) == "Y", nil
}

// EnableURing turns on the kernel's FUSE over io_uring if it is off
// (root only). It lets FUSE servers that ask for io_uring use it and
// changes nothing for the others.
func EnableURing() error {
	on, err := uringSwitch()
	if err != nil || on {
		return err
	}
	if err := os.WriteFile(enableURingParam, []byte("Y"), 0); err != nil {
		return fmt.Errorf("turning on FUSE over io_uring: %w", err)
	}
	return nil
}

// possibleCPUs is the kernel's num_possible_cpus(), its number of queues.
func possibleCPUs() (int, error) {
	b, err := os.ReadFile("/sys/devices/system/cpu/possible")
	if err != nil {
		return 0, err
	}
	n, err := countCPUList(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("/sys/devices/system/cpu/possible: %w", err)
	}
	return n, nil
}

// countCPUList counts the CPUs of a kernel CPU list such as "0-3,8".
func countCPUList(list string) (int, error) {
	n := 0
	for _, r := range strings.Split(list, ",") {
		lo, hi, isRange := strings.Cut(r, "-")
		if !isRange {
			hi = lo
		}
		a, err1 := strconv.Atoi(lo)
		z, err2 := strconv.Atoi(hi)
		if err1 != nil || err2 != nil || a < 0 || z < a {
			return 0, fmt.Errorf("bad CPU list %q", list)
		}
		n += z - a + 1
	}
	return n, nil
}

// newURing sets up the rings and buffers of every queue, each on its own
// thread, before the mount: a failure here leaves the mount on
// /dev/fuse alone. After INIT, run registers them (or abandon drops them).
func newURing(maxWrite int, logger *log.Logger) (*uring, error) {
	n, err := possibleCPUs()
	if err != nil {
		return nil, err
	}
	u := &uring{start: make(chan *fuse.ProtocolServer, n)}
	psize := (max(8192, maxWrite) + os.Getpagesize() - 1) &^ (os.Getpagesize() - 1)
	errs := make(chan error, n)
	for qid := 0; qid < n; qid++ {
		q := &uringQueue{qid: qid, psize: psize, ready: make(chan int, uringDepth), log: logger}
		u.queues = append(u.queues, q)
		u.done.Add(1)
		go q.thread(u, errs)
	}
	for range n {
		if e := <-errs; e != nil && err == nil {
			err = e
		}
	}
	if err != nil {
		u.abandon()
		return nil, err
	}
	return u, nil
}

// appendStats appends the transport's counters to a stats text.
func (u *uring) appendStats(b []byte) []byte {
	var queues []*uringQueue
	if u != nil {
		queues = u.queues
	}
	var served uint64
	for _, q := range queues {
		served += q.served.Load()
	}
	return fmt.Appendf(b, "fuse.uring_queues %d\nfuse.uring_requests %d\n", len(queues), served)
}

// run registers every queue's entries with the kernel, after INIT: from
// then on the kernel sends requests through the rings.
func (u *uring) run(fuseFD int, ps *fuse.ProtocolServer) {
	u.fuseFD = fuseFD
	for range u.queues {
		u.start <- ps
	}
}

// abandon ends the queues' threads without registering anything; on nil
// it does nothing.
func (u *uring) abandon() {
	if u == nil {
		return
	}
	close(u.start)
	u.done.Wait()
}

// wait waits, after the connection has gone, for every queue's thread
// to see it go (the kernel ends each entry with ENOTCONN), and then
// closes the rings' descriptor of the connection.
func (u *uring) wait(limit time.Duration) bool {
	c := make(chan struct{})
	go func() { u.done.Wait(); close(c) }()
	select {
	case <-c:
		unix.Close(u.fuseFD)
		return true
	case <-time.After(limit):
		return false
	}
}

// thread is the life of one queue's thread: set up, wait for INIT, serve
// until the connection ends.
func (q *uringQueue) thread(u *uring, setup chan<- error) {
	defer u.done.Done()
	// The ring is bound to this thread (SINGLE_ISSUER). The thread is
	// never unlocked: it ends with the goroutine rather than going back to
	// the runtime pinned to one CPU.
	runtime.LockOSThread()
	var cpus unix.CPUSet
	cpus.Set(q.qid)
	// Pinning is what keeps a request on its CPU; a CPU this process may
	// not use (cpuset) leaves the thread unpinned but still correct.
	_ = unix.SchedSetaffinity(0, &cpus)

	err := q.setup()
	setup <- err
	defer q.close()
	if err != nil {
		return
	}
	ps, ok := <-u.start
	if !ok {
		return
	}
	q.fuseFD, q.ps = u.fuseFD, ps
	if err := q.register(); err != nil {
		q.log.Printf("agfs: io_uring queue %d: %v; requests go through /dev/fuse", q.qid, err)
		refuseURing(q.fuseFD)
		return
	}
	q.serve()
}

func (q *uringQueue) setup() error {
	var err error
	if q.ring, err = iouring.New(2*uringDepth + 2); err != nil {
		return err
	}
	page := os.Getpagesize()
	anon := func(n int) ([]byte, error) {
		return unix.Mmap(-1, 0, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	}
	if q.hdrs, err = anon(uringDepth * page); err != nil {
		return fmt.Errorf("io_uring buffers: %w", err)
	}
	if q.payload, err = anon(uringDepth * q.psize); err != nil {
		return fmt.Errorf("io_uring buffers: %w", err)
	}
	q.iov = make([]unix.Iovec, 2*uringDepth)
	for i := range uringDepth {
		h, p := q.header(i), q.payloadOf(i)
		q.iov[2*i] = unix.Iovec{Base: &h[0]}
		q.iov[2*i].SetLen(len(h))
		q.iov[2*i+1] = unix.Iovec{Base: &p[0]}
		q.iov[2*i+1].SetLen(len(p))
	}
	if q.efd, err = unix.Eventfd(0, unix.EFD_CLOEXEC); err != nil {
		return fmt.Errorf("io_uring: eventfd: %w", err)
	}
	return nil
}

// close frees what setup made, also when it stopped half-way.
func (q *uringQueue) close() {
	if q.ring != nil {
		q.ring.Close()
	}
	if q.efd > 0 {
		unix.Close(q.efd)
	}
	if q.hdrs != nil {
		unix.Munmap(q.hdrs)
	}
	if q.payload != nil {
		unix.Munmap(q.payload)
	}
}

func (q *uringQueue) header(i int) []byte {
	off := i * os.Getpagesize()
	return q.hdrs[off : off+uringHeaderSize]
}

func (q *uringQueue) payloadOf(i int) []byte {
	return q.payload[i*q.psize : (i+1)*q.psize]
}

// cmd queues a FUSE uring command for entry i.
func (q *uringQueue) cmd(op uint32, i int, commitID uint64) error {
	sqe := q.ring.SQE()
	if sqe == nil {
		return errors.New("submission queue full")
	}
	sqe.Opcode = iouring.OpURingCmd
	sqe.Fd = int32(q.fuseFD)
	sqe.Off = uint64(op)
	sqe.UserData = uint64(i)
	if op == uringCmdRegister {
		sqe.Addr = uint64(uintptr(unsafe.Pointer(&q.iov[2*i])))
		sqe.Len = 2
	}
	// struct fuse_uring_cmd_req: flags, commit_id, qid
	binary.LittleEndian.PutUint64(sqe.Cmd[8:], commitID)
	binary.LittleEndian.PutUint16(sqe.Cmd[16:], uint16(q.qid))
	return nil
}

// armWake queues the read of the eventfd that ends a wait when a reply
// served off the thread is ready.
func (q *uringQueue) armWake() error {
	sqe := q.ring.SQE()
	if sqe == nil {
		return errors.New("submission queue full")
	}
	sqe.Opcode = iouring.OpRead
	sqe.Fd = int32(q.efd)
	sqe.Addr = uint64(uintptr(unsafe.Pointer(&q.efdBuf[0])))
	sqe.Len = uint32(len(q.efdBuf))
	sqe.Off = ^uint64(0)
	sqe.UserData = uringWake
	return nil
}

func (q *uringQueue) register() error {
	for i := range uringDepth {
		if err := q.cmd(uringCmdRegister, i, 0); err != nil {
			return err
		}
	}
	if err := q.armWake(); err != nil {
		return err
	}
	q.live = uringDepth
	return q.ring.Enter(0)
}

// serve answers requests until the kernel has ended every entry.
func (q *uringQueue) serve() {
	for q.live > 0 {
		if err := q.ring.Enter(1); err != nil {
			q.log.Printf("agfs: io_uring queue %d: %v", q.qid, err)
			return
		}
		q.ring.Completions(q.complete)
	}
}

func (q *uringQueue) complete(c iouring.CQE) {
	switch {
	case c.UserData == uringWake:
		for more := true; more; {
			select {
			case i := <-q.ready:
				q.commit(i)
			default:
				more = false
			}
		}
		if c.Res >= 0 {
			q.armWake()
		}
	case c.Res < 0:
		// The connection has ended (ENOTCONN), or registering failed,
		// in which case the kernel goes on with /dev/fuse.
		if e := syscall.Errno(-c.Res); e != syscall.ENOTCONN && e != syscall.ECANCELED && e != syscall.ECONNABORTED {
			q.log.Printf("agfs: io_uring queue %d entry %d: %v", q.qid, c.UserData, e)
		}
		q.live--
	default:
		i := int(c.UserData)
		if q.offThread(q.header(i)) {
			go func() {
				q.handle(i)
				q.ready <- i
				unix.Write(q.efd, eventfdOne)
			}()
			return
		}
		q.handle(i)
		q.commit(i)
	}
}

// offThread reports whether the request in header h is served on a
// goroutine of its own rather than on the queue's thread, which then
// goes on with the queue's other requests.
//   - LSEEK may notify the kernel to write dirty pages back (FS.Lseek),
//     and the WRITEs that causes can land on this very queue.
//   - A large READ is readahead, which the kernel sends several at a
//     time, all on the reader's CPU: served one after another they would
//     leave the device idle between them (1 GiB cold read: 0.66-0.70 GB/s
//     in series against 0.75-1.25 GB/s over /dev/fuse).
func (q *uringQueue) offThread(h []byte) bool {
	switch binary.LittleEndian.Uint32(h[4:]) {
	case opLseek:
		return true
	case opRead: // struct fuse_read_in: fh, offset, size
		return binary.LittleEndian.Uint32(h[uringOpInOff+16:]) >= uringParallelRead
	}
	return false
}

// handle serves the request in entry i and leaves the reply in its place.
func (q *uringQueue) handle(i int) {
	h, p := q.header(i), q.payloadOf(i)
	inLen := binary.LittleEndian.Uint32(h[0:])
	psz := binary.LittleEndian.Uint32(h[uringPayloadOff:])
	opSize := int(inLen) - inHeaderSize - int(psz)
	n, st := 0, fuse.EIO
	if opSize >= 0 && opSize <= uringOpInMax && int(psz) <= len(p) {
		// The reply overwrites the request in place: the ProtocolServer
		// copies the headers in before the call and writes out after.
		n, st = q.ps.HandleRequest(
			[][]byte{h[:inHeaderSize], h[uringOpInOff : uringOpInOff+opSize], p[:psz]},
			[][]byte{h[:outHeaderSize], p})
	}
	if !st.Ok() || n < outHeaderSize {
		// struct fuse_out_header: len, error; unique stays in place.
		binary.LittleEndian.PutUint32(h[0:], outHeaderSize)
		errno := -int32(syscall.EIO)
		binary.LittleEndian.PutUint32(h[4:], uint32(errno))
		n = outHeaderSize
	}
	binary.LittleEndian.PutUint32(h[uringPayloadOff:], uint32(n-outHeaderSize))
	q.served.Add(1)
}

// commit hands entry i's reply to the kernel and takes the next request.
func (q *uringQueue) commit(i int) {
	id := binary.LittleEndian.Uint64(q.header(i)[uringCommitIDOff:])
	if err := q.cmd(uringCmdCommitAndFetch, i, id); err != nil {
		q.log.Printf("agfs: io_uring queue %d: %v", q.qid, err)
	}
}

// refuseURing tells the kernel to give up io_uring on the connection of
// fuseFD and go on with /dev/fuse. Once INIT has agreed on io_uring, the
// kernel holds every request until all queues are registered, or until a
// registration fails; if a queue cannot register, a deliberately invalid
// one (a queue id no CPU has) is what lets the mount work on.
func refuseURing(fuseFD int) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	r, err := iouring.New(2)
	if err != nil {
		return
	}
	defer r.Close()
	q := &uringQueue{qid: 0xffff, ring: r, fuseFD: fuseFD, iov: make([]unix.Iovec, 2)}
	if q.cmd(uringCmdRegister, 0, 0) == nil && r.Enter(1) == nil {
		r.Completions(func(iouring.CQE) {})
	}
}
