package disk

import (
	"fmt"
	"io"
	"sync"
)

// Overlay is a copy-on-write view of a read-only device: writes land in
// memory, reads see them over the base device, and the base is never
// written. It lets a read-only check replay a dirty log and then examine the
// result, and a read-only mount replay the log in memory.
type Overlay struct {
	base    Device
	mu      sync.RWMutex
	sectors map[int64][]byte // sector number → SectorSize bytes
}

var _ Device = (*Overlay)(nil)

// NewOverlay returns an overlay over base.
func NewOverlay(base Device) *Overlay {
	return &Overlay{base: base, sectors: make(map[int64][]byte)}
}

// ReadAt reads from base and lays the overlaid sectors on top.
func (o *Overlay) ReadAt(p []byte, off int64) (int, error) {
	if off%SectorSize != 0 || len(p)%SectorSize != 0 {
		return 0, fmt.Errorf("disk: overlay read at %d+%d: %w", off, len(p), ErrUnaligned)
	}
	n, err := o.base.ReadAt(p, off)
	o.mu.RLock()
	defer o.mu.RUnlock()
	for i := 0; i < len(p); i += SectorSize {
		if s, ok := o.sectors[(off+int64(i))/SectorSize]; ok {
			copy(p[i:], s)
		}
	}
	return n, err
}

// WriteAt keeps p in memory; the base device is not touched.
func (o *Overlay) WriteAt(p []byte, off int64) (int, error) {
	if off%SectorSize != 0 || len(p)%SectorSize != 0 {
		return 0, fmt.Errorf("disk: overlay write at %d+%d: %w", off, len(p), ErrUnaligned)
	}
	if off < 0 || off+int64(len(p)) > o.base.Size() {
		return 0, fmt.Errorf("disk: overlay write at %d+%d: %w", off, len(p), ErrOutOfRange)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	for i := 0; i < len(p); i += SectorSize {
		o.sectors[(off+int64(i))/SectorSize] = append([]byte(nil), p[i:i+SectorSize]...)
	}
	return len(p), nil
}

// Flush has nothing to make durable.
func (o *Overlay) Flush() error { return nil }

// Size is the base device's size.
func (o *Overlay) Size() int64 { return o.base.Size() }

// Close drops the overlaid writes; it does not close the base device.
func (o *Overlay) Close() error {
	o.mu.Lock()
	o.sectors = nil
	o.mu.Unlock()
	return nil
}

// Dirty reports how many sectors have been written to the overlay.
func (o *Overlay) Dirty() int {
	o.mu.RLock()
	defer o.mu.RUnlock()
	return len(o.sectors)
}

var _ io.ReaderAt = (*Overlay)(nil)
