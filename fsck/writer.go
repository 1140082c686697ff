package fsck

import (
	"fmt"

	"agfs/wal"
)

// writer is how repair writes: through the log, in transactions small
// enough for it. A crash in the middle of a repair therefore leaves a log
// that the next fsck (or mount) recovers, never a torn block; the repair
// as a whole is not atomic, but running fsck again finishes it. (Only the
// log itself, when it cannot be recovered, is rewritten directly: see
// logPhase.)
type writer struct {
	log *wal.Log
	tx  *wal.Tx
	// cost counts the blocks the open transaction may have changed; it
	// is committed when it reaches max.
	cost, max int
	blocks    int // blocks written in all
}

func newWriter(log *wal.Log, logBlocks uint64) *writer {
	// A changed block costs at most its image and its new content in the
	// log; an eighth of the log leaves room for both and for the tail.
	return &writer{log: log, tx: log.Begin(), max: max(16, int(logBlocks/8))}
}

// spend notes that the open transaction changed up to n more blocks, and
// commits it when it is full.
func (w *writer) spend(n int) error {
	w.cost += n
	w.blocks += n
	if w.cost < w.max {
		return nil
	}
	return w.commit()
}

func (w *writer) commit() error {
	if _, err := w.tx.Commit(); err != nil {
		return fmt.Errorf("repair: commit: %w", err)
	}
	w.tx, w.cost = w.log.Begin(), 0
	return nil
}

// put writes a whole block.
func (w *writer) put(blk uint64, img []byte) error {
	if err := w.tx.Init(blk, img); err != nil {
		return fmt.Errorf("repair: block %d: %w", blk, err)
	}
	return w.spend(1)
}

// close commits what is left and closes the log, which checkpoints every
// block home and leaves the log clean.
func (w *writer) close() error {
	err := w.commit()
	w.tx.Abort()
	if cerr := w.log.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("repair: close the log: %w", cerr)
	}
	return err
}
