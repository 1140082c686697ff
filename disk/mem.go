package disk

import (
	"fmt"
	"io"
	"sync"
)

// Mem is a Device held in memory, for tests. Everything written is
// immediately "durable"; Flush only checks that the device is open.
//
// Unlike File it accepts any offset and length, so a test can corrupt a
// single byte through it. It is safe for concurrent use.
type Mem struct {
	mu     sync.RWMutex
	data   []byte
	closed bool
}

var _ Device = (*Mem)(nil)

// NewMem returns a zero-filled in-memory device of size bytes.
func NewMem(size int64) *Mem {
	return &Mem{data: make([]byte, size)}
}

// NewMemFrom returns an in-memory device over img, which it takes
// ownership of (no copy: crash images are handed straight to it, and the
// caller must not use img afterwards). Its size is len(img).
func NewMemFrom(img []byte) *Mem {
	return &Mem{data: img}
}

// ReadAt reads len(p) bytes at off; as with os.File, reading past the end
// returns the bytes before it and io.EOF.
func (m *Mem) ReadAt(p []byte, off int64) (int, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return 0, fmt.Errorf("%w (mem)", ErrClosed)
	}
	if off < 0 {
		return 0, fmt.Errorf("disk: mem: read of %d bytes at offset %d: %w", len(p), off, ErrOutOfRange)
	}
	if off >= int64(len(m.data)) {
		if len(p) == 0 {
			return 0, nil
		}
		return 0, io.EOF
	}
	n := copy(p, m.data[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// WriteAt writes p at off. A write that would reach past the end writes
// nothing and fails: the device has a fixed size.
func (m *Mem) WriteAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return 0, fmt.Errorf("%w (mem)", ErrClosed)
	}
	if off < 0 || off+int64(len(p)) > int64(len(m.data)) {
		return 0, fmt.Errorf("disk: mem: write of %d bytes at offset %d: %w (size %d)", len(p), off, ErrOutOfRange, len(m.data))
	}
	return copy(m.data[off:], p), nil
}

// Flush has nothing to do: memory is as durable as a Mem gets.
func (m *Mem) Flush() error {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return fmt.Errorf("%w (mem)", ErrClosed)
	}
	return nil
}

// Size is the device length in bytes.
func (m *Mem) Size() int64 {
	return int64(len(m.data)) // fixed at creation, so no lock
}

// Close makes further I/O fail with ErrClosed. The contents stay readable
// through Bytes, so a test can inspect what a closed filesystem left.
func (m *Mem) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return fmt.Errorf("%w (mem)", ErrClosed)
	}
	m.closed = true
	return nil
}

// Bytes returns a copy of the device contents.
func (m *Mem) Bytes() []byte {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return append([]byte(nil), m.data...)
}
