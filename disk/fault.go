package disk

import (
	"fmt"
	"io"
	"sync"
)

// Op selects which operations a range fault applies to; combine with |.
type Op uint8

const (
	OpRead  Op = 1 << iota // ReadAt
	OpWrite                // WriteAt
)

// Fault wraps a Device and makes chosen operations fail, so tests can
// exercise the error paths that real disks take rarely: a failed write, a
// failed flush, an unreadable region, a short write. It is safe for
// concurrent use.
//
// A failed operation never reaches the inner device, so the test sees
// exactly what the code under test left behind; the one exception is a
// short write, which stores its documented prefix.
type Fault struct {
	inner Device

	mu        sync.Mutex
	writes    int64           // WriteAt calls so far, failed ones included
	flushes   int64           // Flush calls so far, failed ones included
	failWrite map[int64]error // write number (1-based) → error to return
	failFlush map[int64]error // flush number (1-based) → error to return
	ranges    []rangeFault
	short     bool
}

type rangeFault struct {
	off, end int64
	op       Op
	err      error
}

var _ Device = (*Fault)(nil)

// NewFault wraps inner with no faults armed.
func NewFault(inner Device) *Fault {
	return &Fault{inner: inner, failWrite: map[int64]error{}, failFlush: map[int64]error{}}
}

// FailWriteN makes the n-th WriteAt from now (n=1: the next one) fail with
// err, once. Several can be armed at once.
func (f *Fault) FailWriteN(n int, err error) {
	mustFault("FailWriteN", n, err)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failWrite[f.writes+int64(n)] = err
}

// FailFlushN makes the n-th Flush from now (n=1: the next one) fail with
// err, once.
func (f *Fault) FailFlushN(n int, err error) {
	mustFault("FailFlushN", n, err)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failFlush[f.flushes+int64(n)] = err
}

// FailRange makes every operation of kind op (OpRead, OpWrite or both)
// that touches a byte of [off, off+length) fail with err (typically
// syscall.EIO), until Clear: a bad region of the disk.
func (f *Fault) FailRange(off, length int64, op Op, err error) {
	mustFault("FailRange", 1, err)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ranges = append(f.ranges, rangeFault{off: off, end: off + length, op: op, err: err})
}

// mustFault rejects fault specifications that can only be test bugs: a nil
// error would make the "failed" operation look like a success.
func mustFault(method string, n int, err error) {
	if n < 1 {
		panic(fmt.Sprintf("disk: Fault.%s: n=%d, but it counts from 1", method, n))
	}
	if err == nil {
		panic(fmt.Sprintf("disk: Fault.%s: nil error", method))
	}
}

// ShortWrites turns short writes on or off. When on, each write stores only
// its first half, rounded down to a whole sector, and returns that count
// with io.ErrShortWrite: a write interrupted part way.
func (f *Fault) ShortWrites(on bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.short = on
}

// Clear disarms every fault. The counters keep counting.
func (f *Fault) Clear() {
	f.mu.Lock()
	defer f.mu.Unlock()
	clear(f.failWrite)
	clear(f.failFlush)
	f.ranges = nil
	f.short = false
}

// Writes is the number of WriteAt calls so far, failed ones included.
func (f *Fault) Writes() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.writes
}

// Flushes is the number of Flush calls so far, failed ones included.
func (f *Fault) Flushes() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.flushes
}

// rangeError returns the error of the first armed range fault that covers
// part of [off, off+n) for op, or nil. f.mu must be held.
func (f *Fault) rangeError(op Op, off int64, n int) error {
	end := off + int64(n)
	for _, r := range f.ranges {
		if r.op&op != 0 && off < r.end && r.off < end {
			return r.err
		}
	}
	return nil
}

// ReadAt reads from the inner device unless a range fault covers the request.
func (f *Fault) ReadAt(p []byte, off int64) (int, error) {
	f.mu.Lock()
	err := f.rangeError(OpRead, off, len(p))
	f.mu.Unlock()
	if err != nil {
		return 0, fmt.Errorf("disk: injected fault: read of %d bytes at offset %d: %w", len(p), off, err)
	}
	return f.inner.ReadAt(p, off)
}

// WriteAt writes to the inner device unless a fault is armed for it.
func (f *Fault) WriteAt(p []byte, off int64) (int, error) {
	f.mu.Lock()
	f.writes++
	err, ok := f.failWrite[f.writes]
	delete(f.failWrite, f.writes)
	if !ok {
		err = f.rangeError(OpWrite, off, len(p))
	}
	short := f.short
	f.mu.Unlock()

	if err != nil {
		return 0, fmt.Errorf("disk: injected fault: write of %d bytes at offset %d: %w", len(p), off, err)
	}
	if short {
		half := len(p) / 2 / SectorSize * SectorSize
		n, err := f.inner.WriteAt(p[:half], off)
		if err != nil {
			return n, err
		}
		return n, fmt.Errorf("disk: injected fault: write of %d bytes at offset %d stored %d: %w", len(p), off, n, io.ErrShortWrite)
	}
	return f.inner.WriteAt(p, off)
}

// Flush flushes the inner device unless a fault is armed for this flush.
func (f *Fault) Flush() error {
	f.mu.Lock()
	f.flushes++
	err, ok := f.failFlush[f.flushes]
	delete(f.failFlush, f.flushes)
	f.mu.Unlock()
	if ok {
		return fmt.Errorf("disk: injected fault: flush: %w", err)
	}
	return f.inner.Flush()
}

// Size is the inner device's size.
func (f *Fault) Size() int64 { return f.inner.Size() }

// Close closes the inner device; faults do not apply to it.
func (f *Fault) Close() error { return f.inner.Close() }
