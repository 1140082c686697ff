// Package disk is the bottom layer of agfs: the device. It reads and writes
// bytes at offsets and flushes them to stable storage, over a regular file,
// a block device, or memory; and it provides the test devices that inject
// faults and record writes for crash simulation.
//
// Nothing here knows what the bytes mean.
package disk

import "errors"

// SectorSize is the unit of atomicity agfs assumes of a device: a write of an
// aligned 512-byte sector either happens whole or not at all. Every offset and
// length agfs hands to a Device is a multiple of it.
const SectorSize = 512

// Device is what agfs needs from storage.
//
// ReadAt and WriteAt follow io.ReaderAt and io.WriterAt: a short count comes
// with a non-nil error. A write is not durable until a later Flush returns
// nil; until then a crash may drop it, keep it, or (for the crash-simulation
// devices) keep only a prefix of its sectors.
type Device interface {
	ReadAt(p []byte, off int64) (int, error)
	WriteAt(p []byte, off int64) (int, error)
	// Flush makes every write that returned before Flush was called durable.
	Flush() error
	// Size is the device's length in bytes.
	Size() int64
	Close() error
}

// ErrClosed is returned by a device used after Close.
var ErrClosed = errors.New("disk: device is closed")

// ErrOutOfRange is returned for a request that reaches past the end of a
// device or starts at a negative offset. Devices have a fixed size: a write
// past the end is a bug in the layer above, never a reason to grow the image.
var ErrOutOfRange = errors.New("beyond the end of the device")
