package disk

import (
	"math/bits"
	"sync"
)

// WriteBehind is a device whose WriteAsync returns before the write reaches
// the device underneath: the bytes are copied and written by a goroutine,
// so the caller's next request overlaps the device's latency. File data
// goes this way (agfs opens its device with O_DIRECT, so there is no host
// page cache to absorb a small write: without it every write(2) of a new
// small file waits one device write).
//
// It keeps the device's semantics for everyone else:
//   - Writes whose byte ranges overlap reach the device in the order they
//     were called, and ReadAt waits for the writes that overlap its range:
//     a read always sees the last write of every byte.
//   - Flush first waits for every write in flight, so "durable after
//     Flush" covers asynchronous writes too.
//   - The first failed asynchronous write is sticky: Flush and every later
//     write return it. A caller that orders metadata after data (fs's
//     ordered data) flushes before its metadata write, so a failed data
//     write stops the metadata that would have exposed the block.
//
// At most maxBytes of asynchronous writes, and maxWrites writes, are in
// flight; WriteAsync waits for room beyond that. (The count bound keeps
// the overlap scans short and the goroutines few.)
type WriteBehind struct {
	Device
	maxBytes int64

	mu       sync.Mutex
	done     *sync.Cond // a write ended
	inflight map[uint64]span
	next     uint64
	bytes    int64 // of asynchronous writes in flight
	err      error // the first failed asynchronous write
}

type span struct{ off, end int64 }

const pageSize = 4096

// writeBehindMax is the largest write WriteAsync copies; a larger one is
// written synchronously (its copy would cost about what it saves).
const writeBehindMax = 4 << 20

// maxWrites bounds the writes in flight.
const maxWrites = 256

// NewWriteBehind wraps d, allowing maxBytes of writes in flight.
func NewWriteBehind(d Device, maxBytes int64) *WriteBehind {
	w := &WriteBehind{Device: d, maxBytes: maxBytes, inflight: map[uint64]span{}}
	w.done = sync.NewCond(&w.mu)
	return w
}

// overlaps reports whether a write in flight touches [off, end).
func (w *WriteBehind) overlaps(off, end int64) bool {
	for _, s := range w.inflight {
		if s.off < end && off < s.end {
			return true
		}
	}
	return false
}

// begin waits until no write in flight overlaps [off, off+n) (and, for an
// asynchronous write, until there is room), then registers the range.
func (w *WriteBehind) begin(off int64, n int, async bool) (uint64, error) {
	end := off + int64(n)
	w.mu.Lock()
	defer w.mu.Unlock()
	full := func() bool {
		return len(w.inflight) >= maxWrites || w.bytes > 0 && w.bytes+int64(n) > w.maxBytes
	}
	for w.err == nil && (w.overlaps(off, end) || async && full()) {
		w.done.Wait()
	}
	if w.err != nil {
		return 0, w.err
	}
	w.next++
	w.inflight[w.next] = span{off, end}
	if async {
		w.bytes += int64(n)
	}
	return w.next, nil
}

// end unregisters write id; err is its failure, if asynchronous.
func (w *WriteBehind) end(id uint64, async bool, err error) {
	w.mu.Lock()
	s := w.inflight[id]
	delete(w.inflight, id)
	if async {
		w.bytes -= s.end - s.off
		if err != nil && w.err == nil {
			w.err = err
		}
	}
	w.done.Broadcast()
	w.mu.Unlock()
}

// WriteAsync writes a copy of p at off; p may be reused on return. An
// error is a write that failed earlier (sticky) or, for a write too large
// to copy, this one's.
func (w *WriteBehind) WriteAsync(p []byte, off int64) error {
	if len(p) == 0 || len(p) > writeBehindMax {
		_, err := w.WriteAt(p, off)
		return err
	}
	id, err := w.begin(off, len(p), true)
	if err != nil {
		return err
	}
	buf := getBuffer(len(p))
	copy(buf, p)
	go func() {
		_, err := w.Device.WriteAt(buf, off)
		putBuffer(buf)
		w.end(id, true, err)
	}()
	return nil
}

// WriteAt writes p at off once the writes in flight over its range are
// done.
func (w *WriteBehind) WriteAt(p []byte, off int64) (int, error) {
	id, err := w.begin(off, len(p), false)
	if err != nil {
		return 0, err
	}
	n, err := w.Device.WriteAt(p, off)
	w.end(id, false, nil)
	return n, err
}

// ReadAt reads once the writes in flight over its range are done.
func (w *WriteBehind) ReadAt(p []byte, off int64) (int, error) {
	end := off + int64(len(p))
	w.mu.Lock()
	for w.overlaps(off, end) {
		w.done.Wait()
	}
	w.mu.Unlock()
	return w.Device.ReadAt(p, off)
}

// Drain waits for every write in flight and returns the sticky error.
func (w *WriteBehind) Drain() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	for len(w.inflight) > 0 {
		w.done.Wait()
	}
	return w.err
}

// Flush makes every write that returned before it durable, asynchronous
// ones included.
func (w *WriteBehind) Flush() error {
	if err := w.Drain(); err != nil {
		return err
	}
	return w.Device.Flush()
}

// Close waits for the writes in flight, then closes the device.
func (w *WriteBehind) Close() error {
	err := w.Drain()
	if cerr := w.Device.Close(); err == nil {
		err = cerr
	}
	return err
}

// Copies of asynchronous writes come from pools by power-of-two size,
// page-aligned (every O_DIRECT memory alignment is at most a page) so the
// device writes them without another copy.
var bufPools [23]sync.Pool // up to 1<<22 = writeBehindMax

func sizeClass(n int) int { return bits.Len(uint(n - 1)) }

func getBuffer(n int) []byte {
	c := sizeClass(n)
	if b, ok := bufPools[c].Get().(*[]byte); ok {
		return (*b)[:n]
	}
	return alignedBuffer(1<<c, pageSize)[:n]
}

func putBuffer(b []byte) {
	b = b[:cap(b)]
	bufPools[sizeClass(len(b))].Put(&b)
}
