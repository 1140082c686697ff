// Package iouring is the little of io_uring(7) that agfs needs: one ring
// with 128-byte submission entries, driven by a single thread, for
// passthrough commands (IORING_OP_URING_CMD) to a device such as
// /dev/fuse, plus plain reads.
//
// A Ring is not safe for concurrent use: it is made with
// IORING_SETUP_SINGLE_ISSUER and IORING_SETUP_DEFER_TASKRUN, so the thread
// that creates it must be the only one to submit and reap, and the caller
// keeps its goroutine on that thread (runtime.LockOSThread). In return the
// kernel does the ring's completion work when that thread asks for events,
// instead of interrupting it for each one.
//
// The layout of the shared rings is the kernel's (include/uapi/linux/
// io_uring.h); the offsets come from io_uring_setup(2) at run time.
package iouring

import (
	"fmt"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Setup flags and opcodes of io_uring_setup(2) and io_uring_enter(2).
const (
	setupCoopTaskrun  = 1 << 8
	setupSQE128       = 1 << 10
	setupSingleIssuer = 1 << 12
	setupDeferTaskrun = 1 << 13

	featSingleMmap = 1 << 0

	enterGetEvents = 1 << 0

	offSQRing = 0
	offSQEs   = 0x10000000

	// OpRead reads from a file descriptor into Addr, Len bytes.
	OpRead = 22
	// OpURingCmd passes Cmd to the file's driver (its ->uring_cmd).
	OpURingCmd = 46
)

// SQE is a 128-byte submission queue entry. Cmd is the driver's command
// area of a passthrough (IORING_OP_URING_CMD) entry; Off holds its
// command code (cmd_op) in its low 32 bits.
type SQE struct {
	Opcode      uint8
	Flags       uint8
	Ioprio      uint16
	Fd          int32
	Off         uint64
	Addr        uint64
	Len         uint32
	OpFlags     uint32
	UserData    uint64
	BufIndex    uint16
	Personality uint16
	FileIndex   int32
	Cmd         [80]byte
}

// CQE is a completion: the UserData of its SQE and the result, a
// non-negative count or a negated errno.
type CQE struct {
	UserData uint64
	Res      int32
	Flags    uint32
}

// params is struct io_uring_params.
type params struct {
	sqEntries, cqEntries, flags, sqThreadCPU, sqThreadIdle, features, wqFd uint32
	resv                                                                   [3]uint32
	sqOff                                                                  sqOffsets
	cqOff                                                                  cqOffsets
}

// sqOffsets is struct io_sqring_offsets: where the submission ring's
// fields are in its mapping.
type sqOffsets struct {
	head, tail, ringMask, ringEntries, flags, dropped, array, resv1 uint32
	userAddr                                                        uint64
}

// cqOffsets is struct io_cqring_offsets.
type cqOffsets struct {
	head, tail, ringMask, ringEntries, overflow, cqes, flags, resv1 uint32
	userAddr                                                        uint64
}

// Ring is one io_uring instance.
type Ring struct {
	fd       int
	ringMem  []byte // the SQ and CQ rings, one mapping
	sqeMem   []byte
	sqHead   *uint32
	sqTail   *uint32
	sqMask   uint32
	sqArray  []uint32
	sqes     []SQE
	cqHead   *uint32
	cqTail   *uint32
	cqMask   uint32
	cqes     []CQE
	unsubmit uint32 // entries queued since the last successful enter
}

func init() {
	if unsafe.Sizeof(SQE{}) != 128 || unsafe.Sizeof(CQE{}) != 16 || unsafe.Sizeof(params{}) != 120 {
		panic("iouring: struct layout does not match the kernel's")
	}
}

// New sets up a ring of (at least) entries submission slots.
func New(entries uint32) (*Ring, error) {
	p := params{flags: setupSQE128 | setupSingleIssuer | setupDeferTaskrun | setupCoopTaskrun}
	fd, _, e := unix.Syscall(unix.SYS_IO_URING_SETUP, uintptr(entries), uintptr(unsafe.Pointer(&p)), 0)
	if e != 0 {
		return nil, fmt.Errorf("io_uring_setup: %w", e)
	}
	r := &Ring{fd: int(fd)}
	if p.features&featSingleMmap == 0 {
		r.Close()
		return nil, fmt.Errorf("io_uring_setup: kernel too old (no IORING_FEAT_SINGLE_MMAP)")
	}
	size := max(p.sqOff.array+p.sqEntries*4, p.cqOff.cqes+p.cqEntries*uint32(unsafe.Sizeof(CQE{})))
	var err error
	r.ringMem, err = unix.Mmap(r.fd, offSQRing, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		r.Close()
		return nil, fmt.Errorf("io_uring: mmap rings: %w", err)
	}
	r.sqeMem, err = unix.Mmap(r.fd, offSQEs, int(p.sqEntries)*int(unsafe.Sizeof(SQE{})), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		r.Close()
		return nil, fmt.Errorf("io_uring: mmap entries: %w", err)
	}
	at := func(off uint32) unsafe.Pointer { return unsafe.Pointer(&r.ringMem[off]) }
	r.sqHead = (*uint32)(at(p.sqOff.head))
	r.sqTail = (*uint32)(at(p.sqOff.tail))
	r.sqMask = *(*uint32)(at(p.sqOff.ringMask))
	r.sqArray = unsafe.Slice((*uint32)(at(p.sqOff.array)), p.sqEntries)
	r.sqes = unsafe.Slice((*SQE)(unsafe.Pointer(&r.sqeMem[0])), p.sqEntries)
	r.cqHead = (*uint32)(at(p.cqOff.head))
	r.cqTail = (*uint32)(at(p.cqOff.tail))
	r.cqMask = *(*uint32)(at(p.cqOff.ringMask))
	r.cqes = unsafe.Slice((*CQE)(at(p.cqOff.cqes)), p.cqEntries)
	return r, nil
}

// SQE returns the next free submission entry, zeroed, or nil when the
// submission queue is full (Enter makes room).
func (r *Ring) SQE() *SQE {
	tail := *r.sqTail // only this thread writes the tail
	if tail-atomic.LoadUint32(r.sqHead) >= uint32(len(r.sqes)) {
		return nil
	}
	i := tail & r.sqMask
	r.sqes[i] = SQE{}
	r.sqArray[i] = i
	atomic.StoreUint32(r.sqTail, tail+1)
	r.unsubmit++
	return &r.sqes[i]
}

// Enter submits the queued entries and, if wait > 0, waits until at least
// wait completions are ready. A signal ends the wait early without error.
func (r *Ring) Enter(wait uint32) error {
	var flags uintptr
	if wait > 0 {
		flags = enterGetEvents
	}
	n, _, e := unix.Syscall6(unix.SYS_IO_URING_ENTER, uintptr(r.fd), uintptr(r.unsubmit), uintptr(wait), flags, 0, 0)
	switch e {
	case 0:
		r.unsubmit -= uint32(n)
		return nil
	case syscall.EINTR, syscall.EAGAIN, syscall.EBUSY:
		// A signal, or no room for completions yet: the caller reaps
		// and calls again.
		return nil
	}
	return fmt.Errorf("io_uring_enter: %w", e)
}

// Completions calls f for every completion ready, in order, and frees
// their slots.
func (r *Ring) Completions(f func(CQE)) {
	head := *r.cqHead
	for tail := atomic.LoadUint32(r.cqTail); head != tail; head++ {
		f(r.cqes[head&r.cqMask])
	}
	atomic.StoreUint32(r.cqHead, head)
}

// Close unmaps and closes the ring; the kernel cancels what is in flight.
func (r *Ring) Close() error {
	if r.sqeMem != nil {
		unix.Munmap(r.sqeMem)
	}
	if r.ringMem != nil {
		unix.Munmap(r.ringMem)
	}
	return unix.Close(r.fd)
}
