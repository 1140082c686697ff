package fs

import (
	"sync/atomic"

	"agfs/disk"
)

// orderedDev is the device as the log sees it: it implements ordered data
// with one flush per log write instead of one per file write.
//
// A transaction that maps blocks whose contents were just written
// (new blocks, unwritten ones written for the first time) marks data as
// pending after those writes returned and before it commits. Before the
// log writes anything (a group commit, a background write of full log
// blocks, a log superblock), orderedDev flushes the device if data is
// pending. So every such data write is durable before any log write that
// can hold the transaction's commit record is issued, and a crash never
// leaves a file mapping blocks whose new contents did not reach the disk.
// A flush for any reason clears the pending mark.
//
// Writes from the filesystem go through it as well (data writes do not
// touch the log region, so they pass straight through).
type orderedDev struct {
	disk.Device // wb
	// wb lets file data writes return before they reach the device; its
	// Flush waits for them, so the flush before a log write covers them.
	wb           *disk.WriteBehind
	logLo, logHi int64 // byte range of the log region
	pending      atomic.Bool
	flushes      atomic.Uint64 // flushes issued because data was pending
}

// dataWritten records that data the next log write must follow has been
// written (call it after the writes returned, before committing).
func (d *orderedDev) dataWritten() { d.pending.Store(true) }

func (d *orderedDev) WriteAt(p []byte, off int64) (int, error) {
	if off < d.logHi && off+int64(len(p)) > d.logLo && d.pending.Swap(false) {
		if err := d.Device.Flush(); err != nil {
			d.pending.Store(true)
			return 0, err
		}
		d.flushes.Add(1)
	}
	return d.Device.WriteAt(p, off)
}

func (d *orderedDev) Flush() error {
	was := d.pending.Swap(false)
	err := d.Device.Flush()
	if err != nil && was {
		d.pending.Store(true)
	}
	return err
}
